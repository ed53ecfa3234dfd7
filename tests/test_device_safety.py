"""Model folders move between devices: CUDA/fp16 checkpoints resume, convert and detect on a CPU,
CPU checkpoints resume under fp16, and ``--device`` takes ``cuda:N``.

Everything but the last test runs on a CPU: the CUDA side is built by hand in the formats torch
uses (a CUDA generator's state is 16 bytes, its Philox seed and offset as two int64; an enabled
grad scaler's state is a dict of scale, factors and growth tracker).
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
import torch

from deepfake_cli import runtime
from deepfake_cli.commands import DEVICE
from deepfake_cli.config import load_config
from deepfake_cli.detect.config import DetectConfig
from deepfake_cli.detect.detector import build_model, save_detector
from deepfake_cli.detect.inference import Detector
from deepfake_cli.errors import CheckpointError, ConfigError
from deepfake_cli.media.synthetic import load_still
from deepfake_cli.runtime import autocast_dtype, native_cpu_bf16, resolve_device
from deepfake_cli.swap import load_swap_model, swap_config, train_swap
from deepfake_cli.convert import ConvertOptions, convert
from deepfake_cli.swap.data import load_faces
from deepfake_cli.swap.models import SIDES
from deepfake_cli.swap.schema import SwapConfig
from deepfake_cli.swap.store import ModelStore
from deepfake_cli.swap.trainer import SwapTrainer, load_scaler_state, restore_generator

# What a CPU gives for precision fp16: bf16 where it computes bf16 natively, else fp32 (None).
CPU_FOR_FP16 = torch.bfloat16 if native_cpu_bf16() else None
FULL_SCALER = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
               "_growth_tracker": 7}


def cuda_generator_state(seed: int, offset: int) -> torch.Tensor:
    """A CUDA (Philox) generator state as ``torch.Generator("cuda").get_state()`` returns it."""
    return torch.tensor([seed, offset], dtype=torch.int64).view(torch.uint8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def dfk_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Messages logged under ``deepfake_cli`` (info and up), with the log-once memory cleared."""
    monkeypatch.setattr(runtime, "_logged", set())
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("deepfake_cli"), Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def _tiny(*overrides: str) -> SwapConfig:
    return swap_config("/nonexistent", "tiny", overrides=list(overrides))


def _trainer(config: SwapConfig, faces_a: Path, faces_b: Path, device: str = "cpu") -> SwapTrainer:
    where = torch.device(device)
    faces = {side: load_faces(folder, config.model.size, config.data.crop, config.loss.eye, config.loss.mouth, where)
             for side, folder in zip(SIDES, (faces_a, faces_b), strict=True)}
    return SwapTrainer(config, faces, where, seed=0)


def _on_cpu(value: Any) -> Any:
    """A state dict as ``training.pt`` holds it (tensors copied to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def _losses(model_dir: Path) -> list[list[str]]:
    with (model_dir / "log.csv").open(newline="") as handle:
        return [[v for k, v in row.items() if k[:2] in ("a_", "b_")] for row in csv.DictReader(handle)]


def _as_cuda_fp16_run(model_dir: Path) -> None:
    """Rewrite a CPU-trained folder the way a CUDA fp16 run saves it: fp16 weights, ``train.precision:
    fp16``, a CUDA generator state and an enabled grad scaler's state."""
    store = ModelStore(model_dir)
    store.write_config(swap_config(model_dir, overrides=["train.precision=fp16"]))
    (model_dir / "checkpoint.json").unlink()  # files rewritten by hand: the top-level ones load, unchecked
    model = torch.load(model_dir / "model.pt", weights_only=True)
    model["generator"] = {k: v.half() if v.is_floating_point() else v for k, v in model["generator"].items()}
    torch.save(model, model_dir / "model.pt")
    training = torch.load(model_dir / "training.pt", weights_only=True)
    training.update(rng=cuda_generator_state(0x5EED, 4096), rng_device="cuda", scaler=dict(FULL_SCALER))
    torch.save(training, model_dir / "training.pt")


# --- the random generator ------------------------------------------------------------------------


def test_a_cuda_generator_state_reseeds_a_cpu_generator_deterministically(dfk_log: list[str]) -> None:
    state = cuda_generator_state(1234, 4096)
    assert state.dtype == torch.uint8 and state.numel() == 16 != torch.Generator().get_state().numel()
    draws = []
    for saved_on in ("cuda", "cuda", None):  # None: an older checkpoint, told apart by the state's size
        generator = torch.Generator()
        assert restore_generator(generator, state, saved_on) is False
        draws.append(torch.rand(8, generator=generator))
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    other = torch.Generator()
    restore_generator(other, cuda_generator_state(1234, 8192), "cuda")
    assert not torch.equal(torch.rand(8, generator=other), draws[0])
    assert sum("re-seeded" in m for m in dfk_log) == 1  # logged once, not per restore


def test_a_cpu_generator_state_continues_the_same_stream() -> None:
    generator = torch.Generator().manual_seed(3)
    torch.rand(5, generator=generator)
    saved, expected = generator.get_state(), torch.rand(8, generator=generator)
    fresh = torch.Generator()
    assert restore_generator(fresh, saved, "cpu") is True
    assert torch.equal(torch.rand(8, generator=fresh), expected)
    with pytest.raises(ValueError, match="byte tensor"):
        restore_generator(fresh, saved.float(), "cpu")


# --- the grad scaler -----------------------------------------------------------------------------


def test_scaler_states_load_only_into_an_enabled_scaler_and_only_when_saved_enabled() -> None:
    enabled = torch.amp.GradScaler("cpu", enabled=True)
    assert load_scaler_state(enabled, {}) is False  # a CPU/fp32 run's (disabled) state
    assert enabled.get_scale() == 65536.0
    assert load_scaler_state(enabled, dict(FULL_SCALER)) is True  # an fp16 CUDA run's state
    assert enabled.get_scale() == 1024.0 and enabled.state_dict()["_growth_tracker"] == 7
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert load_scaler_state(disabled, dict(FULL_SCALER)) is False
    assert load_scaler_state(disabled, None) is False


def test_cpu_saved_state_loads_into_an_fp16_trainer(faces_a: Path, faces_b: Path) -> None:
    cpu = _trainer(_tiny(), faces_a, faces_b)
    cpu.step(0)
    saved = _on_cpu(cpu.training_state())
    assert saved["scaler"] == {} and saved["rng_device"] == "cpu" and saved["rng"].dtype == torch.uint8

    fp16 = _trainer(_tiny("train.precision=fp16"), faces_a, faces_b)
    assert fp16.dtype == CPU_FOR_FP16  # fp16 itself needs CUDA
    # The grad scaler an fp16 CUDA trainer has (torch allows an enabled one on the CPU too).
    fp16.scaler = torch.amp.GradScaler("cpu", enabled=True)
    fp16.load_model_state(_on_cpu(cpu.model_state()), "model.pt")
    fp16.load_training_state(saved, "training.pt")
    assert fp16.scaler.get_scale() == 65536.0  # the empty state left it at its initial scale
    assert torch.equal(fp16.rng.get_state(), cpu.rng.get_state())  # same kind of generator: restored exactly
    losses = fp16.step(1)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert fp16.scaler.state_dict()["scale"] > 0


def test_a_failing_part_of_the_training_state_is_named(faces_a: Path, faces_b: Path) -> None:
    trainer = _trainer(_tiny(), faces_a, faces_b)
    good = _on_cpu(trainer.training_state())
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)
    cases = {
        "optimiser state": {**good, "opt_g": {"state": {}, "param_groups": []}},
        "grad-scaler state": {**good, "scaler": {"scale": 2.0}},
        "random-generator (rng) state": {**good, "rng": torch.zeros(16)},
    }
    for part, state in cases.items():
        with pytest.raises(CheckpointError, match=part.replace("(", r"\(").replace(")", r"\)")) as caught:
            trainer.load_training_state(state, "training.pt")
        assert "(training.pt)" in str(caught.value)
    with pytest.raises(CheckpointError, match="random-generator.*missing 'rng'"):
        trainer.load_training_state({k: v for k, v in good.items() if k != "rng"}, "training.pt")


# --- whole model folders -------------------------------------------------------------------------


def test_a_cuda_fp16_checkpoint_resumes_on_the_cpu(faces_a: Path, faces_b: Path, tmp_path: Path,
                                                   dfk_log: list[str]) -> None:
    first = tmp_path / "first"
    train_swap(faces_a, faces_b, first, swap_config(first, "tiny", overrides=[
        "train.iterations=4", "train.save_every=4", "train.preview_every=4"]), device="cpu")
    _as_cuda_fp16_run(first)
    second = tmp_path / "second"
    shutil.copytree(first, second)

    for folder in (first, second):
        config = swap_config(folder, overrides=["train.iterations=8"])
        assert config.train.precision == "fp16"
        summary = train_swap(faces_a, faces_b, folder, config, device="cpu")
        assert (summary.start_step, summary.step) == (4, 8)
        training = torch.load(folder / "training.pt", weights_only=True)
        assert training["rng_device"] == "cpu" and training["scaler"] == {}  # saved as this CPU run has them
    assert any("fp16 needs a CUDA device" in m for m in dfk_log)
    assert any("saved on cuda" in m and "re-seeded" in m for m in dfk_log)
    # The re-seed comes from the saved state: resuming the same checkpoint twice is the same run.
    assert _losses(first) == _losses(second) and len(_losses(first)) >= 2


def test_an_fp16_swap_model_loads_converts_on_the_cpu(tiny_swap_model: Path, faces_a: Path, tmp_path: Path,
                                                      dfk_log: list[str]) -> None:
    model_dir = tmp_path / "fp16"
    shutil.copytree(tiny_swap_model, model_dir)
    _as_cuda_fp16_run(model_dir)
    weights = torch.load(model_dir / "model.pt", weights_only=True)["generator"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}

    model = load_swap_model(model_dir, "cpu")
    reference = load_swap_model(tiny_swap_model, "cpu")
    assert model.dtype == CPU_FOR_FP16 and model.device == torch.device("cpu")
    faces = load_faces(faces_a, model.size).images[:4].float() / 255
    rgb, _ = model.swap(faces, "a2b")
    expected, _ = reference.swap(faces, "a2b")
    assert torch.isfinite(rgb).all() and (rgb - expected).abs().mean() < 0.03
    assert any("fp16 needs a CUDA device" in m for m in dfk_log)

    image = tmp_path / "face.png"
    face = load_still("astronaut")
    cv2.imwrite(str(image), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    out = tmp_path / "swapped"
    convert(image, out, model_dir, ConvertOptions(device="cpu"), progress=False)
    swapped = cv2.cvtColor(cv2.imread(str(out / "face.png")), cv2.COLOR_BGR2RGB)
    assert swapped.shape == face.shape and np.abs(swapped.astype(int) - face).mean() > 0.5


def test_an_fp16_detector_scores_on_the_cpu(faces_a: Path, tmp_path: Path, dfk_log: list[str]) -> None:
    config = load_config(DetectConfig, "detect", "tiny", None, ["train.precision=fp16"])
    torch.manual_seed(0)
    save_detector(tmp_path, build_model(config).half(), config, {"threshold": 0.5})
    assert next(iter(torch.load(tmp_path / "model.pt", weights_only=True)["model"].values())).dtype == torch.float16
    detector = Detector(tmp_path, device="cpu")
    assert detector.dtype == CPU_FOR_FP16
    results = detector.score(faces_a)
    assert results and all(r.status == "ok" and 0.0 <= r.probability <= 1.0 for r in results)
    assert any("fp16 needs a CUDA device" in m for m in dfk_log)


# --- --device ------------------------------------------------------------------------------------


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_device_option_takes_cuda_n(run_dfk, tmp_path: Path) -> None:
    assert DEVICE.convert("cuda:1", None, None) == "cuda:1"
    assert DEVICE.convert(" CUDA:0 ", None, None) == "cuda:0"
    assert run_dfk("--device", "cuda:1", "extract", "--help").code == 0
    assert run_dfk("extract", "--device", "cuda:3", "--help").code == 0

    bad = run_dfk("--device", "gpu", "extract", tmp_path, "-o", tmp_path / "out")
    assert bad.code != 0 and _error_lines(bad.err) == [
        "error: unknown device 'gpu'; choose one of auto, cpu, cuda, cuda:N (N: a GPU index, e.g. cuda:1) "
        "(--device)"]
    also_bad = run_dfk("extract", "--device", "cuda:-1", tmp_path, "-o", tmp_path / "out")
    assert also_bad.code != 0 and len(_error_lines(also_bad.err)) == 1 and "cuda:-1" in also_bad.err

    if torch.cuda.is_available():
        return
    missing = run_dfk("--device", "cuda:1", "extract", tmp_path, "-o", tmp_path / "out")
    assert missing.code != 0 and "Traceback" not in missing.err
    assert _error_lines(missing.err) == ["error: --device cuda:1 was asked for but no CUDA GPU is available (device)"]


def test_cuda_devices_resolve_by_index_with_cudnn_autotuning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert torch.backends.cudnn.benchmark is True  # under auto too, not only an explicit cuda
    torch.backends.cudnn.benchmark = False
    assert resolve_device("cuda:1") == torch.device("cuda", 1) and torch.backends.cudnn.benchmark is True
    with pytest.raises(ConfigError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    torch.backends.cudnn.benchmark = False
    assert resolve_device("cpu") == torch.device("cpu") and torch.backends.cudnn.benchmark is False


def test_fp16_precision_on_a_cpu_falls_back_and_says_so_once(dfk_log: list[str]) -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp16") == autocast_dtype(cpu, "fp16") == CPU_FOR_FP16
    assert sum("fp16 needs a CUDA device" in m for m in dfk_log) == 1
    with pytest.raises(ConfigError, match="unknown precision"):
        autocast_dtype(cpu, "fp8")


# --- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cpu_checkpoint_resumes_on_cuda_in_fp16_and_back(faces_a: Path, faces_b: Path, tmp_path: Path,
                                                           dfk_log: list[str]) -> None:
    model_dir = tmp_path / "m"
    train_swap(faces_a, faces_b, model_dir, swap_config(model_dir, "tiny", overrides=[
        "train.iterations=3", "train.save_every=3", "train.preview_every=3"]), device="cpu")
    on_cpu = torch.load(model_dir / "training.pt", weights_only=True)
    assert on_cpu["rng_device"] == "cpu" and on_cpu["scaler"] == {}

    config = swap_config(model_dir, overrides=["train.iterations=6", "train.precision=fp16"])
    summary = train_swap(faces_a, faces_b, model_dir, config, device="cuda:0")
    assert (summary.start_step, summary.step) == (3, 6)
    assert torch.backends.cudnn.benchmark is True
    on_cuda = torch.load(model_dir / "training.pt", weights_only=True)
    assert on_cuda["rng_device"] == "cuda" and on_cuda["rng"].device.type == "cpu"
    assert on_cuda["rng"].dtype == torch.uint8 and on_cuda["rng"].numel() == 16
    assert on_cuda["scaler"] and on_cuda["scaler"]["scale"] > 0
    assert any("saved on cpu" in m and "re-seeded" in m for m in dfk_log)

    # ... and the CUDA fp16 checkpoint resumes on the CPU again, and its model converts there.
    summary = train_swap(faces_a, faces_b, model_dir, swap_config(model_dir, overrides=["train.iterations=8"]),
                         device="cpu")
    assert (summary.start_step, summary.step) == (6, 8)
    model = load_swap_model(model_dir, "cpu")
    rgb, _ = model.swap(load_faces(faces_a, model.size).images[:2].float() / 255, "a2b")
    assert torch.isfinite(rgb).all()


def test_face_detector_uses_cuda_only_when_onnxruntime_gpu_offers_it() -> None:
    from deepfake_cli.faces.offline import detector_providers

    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert detector_providers("cuda:1", gpu) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert detector_providers("cuda", gpu)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert detector_providers("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert detector_providers("cpu", gpu) == ["CPUExecutionProvider"]


def test_offline_backend_on_cuda_without_onnxruntime_gpu_still_finds_faces() -> None:
    from deepfake_cli.faces import create_backend
    from deepfake_cli.media.synthetic import load_still

    faces = create_backend("offline", device="cuda", detector_threads=1).detect(load_still("astronaut"))
    assert len(faces) == 1 and faces[0].has_68
