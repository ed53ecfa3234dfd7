"""Running a detector over sequences, shared by validation during training and by ``detect``."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from tqdm import tqdm

from deepfake_cli.detect.metrics import Values, binary_metrics
from deepfake_cli.detect.preprocess import FrameStore, to_tensor
from deepfake_cli.detect.sequences import SequenceRef
from deepfake_cli.detect.tracks import FaceTrack
from deepfake_cli.runtime import autocast


def sequence_batch(store: FrameStore, tracks: list[FaceTrack], refs: list[SequenceRef]) -> np.ndarray:
    """``B x T x C x H x W`` uint8 array of the given sequences."""
    return np.stack([store.sequence([tracks[r.track].files[p] for p in r.positions]) for r in refs])


def preload(store: FrameStore, tracks: list[FaceTrack], refs: list[SequenceRef], progress: bool = False) -> None:
    """Read and preprocess every face the sequences use, once, with a progress bar."""
    files = list(dict.fromkeys(tracks[r.track].files[p] for r in refs for p in r.positions))
    for path in tqdm(files, desc="preprocess", unit="face", disable=not progress, dynamic_ncols=True, leave=False):
        store.get(path)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    store: FrameStore,
    tracks: list[FaceTrack],
    refs: list[SequenceRef],
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Probability of fake for each sequence, in the order of ``refs``."""
    model.eval()
    out = []
    for i in range(0, len(refs), batch_size):
        x = to_tensor(sequence_batch(store, tracks, refs[i:i + batch_size])).to(device)
        with autocast(device, dtype):
            logits = model(x)
        out.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def video_probabilities(refs: list[SequenceRef], probs: np.ndarray) -> dict[int, float]:
    """Track index -> mean probability of its sequences."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for ref, p in zip(refs, probs):
        grouped[ref.track].append(float(p))
    return {track: float(np.mean(values)) for track, values in grouped.items()}


def level_metrics(tracks: list[FaceTrack], refs: list[SequenceRef], probs: np.ndarray,
                  threshold: float) -> dict[str, dict]:
    """Metrics at video level (mean over each video's sequences) and at sequence level."""
    videos = video_probabilities(refs, probs)
    return {
        "video": binary_metrics([tracks[t].label for t in videos], list(videos.values()), threshold),
        "sequence": binary_metrics([tracks[r.track].label for r in refs], probs, threshold),
    }


def roc_inputs(tracks: list[FaceTrack], refs: list[SequenceRef], probs: np.ndarray) -> dict[str, tuple[Values, Values]]:
    """``plot_roc`` input (labels, scores) for the video and sequence levels of scored sequences."""
    videos = video_probabilities(refs, probs)
    return {
        "video": (np.array([tracks[t].label for t in videos]), np.array(list(videos.values()))),
        "sequence": (np.array([tracks[r.track].label for r in refs]), probs),
    }
