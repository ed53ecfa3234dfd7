"""Load a trained swap model for inference: ``load_swap_model(model_dir) -> SwapModel``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from deepfake_cli.checkpoint import MODEL_FILE
from deepfake_cli.errors import CheckpointError, ConfigError
from deepfake_cli.runtime import autocast, autocast_dtype, resolve_device
from deepfake_cli.swap.data import model_coverage
from deepfake_cli.swap.models import SwapGenerator
from deepfake_cli.swap.networks import build_generator
from deepfake_cli.swap.store import ModelStore

DIRECTIONS = {"a2b": "b", "b2a": "a"}


@dataclass
class SwapModel:
    """A trained generator and what convert needs to feed it.

    ``size`` is the model's input/output size in px and ``coverage`` the alignment coverage of its
    input (``faces.align.alignment_matrix(landmarks, size, coverage)`` crops faces the way it was
    trained). ``kind`` is ``original`` or ``gan`` (only a gan predicts a mask). ``dtype`` is the
    autocast dtype inference runs in (None: fp32), chosen like training's ``train.precision``; the
    weights are stored in it once, as autocast would otherwise cast every weight on every call
    (on the CPU that casting took half the time of a batch of the original model).
    """

    net: SwapGenerator
    kind: str
    size: int
    coverage: float
    step: int
    device: torch.device
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None:
            self.net = self.net.to(self.dtype)

    @torch.inference_mode()
    def swap(self, faces: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Swap faces ``[N,3,H,W]`` (float in [0,1]) ``a2b`` or ``b2a``.

        Returns the decoder's RGB ``[N,3,H,W]`` and, for a gan, its alpha mask ``[N,1,H,W]`` (both
        in [0,1], on the model's device); blend as ``mask * rgb + (1 - mask) * faces``. Faces of
        another size are resized to ``size`` and the outputs back.
        """
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}", "swap")
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise ConfigError(f"faces must be a [N,3,H,W] tensor; got shape {tuple(faces.shape)}", "swap")
        image = faces.to(self.device, torch.float32)
        height, width = image.shape[-2:]
        resized = (height, width) != (self.size, self.size)
        if resized:
            image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)
        with autocast(self.device, self.dtype):
            rgb, mask = self.net(image, DIRECTIONS[direction])
        rgb, mask = rgb.float(), None if mask is None else mask.float()
        if resized:
            rgb = F.interpolate(rgb, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
            if mask is not None:
                mask = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
        return rgb, mask


def load_swap_model(model_dir: str | Path, device: str | torch.device = "auto") -> SwapModel:
    """Load ``model.pt`` (weights only) and ``config.yaml`` of a ``train-swap`` model directory.

    Raises ``CheckpointError`` when the folder holds no model, an unsafe pickle or mismatched weights.
    """
    store = ModelStore(model_dir)
    checkpoint = store.load_model()
    config = store.read_config()
    net = build_generator(config.model)
    try:
        net.load_state_dict(checkpoint.model["generator"])
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit config.yaml: {str(exc).splitlines()[0]}",
                              str(store.folder / MODEL_FILE)) from None
    target = device if isinstance(device, torch.device) else resolve_device(device)
    coverage = float(checkpoint.info.get("coverage", model_coverage(None, config.data.crop)))
    return SwapModel(net=net.eval().to(target), kind=config.model.kind, size=config.model.size,
                     coverage=coverage, step=checkpoint.step, device=target,
                     dtype=autocast_dtype(target, config.train.precision, cpu_bf16_when_native=True))
