"""The face-swap generators: ``SwapNet`` (one shared encoder, one decoder per identity) and
``LiaeNet`` (one encoder, a shared and an A-only "inter" block, one decoder).

With the defaults this is the classic 64 px "Original" autoencoder (four 5x5 stride-2 convs
128-256-512-1024, dense 1024, dense back to 4x4x1024, pixel-shuffle upscale to 8x8x512; decoders
upscale 256-128-64 and end in a 5x5 conv to RGB). Widths, resolution, bottleneck, self-attention
positions and an alpha-mask head are plain arguments, so the tiny and GAN variants are the same code.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepfake_cli.swap.sagan import SelfAttention

SIDES = ("a", "b")
# On a CPU, convolutions with at most this many output positions get their weight gradient from
# one GEMM over unfolded patches: oneDNN's own kernel is 2-4x slower on such tiny maps.
GEMM_GRAD_POSITIONS = 16


class _GemmGradConv(torch.autograd.Function):
    """conv2d with oneDNN forward and input gradient, and an im2col + GEMM weight gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        x_c, w_c = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x_c, w_c)
        ctx.geometry = (stride, padding)
        ctx.dtypes = (x.dtype, weight.dtype)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x_c, w_c, None if bias is None else bias.to(dtype), stride, padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding = ctx.geometry
        grad = grad.to(x.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], 1, [True, False, False]
            )[0].to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            out_channels, in_channels, kh, kw = weight.shape
            patches = F.unfold(x, (kh, kw), padding=padding, stride=stride).transpose(1, 2)
            rows = grad.flatten(2).transpose(1, 2).reshape(-1, out_channels)
            grad_w = (rows.t() @ patches.reshape(-1, in_channels * kh * kw)).view_as(weight).to(ctx.dtypes[1])
        if ctx.needs_input_grad[2]:
            grad_b = grad.float().sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same weights) that trains faster on small maps on a CPU (see ``_GemmGradConv``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_h = (x.shape[-2] + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        out_w = (x.shape[-1] + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        small = out_h * out_w <= GEMM_GRAD_POSITIONS and self.dilation == (1, 1) and self.groups == 1
        if x.device.type != "cpu" or not small or not torch.is_grad_enabled():
            return super().forward(x)
        return _GemmGradConv.apply(x, self.weight, self.bias, self.stride, self.padding)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """5x5 stride-2 convolution and LeakyReLU: halves the resolution."""
    return nn.Sequential(Conv2d(in_channels, out_channels, 5, 2, 2), nn.LeakyReLU(0.1))


class Upscale(nn.Sequential):
    """3x3 conv to 4x channels, LeakyReLU, pixel shuffle: doubles the resolution.

    The conv starts ICNR-initialised (each group of four sub-pixels shares a kernel), so a fresh
    block upsamples like nearest-neighbour instead of drawing a checkerboard.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        conv = Conv2d(in_channels, out_channels * 4, 3, 1, 1)
        with torch.no_grad():
            seed = torch.empty(out_channels, in_channels, 3, 3)
            nn.init.kaiming_uniform_(seed, a=0.1)
            conv.weight.copy_(seed.repeat_interleave(4, dim=0))
        super().__init__(conv, nn.LeakyReLU(0.1), nn.PixelShuffle(2))


def _attend(blocks: list[nn.Module], channels: int, resolution: int, attention_at: Sequence[int]) -> None:
    if resolution in attention_at:
        blocks.append(SelfAttention(channels))


def conv_stack(size: int, widths: Sequence[int], attention_at: Sequence[int] = ()) -> tuple[nn.Sequential, int, int]:
    """The encoder's stride-2 convolutions: the stack, its output channels and resolution."""
    blocks: list[nn.Module] = []
    channels, resolution = 3, size
    for width in widths:
        blocks.append(conv_block(channels, width))
        channels, resolution = width, resolution // 2
        _attend(blocks, channels, resolution, attention_at)
    return nn.Sequential(*blocks), channels, resolution


def dense_grid(channels: int, resolution: int, bottleneck: int, latent_channels: int) -> nn.Sequential:
    """Flatten a ``channels x resolution^2`` map, dense to ``bottleneck``, dense back to a
    ``latent_channels`` grid of the same resolution."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels * resolution * resolution, bottleneck),
        nn.Linear(bottleneck, latent_channels * resolution * resolution),
        nn.Unflatten(1, (latent_channels, resolution, resolution)),
    )


class Encoder(nn.Module):
    """Image ``[N,3,S,S]`` in [0,1] -> latent feature map ``[N, upscale_channels, 2g, 2g]``.

    ``g = S / 2**len(widths)`` is the grid the dense bottleneck reshapes back to.
    """

    def __init__(self, size: int, widths: Sequence[int], bottleneck: int, latent_channels: int,
                 upscale_channels: int, attention_at: Sequence[int] = ()) -> None:
        super().__init__()
        self.convs, channels, resolution = conv_stack(size, widths, attention_at)
        self.dense = dense_grid(channels, resolution, bottleneck, latent_channels)
        self.upscale = Upscale(latent_channels, upscale_channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.upscale(self.dense(self.convs(image * 2.0 - 1.0)))


class Decoder(nn.Module):
    """Latent feature map -> RGB in [0,1] (and an alpha mask in [0,1] when ``mask``)."""

    def __init__(self, in_channels: int, start_resolution: int, widths: Sequence[int],
                 attention_at: Sequence[int] = (), mask: bool = False) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels, resolution = in_channels, start_resolution
        for width in widths:
            blocks.append(Upscale(channels, width))
            channels, resolution = width, resolution * 2
            _attend(blocks, channels, resolution, attention_at)
        self.upscales = nn.Sequential(*blocks)
        self.rgb = nn.Conv2d(channels, 3, 5, 1, 2)
        self.mask = nn.Conv2d(channels, 1, 5, 1, 2) if mask else None

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.upscales(latent)
        rgb = torch.sigmoid(self.rgb(features))
        alpha = torch.sigmoid(self.mask(features)) if self.mask is not None else None
        return rgb, alpha


class SwapGenerator(nn.Module):
    """What every swap generator offers the trainer, the loader and convert: ``encode`` faces,
    ``decode`` a latent as identity ``a`` or ``b``, and ``forward`` doing both in one call."""

    size: int
    # state-dict prefixes of everything past the shared conv encoder (what an ``encoder`` init leaves fresh)
    decoder_parts: tuple[str, ...] = ()

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Shared latent of faces ``[N,3,S,S]`` in [0,1]."""
        raise NotImplementedError

    def decode(self, latent: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode as identity ``side`` (``a`` or ``b``): RGB and optional mask."""
        raise NotImplementedError

    def decode_parts(self, latent: torch.Tensor, sides: Sequence[str]) -> tuple[Any, ...]:
        """One equal part of ``latent`` per identity in ``sides``, each decoded as its identity."""
        return tuple(self.decode(part, name) for name, part in zip(sides, latent.chunk(len(sides)), strict=True))

    def forward(self, image: torch.Tensor, side: str | Sequence[str]) -> Any:
        """Swap or reconstruct faces ``image`` in one call.

        ``side`` a string: decode every face as that identity; returns ``(rgb, mask)``.
        ``side`` a sequence of identities (the training step: ``SIDES``): ``image`` holds one equal
        part per identity, all encoded in one pass and each part decoded as its own identity;
        returns one ``(rgb, mask)`` per part. A ``DistributedDataParallel`` wrapper sees the whole
        training forward in this one call.
        """
        latent = self.encode(image)
        if isinstance(side, str):
            return self.decode(latent, side)
        return self.decode_parts(latent, side)


class SwapNet(SwapGenerator):
    """``arch: df``: shared encoder plus decoders ``a`` and ``b``; swapping = encode one, decode
    with the other."""

    decoder_parts = ("decoders.",)

    def __init__(self, size: int = 64, encoder_widths: Sequence[int] = (128, 256, 512, 1024),
                 bottleneck: int = 1024, latent_channels: int = 1024, upscale_channels: int = 512,
                 decoder_widths: Sequence[int] = (256, 128, 64), attention_at: Sequence[int] = (),
                 mask: bool = False) -> None:
        super().__init__()
        self.size = size
        self.encoder = Encoder(size, encoder_widths, bottleneck, latent_channels, upscale_channels,
                               attention_at)
        start = 2 * size // 2 ** len(encoder_widths)
        self.decoders = nn.ModuleDict(
            {side: Decoder(upscale_channels, start, decoder_widths, attention_at, mask) for side in SIDES}
        )

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)

    def decode(self, latent: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.decoders[side](latent)


class Inter(nn.Sequential):
    """A LIAE "inter" block: the encoder's conv features -> dense bottleneck -> grid -> upscale."""

    def __init__(self, channels: int, resolution: int, bottleneck: int, latent_channels: int,
                 upscale_channels: int) -> None:
        super().__init__(dense_grid(channels, resolution, bottleneck, latent_channels),
                         Upscale(latent_channels, upscale_channels))


class LiaeNet(SwapGenerator):
    """``arch: liae`` (DeepFaceLab's LIAE idea): one conv encoder, two inter blocks and ONE decoder.

    ``inter_ab`` sees both identities, ``inter_a`` only A (the identity whose recordings get
    converted). The decoder reads two inter codes side by side: A is reconstructed from
    ``[inter_a(e), inter_ab(e)]``, B from ``[inter_ab(e), inter_ab(e)]``. Decoding any face "as B"
    uses the latter code, so the swap A->B is ``decoder([inter_ab(enc(a)), inter_ab(enc(a))])``: A's
    expression and pose through the code B is learned from, which is where B's identity lives.
    B->A (``[inter_a(enc(b)), inter_ab(enc(b))]``) is the untrained direction and only a best effort.
    """

    decoder_parts = ("inter_ab.", "inter_a.", "decoder.")

    def __init__(self, size: int = 64, encoder_widths: Sequence[int] = (128, 256, 512, 1024),
                 bottleneck: int = 1024, latent_channels: int = 1024, upscale_channels: int = 512,
                 decoder_widths: Sequence[int] = (256, 128, 64), attention_at: Sequence[int] = (),
                 mask: bool = False) -> None:
        super().__init__()
        self.size = size
        self.encoder, channels, resolution = conv_stack(size, encoder_widths, attention_at)
        self.inter_ab = Inter(channels, resolution, bottleneck, latent_channels, upscale_channels)
        self.inter_a = Inter(channels, resolution, bottleneck, latent_channels, upscale_channels)
        self.decoder = Decoder(2 * upscale_channels, 2 * resolution, decoder_widths, attention_at, mask)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image * 2.0 - 1.0)

    def code(self, latent: torch.Tensor, side: str) -> torch.Tensor:
        """The decoder's input for decoding ``latent`` as identity ``side``."""
        shared = self.inter_ab(latent)
        return torch.cat([self.inter_a(latent) if side == "a" else shared, shared], 1)

    def decode(self, latent: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.decoder(self.code(latent, side))

    def decode_parts(self, latent: torch.Tensor, sides: Sequence[str]) -> tuple[Any, ...]:
        """As ``SwapGenerator.decode_parts``, with one decoder pass over all parts."""
        codes = torch.cat([self.code(part, name) for name, part in zip(sides, latent.chunk(len(sides)), strict=True)])
        rgb, mask = self.decoder(codes)
        masks = mask.chunk(len(sides)) if mask is not None else (None,) * len(sides)
        return tuple(zip(rgb.chunk(len(sides)), masks, strict=True))
