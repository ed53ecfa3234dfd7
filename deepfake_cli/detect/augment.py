"""Quality augmentation of training faces: ``train.augment: quality``.

Real footage reaches a detector blurred, rescaled, noisy, recoloured and compressed, and a
detector trained on clean faces reads those traits as "fake": a self-blended fake's altered region
is blurrier or recoloured than the rest of the face, so a whole face that is blurry looks like one.
Degrading *every* training sample alike, real and fake, takes those global traits away as a cue
and leaves the local ones (a blending boundary, a region that differs from its surroundings).

Each training sample draws its own degradation from a generator seeded by (run seed, epoch,
sample index), so a run repeats with the same seed in the main process and in DataLoader workers
alike; a sequence's T faces share one degradation, as a video's frames share one camera and codec.
In order, each with its own probability: a colour, brightness and contrast change; a blur or a
down-then-up rescale; sensor-like noise; JPEG compression. Only RGB channels change (an edge map
of ``sequence.input: rgb+canny`` is left as it is). Validation, test and ``dfk detect`` never
augment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfake_cli.media.images import gaussian_blur, jpeg_compressed, rescaled

STREAM = 0xA06  # keeps these draws apart from the self-blend draws of the same sample


@dataclass(frozen=True)
class Degradation:
    """One sample's degradation; ``None`` leaves that step out. ``gain``/``offset``: per-channel
    contrast and offset (0..255 scale); ``blur``: Gaussian sigma as a share of the face size;
    ``scale``: down-then-up rescale factor; ``noise``: Gaussian noise sigma in grey levels;
    ``jpeg``: JPEG quality."""

    gain: tuple[float, float, float] | None
    offset: tuple[float, float, float] | None
    blur: float | None
    scale: float | None
    noise: float | None
    jpeg: int | None


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of training sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return np.random.default_rng([seed % 2**63, epoch, index, STREAM])


def draw(rng: np.random.Generator) -> Degradation:
    """A random degradation (each step present with its own probability)."""
    colour = rng.random() < 0.5
    gain = tuple(float(g) for g in rng.uniform(0.9, 1.1, 3) * rng.uniform(0.8, 1.2)) if colour else None
    offset = tuple(float(o) for o in rng.uniform(-8, 8, 3) + rng.uniform(-20, 20)) if colour else None
    soften = rng.random()
    blur = float(rng.uniform(0.004, 0.02)) if soften < 0.2 else None
    scale = float(rng.uniform(0.35, 0.9)) if 0.2 <= soften < 0.5 else None
    noise = float(rng.uniform(1.0, 6.0)) if rng.random() < 0.25 else None
    jpeg = int(rng.integers(35, 96)) if rng.random() < 0.5 else None
    return Degradation(gain, offset, blur, scale, noise, jpeg)


def apply(rgb: np.ndarray, how: Degradation, rng: np.random.Generator) -> np.ndarray:
    """``how`` applied to one ``H x W x 3`` uint8 RGB image (``rng`` draws the noise)."""
    height, width = rgb.shape[:2]
    out = rgb
    if how.gain is not None and how.offset is not None:
        mean = out.reshape(-1, 3).mean(axis=0)
        out = (out.astype(np.float32) - mean) * np.asarray(how.gain, np.float32) + mean
        out = np.clip(out + np.asarray(how.offset, np.float32), 0, 255).astype(np.uint8)
    if how.blur is not None:
        out = gaussian_blur(out, max(how.blur * max(height, width), 0.3))
    if how.scale is not None:
        out = rescaled(out, how.scale)
    if how.noise is not None:
        grain = rng.normal(0.0, how.noise, out.shape).astype(np.float32)
        out = np.clip(out.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    if how.jpeg is not None:
        out = jpeg_compressed(out, how.jpeg)
    return np.ascontiguousarray(out)


def degrade_sample(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new array: the RGB channels (the first three) of one sample's ``C x H x W`` face or
    ``T x C x H x W`` faces degraded by one drawn ``Degradation``; other channels unchanged."""
    how = draw(rng)
    out = faces.copy()
    frames = out if out.ndim == 4 else out[None]
    for frame in frames:
        frame[:3] = np.moveaxis(apply(np.moveaxis(frame[:3], 0, 2), how, rng), 2, 0)
    return out
