"""Provenance of synthetic media: container metadata, image text chunks and a visible label.

Every video dfk makes (convert's swaps, reenact's animated photos) carries ``comment`` and
``description`` tags saying it is synthetic media made with dfk and by what; converted PNG and JPEG
images carry the same sentence as a PNG ``tEXt`` chunk (keyword ``Comment``) or a JPEG ``COM``
segment. ``--watermark`` also stamps a small visible label in the bottom-left corner of every
frame (of a video) and of every image whose face was changed.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from deepfake_cli import __version__
from deepfake_cli.errors import InputError

WATERMARK_TEXT = "SYNTHETIC - made with dfk"


def provenance_text(made: str, method: str) -> str:
    """The one-sentence provenance statement written into synthetic media: what was ``made``
    (e.g. "faces swapped") and the ``method`` that made it (e.g. "model 'alice_bob' (a2b)")."""
    return f"Synthetic media (deepfake): {made} by dfk {__version__} with {method}."


def video_metadata(text: str) -> dict[str, str]:
    """Container tags for a converted video (kept by MP4, MKV and MOV muxers)."""
    return {"comment": text, "description": text}


def _png_with_text(data: bytes, text: str) -> bytes:
    body = b"Comment\x00" + text.encode("latin-1", errors="replace")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    header_end = 8 + 25  # signature + IHDR chunk
    return data[:header_end] + chunk + data[header_end:]


def _jpeg_with_text(data: bytes, text: str) -> bytes:
    body = text.encode("latin-1", errors="replace")[:65000]
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]


def encode_tagged_image(image_rgb: np.ndarray, suffix: str, text: str) -> bytes:
    """Encode an RGB image in the format of ``suffix``, with ``text`` embedded for PNG and JPEG."""
    suffix = suffix.lower() or ".png"
    ok, buffer = cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode image as {suffix}")
    data = buffer.tobytes()
    if suffix == ".png" and data[12:16] == b"IHDR":
        return _png_with_text(data, text)
    if suffix in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8":
        return _jpeg_with_text(data, text)
    return data


def stamp_watermark(frame: np.ndarray, text: str = WATERMARK_TEXT) -> None:
    """Draw a small white-on-dark label in the bottom-left corner of ``frame`` (RGB, in place)."""
    height, width = frame.shape[:2]
    scale = max(height / 900.0, 0.3)
    thickness = max(int(round(scale * 2)), 1)
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(int(4 * scale), 2)
    x0, y1 = pad, height - pad
    y0, x1 = max(y1 - text_h - baseline - 2 * pad, 0), min(x0 + text_w + 2 * pad, width)
    box = frame[y0:y1, x0:x1]
    box[:] = (box.astype(np.float32) * 0.35).astype(np.uint8)
    cv2.putText(frame, text, (x0 + pad, y1 - pad - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)
