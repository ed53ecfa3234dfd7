"""The operating point: ``train.threshold`` as ``eer`` (``auto``), ``fpr:P`` or a probability; the
rule that set the threshold is stored with the detector and reported by ``dfk detect``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector, validate
from deepfake_cli.detect.config import ThresholdRule, threshold_rule
from deepfake_cli.detect.metrics import JUST_ABOVE, fpr_threshold
from deepfake_cli.errors import ConfigError
from detect_faces import write_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the fpr rule on hand-made scores

REALS = [0.05, 0.12, 0.2, 0.33, 0.41, 0.5, 0.58, 0.66, 0.71, 0.9]  # 10 real videos


def test_fpr_keeps_exactly_the_allowed_reals_above_the_threshold() -> None:
    chosen = fpr_threshold(REALS, 0.1)  # 10 reals, P = 0.1: one may be called fake
    assert chosen.threshold == pytest.approx((0.71 + 0.9) / 2)  # midway between the 2nd and the 1st
    assert sum(r >= chosen.threshold for r in REALS) == 1
    assert (chosen.flagged, chosen.reals, chosen.reached) == (1, 10, pytest.approx(0.1))
    two = fpr_threshold(REALS, 0.25)  # floor(2.5) = 2 may be flagged
    assert two.threshold == pytest.approx((0.66 + 0.71) / 2) and two.flagged == 2 and two.reached == 0.2
    # fewer than 1 / P reals: none of them may be flagged; nothing above the top real -> just above it
    none = fpr_threshold(REALS, 0.05)
    assert none.threshold == pytest.approx(0.9 + JUST_ABOVE) and none.flagged == 0 and none.reached == 0.0


def test_fpr_threshold_is_in_the_gap_of_all_scores_and_deterministic() -> None:
    # a fake between the two reals moves the threshold within the gap, never past a real
    chosen = fpr_threshold(REALS, 0.1, other_scores=[0.8, 0.95])
    assert chosen.threshold == pytest.approx((0.71 + 0.8) / 2) and chosen.flagged == 1
    assert fpr_threshold(REALS[::-1], 0.1, [0.95, 0.8]) == chosen  # order does not matter
    # ties at the boundary stay real together: fewer than the allowed reals are flagged
    tied = fpr_threshold([0.3, 0.5, 0.5, 0.9], 0.5)  # 2 may be flagged, but 0.5 and 0.5 go together
    assert tied.threshold == pytest.approx(0.7) and tied.flagged == 1 and tied.reached == 0.25
    # clipped within (0, 1): a real at 1.0 cannot be excluded, and the record says so
    top = fpr_threshold([0.2, 1.0], 0.1)
    assert top.threshold == pytest.approx(1 - 1e-6) and top.reached == 0.5
    with pytest.raises(ValueError):
        fpr_threshold([], 0.1)
    with pytest.raises(ValueError):
        fpr_threshold(REALS, 1.0)


# ---------------------------------------------------------------- parsing train.threshold

@pytest.mark.parametrize("setting, rule", [
    ("eer", ThresholdRule("eer")), ("auto", ThresholdRule("eer")), ("EER", ThresholdRule("eer")),
    ("fpr:0.05", ThresholdRule("fpr", 0.05)), ("fpr:1e-2", ThresholdRule("fpr", 0.01)),
    (0.37, ThresholdRule("fixed", 0.37)), ("0.37", ThresholdRule("fixed", 0.37)),
])
def test_threshold_settings_parse(setting: object, rule: ThresholdRule) -> None:
    assert threshold_rule(setting) == rule


@pytest.mark.parametrize("value", ["fpr:2", "fpr:x", "1.5", "fpr:0", "0", "fpr: 0.05", "fpr:", "median", "true"])
def test_bad_threshold_settings_are_one_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(load_config(DetectConfig, "detect", "tiny", None, [f"train.threshold={value}"]))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("train.threshold must be eer (or auto), fpr:P")


def test_presets_keep_the_eer_rule() -> None:
    for preset in ("convlstm", "tiny", "tiny_frame", "efficientnet_b0", "efficientnet_b4"):
        config = load_config(DetectConfig, "detect", preset)
        assert threshold_rule(config.train.threshold) == ThresholdRule("eer"), preset


def test_bad_threshold_is_one_cli_line(run_dfk, tmp_path: Path) -> None:
    result = run_dfk("train-detect", "--real", tmp_path, "--fake", tmp_path, "-o", tmp_path / "x",
                     "--set", "train.threshold=fpr:2")
    lines = result.err.strip().splitlines()
    assert result.code != 0 and len(lines) == 1 and lines[0].startswith("error: train.threshold"), result


# ---------------------------------------------------------------- a trained detector stores the rule

GROUPS = {f"g{k}": "" for k in range(10)}


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces"), GROUPS, seed=3)


def train(csv: Path, outdir: Path, *overrides: str) -> dict:
    config = load_config(DetectConfig, "detect", "tiny", None,
                         ["train.epochs=2", "train.val_fraction=0.5", *overrides])
    return train_detector(read_dataset(csv), outdir, config, device="cpu", seed=0, progress=False)


@pytest.fixture(scope="module")
def fpr_detector(csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    outdir = tmp_path_factory.mktemp("det") / "fpr"
    return outdir, train(csv, outdir, "train.threshold=fpr:0.2")


def test_fpr_rule_is_applied_on_validation_reals_and_recorded(fpr_detector: tuple[Path, dict]) -> None:
    outdir, report = fpr_detector
    state = json.loads((outdir / "state.json").read_text())
    video = report["val"]["video"]
    reals = video["real"]
    assert reals >= 4
    reached = video["confusion"]["fp"] / reals
    assert reached <= 0.2
    assert report["threshold_from"] == f"val fpr<=0.2 (fpr reached {reached:.4g} on {reals} real videos)"
    assert report["threshold_rule"] == "fpr:0.2" and video["threshold"] == report["threshold"]
    assert state["threshold"] == report["threshold"] and state["threshold_from"] == report["threshold_from"]
    assert state["threshold_rule"] == "fpr:0.2"
    saved = json.loads((outdir / "metrics.json").read_text())
    assert saved["threshold_from"] == report["threshold_from"]


def test_eer_and_its_old_name_auto_choose_the_same_threshold(csv: Path, tmp_path: Path) -> None:
    eer = train(csv, tmp_path / "eer", "train.threshold=eer")
    auto = train(csv, tmp_path / "auto", "train.threshold=auto")
    assert eer["threshold_from"] == auto["threshold_from"] == "val EER"
    assert eer["threshold"] == auto["threshold"] and eer["val"] == auto["val"]
    assert json.loads((tmp_path / "auto" / "state.json").read_text())["threshold_rule"] == "eer"


def test_detect_reports_the_rule_that_set_its_threshold(run_dfk, csv: Path,
                                                       fpr_detector: tuple[Path, dict]) -> None:
    outdir, report = fpr_detector
    videos = [csv.parent / "real" / "g0", csv.parent / "fake" / "g0"]
    result = run_dfk("detect", *videos, "-m", outdir, "--device", "cpu")
    assert result.code == 0, result
    document = json.loads(result.out)
    assert document["threshold"] == report["threshold"]
    assert document["threshold_from"] == report["threshold_from"]
    assert f"threshold {report['threshold']:g} ({report['threshold_from']})" in result.err
    result = run_dfk("-q", "detect", *videos, "-m", outdir, "--device", "cpu", "--threshold", "0.6")
    document = json.loads(result.out)
    assert document["threshold"] == 0.6 and document["threshold_from"] == "command line"
    assert Detector(outdir, device="cpu", threshold=0.6).threshold_from == "command line"
    evaluation = json.loads(run_dfk("-q", "detect", "--dataset", csv, "-m", outdir, "--device", "cpu").out)
    assert evaluation["threshold_from"] == report["threshold_from"]


def test_a_validation_without_reals_falls_back_and_says_so(csv: Path, caplog: pytest.LogCaptureFixture) -> None:
    from deepfake_cli.detect.scoring import Scores
    from deepfake_cli.detect.sequences import SequenceRef
    from deepfake_cli.detect.trainer import FitResult, _choose_threshold
    from deepfake_cli.detect.tracks import FaceTrack

    tracks = [FaceTrack(key=f"v{i}", source="s", frames=[0], files=[Path("x.png")], boxes=[[0, 0, 1, 1]], label=1)
              for i in range(3)]
    result = FitResult(Path("."), None, 1, 1, (1.0, 0.1), {}, [], {}, 0,  # type: ignore[arg-type]
                       val_scores=Scores([SequenceRef(i, (0,)) for i in range(3)], np.array([.2, .6, .9], np.float32)))
    config = load_config(DetectConfig, "detect", "tiny", None, ["train.threshold=fpr:0.05"])
    logger = logging.getLogger("deepfake_cli.detect.trainer")  # the CLI's logger does not propagate
    logger.addHandler(caplog.handler)
    try:
        _choose_threshold(result, tracks, config)
    finally:
        logger.removeHandler(caplog.handler)
    assert result.threshold == 0.5
    assert result.threshold_from == "default (validation has no real video for fpr<=0.05)"
    assert "no real video" in caplog.text
