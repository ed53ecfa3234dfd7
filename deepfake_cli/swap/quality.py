"""Figures about a trained swap model itself (not its converted videos, which ``evaluate`` measures)."""

from __future__ import annotations

import torch

from deepfake_cli.errors import InputError
from deepfake_cli.swap.data import FaceSet
from deepfake_cli.swap.loader import SwapModel

BATCH = 32


def mask_coverage(model: SwapModel, faces: FaceSet, direction: str = "a2b") -> float:
    """Mean learned mask inside the faces' landmark hulls when swapping ``faces`` in ``direction``:
    1 when the mask covers every face completely, 0 when it collapsed. Needs a gan model and faces
    with landmarks (``alignments.json``); the faces must be at the model's size and coverage."""
    if model.kind != "gan":
        raise InputError(f"a {model.kind} model predicts no mask; mask coverage needs a gan model")
    if not faces.has_hulls:
        raise InputError("mask coverage needs face landmarks (alignments.json)", str(faces.folder))
    inside = total = 0.0
    for start in range(0, len(faces), BATCH):
        index = torch.arange(start, min(start + BATCH, len(faces)), device=faces.target_device)
        images, _, hulls = faces.gather(index)
        assert hulls is not None
        images, hulls = images.float() / 255.0, hulls.to(model.device, torch.float32)
        _, mask = model.swap(images, direction)
        assert mask is not None
        inside += float((mask * hulls).sum())
        total += float(hulls.sum())
    return inside / max(total, 1.0)
