"""Image reading and writing, the degradations real footage goes through (blur, down-then-up
scaling, JPEG) and a sharpness measure. Inside dfk every frame is an RGB ``uint8`` array ``H x W x 3``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deepfake_cli.checkpoint import atomic_path
from deepfake_cli.errors import InputError

IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".avif", ".jp2",
    ".pgm", ".ppm", ".pbm", ".pnm",  # Netpbm: grey (pgm, pbm) and colour
    ".sr", ".ras",  # Sun raster
})
"""The 8-bit formats OpenCV's ``imread`` decodes in the opencv-python wheels (checked with 4.14).
Left out: floating-point radiance formats (.hdr, .pic, .pfm: would need tone mapping) and .exr
(disabled in OpenCV unless OPENCV_IO_ENABLE_OPENEXR is set)."""


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert grayscale, BGR(A), 16-bit or float images (OpenCV channel order) to RGB uint8."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise InputError(f"unsupported channel count {channels}")


def read_image(path: str | Path) -> np.ndarray:
    """Read any common image file as RGB uint8; unreadable files raise ``InputError``."""
    file = Path(path)
    if not file.is_file():
        raise InputError("image not found", str(file))
    data = np.fromfile(str(file), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError("cannot decode image (corrupt or unsupported format)", str(file))
    try:
        return to_rgb8(image)
    except InputError as exc:
        raise InputError(exc.message, str(file)) from None


def encode_png(image_rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 image."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError("PNG encoding failed")
    return buffer.tobytes()


def write_image(path: str | Path, image_rgb: np.ndarray) -> None:
    """Write an RGB uint8 image atomically; the format follows the suffix."""
    target = Path(path)
    suffix = target.suffix.lower() or ".png"
    ok, buffer = cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode image as {suffix}", str(target))
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.tobytes())


def is_image(path: Path) -> bool:
    """Whether ``path`` has an image suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """``rgb`` blurred by a Gaussian of ``sigma`` pixels (edges reflected)."""
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def rescaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    """``rgb`` shrunk by ``factor`` (area averaging), then enlarged back to its size (bilinear)."""
    height, width = rgb.shape[:2]
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(cv2.resize(rgb, small, interpolation=cv2.INTER_AREA), (width, height),
                      interpolation=cv2.INTER_LINEAR)


def jpeg_compressed(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` encoded as a JPEG of ``quality`` (0..100) and decoded again."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def laplacian_variance(grey: np.ndarray, region: np.ndarray) -> float:
    """Sharpness: the variance of the Laplacian of a grey ``uint8`` image over the boolean ``region``."""
    values = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=1)[region]
    return float(values.var()) if values.size else 0.0
