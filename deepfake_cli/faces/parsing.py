"""Face parsing for occlusion-aware blend masks: BiSeNet with CelebAMask-HQ's 19 classes.

``BiSeNet`` is a plain ``nn.Module`` (no I/O): a ResNet-18 context path (torchvision's ``resnet18``
without its classifier) whose 1/16 and 1/32 features are refined by attention and fused with the
1/8 features; it maps ImageNet-normalised RGB ``[N,3,H,W]`` to logits ``[N,19,H,W]``. Its module
names follow the public face-parsing BiSeNet checkpoints (``79999_iter.pth``: keys
``cp.resnet.*``, ``cp.arm16.*``, ``cp.arm32.*``, ``cp.conv_head16.*``, ``cp.conv_head32.*``,
``cp.conv_avg.*``, ``ffm.*``, ``conv_out.*``, ``conv_out16.*``, ``conv_out32.*``), so such a state
dict loads as it is; the two auxiliary heads are only used in training and are kept for that.

``load_face_parser(path, device)`` reads the user's weights (``torch.load(weights_only=True)``;
nothing is ever downloaded) and returns a ``FaceParser``, which warps nothing itself: it takes
aligned crops (uint8 RGB, ``PARSER_SIZE`` px at ``PARSER_COVERAGE``) and returns where the face
classes are. The swap keeps skin, brows, eyes, nose, mouth and lips and nothing else: glasses
(``eye_g``), hair, hats, ears, neck, background — and so hands, microphones or anything else in
front of the face — stay as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepfake_cli.backbones.pretrained import IMAGENET_MEAN, IMAGENET_STD
from deepfake_cli.errors import BackendError, CheckpointError

CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
           "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
FACE_CLASSES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
PARSER_SIZE = 512
# CelebAMask-HQ's framing: the eye centres about a quarter of the crop apart (0.551 x coverage here).
PARSER_COVERAGE = 0.45
WEIGHTS_HINT = "a BiSeNet CelebAMask-HQ state dict, 79999_iter.pth"
NEEDS_WEIGHTS = f"--mask occlusion needs face-parsing weights: pass --parser-weights FILE ({WEIGHTS_HINT})"


class ConvBNReLU(nn.Module):
    """Convolution without bias, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class AttentionRefinement(nn.Module):
    """A 3x3 conv whose channels are re-weighted by a gate computed from their global average."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(features.mean(dim=(2, 3), keepdim=True))))
        return features * gate


class ContextPath(nn.Module):
    """ResNet-18 features at 1/8, 1/16 and 1/32; the deeper two refined and brought to 1/8 and 1/16."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.resnet = resnet18(weights=None)
        self.resnet.fc = nn.Identity()  # the classifier is not part of the parser (no parameters)
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.resnet
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        eighth = net.layer2(net.layer1(x))
        sixteenth = net.layer3(eighth)
        thirty_second = net.layer4(sixteenth)
        context = self.conv_avg(thirty_second.mean(dim=(2, 3), keepdim=True))  # broadcasts over the map
        deep = self.arm32(thirty_second) + context
        deep = self.conv_head32(F.interpolate(deep, size=sixteenth.shape[2:], mode="nearest"))
        middle = self.arm16(sixteenth) + deep
        middle = self.conv_head16(F.interpolate(middle, size=eighth.shape[2:], mode="nearest"))
        return eighth, middle


class FeatureFusion(nn.Module):
    """Concatenate two feature maps, mix them and add a channel-attention-weighted copy."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, kernel=1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        mixed = self.convblk(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(mixed.mean(dim=(2, 3), keepdim=True)))))
        return mixed + mixed * gate


class OutputHead(nn.Module):
    """A 3x3 conv block, then 1x1 class logits (no bias)."""

    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """The face parser: ImageNet-normalised RGB ``[N,3,H,W]`` -> class logits ``[N,classes,H,W]``.

    ``conv_out16``/``conv_out32`` are the auxiliary heads of training; ``forward`` does not use them.
    """

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, classes)
        self.conv_out16 = OutputHead(128, 64, classes)
        self.conv_out32 = OutputHead(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eighth, context = self.cp(x)
        logits = self.conv_out(self.ffm(eighth, context))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def _state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a bare state dict, or one under ``state_dict``/``model``/``net``;
    a ``module.`` prefix (DataParallel) is dropped."""
    for key in ("state_dict", "model", "net"):
        if isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    return {(k[len("module."):] if k.startswith("module.") else k): v
            for k, v in payload.items() if isinstance(v, torch.Tensor)}


def load_parser_weights(net: BiSeNet, path: str | Path) -> BiSeNet:
    """Load a face-parsing state dict into ``net``; anything else is a ``CheckpointError`` naming
    what differs (BatchNorm ``num_batches_tracked`` counters may be absent, as in old checkpoints)."""
    from deepfake_cli.checkpoint import load_weights

    file = Path(path)
    if not file.is_file():
        raise BackendError(f"face-parsing weights not found ({WEIGHTS_HINT} is needed)", str(file))
    state = _state_dict(load_weights(file))
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"not a BiSeNet face-parsing state dict with {len(CLASSES)} classes "
                              f"({'; '.join(parts)}); expected {WEIGHTS_HINT}", str(file))
    net.load_state_dict(state, strict=False)
    return net


class FaceParser:
    """Runs a ``BiSeNet`` on aligned face crops and says where the face classes are."""

    def __init__(self, net: nn.Module, device: torch.device | str = "cpu", size: int = PARSER_SIZE,
                 coverage: float = PARSER_COVERAGE) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.size, self.coverage = size, coverage
        keep = torch.zeros(len(CLASSES), dtype=torch.bool)
        keep[[CLASSES.index(name) for name in FACE_CLASSES]] = True
        self._keep = keep.to(self.device)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def logits(self, crops: np.ndarray) -> torch.Tensor:
        """Class logits ``[N,19,S,S]`` (float32) of uint8 RGB crops ``[N,S,S,3]`` (resized to ``size``)."""
        batch = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        if batch.shape[2:] != (self.size, self.size):
            batch = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", align_corners=False)
        batch = (batch - self._mean) / self._std
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            return self.net(batch).float()

    def face_regions(self, crops: np.ndarray) -> np.ndarray:
        """uint8 ``[N,size,size]``: 255 where the most likely class is a face class, else 0."""
        labels = self.logits(crops).argmax(dim=1)
        return (self._keep[labels].to(torch.uint8) * 255).cpu().numpy()


def load_face_parser(path: str | Path | None, device: torch.device | str = "cpu", size: int = PARSER_SIZE
                     ) -> FaceParser:
    """A ``FaceParser`` with the BiSeNet weights in ``path`` on ``device``.

    No ``path`` is a ``BackendError`` naming the file that is needed (nothing is downloaded).
    """
    if not path:
        raise BackendError(NEEDS_WEIGHTS)
    return FaceParser(load_parser_weights(BiSeNet(), path), device, size)
