"""The typed configuration of ``train-reenact``: every hyper-parameter, with its default.

Presets in ``configs/reenact/<name>.yaml`` fill these dataclasses (see ``deepfake_cli.config``).
``RESUMABLE_KEYS`` lists the keys a resumed run may change; any other difference is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepfake_cli.errors import ConfigError

MAX_SSIM_SCALES, MIN_SSIM_PX = 5, 8  # as swap's: the coarsest SSIM scale at least 8 px


@dataclass
class ModelConfig:
    """Architecture of ``reenact.model.ReenactNet``."""

    size: int = 64  # crop px; divisible by 2 ** (len of the longest widths list)
    keypoints: int = 10
    jacobian: bool = True  # local affine motion at each keypoint (else translation only)
    occlusion: bool = True
    temperature: float = 0.1  # of the keypoint heatmaps' softmax
    motion_scale: float = 0.5  # keypoints and dense motion run at this share of ``size``
    kp_widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    motion_widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    generator_widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    residual_blocks: int = 2


@dataclass
class DataConfig:
    """How the videos become face crops (extracted once, cached in the model folder)."""

    coverage: float = 0.5  # share of the crop the inner face takes (smaller: more head and background)
    every_n: int = 1  # use every n-th frame
    max_frames: int = 0  # per video (0: all)
    drift: float = 0.15  # a new fixed crop once the face moved/scaled this share of the crop away
    detector_score: float = 0.8


@dataclass
class AugmentConfig:
    """Random changes applied to both images of a pair alike."""

    flip: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1


@dataclass
class LossConfig:
    """Loss weights: L1 over an image pyramid of ``pyramid`` scales, DSSIM (multi-scale over
    ``ssim_scales``), image-gradient L1, and the keypoints' equivariance under a random affine
    transform of std ``affine_sigma`` (positions and jacobians)."""

    l1: float = 1.0
    pyramid: int = 3
    ssim: float = 1.0
    ssim_scales: int = 2
    edge: float = 0.0
    equivariance: float = 1.0
    equivariance_jacobian: float = 1.0
    affine_sigma: float = 0.05


@dataclass
class TrainConfig:
    """The optimisation loop and its outputs."""

    iterations: int = 5000  # the total step to reach
    batch_size: int = 8  # pairs per step per rank
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    save_every: int = 500
    preview_every: int = 250
    log_every: int = 10
    keep_backups: int = 2
    preview_pairs: int = 6


@dataclass
class ReenactConfig:
    """Everything ``train-reenact`` needs besides the videos."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Keys that change neither the model nor its data: a resumed run may give other values.
RESUMABLE_KEYS = ("train.iterations", "train.save_every", "train.preview_every", "train.log_every",
                  "train.keep_backups", "train.preview_pairs")


def validate(config: ReenactConfig) -> ReenactConfig:
    """Check cross-field constraints the types cannot express; raise ``ConfigError``."""
    model, train, loss = config.model, config.train, config.loss
    widths = (model.kp_widths, model.motion_widths, model.generator_widths)
    if any(not w or min(w) < 1 for w in widths) or model.keypoints < 1 or model.residual_blocks < 0:
        raise ConfigError("model widths must be non-empty lists of positive numbers, model.keypoints >= 1",
                          "config")
    motion_px = model.size * model.motion_scale
    if not 0 < model.motion_scale <= 1 or motion_px != int(motion_px) \
            or int(motion_px) % 2 ** max(len(model.kp_widths), len(model.motion_widths)):
        raise ConfigError(f"model.size x model.motion_scale ({motion_px:g}) must be a whole number divisible by "
                          "2 ** the number of keypoint/motion widths", "config")
    if model.size % 2 ** (len(model.generator_widths) - 1):
        raise ConfigError(f"model.size {model.size} must be divisible by 2 ** (len(model.generator_widths) - 1)",
                          "config")
    if not 0.1 <= config.data.coverage <= 1 or config.data.every_n < 1 or config.data.max_frames < 0:
        raise ConfigError("data.coverage must be in [0.1, 1], data.every_n >= 1, data.max_frames >= 0", "config")
    for key in ("iterations", "batch_size", "save_every", "preview_every", "log_every", "preview_pairs"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1; got {getattr(train, key)}", "config")
    if train.lr <= 0:
        raise ConfigError("train.lr must be > 0", "config")
    weights = (loss.l1, loss.ssim, loss.edge, loss.equivariance, loss.equivariance_jacobian)
    if min(weights) < 0 or max(loss.l1, loss.ssim, loss.edge) == 0:
        raise ConfigError("loss weights must not be negative, and one image loss (l1, ssim, edge) must be > 0",
                          "config")
    if not 1 <= loss.ssim_scales <= MAX_SSIM_SCALES or model.size // 2 ** (loss.ssim_scales - 1) < MIN_SSIM_PX \
            or not 1 <= loss.pyramid <= loss_pyramid_limit(model.size):
        raise ConfigError(f"loss.ssim_scales must be 1..{MAX_SSIM_SCALES} (coarsest >= {MIN_SSIM_PX} px) and "
                          f"loss.pyramid 1..{loss_pyramid_limit(model.size)} at {model.size} px", "config")
    return config


def loss_pyramid_limit(size: int) -> int:
    """How many pyramid scales fit with the coarsest at least ``MIN_SSIM_PX`` px."""
    scales = 1
    while size // 2**scales >= MIN_SSIM_PX:
        scales += 1
    return scales
