"""``train-detect --synthetic sbi``: detectors trained on real videos only, with self-blended fakes
made on the fly from the real faces and their landmarks."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, Detector, from_paths, train_detector
from deepfake_cli.detect import synthetic
from deepfake_cli.detect.data import FaceSamples, loader
from deepfake_cli.detect.layouts import FAKE, REAL
from deepfake_cli.detect.preprocess import FrameStore, prepare_frame
from deepfake_cli.detect.sbi import self_blend_sequence
from deepfake_cli.detect.sequences import SequenceRef
from deepfake_cli.detect.splits import Partition, plan_split
from deepfake_cli.detect.tracks import FaceTrack, tracks_from_alignments
from deepfake_cli.media.alignments import load_alignments
from deepfake_cli.media.images import read_image
from deepfake_cli.media.synthetic import make_clip, write_clip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of four short real clips of the two public-domain stills (two motions each)."""
    folder = tmp_path_factory.mktemp("reals")
    for name, seed in (("astronaut", 31), ("astronaut", 32), ("grace_hopper", 33), ("grace_hopper", 34)):
        write_clip(folder / f"{name}_{seed}.mp4", make_clip(name, 10, (320, 240), seed=seed).frames)
    return folder


@pytest.fixture(scope="module")
def face_tracks(faces_a: Path, faces_b: Path) -> list[FaceTrack]:
    """Two real tracks (extract folders of the fixture clips), labelled real, one group each."""
    tracks = []
    for folder in (faces_a, faces_b):
        (track,) = tracks_from_alignments(folder, load_alignments(folder))
        tracks.append(replace(track, label=REAL, group=track.key))
    return tracks


def config(preset: str, *overrides: str) -> DetectConfig:
    return load_config(DetectConfig, "detect", preset, None,
                       ["train.synthetic=sbi", "train.epochs=2", "train.patience=9", *overrides])


def test_tracks_keep_68_landmarks_and_twins_share_the_real_videos_group(face_tracks: list[FaceTrack]) -> None:
    track = face_tracks[0]
    assert len(track.landmarks) == len(track.files) and all(p.shape == (68, 2) for p in track.landmarks)
    assert np.all((track.landmarks[0] > 0) & (track.landmarks[0] < 128))  # crop pixels, not frame pixels
    tracks, without = synthetic.add_twins(face_tracks)
    assert not without and len(tracks) == 4 and tracks[:2] == face_tracks
    for real, twin in zip(tracks[:2], tracks[2:]):
        assert twin.synthetic == twin.method == "sbi" and twin.label == FAKE and real.synthetic is None
        assert twin.group == real.group and twin.split == real.split and twin.files == real.files
    dots = replace(track, key="dots", landmarks=[np.zeros((68, 2))] * len(track))  # no face outline: no twin
    assert synthetic.add_twins([dots])[1] == ["dots"]
    # source-group splitting keeps each twin with its video: never validated while its video trains
    partition = plan_split(tracks, 0.5, 0.0, seed=0)
    for part in (partition.train, partition.val):
        assert {tracks[i].group for i in part if tracks[i].synthetic} == {tracks[i].group for i in part}


def test_sbi_fakes_in_a_batch_are_labelled_fake_fresh_each_epoch_and_reproducible(
        face_tracks: list[FaceTrack]) -> None:
    tracks, _ = synthetic.add_twins(face_tracks[:1])
    refs = [SequenceRef(t, (p,)) for t in (0, 1) for p in range(4)]
    store = FrameStore(32, "rgb", 0.33)

    def two_epochs(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batches = loader(FaceSamples(store, tracks, refs, frame_level=True, seed=seed), 8, torch.device("cpu"),
                         shuffle=True, seed=seed)
        return [next(iter(batches)) for _ in range(2)]

    first = two_epochs(seed=5)
    real_faces = [store.get(tracks[0].files[p]) for p in range(4)]
    for x, y in first:
        assert sorted(y.tolist()) == [0.0] * 4 + [1.0] * 4  # the self-blended samples are labelled fake
        for face, label in zip(x.numpy(), y.tolist()):
            is_real_face = any(np.array_equal(face, real) for real in real_faces)
            assert is_real_face == (label == 0.0)  # a fake is never the untouched face
    again = two_epochs(seed=5)
    for (x1, y1), (x2, y2) in zip(first, again):  # same seed: the same order and the same fakes
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(sorted_fakes(first[0]), sorted_fakes(first[1]))  # a new epoch blends anew
    assert not torch.equal(sorted_fakes(two_epochs(seed=6)[0]), sorted_fakes(first[0]))  # another seed too


def sorted_fakes(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    fakes = x[y == 1].reshape(int((y == 1).sum()), -1).float()
    return fakes[torch.argsort(fakes.sum(dim=1))]


def test_evaluation_fakes_are_fixed_and_sequences_blend_consistently(face_tracks: list[FaceTrack]) -> None:
    tracks, _ = synthetic.add_twins(face_tracks[:1])
    twin = tracks[1]
    store = FrameStore(32, "rgb", 0.33)
    window = SequenceRef(1, (0, 1, 2, 3, 4))
    one = FaceSamples(store, tracks, [window], frame_level=False)[0]
    two = FaceSamples(store, tracks, [window], frame_level=False, seed=99)[0]
    assert torch.equal(one[0], two[0]) and one[1].item() == 1.0  # evaluation ignores the run seed
    assert one[0].shape == (5, 3, 32, 32)
    # the T faces are one self_blend_sequence (parameters drawn once), not T independent blends
    rng = synthetic.evaluation_rng(twin, window.positions)
    sequence = self_blend_sequence([read_image(twin.files[p]) for p in window.positions],
                                   [twin.landmarks[p] for p in window.positions], rng)
    expected = np.stack([prepare_frame(fake, 32, "rgb") for fake in sequence.fakes])
    assert np.array_equal(one[0].numpy(), expected)
    assert len({(p.region, p.quality, p.ratio) for p in sequence.params}) == 1


def test_validation_uses_given_fakes_else_self_blends_and_the_ratio_shares_the_fake_class(
        face_tracks: list[FaceTrack]) -> None:
    reals = [replace(face_tracks[k % 2], key=f"r{k}", group=f"g{k}") for k in range(4)]
    given = [replace(face_tracks[k % 2], key=f"f{k}", group=f"h{k}", label=FAKE, method="gan") for k in range(2)]
    tracks, _ = synthetic.add_twins(reals + given)  # twins 6..9 of reals 0..3
    partition = Partition(train=[0, 1, 4, 6, 7], val=[2, 3, 5, 8, 9], test=[])
    settled, fakes = synthetic.settle(tracks, partition)
    assert settled.val == [2, 3, 5] and settled.train == partition.train  # given fakes validate
    assert fakes == {"train": "given+sbi", "val": "given"}
    no_given = Partition(train=[0, 1, 4, 6, 7], val=[2, 3, 8, 9], test=[])
    assert synthetic.settle(tracks, no_given)[0].val == [2, 3, 8, 9]  # else the twins, fixed seed

    for ratio, share in ((0.5, 0.5), (0.75, 0.75), (1.0, 1.0), (0.0, 0.0)):
        refs = synthetic.training_refs(tracks, partition.train, 1, 1, 8, ratio)
        real = sum(tracks[r.track].label == REAL for r in refs)
        sbi = sum(bool(tracks[r.track].synthetic) for r in refs)
        fake = sum(tracks[r.track].label == FAKE for r in refs)
        assert real == fake == 8 * 3 and sbi == pytest.approx(share * fake)  # 8 per video of the larger class


def test_real_videos_alone_train_a_frame_detector_that_detect_reads(run_dfk, reals: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "det"
    result = run_dfk("-q", "--seed", "3", "train-detect", "--real", reals, "--synthetic", "sbi", "-o", outdir,
                     "--preset", "tiny_frame", "--set", "train.epochs=2", "--device", "cpu")
    assert result.code == 0, result
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert metrics["inputs"]["videos"] == {"real": 4, "fake": 0}
    assert metrics["synthetic"]["kind"] == "sbi" and metrics["synthetic"]["twins"] == 4
    assert metrics["fakes"] == {"train": "sbi", "val": "sbi"}
    assert metrics["data"]["train"]["sbi_sequences"] == metrics["data"]["train"]["sequences"]["fake"] > 0
    assert metrics["data"]["val"]["videos"]["fake"] == metrics["data"]["val"]["videos"]["real"] >= 1
    assert json.loads((outdir / "state.json").read_text())["synthetic"] == "sbi"

    scored = run_dfk("-q", "detect", sorted(reals.iterdir())[0], "-m", outdir, "--device", "cpu")
    assert scored.code == 0, scored
    (video,) = json.loads(scored.out)["results"]
    assert video["status"] == "ok" and 0.0 <= video["probability"] <= 1.0 and video["label"] in ("real", "fake")

    shutil.copytree(outdir / "faces", tmp_path / "again" / "faces")  # same faces, same seed: same run
    again = run_dfk("-q", "--seed", "3", "train-detect", "--real", reals, "--synthetic", "sbi",
                    "-o", tmp_path / "again", "--preset", "tiny_frame", "--set", "train.epochs=2", "--device", "cpu")
    assert again.code == 0, again
    repeated = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert repeated["val"] == metrics["val"] and repeated["threshold"] == metrics["threshold"]
    assert (tmp_path / "again" / "log.csv").read_text().split("seconds")[1].count(",") > 0
    losses = [[row.split(",")[1] for row in (folder / "log.csv").read_text().splitlines()[1:]]
              for folder in (outdir, tmp_path / "again")]
    assert losses[0] == losses[1]


def test_sequence_detector_trains_on_self_blended_sequences(reals: Path, tmp_path: Path) -> None:
    report = train_detector(from_paths([reals], [], fakes_required=False), tmp_path / "seq",
                            config("tiny", "sequence.train_per_video=3"), device="cpu", seed=0, progress=False)
    assert report["model"]["kind"] == "sequence" and report["fakes"]["train"] == "sbi"
    assert report["data"]["train"]["sequences"]["fake"] == report["data"]["train"]["sbi_sequences"] > 0
    assert report["val"]["sequence"]["count"] > 0 and report["epochs_run"] == 2
    Detector(tmp_path / "seq", device="cpu")


@pytest.mark.parametrize("extra,message", [
    ([], "both --real and --fake, or --real with --synthetic sbi"),
    (["--synthetic", "none"], "--real with --synthetic sbi"),
    (["--synthetic", "gan"], "'gan' is not one of 'none', 'sbi'"),
    (["--set", "train.synthetic_ratio=2"], "train.synthetic_ratio must be in [0, 1]"),
])
def test_real_videos_without_fakes_or_synthetic_give_one_clear_error(run_dfk, reals: Path, tmp_path: Path,
                                                                      extra: list[str], message: str) -> None:
    args = ["train-detect", "--real", reals, "-o", tmp_path / "x", *extra]
    if "train.synthetic_ratio=2" in extra:
        args += ["--synthetic", "sbi"]
    result = run_dfk(*args)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert message in result.err, result
    if "--synthetic" not in extra or extra[1] != "gan":  # click's own usage error for a bad choice
        assert len(lines) == 1 and lines[0].startswith("error:"), result
    assert not (tmp_path / "x").exists()


def test_worker_processes_give_the_same_batches_as_the_main_process_every_epoch(
        face_tracks: list[FaceTrack]) -> None:
    tracks, _ = synthetic.add_twins(face_tracks[:1])
    refs = [SequenceRef(t, (p,)) for t in (0, 1) for p in range(6)]
    samples = FaceSamples(FrameStore(32, "rgb", 0.33), tracks, refs, frame_level=True, seed=1, augment=True)
    runs = []
    for workers in (0, 1, 2):
        batches = loader(samples, 4, torch.device("cpu"), workers, shuffle=True, seed=1)
        runs.append([list(batches) for _ in range(3)])  # three whole epochs
    # the order, the self-blended fakes and the augmentation depend on (seed, epoch, index) only
    for other in runs[1:]:
        for epoch_main, epoch_other in zip(runs[0], other):
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch_main, epoch_other))
    assert not torch.equal(runs[0][0][0][0], runs[0][1][0][0])  # each epoch is a new order
