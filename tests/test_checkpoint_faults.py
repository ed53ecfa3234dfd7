"""Fault injection into checkpoint saves: killed processes, full disks, truncated and bit-flipped files.

Every fault is injected into a save that follows a complete one; afterwards the folder must load
the last complete save (step, weights, optimiser state and state.json all of that step) and say
what happened. Kills are real: a forked child ``os._exit``s at a stage of ``save_set`` (the
``checkpoint._fault_hook``), so no ``finally`` block or temp-file cleanup runs.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from deepfake_cli import checkpoint
from deepfake_cli.checkpoint import MANIFEST_FILE, open_set
from deepfake_cli.config import load_config
from deepfake_cli.detect.config import DetectConfig
from deepfake_cli.detect.detector import build_model, load_detector, save_detector, write_state
from deepfake_cli.errors import CheckpointError
from deepfake_cli.swap.store import ModelStore

pytestmark = pytest.mark.usefixtures("one_thread")

SWAP_FILES = ("training.pt", "model.pt", "state.json")
DETECT_FILES = ("model.pt", "config.yaml", "state.json")


def _stages(files: tuple[str, ...]) -> list[str]:
    """Every point of a save where a crash leaves a different state on disk, in order."""
    return ([f"{when} {name}" for name in files for when in ("before", "after")]
            + [f"before {MANIFEST_FILE}", f"after {MANIFEST_FILE}"] + [f"linked {name}" for name in files]
            + ["cleaned"])


def _committed(stage: str, files: tuple[str, ...]) -> bool:
    """Whether the save counts as complete once ``stage`` is reached (the manifest is in place)."""
    return _stages(files).index(stage) >= _stages(files).index(f"after {MANIFEST_FILE}")


@pytest.fixture()
def dfk_log() -> Iterator[list[str]]:
    """Warnings logged under ``deepfake_cli``."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("deepfake_cli"), Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _killed_at(stage: str, save: Callable[[], None]) -> None:
    """Run ``save`` in a forked child that dies (``os._exit``) on reaching ``stage``."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            checkpoint._fault_hook = lambda reached: os._exit(86) if reached == stage else None
            save()
        except BaseException:  # noqa: BLE001 - any failure is reported by the exit code
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 86, f"the save never reached {stage!r}"


# --- train-swap's model folder --------------------------------------------------------------------


def _swap_save(store: ModelStore, step: int, background: bool = False) -> None:
    model = {"generator": {"w": torch.full((256,), float(step))}}
    training = {"opt_g": {"m": torch.full((256,), float(step) / 2)}, "rng": torch.arange(8, dtype=torch.uint8)}
    store.save(step, model, training, {"note": f"saved at {step}"}, keep=2, background=background)


def _assert_swap_step(folder: Path, step: int) -> None:
    """The folder resumes (and converts) at ``step``, every part of it from that step."""
    loaded = ModelStore(folder).load()
    assert loaded.step == step
    assert torch.equal(loaded.model["generator"]["w"], torch.full((256,), float(step)))
    assert loaded.training is not None and torch.equal(loaded.training["opt_g"]["m"], torch.full((256,), step / 2))
    assert loaded.info["step"] == step and loaded.info["note"] == f"saved at {step}"
    assert ModelStore(folder).load_model().step == step


def _sets(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(checkpoint.SET_PREFIX))


@pytest.mark.parametrize("stage", _stages(SWAP_FILES))
def test_swap_save_killed_at_every_stage_loads_the_last_complete_save(stage: str, tmp_path: Path) -> None:
    _swap_save(ModelStore(tmp_path), 10)
    _killed_at(stage, lambda: _swap_save(ModelStore(tmp_path), 20))
    expected = 20 if _committed(stage, SWAP_FILES) else 10
    _assert_swap_step(tmp_path, expected)
    # The next save recovers: it commits, and leaves the new set and the previous complete one only.
    _swap_save(ModelStore(tmp_path), 30)
    _assert_swap_step(tmp_path, 30)
    assert _sets(tmp_path) == sorted(["ckpt-30", f"ckpt-{expected}"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert torch.load(tmp_path / "model.pt", weights_only=True)["step"] == 30  # the top-level file follows


@pytest.mark.parametrize("victim", ["training.pt", "model.pt"])
def test_swap_save_on_a_full_disk_keeps_the_previous_save(victim: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path)
    _swap_save(store, 10)
    real_save = torch.save

    def full_disk(payload: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(payload, dict) and ("generator" in payload) == (victim == "model.pt"):
            Path(path).write_bytes(b"PK\x03\x04 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    _swap_save(store, 20, background=True)  # the background writer fails ...
    with pytest.raises(CheckpointError, match="saving the checkpoint failed: .*No space left on device"):
        store.wait()  # ... and the training thread hears of it
    monkeypatch.setattr(torch, "save", real_save)
    _assert_swap_step(tmp_path, 10)
    assert _sets(tmp_path) == ["ckpt-10"]  # the torn set was removed


@pytest.mark.parametrize("nth", [1, 2, 3, 4])  # training.pt, model.pt, state.json, checkpoint.json
def test_swap_save_failing_to_flush_keeps_the_previous_save(nth: int, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path)
    _swap_save(store, 10)
    calls = {"n": 0}
    real_fsync_file = checkpoint.fsync_file

    def failing(path: Any) -> None:
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync_file(path)

    monkeypatch.setattr(checkpoint, "fsync_file", failing)
    with pytest.raises(OSError, match="No space left"):
        _swap_save(store, 20)
    monkeypatch.setattr(checkpoint, "fsync_file", real_fsync_file)
    _assert_swap_step(tmp_path, 10)


def _truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    with open(path, "r+b") as handle:  # in place, as a disk or a network filesystem would
        handle.write(data)


@pytest.mark.parametrize("damage, name, says", [
    (_truncate, "training.pt", r"training.pt of step 20 is truncated \(size \d+ of \d+\); loading step 10 instead"),
    (_truncate, "state.json", r"state.json of step 20 is truncated"),
    (_flip, "model.pt", r"model.pt of step 20 is corrupt \(its SHA-256 does not match checkpoint.json\); "
                        r"loading step 10"),
    (_flip, "training.pt", r"training.pt of step 20 is corrupt"),
])
def test_a_damaged_file_loads_the_previous_save_and_says_why(damage: Callable[[Path], None], name: str, says: str,
                                                             tmp_path: Path, dfk_log: list[str]) -> None:
    _swap_save(ModelStore(tmp_path), 10)
    _swap_save(ModelStore(tmp_path), 20)
    damage(tmp_path / "ckpt-20" / name)
    _assert_swap_step(tmp_path, 10)
    assert any(__import__("re").search(says, line) for line in dfk_log), dfk_log


def test_a_file_from_another_step_is_caught(tmp_path: Path, dfk_log: list[str]) -> None:
    _swap_save(ModelStore(tmp_path), 10)
    _swap_save(ModelStore(tmp_path), 20)
    # A state.json of step 10 in step 20's set (the mix a rename-one-after-another save could leave)
    (tmp_path / "ckpt-20" / "state.json").unlink()
    (tmp_path / "ckpt-20" / "state.json").write_bytes((tmp_path / "ckpt-10" / "state.json").read_bytes())
    _assert_swap_step(tmp_path, 10)
    assert any("state.json of step 20" in line for line in dfk_log)


def test_no_complete_save_left_is_one_clear_error(tmp_path: Path) -> None:
    _swap_save(ModelStore(tmp_path), 10)
    _swap_save(ModelStore(tmp_path), 20)
    _truncate(tmp_path / "ckpt-20" / "model.pt")
    (tmp_path / "ckpt-10" / "training.pt").unlink()
    with pytest.raises(CheckpointError, match=r"no complete checkpoint: model.pt of step 20 is truncated .*; "
                                              r"training.pt of step 10 is missing"):
        ModelStore(tmp_path).load()


def test_a_save_after_a_fallback_keeps_the_good_save_as_previous(tmp_path: Path) -> None:
    _swap_save(ModelStore(tmp_path), 10)
    _swap_save(ModelStore(tmp_path), 20)
    _flip(tmp_path / "ckpt-20" / "model.pt")
    _assert_swap_step(tmp_path, 10)  # resumes from 10 ...
    _swap_save(ModelStore(tmp_path), 30)  # ... and the next save keeps 10, not the damaged 20, as previous
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["previous"]["step"] == 10
    _flip(tmp_path / "ckpt-30" / "training.pt")
    _assert_swap_step(tmp_path, 10)


def test_a_folder_without_a_manifest_loads_as_before(tmp_path: Path) -> None:
    torch.save({"step": 7, "generator": {"w": torch.full((256,), 7.0)}}, tmp_path / "model.pt")
    torch.save({"step": 7, "opt_g": {"m": torch.full((256,), 3.5)}}, tmp_path / "training.pt")
    (tmp_path / "state.json").write_text(json.dumps({"step": 7, "note": "saved at 7"}))
    assert open_set(tmp_path) is None
    _assert_swap_step(tmp_path, 7)
    _swap_save(ModelStore(tmp_path), 8)  # the first save of an old folder starts sets
    _assert_swap_step(tmp_path, 8)


# --- train-detect's detector folder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_parts() -> tuple[DetectConfig, torch.nn.Module]:
    config = load_config(DetectConfig, "detect", "tiny")
    return config, build_model(config)


def _detector_save(folder: Path, parts: tuple[DetectConfig, torch.nn.Module], epoch: int) -> None:
    config, model = parts
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float(epoch))
    save_detector(folder, model, config, {"epoch": epoch, "status": "training"})


def _assert_detector_epoch(folder: Path, epoch: int) -> None:
    loaded = load_detector(folder, torch.device("cpu"))
    assert loaded.state["epoch"] == epoch
    assert all(torch.all(p == float(epoch)) for p in loaded.model.parameters())


@pytest.mark.parametrize("stage", [s for s in _stages(DETECT_FILES) if not s.startswith("linked")])
def test_detector_save_killed_at_every_stage_loads_the_last_complete_save(
        stage: str, tmp_path: Path, detector_parts: tuple[DetectConfig, torch.nn.Module]) -> None:
    _detector_save(tmp_path, detector_parts, 1)
    _killed_at(stage, lambda: _detector_save(tmp_path, detector_parts, 2))
    _assert_detector_epoch(tmp_path, 2 if _committed(stage, DETECT_FILES) else 1)


def test_detector_state_update_on_a_full_disk_keeps_the_previous_state(
        tmp_path: Path, detector_parts: tuple[DetectConfig, torch.nn.Module], monkeypatch: pytest.MonkeyPatch) -> None:
    _detector_save(tmp_path, detector_parts, 3)

    def full(path: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "fsync_file", full)
    with pytest.raises(OSError, match="No space left"):
        write_state(tmp_path, {"epoch": 3, "status": "done", "threshold": 0.7})
    monkeypatch.undo()
    loaded = load_detector(tmp_path, torch.device("cpu"))
    assert loaded.state["status"] == "training" and "threshold" not in loaded.state
    write_state(tmp_path, {"epoch": 3, "status": "done", "threshold": 0.7})  # with room, it lands
    assert load_detector(tmp_path, torch.device("cpu")).state["threshold"] == 0.7
    assert json.loads((tmp_path / "state.json").read_text())["threshold"] == 0.7


def test_a_bit_flipped_detector_loads_the_previous_epoch(tmp_path: Path, dfk_log: list[str],
                                                          detector_parts: tuple[DetectConfig, torch.nn.Module]) -> None:
    _detector_save(tmp_path, detector_parts, 1)
    _detector_save(tmp_path, detector_parts, 2)
    _flip(tmp_path / "model.pt")  # the top-level name is the set's file (a hard link)
    _assert_detector_epoch(tmp_path, 1)
    assert any("model.pt of step 2 is corrupt" in line and "loading step 1" in line for line in dfk_log)
