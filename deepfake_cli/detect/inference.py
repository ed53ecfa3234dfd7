"""Scoring videos, images and labelled datasets with a trained detector (``dfk detect``).

Scores are probabilities that the input is fake:

- a **video** (or one source of an extract folder) is cut into non-overlapping sequences of T
  faces covering all its faces. A sequence model scores each sequence, the video's probability is
  their mean, and each frame gets the mean of the sequences that cover it. A frame model scores
  every face; a sequence's probability is the mean of its faces' and the video's the mean of all;
- an **image** has no motion, so it is scored as a still sequence of T copies of its face (by a
  frame model: as its one face): a frame-level score (``level: frame``), less reliable than a video's.

Labels use the threshold stored with the detector (chosen on validation by ``train-detect``, or
reset by ``dfk calibrate``) unless ``--threshold`` overrides it; ``Detector.threshold_from`` says
which rule set it (state.json's ``threshold_from``, or ``command line``). ``evaluate``
(``detect --dataset``) scores a fixed number of faces per video (``eval.frames_per_video``), as
validation does, and adds per-method and per-family metrics when the dataset names each fake's
generator and family.

An input without a detectable face is reported with ``status: no_face``; one that cannot be read
at all with ``status: error``; neither stops the other inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from deepfake_cli.detect.config import DetectConfig, threshold_rule
from deepfake_cli.detect.detector import LoadedDetector, load_detector
from deepfake_cli.detect.layouts import FAKE, LabelledInput, input_paths
from deepfake_cli.detect.plots import plot_roc
from deepfake_cli.detect.preprocess import FrameStore
from deepfake_cli.detect.scoring import evaluation_windows, level_metrics, per_fake_kind, roc_inputs, score_windows
from deepfake_cli.detect.sequences import SequenceRef, evaluation_sequences
from deepfake_cli.detect.tracks import CACHE_DIR, FaceSource, FaceTrack
from deepfake_cli.errors import InputError
from deepfake_cli.faces.identity import SAME_PERSON_DISTANCE
from deepfake_cli.media.video import VideoReader, VideoWriter
from deepfake_cli.runtime import autocast_dtype, resolve_device


@dataclass
class SequenceScore:
    """One scored sequence: the frame indices of its faces and its probability of fake."""

    frames: list[int]
    probability: float

    def to_json(self) -> dict[str, Any]:
        """JSON-safe values."""
        return {"start_frame": self.frames[0], "end_frame": self.frames[-1], "frames": self.frames,
                "probability": round(self.probability, 6)}


@dataclass
class DetectionResult:
    """The verdict for one input (or one source of an extract folder)."""

    input: str
    source: str | None = None
    status: str = "ok"  # ok | no_face | error
    still: bool = False
    probability: float | None = None
    label: str | None = None
    message: str | None = None
    sequences: list[SequenceScore] = field(default_factory=list)
    frames: dict[int, float] = field(default_factory=dict)
    boxes: dict[int, list[float]] = field(default_factory=dict, repr=False)

    @property
    def level(self) -> str:
        """``video`` (mean over sequences) or ``frame`` (a single image)."""
        return "frame" if self.still else "video"

    def to_json(self) -> dict[str, Any]:
        """JSON-safe values (boxes are only used for ``--annotate``)."""
        return {
            "input": self.input, "source": self.source, "status": self.status, "level": self.level,
            "probability": None if self.probability is None else round(self.probability, 6),
            "label": self.label, "message": self.message, "faces": len(self.frames),
            "sequences": [] if self.still else [s.to_json() for s in self.sequences],
            "frames": [{"frame": f, "probability": round(p, 6)} for f, p in sorted(self.frames.items())],
        }


class Detector:
    """A trained detector with its face source: ``Detector(dir).score(path)``.

    Faces are extracted with the detector's own face settings and cached (by default in the
    detector directory's ``faces/``, shared with training). With a ``reference`` (an image or
    folder of one person) only that person's faces of videos and images are scored.
    """

    def __init__(self, model_dir: str | Path, device: str = "auto", threshold: float | None = None,
                 cache_dir: str | Path | None = None, batch_size: int = 32, reference: str | None = None,
                 reference_distance: float = SAME_PERSON_DISTANCE) -> None:
        self.device = resolve_device(device)
        self.loaded: LoadedDetector = load_detector(model_dir, self.device)
        config = self.config
        stored, stored_from = self.loaded.state.get("threshold"), self.loaded.state.get("threshold_from")
        if stored is None:  # a detector saved mid-training, or by an older dfk
            rule = threshold_rule(config.train.threshold)
            stored, stored_from = (rule.value, "config") if rule.kind == "fixed" else (0.5, "default (none stored)")
        self.threshold = float(threshold if threshold is not None else stored)
        # the rule that set the threshold in use (state.json's threshold_from, or the command line)
        self.threshold_from = "command line" if threshold is not None else str(stored_from or "unrecorded")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--threshold must be between 0 and 1, got {self.threshold}")
        self.faces = FaceSource(Path(cache_dir) if cache_dir else self.loaded.folder / CACHE_DIR,
                                config.faces, self.device.type, reference, reference_distance)
        self.faces.matcher()  # a reference without a face is an error now, not a failure per input
        self.dtype = autocast_dtype(self.device, config.train.precision)
        self.batch_size = batch_size

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The ``dfk calibrate`` record behind the threshold in use, if it came from one."""
        record = self.loaded.state.get("calibration")
        return record if self.threshold_from == "calibrate" and isinstance(record, dict) else None

    def describe_threshold(self) -> str:
        """The threshold and the rule that set it, for a log line."""
        text = f"threshold {self.threshold:g} ({self.threshold_from}"
        record = self.calibration
        if record is not None:
            text += (f": fpr<={record.get('fpr_target')} on {record.get('videos')} real videos of "
                     f"{record.get('folder')}, {record.get('date')}")
        return text + ")"

    @property
    def config(self) -> DetectConfig:
        """The detector's resolved config."""
        return self.loaded.config

    def _store(self) -> FrameStore:
        seq = self.config.sequence
        return FrameStore(seq.size, seq.input, seq.canny_sigma)

    def _sequences(self, tracks: list[FaceTrack], indices: list[int]) -> list[SequenceRef]:
        """The sequences a video is scored by (every face covered, non-overlapping)."""
        seq = self.config.sequence
        return evaluation_sequences(tracks, indices, seq.frames, seq.stride, seq.eval_per_video)

    def _label(self, probability: float) -> str:
        return "fake" if probability >= self.threshold else "real"

    def score_track(self, track: FaceTrack, name: str) -> DetectionResult:
        """Score every face of one track: the video, its sequences and its frames."""
        scores = score_windows(self.loaded.model, self._store(), [track], self._sequences([track], [0]),
                               self.device, self.dtype, self.batch_size)
        sequences = [SequenceScore([track.frames[i] for i in ref.positions], float(p))
                     for ref, p in zip(scores.windows, scores.window_probs)]
        if scores.frame_keys is not None and scores.frame_probs is not None:  # a frame model
            frames = {track.frames[position]: float(p) for (_, position), p in zip(scores.frame_keys, scores.frame_probs)}
        else:  # each frame: the mean of the sequences covering it
            covered: dict[int, list[float]] = {}
            for ref, p in zip(scores.windows, scores.window_probs):
                for i in range(ref.positions[0], ref.positions[-1] + 1):
                    covered.setdefault(track.frames[i], []).append(float(p))
            frames = {f: float(np.mean(v)) for f, v in covered.items()}
        probability = scores.videos()[0]
        return DetectionResult(
            input=name, source=track.source, still=track.still, probability=probability,
            label=self._label(probability), sequences=sequences, frames=frames,
            boxes=dict(zip(track.frames, track.boxes)),
        )

    def score(self, path: str | Path) -> list[DetectionResult]:
        """Results for a video, an image or an extract folder (one per source in the folder)."""
        name = str(path)
        try:
            tracks = self.faces.tracks(Path(path))
            if not tracks:
                return [DetectionResult(input=name, status="no_face", message="no face found")]
            return [self.score_track(track, name) for track in tracks]
        except InputError as exc:
            return [DetectionResult(input=name, status="error", message=str(exc))]

    def score_all(self, inputs: list[str | Path], progress: bool = False) -> list[DetectionResult]:
        """Results for every input in order; folders contribute their videos and extract folders.

        A missing path or an unsupported file is an error before any work starts.
        """
        paths = [p for item in inputs for p in input_paths(Path(item))]
        results: list[DetectionResult] = []
        for path in tqdm(paths, desc="detect", unit="input", disable=not progress, dynamic_ncols=True):
            results.extend(self.score(path))
        return results

    def evaluate(self, items: list[LabelledInput], progress: bool = False, roc: Path | None = None) -> dict[str, Any]:
        """Score a labelled set and compute the training metrics on it (cross-dataset evaluation):
        ``eval.frames_per_video`` faces per video, every level, and per method when the dataset
        names each fake's generator. With ``roc`` also draw the ROC curves there."""
        tracks, skipped = self.faces.labelled(items, progress)
        if not tracks:
            raise InputError("no face found in any video of the dataset")
        seq = self.config.sequence
        windows = evaluation_windows(tracks, list(range(len(tracks))), seq.frames, seq.stride,
                                     self.config.eval.frames_per_video)
        store = FrameStore(seq.size, seq.input, seq.canny_sigma, cache=False)  # each face is used once
        scores = score_windows(self.loaded.model, store, tracks, windows, self.device, self.dtype, self.batch_size,
                               self.config.train.workers, progress)
        videos = scores.videos()
        if roc is not None:
            plot_roc(roc, roc_inputs(tracks, scores), title="ROC")
        evaluation: dict[str, Any] = {
            "threshold": self.threshold, "threshold_from": self.threshold_from,
            **({"calibration": self.calibration} if self.calibration else {}),
            "eval_frames_per_video": self.config.eval.frames_per_video,
            "metrics": level_metrics(tracks, scores, self.threshold),
        }
        evaluation.update(per_fake_kind(tracks, scores, self.threshold))
        evaluation["skipped"] = skipped
        evaluation["videos"] = [
            {"input": tracks[t].key, "truth": "fake" if tracks[t].label == FAKE else "real",
             "method": tracks[t].method or "", "family": tracks[t].family or "", "probability": round(p, 6), "label": self._label(p)}
            for t, p in videos.items()
        ]
        return evaluation


def annotate_video(video: str | Path, result: DetectionResult, output: str | Path, every_n: int = 1) -> Path:
    """Write ``video`` with each frame's probability of fake drawn over it (and the face box).

    Frames between sampled faces (``every_n`` > 1) show the latest score; frames without a face
    say so.
    """
    reader = VideoReader(video)
    width, height = reader.info.width, reader.info.height
    scale = max(width, 320) / 640
    last: tuple[int, float, list[float] | None] | None = None
    with VideoWriter(output, width, height, reader.info.fps, audio_from=video,
                     metadata={"comment": "dfk detect annotation"}) as writer:
        for index, frame in enumerate(reader):
            if index in result.frames:
                last = (index, result.frames[index], result.boxes.get(index))
            current = last if last is not None and index - last[0] < every_n else None
            writer.write(_overlay(frame, current, scale))
    return Path(output)


def _overlay(frame: np.ndarray, current: tuple[int, float, list[float] | None] | None, scale: float) -> np.ndarray:
    """One annotated frame: a box coloured from green (real) to red (fake) and a percentage."""
    image = frame.copy()
    if current is None:
        text, colour = "no face", (200, 200, 200)
    else:
        _, p, box = current
        colour = (int(255 * p), int(255 * (1 - p)), 0)
        text = f"fake {100 * p:.0f}%"
        if box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, max(1, int(2 * scale)))
    thickness = max(1, int(2 * scale))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, thickness)
    cv2.rectangle(image, (0, 0), (w + 12, h + base + 12), (0, 0, 0), -1)
    cv2.putText(image, text, (6, h + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, colour, thickness, cv2.LINE_AA)
    return image
