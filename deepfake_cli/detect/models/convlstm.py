"""``convlstm``: an LSTM whose gates are convolutions, so its state keeps a spatial map.

Shapes: a batch of sequences is ``B x T x C x H x W``; the detector returns one logit per
sequence (``B``), positive meaning fake. The model does no I/O and knows no config files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from deepfake_cli.detect.models.base import DetectorNet

if TYPE_CHECKING:
    from deepfake_cli.detect.config import DetectConfig


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: ``i, f, o, g = conv([x_t, h_{t-1}])``; ``c_t = f*c + i*g``; ``h_t = o*tanh(c_t)``."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel, padding=kernel // 2)
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels:2 * hidden_channels].fill_(1.0)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero hidden and cell maps matching the batch, size, device and dtype of ``x``."""
        b, _, h, w = x.shape
        zeros = x.new_zeros(b, self.hidden_channels, h, w)
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one time step; returns the new ``(h, c)``."""
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h.to(x.dtype)], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM layers; layer k+1 reads layer k's hidden maps, max-pooled by ``pool``."""

    def __init__(self, in_channels: int, hidden: Sequence[int], kernel: int = 3, pool: int = 1) -> None:
        super().__init__()
        widths = [in_channels, *hidden]
        self.cells = nn.ModuleList(ConvLSTMCell(widths[k], widths[k + 1], kernel) for k in range(len(hidden)))
        self.pool = nn.MaxPool2d(pool) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run ``B x T x C x H x W`` through every layer; returns the last layer's final ``h``."""
        steps = list(x.unbind(dim=1))
        for k, cell in enumerate(self.cells):
            if k > 0:
                steps = [self.pool(step) for step in steps]
            state = cell.initial_state(steps[0])
            outputs = []
            for step in steps:
                state = cell(step, state)
                outputs.append(state[0])
            steps = outputs
        return steps[-1]


class ConvLSTMDetector(DetectorNet):
    """Optional per-frame conv stem, stacked ConvLSTM, then average+max pooling and a linear head."""

    kind = "sequence"

    def __init__(
        self,
        in_channels: int,
        hidden: Sequence[int] = (32, 32, 64),
        kernel: int = 3,
        pool: int = 2,
        stem_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels)
        if stem_channels > 0:
            self.stem: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, stem_channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.ReLU(inplace=True),
            )
            in_channels = stem_channels
        else:
            self.stem = nn.Identity()
        self.convlstm = ConvLSTM(in_channels, hidden, kernel, pool)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``B``) for sequences ``B x T x C x H x W``; sigmoid gives the probability of fake."""
        b, t = x.shape[:2]
        frames = self.stem(x.flatten(0, 1))
        h = self.convlstm(frames.unflatten(0, (b, t)))
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled).squeeze(1)


def build(config: "DetectConfig", channels: int) -> ConvLSTMDetector:
    """The ConvLSTM detector shaped by ``model.{stem_channels,hidden,kernel,pool,dropout}``."""
    m = config.model
    return ConvLSTMDetector(in_channels=channels, hidden=m.hidden, kernel=m.kernel, pool=m.pool,
                            stem_channels=m.stem_channels, dropout=m.dropout)
