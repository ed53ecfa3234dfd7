"""Build the networks a swap config describes (the one place that maps config keys to modules)."""

from __future__ import annotations

from deepfake_cli.swap.models import SIDES, LiaeNet, SwapGenerator, SwapNet
from deepfake_cli.swap.sagan import Discriminator, Discriminators
from deepfake_cli.swap.schema import ModelConfig


def build_generator(model: ModelConfig) -> SwapGenerator:
    """The generator of ``model.arch`` (``df``: shared encoder, two decoders; ``liae``: shared
    encoder, two inter blocks, one decoder); ``gan`` models also predict an alpha mask."""
    network = LiaeNet if model.arch == "liae" else SwapNet
    return network(
        size=model.size, encoder_widths=model.encoder_widths, bottleneck=model.bottleneck,
        latent_channels=model.latent_channels, upscale_channels=model.upscale_channels,
        decoder_widths=model.decoder_widths, attention_at=model.attention_at, mask=model.kind == "gan",
    )


def build_discriminators(model: ModelConfig) -> Discriminators:
    """One self-attention, spectral-norm discriminator per identity (``a`` and ``b``)."""
    return Discriminators({
        side: Discriminator(model.size, model.discriminator_widths, model.attention_at) for side in SIDES
    })
