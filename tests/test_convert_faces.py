"""Unit tests of convert's face pieces: masks, colour transfer, blending, One-Euro smoothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepfake_cli.faces.align import transform_points
from deepfake_cli.faces.blend import blend, feather_blend, poisson_blend
from deepfake_cli.faces.color import match_color
from deepfake_cli.faces.masks import MaskShape, blend_mask, erode_mask, feather_mask, hull_mask
from deepfake_cli.faces.smoothing import LandmarkSmoother, OneEuroFilter, inter_ocular_distance
from deepfake_cli.faces.template import MEAN_FACE_68


def _face_landmarks(center: tuple[float, float] = (100.0, 100.0), width: float = 100.0) -> np.ndarray:
    """The template face, ``width`` px wide, centred at ``center``."""
    return (MEAN_FACE_68 - 0.5) * width + np.asarray(center)


def _distance_inside(mask_shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Signed distance to the hull edge: positive inside, negative outside (pixels)."""
    hard = hull_mask(landmarks, mask_shape).astype(np.uint8)
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, 5)
    return inside - outside


def test_hull_mask_fills_the_convex_hull_of_the_landmarks() -> None:
    points = _face_landmarks()
    mask = hull_mask(points, (200, 200, 3))
    assert mask.shape == (200, 200) and mask.dtype == np.float32
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask[100, 100] == 1.0 and mask[2, 2] == 0.0
    hull_area = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
    assert abs(mask.sum() - hull_area) / hull_area < 0.03


def test_default_mask_is_eroded_12_and_feathered_8_percent_of_the_eye_distance() -> None:
    points = _face_landmarks()
    iod = inter_ocular_distance(points)
    mask = blend_mask("hull", points, (200, 200))
    distance = _distance_inside((200, 200), points)
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert np.all(mask[distance < -1] < 0.05)  # nothing outside the hull
    assert np.all(mask[distance > 0.12 * iod + 3 * 0.08 * iod] > 0.97)  # the inner face is opaque
    edge = np.abs(distance - 0.12 * iod) < 1.0  # the half-way contour sits at the eroded edge
    assert abs(float(mask[edge].mean()) - 0.5) < 0.1


def test_soft_hull_matches_blurring_the_eroded_hull() -> None:
    """The distance-based mask equals erode + Gaussian blur up to ~1 px where the hull curves."""
    points = _face_landmarks()
    reference = feather_mask(erode_mask(hull_mask(points, (200, 200)), 10), 7.0)
    fast = blend_mask("hull", points, (200, 200), mask_shape=MaskShape(erode=10, blur=7.0))
    assert np.abs(fast - reference).mean() < 0.015 and np.abs(fast - reference).max() < 0.2
    assert abs(fast.sum() / reference.sum() - 1.0) < 0.06


def test_erode_and_blur_in_pixels_override_the_defaults() -> None:
    points = _face_landmarks()
    hard = blend_mask("hull", points, (200, 200), mask_shape=MaskShape(erode=0, blur=0))
    np.testing.assert_array_equal(hard, hull_mask(points, (200, 200)))
    grown = blend_mask("hull", points, (200, 200), mask_shape=MaskShape(erode=-5, blur=0))
    assert grown.sum() > hard.sum() and np.all(grown >= hard)
    assert erode_mask(hard, 5).sum() < hard.sum()


def test_learned_and_combined_masks() -> None:
    points = _face_landmarks()
    learned = np.zeros((200, 200), np.float32)
    learned[:, :100] = 1.0
    left = blend_mask("learned", points, (200, 200), learned, MaskShape(blur=0))
    np.testing.assert_array_equal(left, learned)
    combined = blend_mask("combined", points, (200, 200), learned, MaskShape(erode=0, blur=0))
    np.testing.assert_array_equal(combined, hull_mask(points, (200, 200)) * learned)
    with pytest.raises(ValueError, match="needs a learned mask"):
        blend_mask("combined", points, (200, 200))


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    target = rng.integers(60, 200, size=(64, 64, 3)).astype(np.uint8)
    target = cv2.GaussianBlur(target, (0, 0), 2)
    region = np.zeros((64, 64), bool)
    region[8:56, 8:56] = True
    return target, region, np.zeros_like(target)


def test_avg_colour_shift_matches_the_mean_inside_the_region(rng: np.random.Generator) -> None:
    target, region, _ = _colour_pair(rng)
    face = np.clip(target.astype(int) + [30, -20, 10], 0, 255).astype(np.uint8)
    outside = target.copy()
    outside[~region] = 255  # pixels outside the region must not count
    matched = match_color(face, outside, region, "avg")
    np.testing.assert_allclose(matched[region].mean(0), target[region].mean(0), atol=0.6)


def test_reinhard_matches_lab_mean_and_spread(rng: np.random.Generator) -> None:
    target, region, _ = _colour_pair(rng)
    face = np.clip(target.astype(np.float32) * 0.6 + [60, 40, 20], 0, 255).astype(np.uint8)
    matched = match_color(face, target, region, "reinhard")

    def lab(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[region]

    np.testing.assert_allclose(lab(matched).mean(0), lab(target).mean(0), atol=1.0)
    np.testing.assert_allclose(lab(matched).std(0), lab(target).std(0), rtol=0.1, atol=0.5)


def test_hist_matching_undoes_a_monotone_tone_curve(rng: np.random.Generator) -> None:
    target, region, _ = _colour_pair(rng)
    curve = (255 * (np.arange(256) / 255) ** 0.5).astype(np.uint8)
    face = curve[target]
    matched = match_color(face, target, region, "hist")
    assert np.abs(matched[region].astype(int) - target[region]).mean() < 2.0
    assert np.abs(face[region].astype(int) - target[region]).mean() > 20


def test_colour_none_or_tiny_region_leaves_the_face_alone(rng: np.random.Generator) -> None:
    target, region, face = _colour_pair(rng)
    assert match_color(face, target, region, "none") is face
    assert match_color(face, target, np.zeros_like(region), "avg") is face


def test_feather_blend_keeps_the_background_where_alpha_is_zero(rng: np.random.Generator) -> None:
    background = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    foreground = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    alpha = np.zeros((40, 50), np.float32)
    alpha[10:30, 10:40] = 1.0
    alpha[20, 20] = 0.5
    out = feather_blend(background, foreground, alpha)
    np.testing.assert_array_equal(out[alpha == 0], background[alpha == 0])
    np.testing.assert_array_equal(out[alpha == 1], foreground[alpha == 1])
    expected = (background[20, 20].astype(float) + foreground[20, 20]) / 2
    assert np.all(np.abs(out[20, 20] - expected) <= 0.51)


def test_poisson_blend_changes_only_the_masked_area() -> None:
    yy, xx = np.mgrid[0:80, 0:100]
    background = np.dstack([xx * 2, yy * 2, np.full_like(xx, 90)]).astype(np.uint8)
    foreground = np.full_like(background, 200)
    foreground[35:45, 40:60] = 30  # a feature the clone must carry over
    alpha = np.zeros((80, 100), np.float32)
    alpha[20:60, 25:75] = 1.0
    out = blend(background, foreground, alpha, "poisson")
    np.testing.assert_array_equal(out[alpha == 0], background[alpha == 0])
    inside = out[36:44, 42:58].astype(int).mean() - out[25:30, 30:70].astype(int).mean()
    assert inside < -60  # the dark feature kept its contrast against the cloned surroundings
    np.testing.assert_array_equal(poisson_blend(background, foreground, np.zeros_like(alpha)), background)


def test_one_euro_filter_removes_jitter_of_a_still_signal(rng: np.random.Generator) -> None:
    smoother = OneEuroFilter(rate=30.0, min_cutoff=1.0, beta=0.0)
    noisy = 5.0 + rng.normal(0, 1.0, size=(300, 4))
    first = smoother(noisy[0])
    np.testing.assert_array_equal(first, noisy[0])  # the first sample passes through
    smoothed = np.array([smoother(x) for x in noisy[1:]])
    assert smoothed[50:].std() < 0.4 * noisy[50:].std()
    assert abs(smoothed[50:].mean() - 5.0) < 0.2


def test_one_euro_filter_follows_fast_motion_with_little_lag() -> None:
    slow = OneEuroFilter(rate=30.0, min_cutoff=1.0, beta=0.0)
    adaptive = OneEuroFilter(rate=30.0, min_cutoff=1.0, beta=2.0)
    ramp = np.arange(60, dtype=np.float64)[:, None] * 3.0  # 90 units per second
    lag_slow = ramp[-1, 0] - [slow(x) for x in ramp][-1][0]
    lag_adaptive = ramp[-1, 0] - [adaptive(x) for x in ramp][-1][0]
    assert lag_adaptive < 0.2 * lag_slow and lag_adaptive < 1.0


def test_landmark_smoother_reset_and_off() -> None:
    points = _face_landmarks()
    off = LandmarkSmoother(fps=25.0, strength=0)
    np.testing.assert_array_equal(off(points + 3), points + 3)
    smoother = LandmarkSmoother(fps=25.0, strength=1.0)
    smoother(points)
    assert np.abs(smoother(points + 1.0) - points).max() < 1.0  # a 1 px jitter is damped
    smoother.reset()
    np.testing.assert_array_equal(smoother(points + 50), points + 50)


def test_smoother_starts_over_when_the_face_jumps_to_another_place() -> None:
    points = _face_landmarks()
    eyes = inter_ocular_distance(points)
    smoother = LandmarkSmoother(fps=25.0)
    smoother(points)
    near = smoother(points + [eyes, 0.0])  # fast head motion: still filtered, lags behind
    assert near[:, 0].mean() < (points[:, 0] + eyes).mean() - 0.01
    far = points + [10 * eyes, 0.0]  # another face (or a cut): taken as is, not blended
    np.testing.assert_array_equal(smoother(far), far)


def test_smoother_speed_is_measured_in_face_sizes() -> None:
    """The same motion relative to the face is smoothed the same at any resolution."""
    small, large = LandmarkSmoother(25.0), LandmarkSmoother(25.0)
    base = _face_landmarks(width=50.0)
    for t in range(20):
        shift = np.array([np.sin(t / 3.0), 0.0]) * 5.0
        a = small(base + shift)
        b = large(transform_points(base + shift, np.array([[4.0, 0, 0], [0, 4.0, 0]])))
    np.testing.assert_allclose(a * 4.0, b, atol=1e-6)


def test_band_colour_matches_a_face_lit_differently_only_near_its_edge(rng: np.random.Generator) -> None:
    target, region, _ = _colour_pair(rng)
    inside = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    edge, centre = region & (inside <= 4), inside > 14
    face = target.astype(int)
    face[edge] += 40  # lighter only along the edge, like a seam
    face = np.clip(face, 0, 255).astype(np.uint8)

    def error(image: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(image[where].astype(int) - target[where]).mean())

    band, avg = match_color(face, target, region, "band"), match_color(face, target, region, "avg")
    assert error(band, edge) < 8 < 20 < error(avg, edge) and error(face, edge) > 35


def test_band_colour_follows_a_shift_that_changes_across_the_face(rng: np.random.Generator) -> None:
    target, region, _ = _colour_pair(rng)
    ramp = np.linspace(-30, 30, 64)[None, :, None]  # one side darker, the other lighter
    face = np.clip(target.astype(np.float32) + ramp, 0, 255).astype(np.uint8)
    band, avg = match_color(face, target, region, "band"), match_color(face, target, region, "avg")
    sides = region.copy()
    sides[:, 16:48] = False
    assert float(np.abs(band[sides].astype(int) - target[sides]).mean()) < 0.5 * float(
        np.abs(avg[sides].astype(int) - target[sides]).mean())
