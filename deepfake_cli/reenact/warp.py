"""The training-free reenactment baseline: a thin-plate-spline warp of the photo driven by landmarks.

Motion is relative, as first-order-motion models do it: the similarity transform that takes the
driving video's first face onto the photo's face (scale, rotation, position) maps each driving
frame's landmark displacements into the photo, so a driving face of another size or place moves
the photo's face by the same amount relative to its size. With ``relative=False`` the photo's
points go where the driving face's points are, aligned onto the photo's face (the driving face's
shape, and so some of its identity, comes with them).

The photo's 68 points go to their targets through a thin-plate spline fitted from the targets back
to the photo (a backward map for ``cv2.remap``), with anchors on a box around the face that hold
still; the displacement fades out towards that box, so everything outside it is the photo's pixels
unchanged. Where the driving mouth opens wider than the photo's, the inner-lip polygon is filled
with a dark mouth interior and a hint of upper teeth. A driving frame without motion gives the
photo back exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_cli.faces.align import umeyama
from deepfake_cli.faces.base import DetectedFace
from deepfake_cli.faces.smoothing import inter_ocular_distance
from deepfake_cli.errors import NoFaceError

INNER_LIPS = slice(60, 68)
UPPER_INNER, LOWER_INNER = [61, 62, 63], [67, 66, 65]
OUTER_LIPS = slice(48, 60)
MARGIN = 0.6  # the warped box reaches this many face sizes beyond the landmarks (and the motion)
FADE = 0.5  # the outer half of that margin fades the motion out
GRID_PX = 4  # the spline is evaluated every GRID_PX pixels and resized to every pixel
ANCHORS_PER_SIDE = 6
STIFFNESS = 1e-3  # thin-plate regularisation (in face sizes): coinciding targets stay solvable
MOUTH_FULL = 0.08  # extra mouth opening (inner-lip area / inter-ocular distance^2) for a full fill
UPPER_TEETH, LOWER_TEETH = 0.45, 0.3  # shares of the opening the teeth take below / above the lips
UPPER_TEETH_MAX, LOWER_TEETH_MAX = 0.2, 0.12  # ... at most these shares of the mouth's width
MOUTH_DARK = 0.2  # the interior is the lips' colour at this brightness
TEETH_RGB = np.array([205.0, 196.0, 180.0])  # teeth of a photo whose mouth is closed
LIPS_RGB = np.array([150.0, 80.0, 80.0])  # lips where the landmarks leave no lip pixels
OPEN_MOUTH = 0.03  # a photo's mouth this open (see mouth_opening) shows its teeth


def _landmarks68(face: DetectedFace, what: str) -> np.ndarray:
    if not face.has_68:
        raise NoFaceError(f"no 68-point landmarks for {what}")
    return np.asarray(face.landmarks, dtype=np.float64)


def mouth_opening(points: np.ndarray) -> float:
    """Area of the inner-lip polygon over the squared inter-ocular distance (0 for a closed mouth)."""
    inner = points[INNER_LIPS]
    x, y = inner[:, 0], inner[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area / max(inter_ocular_distance(points), 1e-6) ** 2


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The thin-plate radial basis r^2 log r^2 between every row of ``a`` and of ``b``."""
    squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
    return squared * np.log(np.maximum(squared, 1e-12))


def thin_plate_map(targets: np.ndarray, sources: np.ndarray, query: np.ndarray,
                   stiffness: float = STIFFNESS) -> np.ndarray:
    """Where each ``query`` point comes from under the thin-plate spline taking ``targets`` to
    ``sources`` (all in the same units; ``stiffness`` regularises near-coinciding targets)."""
    n = len(targets)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _tps_kernel(targets, targets) + stiffness * np.eye(n)
    affine = np.hstack([np.ones((n, 1)), targets])
    system[:n, n:], system[n:, :n] = affine, affine.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = sources - targets
    weights = np.linalg.solve(system, rhs)
    shift = _tps_kernel(query, targets) @ weights[:n] + np.hstack([np.ones((len(query), 1)), query]) @ weights[n:]
    return query + shift


def _box(points: np.ndarray, size: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` (exclusive ends) of the points' box grown by ``MARGIN`` face sizes, in the image."""
    grow = MARGIN * size
    x0, y0 = np.floor(points.min(axis=0) - grow).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + grow).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _fade(length: int, width: float) -> np.ndarray:
    """Weights 0 at both ends of ``length`` samples rising smoothly to 1 over ``width`` samples."""
    distance = np.minimum(np.arange(length), np.arange(length)[::-1]) / max(width, 1.0)
    t = np.clip(distance, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def warp_points(photo: np.ndarray, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``photo`` with its points ``sources`` moved to ``targets`` (68x2 each); outside a box around
    them the photo is unchanged."""
    size = float(np.ptp(sources, axis=0).max())
    x0, y0, x1, y1 = _box(np.vstack([sources, targets]), size, photo.shape)
    width, height = x1 - x0, y1 - y0
    if width < 2 or height < 2:
        return photo.copy()
    ring = np.vstack([np.stack([np.linspace(x0, x1 - 1, ANCHORS_PER_SIDE), np.full(ANCHORS_PER_SIDE, y)], axis=1)
                      for y in (y0, y1 - 1)]
                     + [np.stack([np.full(ANCHORS_PER_SIDE, x), np.linspace(y0, y1 - 1, ANCHORS_PER_SIDE)], axis=1)
                        for x in (x0, x1 - 1)])
    origin, unit = np.array([x0, y0], dtype=np.float64), max(size, 1.0)
    grid_w, grid_h = max(width // GRID_PX, 2), max(height // GRID_PX, 2)
    gx, gy = np.meshgrid(np.linspace(x0, x1 - 1, grid_w), np.linspace(y0, y1 - 1, grid_h))
    query = np.stack([gx.ravel(), gy.ravel()], axis=1)
    mapped = thin_plate_map((np.vstack([targets, ring]) - origin) / unit, (np.vstack([sources, ring]) - origin) / unit,
                            (query - origin) / unit) * unit + origin
    shift = (mapped - query).reshape(grid_h, grid_w, 2).astype(np.float32)
    shift = cv2.resize(shift, (width, height), interpolation=cv2.INTER_LINEAR)
    fade = FADE * MARGIN * size
    shift *= (_fade(height, fade)[:, None] * _fade(width, fade)[None, :])[..., None]
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    out = photo.copy()
    out[y0:y1, x0:x1] = cv2.remap(photo, xs + shift[..., 0], ys + shift[..., 1], cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REPLICATE)
    return out


def fill_mouth(image: np.ndarray, points: np.ndarray, strength: float, lips_rgb: np.ndarray,
               teeth_rgb: np.ndarray, grey: bool = False) -> None:
    """Paint a mouth interior inside the inner-lip polygon of ``points`` at ``strength`` (0..1), in
    place: ``lips_rgb`` darkened, ``teeth_rgb`` teeth along the upper and lower lips (fading towards
    the mouth's corners), in grey for a ``grey`` photo."""
    inner = points[INNER_LIPS]
    x0, y0 = np.floor(inner.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(inner.max(axis=0)).astype(int) + 5
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2 or strength <= 0:
        return
    corner = np.array([x0, y0])
    width = float(np.ptp(inner[:, 0]))
    gap = max(float(np.mean(points[LOWER_INNER, 1] - points[UPPER_INNER, 1])), 0.0)

    def polygon(outline: np.ndarray) -> np.ndarray:
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillPoly(mask, [np.round(outline - corner).astype(np.int32)], 1.0, cv2.LINE_AA)
        return mask

    def band(lip: np.ndarray, depth: float) -> np.ndarray:
        return polygon(np.vstack([lip, (lip + [0.0, depth])[::-1]]))

    mouth = polygon(inner)
    teeth = np.maximum(band(points[[60, 61, 62, 63, 64]], min(UPPER_TEETH * gap, UPPER_TEETH_MAX * width)),
                       band(points[[64, 65, 66, 67, 60]], -min(LOWER_TEETH * gap, LOWER_TEETH_MAX * width)))
    across = (np.arange(x0, x1) - inner[:, 0].mean()) / max(width / 2, 1.0)
    teeth *= np.clip(1.0 - across**2, 0.0, 1.0)[None, :] ** 1.5  # dark corners, no fangs
    mouth = cv2.GaussianBlur(mouth, (0, 0), max(0.03 * width, 0.6))
    teeth = cv2.GaussianBlur(teeth * mouth, (0, 0), max(0.02 * width, 0.5))
    interior, white = lips_rgb * MOUTH_DARK, teeth_rgb
    if grey:
        interior, white = np.full(3, interior.mean()), np.full(3, white.mean())
    patch = image[y0:y1, x0:x1].astype(np.float32)
    fill = interior * (1.0 - teeth[..., None]) + white * teeth[..., None]
    alpha = (strength * mouth)[..., None]
    image[y0:y1, x0:x1] = np.clip(patch * (1.0 - alpha) + fill * alpha + 0.5, 0, 255).astype(np.uint8)


def _mouth_colours(photo: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB of the photo's lips (the ring between the outer and inner lip lines), and of its
    teeth: the brighter half of an open mouth's pixels, else ``TEETH_RGB``."""
    lips = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(points[OUTER_LIPS]).astype(np.int32)], 1)
    inside = np.zeros_like(lips)
    cv2.fillPoly(inside, [np.round(points[INNER_LIPS]).astype(np.int32)], 1)
    lips &= 1 - inside
    lips_rgb = photo[lips.astype(bool)].astype(np.float64).mean(axis=0) if lips.any() else LIPS_RGB
    teeth_rgb = TEETH_RGB
    if mouth_opening(points) > OPEN_MOUTH and inside.sum() >= 8:
        pixels = photo[inside.astype(bool)].astype(np.float64)
        brightness = pixels.sum(axis=1)
        teeth_rgb = pixels[brightness >= np.median(brightness)].mean(axis=0)
    return lips_rgb, teeth_rgb


class WarpAnimator:
    """The warp baseline as an ``Animator``: ``relative`` motion (default) or ``absolute`` shape."""

    def __init__(self, relative: bool = True) -> None:
        self.relative = relative
        self._photo: np.ndarray | None = None

    def start(self, photo: np.ndarray, photo_face: DetectedFace, first: np.ndarray,
              first_face: DetectedFace) -> None:
        """Remember the photo, its points and the transform from the driving face onto it."""
        self._photo = np.ascontiguousarray(photo)
        self._points = _landmarks68(photo_face, "the photo's face")
        self._first = _landmarks68(first_face, "the driving video's first face")
        self._to_photo = umeyama(self._first, self._points)[:2]  # 2x3 similarity: driving -> photo
        self._opening = mouth_opening(self._points)
        self._lips, self._teeth = _mouth_colours(self._photo, self._points)
        channels = self._photo.reshape(-1, 3)[:: max(self._photo.size // 3 // 4096, 1)].astype(np.int16)
        self._grey = bool(np.abs(channels - channels[:, :1]).max() <= 2)

    def targets(self, face: DetectedFace) -> np.ndarray:
        """Where the photo's 68 points go for the driving ``face``."""
        points = _landmarks68(face, "the driving face")
        linear = self._to_photo[:, :2]
        if self.relative:
            return self._points + (points - self._first) @ linear.T
        return points @ linear.T + self._to_photo[:, 2]

    def frame(self, driving: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The photo animated with ``face``'s motion (``driving`` itself is not needed by a warp)."""
        if self._photo is None:
            raise RuntimeError("WarpAnimator.frame before start")
        targets = self.targets(face)
        out = warp_points(self._photo, self._points, targets)
        excess = mouth_opening(targets) - self._opening
        if excess > 0:
            fill_mouth(out, targets, min(excess / MOUTH_FULL, 1.0), self._lips, self._teeth, self._grey)
        return out
