"""The evaluation protocol: the test part picks neither epoch nor threshold nor fold, folds report
mean ± std, the validation threshold is stored with the detector and used by ``detect``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepfake_cli.config import load_config
from deepfake_cli.detect.detector import replace_state
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector
from detect_faces import relabel_split, write_dataset

GROUPS = {f"g{k}": "train" for k in range(8)} | {f"t{k}": "test" for k in range(3)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces"), GROUPS)


def config(*overrides: str) -> DetectConfig:
    # patience longer than the run and a wide tie band: the kept epoch depends on the validation loss
    return load_config(DetectConfig, "detect", "tiny", None,
                       ["train.epochs=4", "train.patience=9", "train.val_fraction=0.3", *overrides])


def train(csv: Path, outdir: Path, *overrides: str, folds: int = 1) -> dict:
    return train_detector(read_dataset(csv), outdir, config(*overrides), device="cpu", seed=0, folds=folds,
                          progress=False)


def test_test_labels_never_move_the_epoch_the_threshold_or_the_validation_numbers(csv: Path, tmp_path: Path) -> None:
    honest = train(csv, tmp_path / "a")
    corrupted = train(relabel_split(csv, "test", csv.with_name("flipped.csv")), tmp_path / "b")
    without = train(relabel_split(csv, "test", csv.with_name("no_test.csv"), drop=True), tmp_path / "c")

    assert honest["protocol"] == {"val": "carved from train", "test": "dataset split"}
    assert honest["data"]["test"]["videos"] == {"real": 3, "fake": 3}
    assert honest["data"]["train"]["videos"]["real"] + honest["data"]["val"]["videos"]["real"] == 8
    assert honest["threshold_from"] == "val EER" and 0 < honest["threshold"] < 1
    for other in (corrupted, without):
        assert other["best_epoch"] == honest["best_epoch"] and other["threshold"] == honest["threshold"]
        assert other["val"] == honest["val"] and other["data"]["val"] == honest["data"]["val"]
    assert "test" not in without and "validation" not in honest
    # the flipped test labels are only visible in the test block
    assert corrupted["test"]["video"]["auc"] == pytest.approx(1 - honest["test"]["video"]["auc"])
    assert corrupted["test"]["video"]["accuracy"] != honest["test"]["video"]["accuracy"]
    # the dataset names each fake's method and family: the test block also reports per method and family
    assert set(honest["test"]["per_method"]) == {"m1", "m2"}
    assert set(honest["test"]["per_family"]) == {"swap", "reenact"}
    assert honest["val"]["video"]["threshold"] == honest["test"]["video"]["threshold"] == honest["threshold"]


def test_folds_report_mean_and_std_and_keep_the_test_part_out(csv: Path, tmp_path: Path) -> None:
    report = train(csv, tmp_path / "det", "train.epochs=2", folds=2)
    assert "val" not in report and "test" not in report  # no single fold is the result
    assert [f["fold"] for f in report["folds"]] == [1, 2]
    for fold in report["folds"]:
        assert fold["data"]["test"]["videos"] == {"real": 3, "fake": 3}
        assert fold["data"]["train"]["videos"]["real"] + fold["data"]["val"]["videos"]["real"] == 8
    for part in ("val", "test"):
        for level in ("video", "sequence"):
            for metric in ("auc", "accuracy", "eer", "log_loss"):
                values = [f[part][level][metric] for f in report["folds"]]
                summary = report["cross_validation"][part][level][metric]
                assert summary["folds"] == 2
                assert summary["mean"] == pytest.approx(np.mean(values), abs=1e-6)
                assert summary["std"] == pytest.approx(np.std(values), abs=1e-6)
    kept = report["folds"][report["kept_fold"] - 1]
    assert report["threshold"] == kept["threshold"]
    state = json.loads((tmp_path / "det" / "state.json").read_text())
    assert state["threshold"] == kept["threshold"]
    # which fold detect uses, and why: its own validation score, so optimistic; quote the mean ± std
    reason = report["kept_fold_reason"]
    assert reason.startswith(f"fold {report['kept_fold']} has the highest validation sequence_auc of the 2 folds")
    assert "own validation score" in reason and "optimistic" in reason and "mean ± std" in reason
    assert state["kept_fold_reason"] == reason and state["fold"] == f"fold{report['kept_fold']}"
    assert report["threshold_from"] == state["threshold_from"] == f"fold {report['kept_fold']}: val EER"
    from deepfake_cli.detect.report import training_summary
    line = training_summary(report, "runs/det")
    assert "2-fold val video AUC" in line and "(the figures to quote)" in line
    assert f"kept fold {report['kept_fold']} for detect, by its own validation sequence_auc (optimistic)" in line
    # the inputs of each part are recorded: the pool of the folds and the test part
    inputs = json.loads((tmp_path / "det" / "inputs.json").read_text())["parts"]
    assert set(inputs) == {"folds", "test"} and len(inputs["folds"]) == 16 and len(inputs["test"]) == 6
    assert all(Path(p).is_absolute() and Path(p).is_dir() for p in inputs["folds"] + inputs["test"])


def test_the_stored_threshold_labels_detect_output(run_dfk, csv: Path, tmp_path: Path) -> None:
    report = train(csv, tmp_path / "det", "train.epochs=2", "train.threshold=0.37")
    assert report["threshold"] == 0.37 and report["threshold_from"] == "config"
    state = json.loads((tmp_path / "det" / "state.json").read_text())
    assert state["threshold"] == 0.37
    videos = [csv.parent / "real" / "t0", csv.parent / "fake" / "t0"]
    result = run_dfk("-q", "detect", *videos, "-m", tmp_path / "det", "--device", "cpu")
    assert result.code == 0, result
    document = json.loads(result.out)
    probs = [r["probability"] for r in document["results"]]
    # a threshold between the two scores, written where train-detect stores it, decides the labels
    state["threshold"] = round(float(np.mean(probs)), 6)
    replace_state(tmp_path / "det", state)
    assert Detector(tmp_path / "det", device="cpu").threshold == state["threshold"]
    document = json.loads(run_dfk("-q", "detect", *videos, "-m", tmp_path / "det", "--device", "cpu").out)
    assert document["threshold"] == state["threshold"]
    for r in document["results"]:
        assert r["label"] == ("fake" if r["probability"] >= state["threshold"] else "real")
    assert {r["label"] for r in document["results"]} == {"real", "fake"}


def test_dataset_evaluation_scores_a_fixed_number_of_frames_and_reports_per_method_and_family(run_dfk, csv: Path,
                                                                                   tmp_path: Path) -> None:
    train(csv, tmp_path / "det", "train.epochs=1", "eval.frames_per_video=5")
    result = run_dfk("-q", "detect", "--dataset", csv, "-m", tmp_path / "det", "--device", "cpu")
    assert result.code == 0, result
    evaluation = json.loads(result.out)
    assert evaluation["eval_frames_per_video"] == 5
    sequence = evaluation["metrics"]["sequence"]
    assert sequence["count"] == 22  # one 5-face window of each 6-face video
    assert set(evaluation["per_method"]) == {"m1", "m2"}
    m1 = evaluation["per_method"]["m1"]["video"]
    assert m1["real"] == 11 and m1["fake"] == sum(v["method"] == "m1" for v in evaluation["videos"])
    assert set(evaluation["per_family"]) == {"swap", "reenact"}
    reenact = evaluation["per_family"]["reenact"]["video"]
    assert reenact["real"] == 11 and reenact["fake"] == sum(v["family"] == "reenact" for v in evaluation["videos"])
    assert reenact["fake"] == evaluation["per_method"]["m2"]["video"]["fake"] > 0


def test_auto_threshold_sits_in_the_gap_at_the_eer_point() -> None:
    from deepfake_cli.detect.scoring import Scores, eer_threshold
    from deepfake_cli.detect.sequences import SequenceRef
    from deepfake_cli.detect.tracks import FaceTrack

    labels = [0, 0, 1, 1]
    tracks = [FaceTrack(key=f"v{i}", source="s", frames=[0], files=[Path("x.png")], boxes=[[0, 0, 1, 1]],
                        label=label) for i, label in enumerate(labels)]
    probs = np.array([0.1, 0.3, 0.6, 0.9], np.float32)
    threshold = eer_threshold(tracks, Scores([SequenceRef(i, (0,)) for i in range(4)], probs))
    assert threshold == pytest.approx((0.3 + 0.6) / 2)  # perfectly separated: between the classes
    one_class = [FaceTrack(key="v", source="s", frames=[0], files=[Path("x.png")], boxes=[[0, 0, 1, 1]], label=1)]
    assert eer_threshold(one_class, Scores([SequenceRef(0, (0,))], np.array([0.5], np.float32))) is None
