"""Running a detector over face tracks and turning its scores into metrics, shared by validation,
testing, ``detect`` and ``detect --dataset``.

Every evaluation scores *windows*: runs of ``sequence.frames`` faces of a track. A sequence model
gives each window one probability; a frame model scores each face of the windows and a window's
probability is the mean of its faces'. A video's probability is the mean over its windows
(sequence models) or over its distinct scored faces (frame models). Metrics are reported per level:
``frame`` (frame models only), ``sequence`` (windows) and ``video``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from deepfake_cli.detect.data import FaceSamples, batches
from deepfake_cli.detect.layouts import FAKE, REAL
from deepfake_cli.detect.metrics import Values, binary_metrics, eer
from deepfake_cli.detect.preprocess import FrameStore
from deepfake_cli.detect.sequences import SequenceRef, evaluation_sequences
from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.runtime import autocast

FrameKey = tuple[int, int]  # (track index, face position in the track)


def preload(store: FrameStore, tracks: list[FaceTrack], refs: list[SequenceRef], progress: bool = False) -> None:
    """Read and preprocess every face the sequences use, once, with a progress bar (a no-op for a
    store that does not cache)."""
    if not store.cache:
        return
    files = list(dict.fromkeys(tracks[r.track].files[p] for r in refs for p in r.positions))
    for path in tqdm(files, desc="preprocess", unit="face", disable=not progress, dynamic_ncols=True, leave=False):
        store.get(path)


def model_kind(model: torch.nn.Module) -> str:
    """``frame`` (one face in, one logit out) or ``sequence`` (T faces in, one logit out)."""
    return str(getattr(model, "kind", "sequence"))


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    store: FrameStore,
    tracks: list[FaceTrack],
    refs: list[SequenceRef],
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Probability of fake for each sequence (one face each for a frame model), in the order of
    ``refs``. Batches reach the device as uint8; the probabilities come back in one transfer."""
    model.eval()
    samples = FaceSamples(store, tracks, refs, model_kind(model) == "frame")
    out = []
    total = math.ceil(len(samples) / batch_size)
    for x, _ in tqdm(batches(samples, batch_size, device, workers), total=total, desc="score", unit="batch",
                     disable=not progress, dynamic_ncols=True, leave=False):
        with autocast(device, dtype):
            logits = model(model.normalise(x))
        out.append(torch.sigmoid(logits.float()))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)


@dataclass
class Scores:
    """Probabilities of fake for scored windows of tracks (and their faces, for a frame model)."""

    windows: list[SequenceRef]
    window_probs: np.ndarray
    frame_keys: list[FrameKey] | None = None
    frame_probs: np.ndarray | None = None

    def videos(self) -> dict[int, float]:
        """Track index -> its probability: mean over windows, or over distinct faces for a frame model."""
        grouped: dict[int, list[float]] = defaultdict(list)
        if self.frame_keys is not None and self.frame_probs is not None:
            for (track, _), p in zip(self.frame_keys, self.frame_probs):
                grouped[track].append(float(p))
        else:
            for ref, p in zip(self.windows, self.window_probs):
                grouped[ref.track].append(float(p))
        return {track: float(np.mean(values)) for track, values in grouped.items()}

    def subset(self, keep: set[int]) -> "Scores":
        """Only the windows and faces of the tracks in ``keep``."""
        chosen = [k for k, ref in enumerate(self.windows) if ref.track in keep]
        windows = [self.windows[k] for k in chosen]
        probs = self.window_probs[chosen] if chosen else np.zeros(0, np.float32)
        if self.frame_keys is None or self.frame_probs is None:
            return Scores(windows, probs)
        faces = [k for k, key in enumerate(self.frame_keys) if key[0] in keep]
        return Scores(windows, probs, [self.frame_keys[k] for k in faces],
                      self.frame_probs[faces] if faces else np.zeros(0, np.float32))


def evaluation_windows(tracks: list[FaceTrack], indices: list[int], frames: int, stride: int,
                       frames_per_video: int) -> list[SequenceRef]:
    """The windows an evaluation scores: non-overlapping, spread evenly over each track, covering
    about ``frames_per_video`` faces (rounded up to whole windows; 0 = every face)."""
    limit = math.ceil(frames_per_video / frames) if frames_per_video > 0 else 0
    return evaluation_sequences(tracks, indices, frames, stride, limit)


def score_windows(
    model: torch.nn.Module,
    store: FrameStore,
    tracks: list[FaceTrack],
    windows: list[SequenceRef],
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = False,
) -> Scores:
    """Run ``model`` over ``windows``: once per window (sequence model) or once per distinct face."""
    if model_kind(model) != "frame":
        return Scores(windows, predict(model, store, tracks, windows, device, dtype, batch_size, workers, progress))
    keys = list(dict.fromkeys((ref.track, p) for ref in windows for p in ref.positions))
    faces = predict(model, store, tracks, [SequenceRef(t, (p,)) for t, p in keys], device, dtype, batch_size,
                    workers, progress)
    lookup = dict(zip(keys, faces))
    window_probs = np.array([np.mean([lookup[(ref.track, p)] for p in ref.positions]) for ref in windows],
                            dtype=np.float32)
    return Scores(windows, window_probs, keys, faces)


def level_metrics(tracks: list[FaceTrack], scores: Scores, threshold: float) -> dict[str, dict[str, Any]]:
    """Metrics per level: ``video``, ``sequence`` and, for a frame model, ``frame``."""
    videos = scores.videos()
    result = {
        "video": binary_metrics([tracks[t].label for t in videos], list(videos.values()), threshold),
        "sequence": binary_metrics([tracks[r.track].label for r in scores.windows], scores.window_probs, threshold),
    }
    if scores.frame_keys is not None and scores.frame_probs is not None:
        result["frame"] = binary_metrics([tracks[t].label for t, _ in scores.frame_keys], scores.frame_probs,
                                         threshold)
    return result


def fakes_by(tracks: list[FaceTrack], scores: Scores, threshold: float,
             field: str) -> dict[str, dict[str, Any]]:
    """Per value of the fakes' ``field`` (``method``: the generator; ``family``: swap, reenact,
    synth) named by the dataset: the level metrics on every real video plus the fakes with that
    value. Empty when no scored fake names one."""
    scored = {ref.track for ref in scores.windows}
    names = sorted({getattr(tracks[t], field) for t in scored if tracks[t].label == FAKE and getattr(tracks[t], field)})
    reals = {t for t in scored if tracks[t].label == REAL}
    return {name: level_metrics(tracks, scores.subset(reals | {t for t in scored if getattr(tracks[t], field) == name}),
                                threshold)
            for name in names}


def per_fake_kind(tracks: list[FaceTrack], scores: Scores, threshold: float) -> dict[str, dict[str, Any]]:
    """``per_method`` and ``per_family`` metrics (``fakes_by``), each only when the dataset names them."""
    found = {f"per_{field}": fakes_by(tracks, scores, threshold, field) for field in ("method", "family")}
    return {key: value for key, value in found.items() if value}


def eer_threshold(tracks: list[FaceTrack], scores: Scores) -> float | None:
    """The threshold at the equal error rate of the scored videos (else of the windows); None when
    the scores lack a class.

    Every threshold between two neighbouring scores gives the same errors; when the EER point
    falls on a score, the threshold moves to the middle of the gap below it, so the decisions it
    gives on these scores do not hinge on that one score's last digits.
    """
    videos = scores.videos()
    labels, values = [tracks[t].label for t in videos], np.array(list(videos.values()))
    found = eer(labels, values)
    if found is None:
        labels, values = [tracks[r.track].label for r in scores.windows], np.asarray(scores.window_probs, float)
        found = eer(labels, values)
    if found is None:
        return None
    threshold = found[1]
    below, at_or_above = values[values < threshold], values[values >= threshold]
    if below.size and at_or_above.size and at_or_above.min() == threshold:
        threshold = (float(below.max()) + threshold) / 2
    return float(min(max(threshold, 1e-6), 1.0 - 1e-6))


def roc_inputs(tracks: list[FaceTrack], scores: Scores, prefix: str = "") -> dict[str, tuple[Values, Values]]:
    """``plot_roc`` input (labels, scores) per level, names prefixed by ``prefix``."""
    videos = scores.videos()
    curves: dict[str, tuple[Values, Values]] = {
        f"{prefix}video": (np.array([tracks[t].label for t in videos]), np.array(list(videos.values()))),
        f"{prefix}sequence": (np.array([tracks[r.track].label for r in scores.windows]), scores.window_probs),
    }
    if scores.frame_keys is not None and scores.frame_probs is not None:
        curves[f"{prefix}frame"] = (np.array([tracks[t].label for t, _ in scores.frame_keys]), scores.frame_probs)
    return curves
