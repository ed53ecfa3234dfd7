"""One face GAN in training: generator, spectral-norm discriminator, their optimisers, the
generator's moving average (EMA) and one adversarial step.

Each step trains the discriminator on a batch of real faces and a batch of samples, then the
generator on fresh samples; both see the faces through the same differentiable augmentation.
Under torchrun every rank draws its own batch and noise and the gradients are averaged over
the ranks before each optimiser step, so the weights stay identical everywhere.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepfake_cli.runtime import all_reduce_sum, is_distributed, world_size
from deepfake_cli.synth.augment import diff_augment
from deepfake_cli.synth.model import Discriminator, Generator
from deepfake_cli.synth.schema import FaceGanConfig

LOSS_NAMES = ("d_loss", "g_loss", "d_loss_real", "d_loss_fake")  # d_loss = d_loss_real + d_loss_fake
EMA_WARMUP = 10.0  # the EMA decay is min(ema, (1 + step) / (EMA_WARMUP + step)): early weights fade fast


def build_generator(config: FaceGanConfig) -> Generator:
    """The generator of ``config``."""
    return Generator(config.model.size, config.model.latent, config.model.g_width)


def d_losses(kind: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's loss on real logits and on fake logits (hinge or non-saturating BCE)."""
    if kind == "hinge":
        return F.relu(1.0 - real).mean(), F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean(), F.softplus(fake).mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the discriminator's logits of its samples."""
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def average_gradients(module: nn.Module) -> None:
    """Average ``module``'s gradients over the ranks (one all-reduce; a no-op in one process)."""
    if not is_distributed():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = all_reduce_sum(torch.cat([g.flatten() for g in grads])) / world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


class FaceGan:
    """Networks, optimisers and EMA of one run on ``faces`` (``N x 3 x S x S`` uint8 on ``device``)."""

    def __init__(self, config: FaceGanConfig, faces: torch.Tensor, device: torch.device, seed: int,
                 rank: int = 0) -> None:
        self.config, self.faces, self.device, self.seed, self.rank = config, faces, device, seed, rank
        train = config.train
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.generator = build_generator(config).to(device)
        self.discriminator = Discriminator(config.model.size, config.model.d_width).to(device)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False) if train.ema > 0 else None
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=train.lr_g, betas=(train.beta1, train.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=train.lr_d, betas=(train.beta1, train.beta2))
        self.random = torch.Generator(device=device)

    def _reseed(self, step: int) -> None:
        """Seed the batch, noise and augmentation draws of ``step`` from (seed, rank, step): each rank
        draws its own, and a resumed run draws exactly what an uninterrupted one would have."""
        self.random.manual_seed((self.seed * 1_000_003 + self.rank * 7919 + step) % (2**63))

    def _real(self) -> torch.Tensor:
        index = torch.randint(len(self.faces), (self.config.train.batch_size,), device=self.device,
                              generator=self.random)
        real = self.faces[index].float() / 127.5 - 1.0
        if self.config.train.flip:
            flip = torch.rand(len(real), device=self.device, generator=self.random) < 0.5
            real = torch.where(flip.view(-1, 1, 1, 1), real.flip(3), real)
        return real

    def _noise(self) -> torch.Tensor:
        return torch.randn(self.config.train.batch_size, self.config.model.latent, device=self.device,
                           generator=self.random)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.config.train.augment, self.random)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One discriminator and one generator update; the losses stay on the device."""
        kind = self.config.train.loss
        self._reseed(step)
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            fake = self.generator(self._noise())
        real_logits = self.discriminator(self._augment(self._real()))
        fake_logits = self.discriminator(self._augment(fake))
        loss_real, loss_fake = d_losses(kind, real_logits, fake_logits)
        loss_d = loss_real + loss_fake
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        average_gradients(self.discriminator)
        self.opt_d.step()

        self.discriminator.requires_grad_(False)
        loss_g = g_loss(kind, self.discriminator(self._augment(self.generator(self._noise()))))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(self.generator)
        self.opt_g.step()
        self._update_ema(step)
        return {"d_loss": loss_d.detach(), "g_loss": loss_g.detach(),
                "d_loss_real": loss_real.detach(), "d_loss_fake": loss_fake.detach()}

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        if self.ema is None:
            return
        decay = min(self.config.train.ema, (1.0 + step) / (EMA_WARMUP + step))
        for average, live in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            average.lerp_(live, 1.0 - decay)

    @property
    def sampler(self) -> Generator:
        """The generator that makes samples: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.generator

    def weights_finite(self) -> torch.Tensor:
        """Whether every weight is finite (a device tensor; no host sync)."""
        params = [*self.generator.parameters(), *self.discriminator.parameters()]
        return torch.stack([torch.isfinite(p).all() for p in params]).all()

    def model_state(self) -> dict[str, Any]:
        """The weights for ``model.pt``."""
        state = {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict()}
        if self.ema is not None:
            state["generator_ema"] = self.ema.state_dict()
        return state

    def training_state(self) -> dict[str, Any]:
        """The optimisers' state for ``training.pt``."""
        return {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load(self, model: dict[str, Any], training: dict[str, Any] | None) -> None:
        """Restore weights (and optimiser state when given)."""
        self.generator.load_state_dict(model["generator"])
        self.discriminator.load_state_dict(model["discriminator"])
        if self.ema is not None:
            self.ema.load_state_dict(model.get("generator_ema", model["generator"]))
        if training is not None:
            self.opt_g.load_state_dict(training["opt_g"])
            self.opt_d.load_state_dict(training["opt_d"])
