"""``dfk demo``: the whole toolkit offline on clips built from public-domain stills, with a report.

Identity A is the astronaut (``skimage.data.astronaut``), identity B Grace Hopper (matplotlib's
sample). The demo builds moving clips of both (with lighting changes and a tone soundtrack), then
runs extract -> train-swap (``fast``) -> convert -> evaluate -> make-dataset -> train-detect ->
detect through the same Python API the CLI uses, and writes ``report.html`` / ``report.md``.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from deepfake_cli.checkpoint import write_json_atomic
from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector
from deepfake_cli.evaluate import evaluate
from deepfake_cli.extract import ExtractOptions, extract
from deepfake_cli.make_dataset import make_dataset
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import make_clip, write_clip
from deepfake_cli.media.video import VideoReader
from deepfake_cli.report import Section, write_report
from deepfake_cli.swap.convert import ConvertOptions, convert
from deepfake_cli.swap.train import swap_config, train_swap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run: the default meets the fast preset's quality targets, quick only smokes."""

    frames: int
    frame_size: tuple[int, int]
    swap_iterations: int | None
    dataset_clips: int
    detect_preset: str = "tiny"

    @classmethod
    def choose(cls, quick: bool) -> "DemoPlan":
        """The quick (smoke, ~3 min) or full (~15 min) plan."""
        if quick:
            return cls(frames=24, frame_size=(320, 240), swap_iterations=80, dataset_clips=2)
        return cls(frames=60, frame_size=(480, 360), swap_iterations=None, dataset_clips=3)


def _cmd(*parts: object) -> str:
    return "dfk " + " ".join(shlex.quote(str(p)) for p in parts)


@contextmanager
def _stage(number: int, name: str, figures: dict[str, Any]) -> Iterator[None]:
    log.info("demo [%d/8] %s ...", number, name)
    started = time.perf_counter()
    yield
    figures["seconds"] = round(time.perf_counter() - started, 1)
    log.info("demo [%d/8] %s done in %.1fs", number, name, figures["seconds"])


def build_clips(folder: Path, plan: DemoPlan, seed: int) -> dict[str, Any]:
    """Write the demo's clips: training clips of A and B, a separate clip of A to convert, and
    extra clips of both for the detector's dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Any] = {"a_videos": folder / "a_videos", "b_videos": folder / "b_videos"}
    for key, name, offset in (("a_train", "astronaut", 1), ("b_train", "grace_hopper", 2)):
        made[key] = write_clip(folder / f"{key}.mp4", make_clip(name, plan.frames, plan.frame_size, seed + offset).frames)
    made["a_convert"] = write_clip(folder / "a_convert.mp4",
                                   make_clip("astronaut", plan.frames, plan.frame_size, seed + 3, motion=1.2).frames,
                                   audio=True)
    for side, name in (("a", "astronaut"), ("b", "grace_hopper")):
        for k in range(plan.dataset_clips):
            clip = make_clip(name, max(plan.frames // 2, 15), (320, 240), seed + 10 + 2 * k + (side == "b"), motion=0.8)
            write_clip(made[f"{side}_videos"] / f"{side}{k}.mp4", clip.frames)
    return made


def _before_after(source: Path, converted: Path, target: Path, frame_index: int) -> None:
    """Save one frame of the source beside the same frame of the converted video."""
    pairs = []
    for video in (source, converted):
        for index, frame in enumerate(VideoReader(video)):
            if index == frame_index:
                pairs.append(frame)
                break
    write_image(target, np.hstack(pairs))


def run_demo(outdir: str | Path, quick: bool = False, device: str = "auto", seed: int = 0,
             progress: bool = True) -> Path:
    """Run the demo into ``outdir``; returns the path of ``report.html``."""
    root = Path(outdir)
    plan = DemoPlan.choose(quick)
    figures: dict[str, dict[str, Any]] = {name: {} for name in
                                         ("clips", "extract", "train-swap", "convert", "evaluate",
                                          "make-dataset", "train-detect", "detect")}
    with _stage(1, "building clips from public-domain stills", figures["clips"]):
        data = build_clips(root / "data", plan, seed)
        figures["clips"]["frames per clip"] = plan.frames
    faces = {"a": root / "faces_a", "b": root / "faces_b"}
    with _stage(2, "extract", figures["extract"]):
        for side in ("a", "b"):
            summary = extract([data[f"{side}_train"]], faces[side], ExtractOptions(device=device), progress=progress)
            figures["extract"][f"faces {side.upper()}"] = summary.faces
            figures["extract"][f"frames/s {side.upper()}"] = round(summary.frames / max(summary.seconds, 1e-9), 1)
    model = root / "model"
    overrides = [f"train.iterations={plan.swap_iterations}"] if plan.swap_iterations else []
    with _stage(3, "train-swap (fast preset)", figures["train-swap"]):
        trained = train_swap(faces["a"], faces["b"], model, swap_config(model, "fast", None, overrides),
                             device=device, seed=seed, progress=progress)
        figures["train-swap"].update(steps=trained.step, **{"faces/s": round(trained.faces_per_s, 1)},
                                     **{k: round(v, 4) for k, v in trained.losses.items()})
    converted = root / "converted.mp4"
    with _stage(4, "convert", figures["convert"]):
        done = convert(data["a_convert"], converted, model, ConvertOptions(device=device), progress=progress)
        figures["convert"].update(frames=sum(r.frames for r in done.results),
                                  swapped=sum(r.swapped for r in done.results),
                                  fps=round(sum(r.frames for r in done.results) / max(done.seconds, 1e-9), 1))
    with _stage(5, "evaluate", figures["evaluate"]):
        quality = evaluate(data["a_convert"], converted, faces["a"], faces["b"], progress=progress).to_json()
        write_json_atomic(root / "evaluate.json", quality)
        figures["evaluate"].update(quality)
    dataset = root / "dataset"
    with _stage(6, "make-dataset", figures["make-dataset"]):
        made = make_dataset([(data["a_videos"], data["b_videos"])], [model], dataset,
                            ConvertOptions(device=device), progress=progress)
        figures["make-dataset"].update(videos=len(made.entries), fakes=sum(e.label == "FAKE" for e in made.entries))
    detector_dir = root / "detector"
    with _stage(7, f"train-detect ({plan.detect_preset} preset)", figures["train-detect"]):
        metrics = train_detector(read_dataset(dataset), detector_dir,
                                 load_config(DetectConfig, "detect", plan.detect_preset),
                                 device=device, seed=seed, progress=progress)
        video = metrics.get("val", {}).get("video", {})
        figures["train-detect"].update({f"validation video {k}": video.get(k) for k in ("auc", "eer", "accuracy")})
    with _stage(8, "detect", figures["detect"]):
        results = Detector(detector_dir, device=device).score_all([data["a_convert"], converted], progress)
        scores = [r.to_json() for r in results]
        write_json_atomic(root / "detect.json", scores)
        for name, result in zip(("real clip", "converted clip"), scores):
            figures["detect"][f"P(fake) {name}"] = result.get("probability")
    _before_after(data["a_convert"], converted, root / "before_after.png", plan.frames // 3)
    return _write_demo_report(root, data, faces, model, converted, dataset, detector_dir, figures, quick)


def _write_demo_report(root: Path, data: dict[str, Any], faces: dict[str, Path], model: Path, converted: Path,
                       dataset: Path, detector_dir: Path, figures: dict[str, dict[str, Any]], quick: bool) -> Path:
    rel = lambda p: Path(p).relative_to(root).as_posix()  # noqa: E731
    sections = [
        Section("Clips", text="Identity A: the astronaut still (skimage, public domain); identity B: Grace Hopper "
                "(matplotlib sample, public domain), moved and relit; a separate clip of A with a soundtrack "
                "is converted.", figures=figures["clips"]),
        Section("extract", "\n".join(_cmd("extract", data[f"{s}_train"], "-o", faces[s]) for s in ("a", "b")),
                figures["extract"]),
        Section("train-swap", _cmd("train-swap", "-A", faces["a"], "-B", faces["b"], "-o", model, "--preset", "fast")
                + (" --iterations 80" if quick else ""), figures["train-swap"],
                [("previews: A, A→A, A→B, B, B→B, B→A", rel(model / "previews" / "latest.png")),
                 ("losses", rel(model / "loss.png"))]),
        Section("convert", _cmd("convert", data["a_convert"], "-m", model, "-o", converted), figures["convert"],
                [("before (left) and after (right)", rel(root / "before_after.png"))]),
        Section("evaluate", _cmd("evaluate", data["a_convert"], converted, "--a", faces["a"], "--b", faces["b"],
                                 "-o", root / "evaluate.json"), figures["evaluate"]),
        Section("make-dataset", _cmd("make-dataset", "--pair", data["a_videos"], data["b_videos"], "-m", model,
                                     "-o", dataset), figures["make-dataset"]),
        Section("train-detect", _cmd("train-detect", "--dataset", dataset, "-o", detector_dir, "--preset", "tiny"),
                figures["train-detect"], [("validation ROC", rel(detector_dir / "roc.png"))]),
        Section("detect", _cmd("detect", data["a_convert"], converted, "-m", detector_dir, "-o", root / "detect.json"),
                figures["detect"]),
    ]
    title = "dfk demo" + (" (quick smoke run: quality not expected)" if quick else "")
    _, page = write_report(root, title, sections)
    (root / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return page
