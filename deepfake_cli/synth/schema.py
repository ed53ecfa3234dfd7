"""The typed configuration of ``train-facegan``: every hyper-parameter, with its default.

Presets in ``configs/synth/<name>.yaml`` fill these dataclasses (see ``deepfake_cli.config``).
A model folder resumes only with the settings it was started with; ``train.iterations`` (the step to
reach) and how often it logs, previews and saves may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from deepfake_cli.errors import ConfigError

AUGMENTS = ("color", "translation", "cutout")
# Keys a resumed run may change: the goal and the bookkeeping cadence. Every other key must match.
RESUMABLE_KEYS = frozenset({"train.iterations", "train.mosaic_every", "train.log_every", "train.save_every",
                            "train.keep_backups"})


@dataclass
class ModelConfig:
    """Generator and discriminator shapes (DCGAN-class)."""

    size: int = 64  # output px: a power of two, at least 16
    latent: int = 128  # length of the noise vector z
    g_width: int = 64  # generator channels at full resolution (doubling per halving, capped at 8x)
    d_width: int = 64  # discriminator channels at full resolution (same rule)


@dataclass
class TrainConfig:
    """The optimisation and its stabilisers."""

    iterations: int = 5000  # total step to reach (resuming continues up to it)
    batch_size: int = 32  # faces per step per rank
    loss: Literal["hinge", "bce"] = "hinge"
    lr_g: float = 2.0e-4  # TTUR: the discriminator usually learns faster than the generator
    lr_d: float = 2.0e-4
    beta1: float = 0.0
    beta2: float = 0.99
    ema: float = 0.999  # decay of the generator's moving average used for samples; 0 = off
    augment: list[str] = field(default_factory=list)  # DiffAugment ops (AUGMENTS); [] = off
    flip: bool = True  # mirror half of the real faces (a data augmentation, not differentiable)
    mosaic_every: int = 500  # the 6x6 fixed-noise mosaic every N steps (and at the last step)
    log_every: int = 50
    save_every: int = 500
    keep_backups: int = 3


@dataclass
class FaceGanConfig:
    """Everything ``train-facegan`` reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def validate(config: FaceGanConfig) -> FaceGanConfig:
    """Check the values the types cannot (``ConfigError`` naming the key); returns ``config``."""
    model, train = config.model, config.train
    if model.size < 16 or model.size & (model.size - 1):
        raise ConfigError(f"model.size must be a power of two of at least 16; got {model.size}", "config")
    for key in ("latent", "g_width", "d_width"):
        if getattr(model, key) < 1:
            raise ConfigError(f"model.{key} must be at least 1", "config")
    for key in ("iterations", "batch_size", "mosaic_every", "log_every", "save_every"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1", "config")
    if not 0.0 <= train.ema < 1.0:
        raise ConfigError(f"train.ema must be in [0, 1); got {train.ema}", "config")
    unknown = [name for name in train.augment if name not in AUGMENTS]
    if unknown:
        raise ConfigError(f"train.augment: unknown {unknown[0]!r}; choose from {', '.join(AUGMENTS)}", "config")
    return config
