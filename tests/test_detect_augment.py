"""``train.augment: quality``: every training face, real or fake, degraded alike and reproducibly;
evaluation faces never."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig
from deepfake_cli.detect import augment
from deepfake_cli.detect.config import validate
from deepfake_cli.detect.data import FaceSamples, loader
from deepfake_cli.detect.layouts import REAL
from deepfake_cli.detect.preprocess import FrameStore
from deepfake_cli.detect.sequences import SequenceRef
from deepfake_cli.detect.tracks import FaceTrack, tracks_from_alignments
from deepfake_cli.errors import ConfigError
from deepfake_cli.media.alignments import load_alignments

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def track(faces_a: Path) -> FaceTrack:
    (found,) = tracks_from_alignments(faces_a, load_alignments(faces_a))
    return replace(found, label=REAL, group=found.key)


def test_training_samples_are_degraded_reproducibly_and_evaluation_samples_never(track: FaceTrack) -> None:
    store = FrameStore(48, "rgb", 0.33)
    refs = [SequenceRef(0, (p,)) for p in range(6)]
    samples = FaceSamples(store, [track], refs, frame_level=True, seed=3, augment=True)
    clean = [store.get(track.files[p]) for p in range(6)]
    assert all(np.array_equal(samples[i][0].numpy(), clean[i]) for i in range(6))  # evaluation: untouched
    first = [samples[(1, i)][0] for i in range(6)]
    assert all(torch.equal(a, samples[(1, i)][0]) for i, a in enumerate(first))  # same seed, epoch, index
    changed = [not np.array_equal(face.numpy(), clean[i]) for i, face in enumerate(first)]
    assert sum(changed) >= 3  # most samples draw at least one step
    assert any(not torch.equal(first[i], samples[(2, i)][0]) for i in range(6))  # a new epoch draws anew
    assert first[0].shape == (3, 48, 48) and first[0].dtype == torch.uint8
    assert all(np.array_equal(store.get(track.files[p]), clean[p]) for p in range(6))  # the cache is not touched


def test_the_same_samples_come_out_of_worker_processes(track: FaceTrack) -> None:
    samples = FaceSamples(FrameStore(32, "rgb", 0.33), [track], [SequenceRef(0, (p,)) for p in range(6)],
                          frame_level=True, seed=1, augment=True)
    main, worker = (next(iter(loader(samples, 6, torch.device("cpu"), workers, shuffle=True, seed=1)))
                    for workers in (0, 1))
    assert torch.equal(main[0], worker[0])


def test_a_sequence_shares_one_degradation_and_edge_channels_stay(track: FaceTrack) -> None:
    store = FrameStore(48, "rgb+canny", 0.33)
    frame = store.get(track.files[0])
    sequence = np.stack([frame] * 4)
    for seed in range(12):
        out = augment.degrade_sample(sequence, augment.sample_rng(seed, 1, 0))
        assert np.array_equal(out[:, 3], sequence[:, 3])  # the edge map is not an RGB channel
        means = out[:, :3].reshape(4, -1).astype(np.float32).mean(axis=1)
        assert np.ptp(means) < 1.5  # identical frames stay alike: only the noise is drawn per frame


def test_heavy_degradations_keep_the_image_recognisable() -> None:
    rng = np.random.default_rng(0)
    face = np.kron(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    worst = augment.Degradation(gain=(1.2, 1.2, 1.2), offset=(20, 20, 20), blur=0.02, scale=0.35, noise=6.0, jpeg=35)
    out = augment.apply(face, worst, rng)
    assert out.shape == face.shape and out.dtype == np.uint8
    correlation = np.corrcoef(out.reshape(-1).astype(float), face.reshape(-1).astype(float))[0, 1]
    assert correlation > 0.6


def test_quality_augmentation_needs_rgb_input() -> None:
    config = load_config(DetectConfig, "detect", "tiny", None, ["train.augment=quality"])
    with pytest.raises(ConfigError, match="sequence.input canny"):
        validate(config)
    validate(load_config(DetectConfig, "detect", "tiny", None, ["train.augment=quality", "sequence.input=rgb"]))
