"""One optimisation step of a swap model, and the state needed to resume it.

``SwapTrainer`` owns the networks, optimisers, augmentation and random generator. Each step
trains both identities at once: A's and B's warped faces go through the shared encoder as one
batch, each half through its own decoder. A ``gan`` model also updates one discriminator per
identity and blends its output with the input through the predicted alpha mask.

Under torchrun (``distribute``) the generator and the discriminators are wrapped in
``DistributedDataParallel``: each rank draws its own batch (its own random stream, seed + rank)
and backward averages the gradients over the ranks, so every rank takes the same optimiser step.
A step never syncs with the host: whether its losses were finite is read from the running loss
sums at the next logging/preview/save step (see ``train.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any, Mapping

import torch
from torch import nn

from deepfake_cli.errors import CheckpointError
from deepfake_cli.runtime import autocast, autocast_dtype, data_parallel, log_once
from deepfake_cli.swap.augment import Augmenter, Batch
from deepfake_cli.swap.data import FaceSet
from deepfake_cli.swap.losses import (
    PerceptualLoss,
    discriminator_loss,
    dssim_loss,
    edge_loss,
    generator_adversarial_loss,
    load_perceptual,
    mask_total_variation,
    weighted_l1,
)
from deepfake_cli.swap.models import SIDES
from deepfake_cli.swap.networks import build_discriminators, build_generator
from deepfake_cli.swap.sagan import Discriminators
from deepfake_cli.swap.schema import SwapConfig, active_terms, loss_weights

log = logging.getLogger(__name__)

Decoded = tuple[torch.Tensor, torch.Tensor | None]


def composite(decoded: Decoded, face: torch.Tensor) -> torch.Tensor:
    """The decoder's RGB, blended over ``face`` through its alpha mask when it has one."""
    rgb, mask = decoded
    rgb = rgb.float()
    if mask is None:
        return rgb
    mask = mask.float()
    return mask * rgb + (1.0 - mask) * face


def generator_seed(state: torch.Tensor, rank: int = 0) -> int:
    """A seed derived from a saved generator state (and, for ranks above 0, the rank): the same
    state and rank always give the same seed."""
    data = state.detach().cpu().contiguous().numpy().tobytes()
    if rank:
        data += b"rank" + rank.to_bytes(8, "little")
    digest = hashlib.sha256(data).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def restore_generator(generator: torch.Generator, state: Any, saved_on: str | None = None) -> bool:
    """Put ``generator`` in a saved ``state`` (a CPU ByteTensor) taken on a ``saved_on`` device type.

    A CPU generator (Mersenne Twister, a 5056-byte state) and a CUDA one (Philox: seed and offset,
    16 bytes) are different algorithms, so no conversion continues one's random stream on the
    other. A state of the other kind therefore re-seeds ``generator`` from a hash of that state: a
    given checkpoint always resumes with the same augmentation, but not with the stream the saving
    run would have drawn next (logged once). Checkpoints without ``saved_on`` are told apart by the
    state's size. Returns whether the state itself was restored. A state that is not a 1-D byte
    tensor is a ``ValueError``; one of the right kind that torch refuses a ``RuntimeError``.
    """
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.ndim != 1:
        raise ValueError("expected a 1-D byte tensor")
    state = state.detach().cpu().contiguous()
    here = generator.device.type
    same_kind = state.numel() == generator.get_state().numel() and saved_on in (None, here)
    if same_kind:
        generator.set_state(state)
        return True
    generator.manual_seed(generator_seed(state))
    log_once("rng-reseed", logging.INFO, "the augmentation random state was saved on %s and this run is on %s; "
             "the two do not convert, so it is re-seeded from the saved state (deterministic, but a new random "
             "stream)", saved_on or "another kind of device", here)
    return False


def load_scaler_state(scaler: torch.amp.GradScaler, state: Any) -> bool:
    """Load a saved grad-scaler ``state`` if there is one and ``scaler`` is enabled; returns whether it did.

    fp32/bf16 runs (every CPU run) save a disabled scaler's empty state, fp16 CUDA runs a full one;
    either kind of run may resume the other: an enabled scaler given an empty state keeps its initial
    scale, a disabled one needs no state at all.
    """
    if not state or not scaler.is_enabled():
        return False
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a dict, got {type(state).__name__}")
    scaler.load_state_dict(dict(state))
    return True


class SwapTrainer:
    """Networks, optimisers and augmentation of one training run; ``step`` trains one batch."""

    def __init__(self, config: SwapConfig, faces: Mapping[str, FaceSet], device: torch.device, seed: int,
                 rank: int = 0) -> None:
        """Build networks and optimisers; loads the perceptual backbone if the loss uses it
        (``BackendError`` if its weights cannot be had).

        Every rank builds the same initial weights from ``seed``; augmentation and sampling draw
        from a random generator seeded ``seed + rank``, so ranks train on different batches.
        """
        self.config, self.faces, self.device, self.rank = config, faces, device, rank
        self.terms = active_terms(config)
        if "mask_face" in self.terms and any(not faces[side].has_hulls for side in SIDES):
            log.warning("loss.mask_face needs landmarks (alignments.json) for both face sets: term off")
            self.terms = tuple(t for t in self.terms if t != "mask_face")
        self.perceptual: PerceptualLoss | None = None
        if "perceptual" in self.terms:
            with torch.random.fork_rng(devices=[]):  # ``random`` weights: the same on every rank and run
                torch.manual_seed(seed)
                self.perceptual = load_perceptual(config.perceptual.network, config.perceptual.weights,
                                                  config.perceptual.layers, device)
        self.dtype = autocast_dtype(device, config.train.precision, cpu_bf16_when_native=True)
        torch.manual_seed(seed)
        self.generator = build_generator(config.model).to(device)
        train = config.train
        fused = device.type in ("cpu", "cuda")
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=train.lr,
                                      betas=(train.beta1, train.beta2), fused=fused)
        self.discriminators: Discriminators | None = None
        self.opt_d: torch.optim.Adam | None = None
        if config.model.kind == "gan":
            self.discriminators = build_discriminators(config.model).to(device)
            self.opt_d = torch.optim.Adam(self.discriminators.parameters(), lr=train.lr_discriminator,
                                          betas=(train.beta1, train.beta2), fused=fused)
        # One grad scaler per optimiser: each unscales, checks and updates its own gradients, so the
        # discriminator update is complete (scaler updated) before the generator's starts.
        fp16 = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16) if self.discriminators is not None else None
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(seed + rank)
        self.augment = Augmenter(config.augment, self.rng)
        self.lr_scale = 1.0
        # What the training step calls: the networks, or their DistributedDataParallel wrappers.
        self._generator_step: nn.Module = self.generator
        self._discriminator_step: nn.Module | None = self.discriminators

    def distribute(self) -> None:
        """Wrap generator and discriminators in ``DistributedDataParallel`` (process group up).

        Call once every rank holds the same weights (DDP also broadcasts rank 0's at wrapping).
        The step's forwards then go through the wrappers, so backward averages gradients over the
        ranks; ``generator``/``discriminators`` stay the plain modules (checkpoints, previews and
        the generator's adversarial pass use them, the latter with the discriminators frozen).
        """
        self._generator_step = data_parallel(self.generator, self.device)
        if self.discriminators is not None:
            self._discriminator_step = data_parallel(self.discriminators, self.device)

    @property
    def loss_names(self) -> list[str]:
        """Names of the logged losses: ``<side>_<term>`` per identity, ``d_<side>`` for a gan."""
        names = [f"{side}_{term}" for side in SIDES for term in self.terms]
        return names + ([f"d_{side}" for side in SIDES] if self.discriminators is not None else [])

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """Train one batch of each identity at global ``step``; returns detached unweighted losses.

        Nothing here waits for the device: a NaN or infinite loss is not caught here but by the
        caller from the returned losses (its optimiser step has then spread NaN into the weights,
        which the caller's rollback to the last checkpoint replaces).
        """
        return self.train_batches(self.sample_batches(), step)

    def sample_batches(self) -> dict[str, Batch]:
        """One augmented batch of ``train.batch_size`` faces per identity, from this rank's generator
        (the landmark hulls warped along only for the ``mask_face`` term, their one reader)."""
        size, hull = self.config.train.batch_size, "mask_face" in self.terms
        batches = {}
        for side in SIDES:
            images, weights, hulls = self.faces[side].sample(size, self.rng)
            batches[side] = self.augment(images, weights, hulls if hull else None)
        return batches

    def train_batches(self, batches: Mapping[str, Batch], step: int) -> dict[str, torch.Tensor]:
        """One optimisation step on ``batches`` (one per identity) at global ``step``; see ``step``."""
        self._schedule_lr(step)
        weights = loss_weights(self.config.loss, step)
        with autocast(self.device, self.dtype):
            parts = self._generator_step(torch.cat([batches[side].warped for side in SIDES]), SIDES)
            decoded = dict(zip(SIDES, parts, strict=True))
        outputs = {side: composite(decoded[side], batches[side].warped) for side in SIDES}
        losses: dict[str, torch.Tensor] = {}
        for side in SIDES:
            losses.update(self._generator_terms(side, decoded[side], outputs[side], batches[side]))
        if self.discriminators is not None:
            losses.update(self._train_discriminators(batches, outputs))
            losses.update(self._adversarial_terms(outputs))
        total = sum(weights[name.split("_", 1)[1]] * value for name, value in losses.items()
                    if not name.startswith("d_"))
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        return {name: value.detach() for name, value in losses.items()}

    def _generator_terms(self, side: str, decoded: Decoded, output: torch.Tensor,
                         batch: Batch) -> dict[str, torch.Tensor]:
        """Unweighted generator losses of one side. With a mask, reconstruction averages the blended
        output and the raw RGB, so the decoder learns the whole face whatever the mask does."""
        (rgb, mask), target, terms = decoded, batch.target, {}
        if "recon" in self.terms:
            terms["recon"] = weighted_l1(output, target, batch.weight)
            if mask is not None:
                terms["recon"] = 0.5 * (terms["recon"] + weighted_l1(rgb.float(), target, batch.weight))
        if "ssim" in self.terms:
            scales = self.config.loss.ssim_scales
            terms["ssim"] = dssim_loss(output, target, batch.weight, scales)
            if mask is not None:
                terms["ssim"] = 0.5 * (terms["ssim"] + dssim_loss(rgb, target, batch.weight, scales))
        if "edge" in self.terms:
            terms["edge"] = edge_loss(output, target)
        if self.perceptual is not None:
            with autocast(self.device, self.dtype):
                terms["perceptual"] = self.perceptual(output, target)
        if mask is not None and "mask_l1" in self.terms:
            terms["mask_l1"] = mask.float().mean()
        if mask is not None and "mask_tv" in self.terms:
            terms["mask_tv"] = mask_total_variation(mask.float())
        if mask is not None and "mask_face" in self.terms:
            assert batch.hull is not None
            terms["mask_face"] = (mask.float() - batch.hull).abs().mean()
        return {f"{side}_{term}": value for term, value in terms.items()}

    def _train_discriminators(self, batches: Mapping[str, Batch],
                              outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert self._discriminator_step is not None and self.opt_d is not None and self.scaler_d is not None
        mode = self.config.loss.adversarial_mode
        with autocast(self.device, self.dtype):
            scores = self._discriminator_step(tuple(batches[side].target for side in SIDES),
                                              tuple(outputs[side].detach() for side in SIDES))
            losses = {f"d_{side}": discriminator_loss(real, fake, mode)
                      for side, (real, fake) in zip(SIDES, scores, strict=True)}
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(sum(losses.values())).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return losses

    def _adversarial_terms(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert self.discriminators is not None
        if "adversarial" not in self.terms:
            return {}
        mode = self.config.loss.adversarial_mode
        # The plain modules, frozen: only the generator learns from this pass, and it is no
        # forward of the discriminators' DistributedDataParallel wrapper (which expects gradients).
        self.discriminators.requires_grad_(False)
        try:
            with autocast(self.device, self.dtype):
                return {f"{side}_adversarial": generator_adversarial_loss(self.discriminators[side](outputs[side]),
                                                                          mode) for side in SIDES}
        finally:
            self.discriminators.requires_grad_(True)

    @torch.no_grad()
    def preview(self, faces: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Rows A, A->A, A->B, B, B->B, B->A (and for a gan the masks of A->B, B->A), in [0,1]."""
        rows: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for side, other in zip(SIDES, reversed(SIDES), strict=True):
            face = faces[side].float() / 255.0
            with autocast(self.device, self.dtype):
                latent = self.generator.encode(face)
                same, swapped = self.generator.decode(latent, side), self.generator.decode(latent, other)
            rows += [face, composite(same, face), composite(swapped, face)]
            if swapped[1] is not None:
                masks.append(swapped[1].float().expand(-1, 3, -1, -1))
        return rows + masks

    def lr_factor(self, step: int) -> float:
        """The schedule's share of the configured learning rate at ``step``: linear warm-up, then
        constant or a cosine decay to ``lr_min`` at ``iterations``."""
        train = self.config.train
        factor = min(1.0, (step + 1) / train.warmup) if train.warmup else 1.0
        if train.lr_schedule == "cosine":
            progress = min(max(step - train.warmup, 0) / max(train.iterations - train.warmup, 1), 1.0)
            factor *= train.lr_min + (1.0 - train.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return factor

    def _schedule_lr(self, step: int) -> None:
        train, factor = self.config.train, self.lr_scale * self.lr_factor(step)
        for optimizer, base in ((self.opt_g, train.lr), (self.opt_d, train.lr_discriminator)):
            for group in optimizer.param_groups if optimizer is not None else []:
                group["lr"] = base * factor

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the scheduled learning rates by ``scale`` (lowered after a NaN rollback)."""
        self.lr_scale = scale

    def model_state(self) -> dict[str, Any]:
        """Network weights only (what ``model.pt`` holds)."""
        state: dict[str, Any] = {"generator": self.generator.state_dict()}
        if self.discriminators is not None:
            state["discriminators"] = self.discriminators.state_dict()
        return state

    def training_state(self) -> dict[str, Any]:
        """Optimiser, grad-scaler and random-generator state (what ``training.pt`` holds).

        Under torchrun only rank 0 saves: the random state is rank 0's (other ranks derive theirs
        from it on loading, see ``load_training_state``); nothing else depends on the ranks.
        The generator's state is a CPU ByteTensor saved with the device type it came from
        (``rng_device``), so a run on another kind of device knows it cannot take it as it is.
        """
        state: dict[str, Any] = {"opt_g": self.opt_g.state_dict(), "scaler": self.scaler.state_dict(),
                                 "rng": self.rng.get_state().cpu(), "rng_device": self.rng.device.type,
                                 "lr_scale": self.lr_scale}
        if self.opt_d is not None and self.scaler_d is not None:
            state["opt_d"] = self.opt_d.state_dict()
            state["scaler_d"] = self.scaler_d.state_dict()
        return state

    def load_model_state(self, state: Mapping[str, Any], where: str) -> None:
        """Restore network weights; a mismatch with this architecture is a ``CheckpointError``."""
        try:
            self.generator.load_state_dict(state["generator"])
            if self.discriminators is not None:
                self.discriminators.load_state_dict(state["discriminators"])
        except (KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"weights do not fit the configured model: {first}", where) from None

    def load_training_state(self, state: Mapping[str, Any], where: str) -> None:
        """Restore optimisers, grad scaler, random generator and learning-rate scale.

        State saved on another device loads here (CPU <-> CUDA, fp16 <-> fp32/bf16): optimiser tensors
        move to the parameters' device, the grad scaler and random generator follow
        ``load_scaler_state`` and ``restore_generator``. A part that cannot be restored is a
        ``CheckpointError`` naming it (optimiser, grad-scaler or random-generator state).

        The grad scalers start afresh before loading (``reset_scalers``), so a step cut short
        between a scaler's ``step`` and ``update`` cannot break the next one. Rank 0 continues the
        saved random stream; rank r > 0 re-seeds from a hash of that state and r (deterministic,
        a new stream after every checkpoint, for any number of ranks).
        """
        self.reset_scalers()
        part = "optimiser state does not fit the configured model"
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            if self.opt_d is not None:
                self.opt_d.load_state_dict(state["opt_d"])
            part = "unusable grad-scaler state"
            load_scaler_state(self.scaler, state.get("scaler"))
            if self.scaler_d is not None:  # checkpoints before the split shared one scaler
                load_scaler_state(self.scaler_d, state.get("scaler_d", state.get("scaler")))
            part = "unusable random-generator (rng) state"
            restore_generator(self.rng, state["rng"], state.get("rng_device"))
            if self.rank:
                self.rng.manual_seed(generator_seed(state["rng"], self.rank))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, KeyError):
                first = f"missing {first}"
            raise CheckpointError(f"{part}: {first}", where) from None
        self.set_lr_scale(float(state.get("lr_scale", 1.0)))

    def reset_scalers(self) -> None:
        """Fresh grad scalers (same device and enabled flag) in place of the current ones."""
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.scaler.is_enabled())
        if self.scaler_d is not None:
            self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=self.scaler_d.is_enabled())

    def weights_finite(self) -> torch.Tensor:
        """A 0-d bool tensor on the device: whether every weight is finite (no host sync)."""
        modules = [self.generator] + ([self.discriminators] if self.discriminators is not None else [])
        flags = [torch.isfinite(p).all() for module in modules for p in module.parameters()]
        return torch.stack(flags).all()
