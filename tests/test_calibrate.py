"""``dfk calibrate``: a detector's threshold reset from known-real footage, with its provenance;
refused for footage without faces and for the detector's own training or test inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector
from deepfake_cli.detect.calibrate import calibrate, reset
from deepfake_cli.media.alignments import Alignments, save_alignments
from detect_faces import faces_folder, write_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

GROUPS = {f"g{k}": "train" for k in range(6)} | {f"t{k}": "test" for k in range(2)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces"), GROUPS, seed=5)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("trained") / "det"
    config = load_config(DetectConfig, "detect", "tiny", None, ["train.epochs=2", "train.val_fraction=0.34"])
    train_detector(read_dataset(data), outdir, config, device="cpu", seed=0, progress=False)
    return outdir


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 real "videos" (extract folders) the detector never saw, in nested folders."""
    root = tmp_path_factory.mktemp("footage") / "cameras"
    rng = np.random.default_rng(11)
    for k in range(20):
        faces_folder(root / f"cam{k % 2}" / f"clip{k:02d}", rng, fake=False, frames=6)
    return root


@pytest.fixture()
def detector(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained detector (calibrating changes its state.json)."""
    return Path(shutil.copytree(trained, tmp_path / "det"))


def state(detector: Path) -> dict:
    return json.loads((detector / "state.json").read_text())


def one_line_error(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code != 0 and len(lines) == 1 and lines[0].startswith("error:"), result
    return lines[0]


def test_calibrate_writes_the_threshold_and_its_provenance(run_dfk, detector: Path, footage: Path) -> None:
    before = state(detector)
    result = run_dfk("-q", "calibrate", "-m", detector, "--real", footage, "--fpr", "0.1", "--device", "cpu")
    assert result.code == 0, result
    after = state(detector)
    record = after["calibration"]
    assert after["threshold_from"] == "calibrate" and 0 < after["threshold"] < 1
    assert record["folder"] == str(footage.resolve()) and Path(record["folder"]).is_absolute()
    counts = (record["videos"], record["images"], record["skipped_no_face"], record["skipped_unreadable"])
    assert counts == (20, 0, 0, 0)
    assert record["fpr_target"] == 0.1 and record["fpr_reached"] <= 0.1 and record["flagged"] == 2
    assert record["previous"] == {"threshold": before["threshold"], "threshold_from": before["threshold_from"]}
    assert record["trained"] == record["previous"] and before["threshold_from"] == "val EER"
    assert record["training_inputs_checked"] is True and record["date"]
    assert {k: v for k, v in after.items() if k not in ("threshold", "threshold_from", "calibration")} == \
        {k: v for k, v in before.items() if k not in ("threshold", "threshold_from")}
    line = result.out.strip()
    assert line.count("\n") == 0 and line.startswith(f"calibrate: threshold {after['threshold']:g}")
    assert f"on 20 real videos of {footage.resolve()}" in line and "state.json" in line

    # dfk detect labels with it and says where it came from; the fpr holds on that footage
    detected = run_dfk("detect", footage, "-m", detector, "--device", "cpu")
    document = json.loads(detected.out)
    assert document["threshold"] == after["threshold"] and document["threshold_from"] == "calibrate"
    assert document["calibration"] == record
    assert "(calibrate: fpr<=0.1 on 20 real videos of" in detected.err
    called_fake = [r for r in document["results"] if r["label"] == "fake"]
    assert len(document["results"]) == 20 and len(called_fake) / 20 <= 0.1
    assert len(called_fake) == 2  # exactly floor(0.1 * 20): the two highest-scoring reals


def test_recalibrating_replaces_the_record_and_reset_restores_the_training_threshold(
        run_dfk, detector: Path, footage: Path) -> None:
    trained = state(detector)
    first = calibrate(detector, footage, 0.1, device="cpu")
    second = calibrate(detector, footage / "cam0", 0.2, device="cpu")
    record = state(detector)["calibration"]
    assert record["folder"] == str((footage / "cam0").resolve()) and record["videos"] == 10
    assert record["previous"] == {"threshold": first["threshold"], "threshold_from": "calibrate"}
    assert record["trained"] == {"threshold": trained["threshold"], "threshold_from": trained["threshold_from"]}
    assert state(detector)["threshold"] == second["threshold"] and record["fpr_reached"] <= 0.2
    result = run_dfk("calibrate", "-m", detector, "--reset")
    assert result.code == 0 and "restored" in result.out, result
    assert state(detector) == trained
    assert Detector(detector, device="cpu").threshold_from == "val EER"
    again = run_dfk("calibrate", "-m", detector, "--reset")
    assert again.code == 0 and "not calibrated" in again.out and state(detector) == trained
    assert reset(detector)["written"] is False


def test_dry_run_reports_and_writes_nothing(run_dfk, detector: Path, footage: Path) -> None:
    before = (detector / "state.json").read_bytes()
    result = run_dfk("-q", "calibrate", "-m", detector, "--real", footage, "--dry-run", "--device", "cpu")
    assert result.code == 0 and "dry run: nothing written" in result.out, result
    assert (detector / "state.json").read_bytes() == before


def test_a_folder_without_faces_is_refused_and_nothing_is_written(run_dfk, detector: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no_faces" / "clip"
    empty.mkdir(parents=True)
    save_alignments(empty / "alignments.json", Alignments(size=32, faces=[]))
    before = (detector / "state.json").read_bytes()
    line = one_line_error(run_dfk("-q", "calibrate", "-m", detector, "--real", empty.parent, "--device", "cpu"))
    assert "no face found in any of the 1 inputs" in line
    (tmp_path / "nothing").mkdir()
    line = one_line_error(run_dfk("-q", "calibrate", "-m", detector, "--real", tmp_path / "nothing", "--device", "cpu"))
    assert "holds no videos or extract output folders" in line
    assert "fpr" in one_line_error(run_dfk("-q", "calibrate", "-m", detector, "--real", empty.parent, "--fpr", "2"))
    assert "--real" in one_line_error(run_dfk("-q", "calibrate", "-m", detector))
    assert (detector / "state.json").read_bytes() == before


def test_the_detectors_own_test_and_training_inputs_are_refused(run_dfk, detector: Path, data: Path) -> None:
    before = (detector / "state.json").read_bytes()
    parts = json.loads((detector / "inputs.json").read_text())["parts"]
    assert set(parts) == {"train", "val", "test"}
    assert len(parts["test"]) == 4 and str((data.parent / "real" / "t0").resolve()) in parts["test"]
    line = one_line_error(run_dfk("-q", "calibrate", "-m", detector, "--real", data.parent / "real" / "t0"))
    assert "never calibrate on a dataset's test split" in line
    line = one_line_error(run_dfk("-q", "calibrate", "-m", detector, "--real", data.parent / "real"))
    assert "test part" in line  # a folder holding any test input is refused as a whole
    train_real = Path(next(p for p in parts["train"] if "/real/" in p))
    line = one_line_error(run_dfk("-q", "calibrate", "-m", detector, "--real", train_real))
    assert "trained or validated this detector" in line
    assert (detector / "state.json").read_bytes() == before


def test_a_detector_without_an_inputs_record_is_calibrated_with_the_limitation_recorded(
        detector: Path, footage: Path) -> None:
    (detector / "inputs.json").unlink()
    outcome = calibrate(detector, footage / "cam1", 0.05, device="cpu", dry_run=True)
    assert outcome["training_inputs_checked"] is False and outcome["written"] is False
    assert outcome["fpr_reached"] == 0.0 and outcome["videos"] == 10  # 10 reals, P = 0.05: none may be flagged
