"""Benchmark reenactment (`dfk reenact`) on real footage: self-reenactment and cross-identity.

    python scripts/bench_reenact.py --method warp --strip runs/reenact
    python scripts/bench_reenact.py --method still          # the photo itself: what no animation scores
    python scripts/bench_reenact.py -m runs/reenact_cpu      # a learned model, measured the same way

Footage comes from ``python3 scripts/fetch_footage.py`` (``--footage``, default data/footage).

* **Self-reenactment** (``--self CLIP[:START[:END]]``, repeatable; frames START..END-1, END
  default the clip's end): the photo is frame START, the driving video is frames START..END-1 of
  the same clip, so the real frames are the ground truth. Measured on frames START+1..END-1 (every
  ``--every``-th): SSIM and L1 (mean absolute difference / 255) on a crop around the real frame's
  face (the landmarks' box grown by half the face size on each side) and over the whole frame, and
  the landmark NME between the output's and the real frame's 68 points (over the real frame's
  outer-eye-corner distance). Defaults: the second half of WolfgangLanger_Pexels.mp4 (frames
  236..471) and the whole carphone clip (0..119); a learned model must not train on them.
* **Cross-identity** (``--photo`` X, repeatable: an image path under the footage folder or a shipped
  still's name; ``--driving`` Y): X's identity kept = the share of output frames whose dlib
  descriptor is within 0.6 of the photo's (a frame where no face is found counts as not kept); Y's
  expression followed = the **motion NME**: the mean distance between the output face's landmark
  motion (its 68 points minus the photo's) and the driving face's motion from its first frame
  mapped into the photo by the similarity that takes the first driving face onto the photo's
  face, over the photo's outer-eye-corner distance; **expression NME** is the same with each face's
  head pose (a similarity) taken out first, so only the expression's part of the motion counts;
  **mouth NME** is the expression NME over the 20 mouth points (48-67) alone.
  Both come with ``*_still``: the same distance for an output that does not move (how much motion
  there was to follow). Defaults: the astronaut and Grace Hopper stills and ORL s1/1 and s10/1,
  each driven by pyfeat's single_face.mp4 and by the carphone clip.

One JSON line per (method, clip or photo), then one summary line per task. Videos are written
lossless (FFV1), so the figures measure the reenactment, not the encoder. ``--strip DIR`` writes a
frame strip per run (photo | driving frames over output frames).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sort import cpu_model  # noqa: E402
from deepfake_cli.evaluate import landmark_nme  # noqa: E402
from deepfake_cli.faces import FaceBackend, create_backend  # noqa: E402
from deepfake_cli.faces.align import umeyama  # noqa: E402
from deepfake_cli.faces.base import DetectedFace  # noqa: E402
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE, face_descriptor  # noqa: E402
from deepfake_cli.media.images import read_image, write_image  # noqa: E402
from deepfake_cli.media.synthetic import STILLS, load_still  # noqa: E402
from deepfake_cli.media.video import VideoReader, VideoWriter  # noqa: E402
from deepfake_cli.reenact.run import ReenactOptions, reenact  # noqa: E402

SELF_CLIPS = ["pyfeat/WolfgangLanger_Pexels.mp4:236", "carphone/carphone_pristine.mp4:0"]
PHOTOS = ["astronaut", "grace_hopper", "orl/s1/1.pgm", "orl/s10/1.pgm"]
DRIVING = ["pyfeat/single_face.mp4", "carphone/carphone_pristine.mp4"]
STRIP_FRAMES = 5
STRIP_HEIGHT = 160
STRIP_GROW = 0.6
MOUTH = slice(48, 68)


class StillAnimator:
    """The photo, unmoved: the floor any animation should beat on motion, and match on identity."""

    def start(self, photo: np.ndarray, photo_face: DetectedFace, first: np.ndarray,
              first_face: DetectedFace) -> None:
        self.photo = photo

    def frame(self, driving: np.ndarray, face: DetectedFace) -> np.ndarray:
        return self.photo.copy()


@dataclass
class Method:
    """What animates: ``warp``, ``still`` or a learned model folder."""

    name: str
    model_dir: Path | None = None

    def run(self, photo: Path, driving: Path, output: Path, backend: FaceBackend) -> float:
        """Reenact into ``output`` (lossless); the seconds it took."""
        options = ReenactOptions(codec="ffv1", device="cpu")
        start = time.perf_counter()
        reenact(photo, driving, output, options, self.model_dir, progress=False, backend=backend,
                animator=StillAnimator() if self.name == "still" else None)
        return time.perf_counter() - start


def largest_face(backend: FaceBackend, image: np.ndarray) -> DetectedFace | None:
    """The largest face with 68 points, or None."""
    faces = [face for face in backend.detect(image) if face.has_68]
    return faces[0] if faces else None


def clip_segment(source: Path, start: int, end: int | None, target: Path) -> tuple[int, int]:
    """Frames ``start..end-1`` of ``source`` written losslessly to ``target``; the range written."""
    reader = VideoReader(source)
    last = start
    with VideoWriter(target, reader.info.width, reader.info.height, reader.info.fps, codec="ffv1") as writer:
        for index, frame in enumerate(reader):
            if index >= start and (end is None or index < end):
                writer.write(frame)
                last = index
    return start, last + 1


def face_crop(landmarks: np.ndarray, shape: tuple[int, ...], grow: float = 0.5) -> tuple[slice, slice]:
    """The landmarks' box grown by ``grow`` face sizes on each side, inside the image."""
    size = float(np.ptp(landmarks, axis=0).max())
    x0, y0 = np.maximum(np.floor(landmarks.min(axis=0) - grow * size), 0).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0) + grow * size).astype(int)
    return slice(y0, min(y1, shape[0])), slice(x0, min(x1, shape[1]))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two RGB uint8 images (scikit-image, 7x7 windows, per channel)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over 255."""
    return float(np.abs(a.astype(np.float64) - b).mean() / 255.0)


def outer_iod(points: np.ndarray) -> float:
    """Outer-eye-corner distance (300-W convention)."""
    return max(float(np.linalg.norm(points[36] - points[45])), 1e-6)


def pose_removed(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``points`` moved by the similarity that best aligns them onto ``reference``: only the
    expression's part of their difference is left."""
    matrix = umeyama(points, reference)[:2]
    return points @ matrix[:, :2].T + matrix[:, 2]


class Strip:
    """A picture: the photo, then driving frames over output frames, each cropped around its face."""

    def __init__(self, photo: np.ndarray, picks: list[int], photo_crop: tuple[slice, slice],
                 driving_crop: tuple[slice, slice]) -> None:
        self.photo, self.picks = photo[photo_crop], set(picks)
        self.photo_crop, self.driving_crop = photo_crop, driving_crop
        self.driving: list[np.ndarray] = []
        self.output: list[np.ndarray] = []

    def add(self, index: int, driving: np.ndarray, output: np.ndarray) -> None:
        if index in self.picks:
            self.driving.append(driving[self.driving_crop])
            self.output.append(output[self.photo_crop])

    def save(self, path: Path) -> None:
        def fit(image: np.ndarray) -> np.ndarray:
            width = round(image.shape[1] * STRIP_HEIGHT / image.shape[0])
            return cv2.resize(image, (width, STRIP_HEIGHT), interpolation=cv2.INTER_AREA)

        photo = fit(self.photo)
        top = np.hstack([photo] + [fit(f) for f in self.driving])
        bottom = np.hstack([np.full_like(photo, 255)] + [fit(f) for f in self.output])
        width = max(top.shape[1], bottom.shape[1])
        pad = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in (top, bottom)]
        write_image(path, np.vstack(pad))


def paired(driving: Path, output: Path, every: int, strip: Strip) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, driving frame, output frame)`` for every ``every``-th frame after the first (every
    frame goes to ``strip``)."""
    for index, (real, out) in enumerate(zip(VideoReader(driving), VideoReader(output))):
        strip.add(index, real, out)
        if index and index % every == 0:
            yield index, real, out


def self_reenactment(method: Method, footage: Path, spec: str, backend: FaceBackend, work: Path, every: int,
                     strip_dir: Path | None) -> dict:
    """One self-reenactment run on ``spec`` = ``CLIP[:START[:END]]``."""
    clip, *bounds = spec.split(":")
    start = int(bounds[0]) if bounds else 0
    end = int(bounds[1]) if len(bounds) > 1 else None
    driving = work / f"{Path(clip).stem}_{start}.mkv"
    first, stop = clip_segment(footage / clip, start, end, driving)
    photo = work / f"{Path(clip).stem}_{start}.png"
    photo_image = next(iter(VideoReader(driving)))
    write_image(photo, photo_image)
    output = work / f"{method.name}_{Path(clip).stem}_{start}.mkv"
    seconds = method.run(photo, driving, output, backend)
    count = stop - first
    first_face = largest_face(backend, photo_image)
    assert first_face is not None, f"no face in frame {start} of {clip}"
    crop = face_crop(first_face.landmarks, photo_image.shape, STRIP_GROW)
    strip = Strip(photo_image, list(np.linspace(1, count - 1, STRIP_FRAMES).round().astype(int)), crop, crop)
    crop_ssim, crop_l1, full_ssim, full_l1, nme, missing = [], [], [], [], [], 0
    for index, real, out in paired(driving, output, every, strip):
        truth = largest_face(backend, real)
        if truth is None:
            continue
        rows, cols = face_crop(truth.landmarks, real.shape)
        crop_ssim.append(ssim(real[rows, cols], out[rows, cols]))
        crop_l1.append(l1(real[rows, cols], out[rows, cols]))
        full_ssim.append(ssim(real, out))
        full_l1.append(l1(real, out))
        found = largest_face(backend, out)
        if found is None:
            missing += 1
        else:
            nme.append(landmark_nme(truth.landmarks, found.landmarks))
    if strip_dir is not None:
        strip.save(strip_dir / f"self_{method.name}_{Path(clip).stem}.png")
    return {"task": "self", "clip": clip, "photo_frame": first, "frames": [first + 1, stop - 1],
            "every": every, "measured": len(crop_ssim), "face_ssim": float(np.mean(crop_ssim)),
            "face_l1": float(np.mean(crop_l1)), "frame_ssim": float(np.mean(full_ssim)),
            "frame_l1": float(np.mean(full_l1)), "landmark_nme": float(np.mean(nme)) if nme else None,
            "no_face_in_output": missing, "seconds": round(seconds, 2), "fps": round(count / seconds, 2)}


def photo_file(footage: Path, name: str, work: Path) -> Path:
    """The photo ``name``: a shipped still (written as PNG) or a file under ``footage``."""
    if name in STILLS:
        path = work / f"{name}.png"
        write_image(path, load_still(name))
        return path
    return footage / name


def cross_identity(method: Method, footage: Path, photo_name: str, driving: Path, backend: FaceBackend,
                   work: Path, every: int, strip_dir: Path | None) -> dict:
    """One cross-identity run: ``photo_name`` (X) driven by ``driving`` (Y)."""
    photo = photo_file(footage, photo_name, work)
    image = read_image(photo)
    x_face = largest_face(backend, image)
    assert x_face is not None, f"no face in {photo}"
    x_points, x_descriptor = x_face.landmarks, face_descriptor(image, x_face)
    output = work / f"{method.name}_{Path(photo_name).stem}_{driving.stem}.mkv"
    seconds = method.run(photo, driving, output, backend)
    reader = VideoReader(driving)
    first = largest_face(backend, next(iter(reader)))
    assert first is not None
    y0 = first.landmarks
    to_photo = umeyama(y0, x_points)[:2, :2]
    iod = outer_iod(x_points)
    picks = list(np.linspace(1, reader.info.frame_count - 1, STRIP_FRAMES).round().astype(int))
    strip = Strip(image, picks, face_crop(x_points, image.shape, STRIP_GROW),
                  face_crop(y0, (reader.info.height, reader.info.width), STRIP_GROW))
    kept, distances, motion, motion_still, expression, expression_still, mouth, mouth_still = ([] for _ in range(8))
    for index, real, out in paired(driving, output, every, strip):
        y = largest_face(backend, real)
        if y is None:
            continue
        found = largest_face(backend, out)
        distance = float(np.linalg.norm(face_descriptor(out, found) - x_descriptor)) if found else float("inf")
        distances.append(distance)
        kept.append(distance < SAME_PERSON_DISTANCE)
        if found is None:
            continue
        wanted = (y.landmarks - y0) @ to_photo.T
        moved = found.landmarks - x_points
        motion.append(float(np.linalg.norm(moved - wanted, axis=1).mean()) / iod)
        motion_still.append(float(np.linalg.norm(wanted, axis=1).mean()) / iod)
        wanted_expression = (pose_removed(y.landmarks, y0) - y0) @ to_photo.T
        shown_expression = pose_removed(found.landmarks, x_points) - x_points
        expression.append(float(np.linalg.norm(shown_expression - wanted_expression, axis=1).mean()) / iod)
        expression_still.append(float(np.linalg.norm(wanted_expression, axis=1).mean()) / iod)
        mouth.append(float(np.linalg.norm((shown_expression - wanted_expression)[MOUTH], axis=1).mean()) / iod)
        mouth_still.append(float(np.linalg.norm(wanted_expression[MOUTH], axis=1).mean()) / iod)
    if strip_dir is not None:
        label = Path(photo_name).with_suffix("").as_posix().replace("/", "-")
        strip.save(strip_dir / f"cross_{method.name}_{label}_{driving.stem}.png")
    finite = [d for d in distances if np.isfinite(d)]
    return {"task": "cross", "photo": photo_name, "photo_size": [image.shape[1], image.shape[0]],
            "driving": str(driving.relative_to(footage)) if driving.is_relative_to(footage) else str(driving),
            "frames": [1, reader.info.frame_count - 1], "every": every, "measured": len(kept),
            "identity_kept": float(np.mean(kept)), "identity_distance": float(np.median(finite)) if finite else None,
            "no_face_in_output": len(distances) - len(finite),
            "motion_nme": float(np.mean(motion)), "motion_nme_still": float(np.mean(motion_still)),
            "expression_nme": float(np.mean(expression)), "expression_nme_still": float(np.mean(expression_still)),
            "mouth_nme": float(np.mean(mouth)), "mouth_nme_still": float(np.mean(mouth_still)),
            "seconds": round(seconds, 2), "fps": round(reader.info.frame_count / seconds, 2)}


def summary(rows: list[dict], task: str, keys: list[str], **match: str) -> dict:
    """Means of ``keys`` over the rows of ``task`` (whose fields equal ``match``)."""
    chosen = [r for r in rows if r["task"] == task and all(r[k] == v for k, v in match.items())]
    return {"task": f"{task}-summary", **match, "runs": len(chosen),
            **{k: round(float(np.mean([r[k] for r in chosen if r[k] is not None])), 4) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("warp", "still"), default="warp")
    parser.add_argument("-m", "--model", type=Path, default=None, help="a learned model folder (overrides --method)")
    parser.add_argument("--footage", type=Path, default=Path("data/footage"))
    parser.add_argument("--self", dest="self_clips", action="append", default=None, metavar="CLIP[:START[:END]]")
    parser.add_argument("--photo", dest="photos", action="append", default=None, metavar="IMAGE|STILL")
    parser.add_argument("--driving", action="append", default=None, metavar="VIDEO",
                        help="cross-identity driving video under --footage (repeatable)")
    parser.add_argument("--every", type=int, default=1, help="measure every N-th frame")
    parser.add_argument("--strip", type=Path, default=None, help="write frame strips (PNG) into this folder")
    parser.add_argument("--task", choices=("both", "self", "cross"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    method = Method(f"model-{args.model.name}", args.model) if args.model else Method(args.method)
    footage = args.footage
    if not (footage / "manifest.json").is_file():
        raise SystemExit(f"no footage in {footage}: run python3 scripts/fetch_footage.py")
    if args.strip:
        args.strip.mkdir(parents=True, exist_ok=True)
    backend = create_backend("offline", detector_threads=1)
    common = {"method": method.name, "cpu": cpu_model(), "threads": 1}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.task in ("both", "self"):
            for spec in args.self_clips or SELF_CLIPS:
                rows.append(self_reenactment(method, footage, spec, backend, work, args.every, args.strip))
                print(json.dumps({**common, **rows[-1]}), flush=True)
        if args.task in ("both", "cross"):
            for driving in args.driving or DRIVING:
                for name in args.photos or PHOTOS:
                    rows.append(cross_identity(method, footage, name, footage / driving, backend, work, args.every,
                                               args.strip))
                    print(json.dumps({**common, **rows[-1]}), flush=True)
    if args.task in ("both", "self"):
        print(json.dumps({**common, **summary(rows, "self", ["face_ssim", "face_l1", "frame_ssim", "frame_l1",
                                                            "landmark_nme"])}))
    if args.task in ("both", "cross"):
        keys = ["identity_kept", "motion_nme", "motion_nme_still", "expression_nme", "expression_nme_still",
                "mouth_nme", "mouth_nme_still"]
        for driving in dict.fromkeys(r["driving"] for r in rows if r["task"] == "cross"):
            print(json.dumps({**common, **summary(rows, "cross", keys, driving=driving)}))


if __name__ == "__main__":
    main()
