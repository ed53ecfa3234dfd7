"""The detector registry (ConvLSTM, tiny_frame, EfficientNet), pretrained weights and detector directories."""

from __future__ import annotations

import json
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from deepfake_cli.config import available_presets, load_config, read_preset
from deepfake_cli.detect import Detector, read_dataset, train_detector
from deepfake_cli.detect.config import DetectConfig, validate
from deepfake_cli.detect.detector import build_model, load_detector, save_detector
from deepfake_cli.detect.models import MODELS, initial_weights
from deepfake_cli.detect.models.convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMDetector
from deepfake_cli.errors import CheckpointError, ConfigError
from detect_faces import write_dataset

B0_FILE = "efficientnet_b0_rwightman-7f5810bc.pth"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache and no network: any download attempt fails like it does offline."""
    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def b0_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in for torchvision's ImageNet file: a randomly initialised efficientnet_b0 state dict."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "b0.pth"
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def faces_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces"), {f"g{k}": "" for k in range(4)}, frames=6)


def test_cell_gates_are_one_convolution_over_input_and_hidden_state() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, kernel=3)
    x, h, c = torch.randn(1, 2, 6, 6), torch.randn(1, 3, 6, 6), torch.randn(1, 3, 6, 6)
    z = torch.nn.functional.conv2d(torch.cat([x, h], 1), cell.gates.weight, cell.gates.bias, padding=1)
    i, f, o, g = z.sigmoid()[:, 0:3], z.sigmoid()[:, 3:6], z.sigmoid()[:, 6:9], z.tanh()[:, 9:12]
    expected_c = f * c + i * g
    new_h, new_c = cell(x, (h, c))
    assert torch.allclose(new_c, expected_c, atol=1e-6)
    assert torch.allclose(new_h, o * expected_c.tanh(), atol=1e-6)


def test_stack_pools_between_layers_and_remembers_earlier_frames() -> None:
    torch.manual_seed(0)
    stack = ConvLSTM(1, [4, 6], kernel=3, pool=2)
    x = torch.randn(2, 5, 1, 16, 16)
    out = stack(x)
    assert out.shape == (2, 6, 8, 8)
    changed = x.clone()
    changed[:, 0] += 1.0  # only the first frame differs: the final state must still move
    assert not torch.allclose(stack(changed), out)


@pytest.mark.parametrize("stem", [0, 8])
def test_detector_gives_one_logit_per_sequence_and_learns(stem: int) -> None:
    torch.manual_seed(0)
    model = ConvLSTMDetector(1, hidden=[4, 8], pool=2, stem_channels=stem)
    x = torch.randn(6, 3, 1, 16, 16)
    y = torch.tensor([0.0, 1.0] * 3)
    x[y == 1] += 0.5
    assert model(x).shape == (6,)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_bf16_autocast_runs_on_cpu() -> None:
    model = ConvLSTMDetector(1, hidden=[4], pool=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 3, 1, 8, 8)).shape == (2,)


@pytest.mark.parametrize("preset", ["tiny", "convlstm"])
def test_presets_build_models_for_every_input_mode(preset: str) -> None:
    for mode, channels in (("canny", 1), ("rgb", 3), ("rgb+canny", 4)):
        config = load_config(DetectConfig, "detect", preset, None, [f"sequence.input={mode}", "sequence.size=32"])
        model = build_model(config)
        assert model(torch.zeros(1, config.sequence.frames, channels, 32, 32)).shape == (1,)


def test_out_of_range_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="model.kernel"):
        validate(load_config(DetectConfig, "detect", "tiny", None, ["model.kernel=4"]))
    with pytest.raises(ConfigError, match="sequence.input"):
        load_config(DetectConfig, "detect", "tiny", None, ["sequence.input=sobel"])


def test_detector_directory_round_trip_with_weights_only(tmp_path: Path) -> None:
    config = load_config(DetectConfig, "detect", "tiny")
    model = build_model(config)
    save_detector(tmp_path, model, config, {"threshold": 0.4})
    assert torch.load(tmp_path / "model.pt", weights_only=True)["model"].keys() == model.state_dict().keys()
    loaded = load_detector(tmp_path, torch.device("cpu"))
    assert loaded.config == config and loaded.state["threshold"] == 0.4
    x = torch.randn(1, 5, 1, 32, 32)
    assert torch.allclose(loaded.model(x), model.eval()(x))


def test_mismatched_or_missing_detector_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a detector directory"):
        load_detector(tmp_path, torch.device("cpu"))
    config = load_config(DetectConfig, "detect", "tiny")
    save_detector(tmp_path, build_model(config), config, {})
    (tmp_path / "checkpoint.json").unlink()  # edited by hand: the top-level files load, unchecked
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace("- 16", "- 32"))
    with pytest.raises(CheckpointError, match="do not match"):
        load_detector(tmp_path, torch.device("cpu"))


def test_every_preset_names_a_registered_architecture_that_builds() -> None:
    presets = available_presets("detect")
    assert {"convlstm", "tiny", "tiny_frame", "efficientnet_b0", "efficientnet_b4"} <= set(presets)
    named = {load_config(DetectConfig, "detect", p).model.name for p in presets}
    assert named == set(MODELS)
    for preset, channels in (("tiny", 1), ("tiny_frame", 3)):
        config = validate(load_config(DetectConfig, "detect", preset))
        model = build_model(config)
        assert model.kind == MODELS[config.model.name].kind
        x = torch.randint(0, 256, (2, config.sequence.frames, channels, 32, 32), dtype=torch.uint8)
        x = model.normalise(x)
        assert model(x if model.kind == "sequence" else x[:, 0]).shape == (2,)
    assert read_preset("detect", "efficientnet_b4")["model"]["weights"] == "imagenet"


@pytest.mark.parametrize("variant", ["efficientnet_b0", "efficientnet_b4"])
def test_efficientnet_gives_one_logit_per_face(variant: str) -> None:
    config = load_config(DetectConfig, "detect", variant, None, ["model.weights=none"])
    model = build_model(validate(config)).eval()
    assert model.kind == "frame" and model.net.classifier[-1].out_features == 1
    x = model.normalise(torch.full((1, 3, 64, 64), 128, dtype=torch.uint8))
    assert model(x).shape == (1,)


def test_local_efficientnet_weights_load_into_the_backbone(b0_weights: Path) -> None:
    config = load_config(DetectConfig, "detect", "efficientnet_b0", None, [f"model.weights={b0_weights}"])
    state = initial_weights(config)
    from deepfake_cli.detect.models import apply_weights

    model = apply_weights(build_model(config), state, str(b0_weights))
    source = torch.load(b0_weights, weights_only=True)
    for key in ("features.0.0.weight", "features.8.1.running_var"):
        assert torch.equal(model.net.state_dict()[key], source[key])
    broken = dict(source)
    broken.pop("features.0.0.weight")
    torch.save(broken, b0_weights.with_name("broken.pth"))
    bad = load_config(DetectConfig, "detect", "efficientnet_b0", None, [f"model.weights={b0_weights.with_name('broken.pth')}"])
    with pytest.raises(ConfigError, match="not efficientnet_b0 weights"):
        apply_weights(build_model(bad), initial_weights(bad), "broken.pth")


def test_imagenet_weights_come_from_the_hub_cache_without_a_download(offline: Path, b0_weights: Path) -> None:
    offline.mkdir(parents=True)
    (offline / B0_FILE).write_bytes(b0_weights.read_bytes())
    state = initial_weights(load_config(DetectConfig, "detect", "efficientnet_b0"))
    assert torch.equal(state["features.0.0.weight"], torch.load(b0_weights, weights_only=True)["features.0.0.weight"])


def test_offline_without_imagenet_weights_is_one_clear_error(run_dfk, offline: Path, faces_csv: Path,
                                                              tmp_path: Path) -> None:
    result = run_dfk("train-detect", "--dataset", faces_csv, "-o", tmp_path / "det", "--preset", "efficientnet_b0",
                     "--device", "cpu")
    assert result.code != 0
    lines = [line for line in result.err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result  # (above it, one info line says the download was tried)
    for part in (B0_FILE, str(offline), "https://download.pytorch.org/models/" + B0_FILE,
                 "model.weights=PATH", "model.weights=none"):
        assert part in lines[0], part
    assert not (tmp_path / "det" / "faces").exists()  # failed before extracting any face


@pytest.mark.parametrize("preset,extra", [
    ("tiny", []),
    ("tiny_frame", []),
    ("efficientnet_b0", ["sequence.size=32", "train.batch_size=4", "sequence.train_per_video=2"]),
])
def test_registry_round_trip_train_save_detect(run_dfk, preset: str, extra: list[str], faces_csv: Path,
                                               b0_weights: Path, tmp_path: Path) -> None:
    overrides = ["train.epochs=1", "eval.frames_per_video=5", *extra]
    if preset.startswith("efficientnet"):
        overrides.append(f"model.weights={b0_weights}")
    config = load_config(DetectConfig, "detect", preset, None, overrides)
    report = train_detector(read_dataset(faces_csv), tmp_path / "det", config, device="cpu", progress=False)
    kind = MODELS[config.model.name].kind
    assert report["model"]["name"] == config.model.name and report["model"]["kind"] == kind
    assert ("frame" in report["val"]) == (kind == "frame")
    assert json.loads((tmp_path / "det" / "state.json").read_text())["model"] == config.model.name

    detector = Detector(tmp_path / "det", device="cpu")  # the architecture comes from the folder
    assert type(detector.loaded.model) is type(build_model(config))
    video = faces_csv.parent / "fake" / "g0"
    result = run_dfk("-q", "detect", video, "-m", tmp_path / "det", "--device", "cpu")
    assert result.code == 0, result
    scored = json.loads(result.out)["results"][0]
    frames = [f["probability"] for f in scored["frames"]]
    assert len(frames) == 6 and len(scored["sequences"]) == 2  # two 5-face windows cover 6 faces
    if kind == "frame":  # sequences and the video are means of per-face probabilities
        assert scored["probability"] == pytest.approx(np.mean(frames), abs=1e-5)
        assert scored["sequences"][0]["probability"] == pytest.approx(np.mean(frames[:5]), abs=1e-5)
        assert scored["sequences"][1]["probability"] == pytest.approx(np.mean(frames[1:]), abs=1e-5)
    else:
        assert scored["probability"] == pytest.approx(np.mean([s["probability"] for s in scored["sequences"]]),
                                                      abs=1e-5)


def test_batches_reach_the_model_as_uint8_and_workers_do_not_change_the_result(faces_csv: Path,
                                                                               tmp_path: Path) -> None:
    from deepfake_cli.detect.data import FaceSamples, loader
    from deepfake_cli.detect.preprocess import FrameStore
    from deepfake_cli.detect.sequences import SequenceRef
    from deepfake_cli.detect.tracks import FaceSource
    from deepfake_cli.detect.config import FacesConfig

    tracks, _ = FaceSource(tmp_path / "cache", FacesConfig()).labelled(read_dataset(faces_csv))
    store = FrameStore(32, "rgb", 0.33, cache=False)
    sequences = FaceSamples(store, tracks, [SequenceRef(0, (0, 1, 2)), SequenceRef(1, (3, 4, 5))], frame_level=False)
    x, y = next(iter(loader(sequences, 2, torch.device("cpu"))))
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 3, 32, 32) and y.dtype == torch.float32
    faces = FaceSamples(store, tracks, [SequenceRef(0, (0,))], frame_level=True)
    assert next(iter(loader(faces, 1, torch.device("cpu"))))[0].shape == (1, 3, 32, 32)

    reports = []
    for k, workers in enumerate((0, 2)):
        config = load_config(DetectConfig, "detect", "tiny_frame", None,
                             ["train.epochs=2", f"train.workers={workers}", f"train.cache_frames={workers == 0}"])
        reports.append(train_detector(read_dataset(faces_csv), tmp_path / f"w{k}", config, device="cpu",
                                      progress=False))
    assert reports[0]["val"] == reports[1]["val"] and reports[0]["threshold"] == reports[1]["threshold"]


def test_an_epoch_syncs_with_the_host_only_at_log_intervals(faces_csv: Path, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    from deepfake_cli.detect import trainer
    from deepfake_cli.detect.data import FaceSamples
    from deepfake_cli.detect.preprocess import FrameStore
    from deepfake_cli.detect.sequences import training_sequences
    from deepfake_cli.detect.tracks import FaceSource
    from deepfake_cli.detect.config import FacesConfig

    tracks, _ = FaceSource(tmp_path / "cache", FacesConfig()).labelled(read_dataset(faces_csv))
    refs = training_sequences(tracks, list(range(len(tracks))), 1, 1, 8)  # 64 faces: 8 steps of 8
    calls = {"syncs": 0}

    def counting(method):  # counts reads of a tensor's value made by dfk's own code
        def wrapper(self: torch.Tensor, *args: object) -> object:
            if sys._getframe(1).f_globals.get("__name__", "").startswith("deepfake_cli"):
                calls["syncs"] += 1
            return method(self, *args)
        return wrapper

    # log_every 100: the loss guard and the mean loss are read once, at the end of the epoch;
    # log_every 4: also after steps 4 and 8
    for log_every, syncs in ((100, 2), (4, 6)):
        config = load_config(DetectConfig, "detect", "tiny_frame", None,
                             ["train.batch_size=8", f"train.log_every={log_every}"])
        epochs = trainer._Epochs(build_model(config), config, torch.device("cpu"), seed=0)
        samples = FaceSamples(FrameStore(32, "rgb", 0.33), tracks, refs, frame_level=True)
        calls["syncs"] = 0
        with monkeypatch.context() as patch:
            for name in ("item", "__float__", "__bool__", "tolist", "numpy"):
                patch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
            loss = epochs.run(samples, progress=False)
        assert calls["syncs"] == syncs and loss > 0
