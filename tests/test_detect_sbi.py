"""Self-blended images: two copies of a real face, one of them altered, blended inside a deformed hull."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import cv2
import numpy as np
import pytest

from deepfake_cli.detect import sbi
from deepfake_cli.faces import create_backend
from deepfake_cli.faces.masks import hull_mask
from deepfake_cli.media.synthetic import load_still, make_clip

SEEDS = range(8)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut still and its 68 landmarks from the offline backend."""
    image = load_still("astronaut")
    landmarks = create_backend("offline", detector_threads=1).detect(image)[0].landmarks
    assert landmarks.shape == (68, 2)
    return image, landmarks


def neutral(params: sbi.SBIParams) -> sbi.SBIParams:
    """``params`` with no colour change, no quality loss (resize by 1), no misalignment, full blend,
    the source copy altered."""
    return replace(params, altered="source", hue=0.0, saturation=1.0, brightness=0.0, contrast=1.0, channel_shift=(0.0, 0.0, 0.0),
                   quality="resize", quality_amount=1.0, shift=(0.0, 0.0), scale=(1.0, 1.0), ratio=1.0)


def test_self_blend_is_a_labelled_rgb_fake_with_a_mask_peaking_at_the_blend_ratio(face) -> None:
    image, landmarks = face
    result = sbi.self_blend(image, landmarks, 0)
    assert result.label == sbi.LABEL == 1
    assert result.fake.shape == image.shape and result.fake.dtype == np.uint8
    assert result.mask.shape == image.shape[:2] and result.mask.dtype == np.float32
    assert result.params.ratio in sbi.RATIOS
    assert result.mask.min() == 0.0
    assert result.mask.max() == pytest.approx(result.params.ratio, abs=1e-6)
    assert not np.shares_memory(result.fake, image)


@pytest.mark.parametrize("seed", SEEDS)
def test_fake_equals_the_target_copy_where_mask_is_zero_and_differs_inside(face, seed: int) -> None:
    image, landmarks = face
    result = sbi.self_blend(image, landmarks, seed)
    backdrop = sbi.target_copy(image, landmarks, result.params)
    assert (result.params.altered == "source") == np.array_equal(backdrop, image)  # the original when untouched
    outside = result.mask == 0
    assert outside.any()
    assert np.array_equal(result.fake[outside], backdrop[outside])
    assert np.any(result.fake[~outside] != backdrop[~outside])


def test_either_copy_can_be_the_altered_one(face) -> None:
    image, landmarks = face
    params = replace(neutral(sbi.draw_params(0)), quality="blur", quality_amount=0.05)
    source = sbi.render(image, landmarks, params)
    target = sbi.render(image, landmarks, replace(params, altered="target"))
    inside, outside = source.mask > 0.99, source.mask == 0

    def change(fake: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(fake[where].astype(int) - image[where]).mean())

    assert change(source.fake, inside) > 1.0 and change(source.fake, outside) == 0.0  # a blurred face
    assert change(target.fake, inside) < 0.2 * change(target.fake, outside)  # a sharp face in a blurred frame


@pytest.mark.parametrize("kind", sbi.QUALITY_KINDS)
def test_every_quality_kind_alters_the_blended_face(face, kind: str) -> None:
    image, landmarks = face
    amount = {"blur": 0.05, "sharpen": 1.0, "resize": 0.5, "jpeg": 30.0}[kind]
    params = replace(neutral(sbi.draw_params(0)), quality=kind, quality_amount=amount)
    result = sbi.render(image, landmarks, params)
    inside = result.mask > 0.5
    assert np.abs(result.fake[inside].astype(int) - image[inside]).mean() > 1.0


def test_neutral_parameters_reproduce_the_original_and_a_shift_breaks_it(face) -> None:
    image, landmarks = face
    params = neutral(sbi.draw_params(3))
    assert np.array_equal(sbi.render(image, landmarks, params).fake, image)
    shifted = sbi.render(image, landmarks, replace(params, shift=(0.03, 0.0))).fake
    assert np.abs(shifted.astype(int) - image).max() > 20


def test_mask_covers_the_landmark_hull_and_stays_near_the_face(face) -> None:
    image, landmarks = face
    hull = hull_mask(landmarks, image.shape) > 0
    x0, y0 = landmarks.min(axis=0) - 0.5 * sbi.face_size(landmarks)
    x1, y1 = landmarks.max(axis=0) + 0.5 * sbi.face_size(landmarks)
    near = np.zeros(hull.shape, dtype=bool)
    near[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
    for seed in SEEDS:
        params = replace(sbi.draw_params(seed), region="face")
        mask = sbi.sbi_mask(image.shape, landmarks, params)
        overlap = (mask > 0.5 * params.ratio)[hull].mean()
        assert overlap > 0.6, (seed, overlap)
        assert not mask[~near].any()


def test_hull_deformation_erosion_and_dilation_reshape_the_mask(face) -> None:
    image, landmarks = face
    params = replace(sbi.draw_params(1), region="face", erode=0.0, ratio=1.0)
    flat = replace(params, harmonics=(0.0,) * sbi.HARMONICS)
    area = {}
    for name, p in {"flat": flat, "eroded": replace(flat, erode=0.2), "dilated": replace(flat, erode=-0.1)}.items():
        area[name] = (sbi.sbi_mask(image.shape, landmarks, p) > 0.5).sum()
    assert area["eroded"] < 0.9 * area["flat"] < 0.9 * area["dilated"]
    undeformed = sbi.sbi_mask(image.shape, landmarks, flat) > 0.5
    deformed = sbi.sbi_mask(image.shape, landmarks, params) > 0.5
    assert (undeformed ^ deformed).sum() > 0.02 * undeformed.sum()
    inner = sbi.sbi_mask(image.shape, landmarks, replace(flat, region="inner")) > 0.5
    assert inner.sum() < 0.8 * undeformed.sum()


def test_same_seed_gives_identical_output_and_another_seed_does_not(face) -> None:
    image, landmarks = face
    first, again = sbi.self_blend(image, landmarks, 42), sbi.self_blend(image, landmarks, np.random.default_rng(42))
    assert first.params == again.params
    assert np.array_equal(first.fake, again.fake) and np.array_equal(first.mask, again.mask)
    other = sbi.self_blend(image, landmarks, 43)
    assert other.params != first.params
    assert not np.array_equal(other.fake, first.fake)


def test_drawn_parameters_cover_every_choice_and_log_as_json() -> None:
    rng = np.random.default_rng(0)
    drawn = [sbi.draw_params(rng) for _ in range(200)]
    assert {p.quality for p in drawn} == set(sbi.QUALITY_KINDS)
    assert {p.ratio for p in drawn} == set(sbi.RATIOS)
    assert {p.region for p in drawn} == set(sbi.REGIONS)
    assert {p.altered for p in drawn} == set(sbi.ALTERED)
    assert all(abs(p.shift[0]) <= 0.03 and 0.96 <= p.scale[1] <= 1.04 for p in drawn)
    assert all(len(p.harmonics) == len(p.phases) == sbi.HARMONICS for p in drawn)
    logged = json.loads(json.dumps(drawn[0].as_dict()))
    assert logged["quality"] == drawn[0].quality and logged["shift"] == list(drawn[0].shift)


def test_bad_inputs_are_rejected(face) -> None:
    image, landmarks = face
    with pytest.raises(ValueError, match="68x2"):
        sbi.self_blend(image, landmarks[:5], 0)
    with pytest.raises(ValueError, match="uint8"):
        sbi.self_blend(image.astype(np.float32), landmarks, 0)
    with pytest.raises(ValueError, match="landmark sets"):
        sbi.self_blend_sequence([image, image], [landmarks], 0)


def _moving_face(face, shifts: list[tuple[int, int]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    image, landmarks = face
    height, width = image.shape[:2]
    frames = [cv2.warpAffine(image, np.float64([[1, 0, dx], [0, 1, dy]]), (width, height),
                             borderMode=cv2.BORDER_REFLECT_101) for dx, dy in shifts]
    return frames, [landmarks + np.float64([dx, dy]) for dx, dy in shifts]


def test_sequence_parameters_stay_within_the_documented_jitter(face) -> None:
    frames, points = _moving_face(face, [(0, 0), (6, -4), (12, -8), (18, -12)])
    sequence = sbi.self_blend_sequence(frames, points, 7)
    assert sequence.label == 1 and len(sequence.fakes) == len(sequence.masks) == len(sequence.params) == 4
    for params in sequence.params:
        for field in fields(params):
            base, value = getattr(sequence.base, field.name), getattr(params, field.name)
            bound = sbi.FRAME_JITTER.get(field.name)
            if bound is None:
                assert value == base, field.name
            else:
                assert np.all(np.abs(np.subtract(value, base)) <= bound + 1e-12), field.name
    assert len({p.shift for p in sequence.params}) == 4  # jittered per frame, not frozen
    for fake, mask, frame in zip(sequence.fakes, sequence.masks, frames):
        assert np.array_equal(fake[mask == 0], frame[mask == 0])


def test_sequence_without_jitter_moves_the_mask_exactly_with_the_face(face) -> None:
    shifts = [(0, 0), (7, -3), (-11, 5)]
    frames, points = _moving_face(face, shifts)
    sequence = sbi.self_blend_sequence(frames, points, 3, jitter=0.0)
    assert all(p == sequence.base for p in sequence.params)
    for (dx, dy), mask in zip(shifts, sequence.masks):
        back = np.roll(mask, (-dy, -dx), axis=(0, 1))
        assert np.abs(back - sequence.masks[0]).max() < 1e-4


def test_sequence_masks_follow_a_rotating_zooming_face(face) -> None:
    still, landmarks = face
    clip = make_clip("astronaut", 4, (320, 240), seed=1)
    points = [landmarks @ m[:, :2].T + m[:, 2] for m in clip.matrices]
    sequence = sbi.self_blend_sequence(clip.frames, points, 11)
    reference = sbi.sbi_mask(still.shape, landmarks, sequence.base)
    for matrix, mask in zip(clip.matrices, sequence.masks):
        expected = cv2.warpAffine(reference, matrix, (320, 240), flags=cv2.INTER_LINEAR)
        level = 0.5 * sequence.base.ratio
        got, want = mask > level, expected > level
        assert (got & want).sum() / (got | want).sum() > 0.9


def test_a_grey_photo_gives_grey_fakes_so_colour_never_marks_the_fake(face) -> None:
    image, landmarks = face
    grey = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    tinted = 0
    for seed in range(12):
        result = sbi.self_blend(grey, landmarks, seed)
        spread = result.fake.max(axis=-1).astype(int) - result.fake.min(axis=-1).astype(int)
        assert spread.max() <= 3, f"seed {seed}: a grey photo's fake has colour ({result.params.channel_shift})"
        tinted += int(np.ptp(result.params.channel_shift) > 0.01)
    assert tinted >= 6  # the drawn shifts were per-channel: the grey rule, not luck, kept them grey
    colour = sbi.self_blend(image, landmarks, 0)
    assert not sbi.is_grey(colour.fake) and sbi.is_grey(grey) and not sbi.is_grey(image)
