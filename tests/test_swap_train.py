"""``dfk train-swap`` end to end on the tiny presets: train, resume, checkpoints, previews, failures."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import types
from pathlib import Path

import cv2
import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.errors import CheckpointError
from deepfake_cli.swap import load_swap_model
from deepfake_cli.swap import trainer as trainer_module
from deepfake_cli.swap.data import load_faces
from deepfake_cli.swap.loader import SwapModel
from deepfake_cli.swap.networks import build_generator
from deepfake_cli.swap.schema import SwapConfig, validate
from deepfake_cli.swap.trainer import SwapTrainer

LOSS_COLUMNS_GAN = {f"{side}_{term}" for side in "ab"
                    for term in ("recon", "edge", "perceptual", "adversarial", "mask_l1", "mask_tv")}


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(run_dfk, faces_a: Path, faces_b: Path, model_dir: Path, *args: str):
    return run_dfk("-q", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, *args)


def _log(model_dir: Path) -> list[dict[str, str]]:
    with (model_dir / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _losses(rows: list[dict[str, str]]) -> list[float]:
    """Every loss value of every row, in order."""
    return [float(v) for row in rows for k, v in row.items() if k[:2] in ("a_", "b_", "d_")]


def _faces(folder: Path, size: int) -> torch.Tensor:
    return load_faces(folder, size).images[:4].float() / 255


def test_train_then_resume_continues_exactly(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    first = _train(run_dfk, faces_a, faces_b, resumed, "--preset", "tiny", "--iterations", "30",
                   "--save-every", "10", "--preview-every", "15")
    assert first.code == 0, first
    assert "trained steps 0->30" in first.out
    second = _train(run_dfk, faces_a, faces_b, resumed, "--iterations", "60", "--save-every", "10")
    assert second.code == 0, second
    assert "trained steps 30->60" in second.out
    assert json.loads((resumed / "state.json").read_text())["step"] == 60
    assert _train(run_dfk, faces_a, faces_b, straight, "--preset", "tiny", "--iterations", "60",
                  "--save-every", "10").code == 0
    # Weights, optimiser moments and the augmentation RNG all came back: the resumed run is the same run.
    rows, reference = _log(resumed), _log(straight)
    assert [r["step"] for r in rows] == [r["step"] for r in reference] == [str(s) for s in range(5, 61, 5)]
    assert _losses(rows) == pytest.approx(_losses(reference), rel=1e-4, abs=1e-6)
    recon = [float(r["a_recon"]) + float(r["b_recon"]) for r in rows]
    assert recon[-1] < 0.6 * recon[0]

    payload = torch.load(resumed / "model.pt", weights_only=True)
    assert payload["step"] == 60 and "generator" in payload
    assert sorted(p.name for p in resumed.glob("model.step*.pt")) == ["model.step40.pt", "model.step50.pt",
                                                                      "model.step60.pt"]
    for name in ("config.yaml", "training.pt", "loss.png", "previews/step_000015.png",
                 "previews/step_000060.png", "previews/latest.png"):
        assert (resumed / name).is_file(), name
    grid = cv2.imread(str(resumed / "previews" / "latest.png"))
    assert grid.shape[0] > grid.shape[1]  # six rows of four faces


def test_swap_model_for_convert(tiny_swap_model: Path, faces_a: Path) -> None:
    model = load_swap_model(tiny_swap_model, "cpu")
    assert (model.kind, model.size, model.step) == ("original", 32, 40)
    assert model.coverage == pytest.approx(0.625)
    faces = _faces(faces_a, model.size)
    a2b, mask = model.swap(faces, "a2b")
    a2a, _ = model.swap(faces, "b2a")  # decoding A's faces with A's own decoder
    assert mask is None and a2b.shape == faces.shape and 0 <= a2b.min() and a2b.max() <= 1
    assert (a2b - a2a).abs().mean() > 0.02
    bigger, _ = model.swap(torch.nn.functional.interpolate(faces, size=64), "a2b")
    assert bigger.shape == (4, 3, 64, 64)


def test_tiny_gan_trains_every_term(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "gan"
    result = _train(run_dfk, faces_a, faces_b, model_dir, "--preset", "tiny-gan", "--iterations", "15",
                    "--preview-every", "15")
    assert result.code == 0, result
    rows = _log(model_dir)
    assert LOSS_COLUMNS_GAN | {"d_a", "d_b"} <= set(rows[0])
    assert all(row[name] for row in rows for name in LOSS_COLUMNS_GAN | {"d_a", "d_b"})
    assert torch.isfinite(torch.tensor(_losses(rows))).all()
    model = load_swap_model(model_dir, "cpu")
    rgb, mask = model.swap(_faces(faces_a, model.size), "a2b")
    assert model.kind == "gan" and mask is not None and mask.shape == (4, 1, 32, 32)
    assert 0 <= float(mask.min()) and float(mask.max()) <= 1
    grid = cv2.imread(str(model_dir / "previews" / "latest.png"))
    assert grid.shape[0] > 1.5 * grid.shape[1]  # eight rows: six of faces, two of masks


def test_tiny_with_gan_kind_override(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "m", "--preset", "tiny", "--set", "model.kind=gan",
                    "--set", "train.precision=bf16", "--iterations", "2")
    assert result.code == 0, result
    assert {"a_adversarial", "d_b", "a_mask_l1"} <= set(_log(tmp_path / "m")[0])


def test_malicious_pickle_is_refused(run_dfk, tiny_swap_model: Path, faces_a: Path, faces_b: Path,
                                     tmp_path: Path) -> None:
    model_dir = tmp_path / "evil"
    shutil.copytree(tiny_swap_model, model_dir)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (model_dir / "checkpoint.json").unlink()  # whoever can replace model.pt can remove the manifest
    torch.save({"step": 40, "generator": Exploit()}, model_dir / "model.pt")
    with pytest.raises(CheckpointError, match="not plain weights"):
        load_swap_model(model_dir, "cpu")
    result = _train(run_dfk, faces_a, faces_b, model_dir, "--iterations", "50")
    assert result.code != 0 and "not plain weights" in result.err and "Traceback" not in result.err
    assert not marker.exists()


def test_incompatible_resume_names_the_keys(run_dfk, tiny_swap_model: Path, faces_a: Path, faces_b: Path,
                                            tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_swap_model, model_dir)
    result = _train(run_dfk, faces_a, faces_b, model_dir, "--iterations", "50",
                    "--set", "model.bottleneck=32", "--set", "model.size=64")
    assert result.code == 2
    assert "model.size: 32 -> 64" in result.err and "model.bottleneck: 64 -> 32" in result.err
    assert "model.kind" not in result.err


def test_too_few_faces_is_a_clear_error(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for png in sorted(faces_a.glob("*.png"))[:5]:
        shutil.copy(png, few / png.name)
    result = _train(run_dfk, few, faces_b, tmp_path / "m", "--preset", "tiny")
    assert result.code == 1 and "at least 8" in result.err and "Traceback" not in result.err


def test_faces_without_alignments_train(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for png in sorted(faces_a.glob("*.png"))[:12]:
        shutil.copy(png, plain / png.name)
    result = _train(run_dfk, plain, faces_b, tmp_path / "m", "--preset", "tiny", "--iterations", "2")
    assert result.code == 0, result
    assert "without eye/mouth loss weighting" in result.err


def test_missing_perceptual_weights_explain_the_fix(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "m", "--preset", "tiny-gan",
                    "--set", "perceptual.weights=/no/such/vgg19.pth")
    assert result.code == 1 and "loss.perceptual=0" in result.err


def test_nan_loss_rolls_back_and_lowers_the_learning_rate(run_dfk, monkeypatch: pytest.MonkeyPatch,
                                                          faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    calls = {"n": 0}
    real_l1 = trainer_module.weighted_l1

    def flaky_l1(*args: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        value = real_l1(*args)
        return value * float("nan") if calls["n"] == 15 else value  # during step 8 (two calls a step)

    monkeypatch.setattr(trainer_module, "weighted_l1", flaky_l1)
    model_dir = tmp_path / "m"
    result = _train(run_dfk, faces_a, faces_b, model_dir, "--preset", "tiny", "--iterations", "12",
                    "--save-every", "5")
    assert result.code == 0, result
    assert "non-finite loss" in result.err and "rolled back to step 5" in result.err
    state = json.loads((model_dir / "state.json").read_text())
    assert (state["step"], state["rollbacks"], state["lr_scale"]) == (12, 1, 0.5)
    assert [r["step"] for r in _log(model_dir)] == ["5", "10", "12"]


def test_repeated_nan_stops_with_a_clear_error(run_dfk, monkeypatch: pytest.MonkeyPatch,
                                               faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    real_l1 = trainer_module.weighted_l1
    # NaN that still depends on the weights: steps run backward before the losses are checked
    monkeypatch.setattr(trainer_module, "weighted_l1", lambda *args: real_l1(*args) * float("nan"))
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "m", "--preset", "tiny", "--iterations", "5")
    assert result.code == 1 and "NaN/inf" in result.err and "Traceback" not in result.err


def test_ctrl_c_saves_before_exit(run_dfk, monkeypatch: pytest.MonkeyPatch, faces_a: Path, faces_b: Path,
                                  tmp_path: Path) -> None:
    real_step = SwapTrainer.step

    def interrupted(self: SwapTrainer, step: int) -> dict[str, torch.Tensor]:
        if step == 7:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(SwapTrainer, "step", interrupted)
    model_dir = tmp_path / "m"
    result = _train(run_dfk, faces_a, faces_b, model_dir, "--preset", "tiny", "--iterations", "20")
    assert result.code == 130 and "saved step 7" in result.err
    assert json.loads((model_dir / "state.json").read_text())["step"] == 7
    assert torch.load(model_dir / "model.pt", weights_only=True)["step"] == 7


def test_losses_go_to_tensorboard_when_installed(run_dfk, monkeypatch: pytest.MonkeyPatch, faces_a: Path,
                                                 faces_b: Path, tmp_path: Path) -> None:
    scalars: list[tuple[str, float, int]] = []

    class SummaryWriter:
        def __init__(self, folder: str) -> None:
            self.folder = folder

        def add_scalar(self, name: str, value: float, step: int) -> None:
            scalars.append((name, value, step))

        def close(self) -> None:
            scalars.append(("closed", 0.0, 0))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "m", "--preset", "tiny", "--iterations", "5")
    assert result.code == 0, result
    assert ("a_recon", pytest.approx(float(_log(tmp_path / "m")[0]["a_recon"]), rel=1e-4), 5) in scalars
    assert scalars[-1][0] == "closed"


def test_inference_weights_are_stored_once_in_the_autocast_dtype() -> None:
    config = validate(load_config(SwapConfig, "swap", "tiny-gan"))
    torch.manual_seed(0)
    net = build_generator(config.model).eval()
    faces = torch.rand(2, 3, config.model.size, config.model.size)
    with torch.inference_mode():
        rgb32, mask32 = net(faces, "b")
    model = SwapModel(net=net, kind="gan", size=config.model.size, coverage=0.625, step=0,
                      device=torch.device("cpu"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.net.parameters()} == {torch.bfloat16}
    rgb, mask = model.swap(faces, "a2b")
    assert rgb.dtype == torch.float32 and mask is not None and mask.dtype == torch.float32
    assert (rgb - rgb32).abs().max() < 0.02 and (mask - mask32).abs().max() < 0.02
