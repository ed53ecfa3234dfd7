"""``train-detect`` resumes: the same command on the same folder continues from the last complete
epoch and ends with the figures of an uninterrupted run; a finished run is reported, not
retrained; a folder of other settings is refused; a non-finite loss rolls back with a lower
learning rate."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, read_dataset, train_detector
from deepfake_cli.detect import resume as resume_module
from deepfake_cli.errors import InputError, TrainingError
from detect_faces import write_dataset

OVERRIDES = ["eval.frames_per_video=5", "train.test_fraction=0.2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces"), {f"g{k}": "" for k in range(8)}, frames=8)


def figures(value: Any) -> Any:
    """``metrics.json`` without wall-clock times (the only figures a resumed run may change)."""
    if isinstance(value, dict):
        return {k: figures(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [figures(v) for v in value]
    return value


def log_rows(folder: Path) -> list[list[str]]:
    """``log.csv`` without its ``seconds`` column."""
    return [row.split(",")[:-1] for row in (folder / "log.csv").read_text().splitlines()]


def train(dataset: Path, outdir: Path, *overrides: str, folds: int = 1) -> dict[str, Any]:
    config = load_config(DetectConfig, "detect", "tiny", None, [*OVERRIDES, "train.epochs=5", *overrides])
    return train_detector(read_dataset(dataset), outdir, config, device="cpu", seed=0, folds=folds, progress=False)


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing catches it on the way out)."""


@pytest.mark.parametrize("folds", [1, 2])
def test_a_run_stopped_after_an_epoch_resumes_to_the_same_figures(dataset: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  folds: int) -> None:
    reference = train(dataset, tmp_path / "ref", folds=folds)
    save = resume_module.save_resume
    calls = [0, 0]  # checkpoints this run, the one after which it dies

    def dying(folder: Path, epoch: int, *args: Any) -> None:
        save(folder, epoch, *args)
        calls[0] += 1
        if calls[0] == calls[1]:
            raise Killed

    monkeypatch.setattr(resume_module, "save_resume", dying)
    out = tmp_path / "cut"
    # killed after epoch 3, then after epoch 4 (one fold); after fold 1's epoch 3, then fold 2's epoch 2
    for after in ([3, 1] if folds == 1 else [3, 4]):
        calls[:] = [0, after]
        with pytest.raises(Killed):
            train(dataset, out, folds=folds)
    run = json.loads((out / resume_module.RUN_FILE).read_text())
    assert run["status"] == "training"
    calls[:] = [0, 0]
    resumed = train(dataset, out, folds=folds)
    assert calls[0] == (1 if folds == 1 else 3)  # only the epochs after the last checkpoint were trained
    assert figures(resumed) == figures(reference)
    assert figures(json.loads((out / "metrics.json").read_text())) == figures(reference)
    assert log_rows(out) == log_rows(tmp_path / "ref")
    same = [torch.load(folder / "model.pt", weights_only=True)["model"] for folder in (out, tmp_path / "ref")]
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[1])
    assert json.loads((out / resume_module.RUN_FILE).read_text())["status"] == "done"
    assert not (out / resume_module.RESUME_DIR).exists() and not list(out.glob("fold*/resume"))


def test_a_finished_run_is_reported_and_other_settings_are_refused(dataset: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "det"
    first = train(dataset, out)
    stamp = (out / "model.pt").stat().st_mtime_ns
    again = train(dataset, out)
    assert again.pop("already_done") is True and again == json.loads((out / "metrics.json").read_text())
    assert figures(again) == figures(first) and (out / "model.pt").stat().st_mtime_ns == stamp  # not retrained
    assert train(dataset, out, "train.workers=0", "train.log_every=7")["already_done"]  # numbers unchanged
    with pytest.raises(InputError, match=r"holds a training run with other settings \(train.lr 0.003 -> 0.002\)"):
        train(dataset, out, "train.lr=0.002")
    with pytest.raises(InputError, match="seed 0 -> 1"):
        config = load_config(DetectConfig, "detect", "tiny", None, [*OVERRIDES, "train.epochs=5"])
        train_detector(read_dataset(dataset), out, config, device="cpu", seed=1, progress=False)


def test_a_non_finite_loss_rolls_back_with_a_lower_learning_rate(dataset: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    forward, calls, nan_calls = torch.nn.BCEWithLogitsLoss.forward, [0], [{10}]  # one NaN, in epoch 2

    def flaky(self: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        value = forward(self, x, y)
        return value * float("nan") if calls[0] in nan_calls[0] else value

    monkeypatch.setattr(torch.nn.BCEWithLogitsLoss, "forward", flaky)
    with caplog.at_level("WARNING", logger="deepfake_cli"):
        report = train(dataset, tmp_path / "once")
    assert "loss was not finite in epoch 2: rolled back to epoch 1, learning rate x0.5 (rollback 1 of 3)" in caplog.text
    assert report["epochs_run"] == 5
    assert [row[0] for row in log_rows(tmp_path / "once")[1:]] == ["1", "2", "3", "4", "5"]  # epoch 2 once, redone
    assert all(value != "nan" for row in log_rows(tmp_path / "once")[1:] for value in row)

    calls[0], nan_calls[0] = 0, set(range(1, 100_000))  # always NaN: three rollbacks, then one clear error
    with pytest.raises(TrainingError, match=r"loss was not finite .* after 3 rollbacks"):
        train(dataset, tmp_path / "always")
    with pytest.raises(TrainingError, match=r"after 0 rollbacks"):
        train(dataset, tmp_path / "never", "train.max_rollbacks=0")


@pytest.mark.slow
def test_killed_ten_times_at_random_a_run_ends_with_the_figures_of_an_uninterrupted_one(
        dataset: Path, tmp_path: Path) -> None:
    """SIGKILL of the CLI at 10 random moments; then the same command runs to the end.

    Each attempt is killed at a random moment between half the start-up time (imports, reading
    the faces: measured as a run that finds its folder done) and start-up plus a sixth of the
    training, so the kills fall in start-up, in epochs, in checkpoint writes and at the end."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", DFK_THREADS="1")
    sets = [arg for item in [*OVERRIDES, "train.epochs=30"] for arg in ("--set", item)]

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "deepfake_cli", "-q", "train-detect", "--dataset", str(dataset), "-o", str(out),
                "--preset", "tiny", "--device", "cpu", *sets]

    started = time.perf_counter()
    subprocess.run(command(tmp_path / "ref"), env=env, check=True, capture_output=True, timeout=600)
    whole = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(command(tmp_path / "ref"), env=env, check=True, capture_output=True, timeout=600)  # done
    startup = time.perf_counter() - started
    rng = random.Random(1234)
    out, killed_at = tmp_path / "cut", []
    for _ in range(10):
        process = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        try:
            _, err = process.communicate(timeout=rng.uniform(0.5 * startup, startup + (whole - startup) / 6))
            assert process.returncode == 0, err[-3000:]
            killed_at.append("finished")
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            progress = out / resume_module.RESUME_DIR / resume_module.PROGRESS_FILE
            run = out / resume_module.RUN_FILE
            if run.is_file() and json.loads(run.read_text())["status"] == "done":
                killed_at.append("done")
            else:  # the last complete epoch when it died
                killed_at.append(json.loads(progress.read_text())["epoch"] if progress.is_file() else 0)
    final = subprocess.run(command(out), env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    print(f"uninterrupted run {whole:.1f} s (start-up {startup:.1f} s); killed after epochs {killed_at}")
    assert sum(isinstance(k, int) for k in killed_at) >= 8  # most kills hit an unfinished run
    assert figures(json.loads((out / "metrics.json").read_text())) == \
        figures(json.loads((tmp_path / "ref" / "metrics.json").read_text()))
    assert log_rows(out) == log_rows(tmp_path / "ref")
