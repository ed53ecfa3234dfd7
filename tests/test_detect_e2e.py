"""End to end on tiny generated data: train-detect, detect, cross-dataset evaluation, CLI errors.

Real videos are the fixture clips (and a few more clips of the same two public-domain stills with
other motion seeds). Each fake is the same clip with its face region swapped: the other person's
face is warped onto the face, rendered at a quarter of the resolution (like the output of a small
face-swap generator), colour-matched and blended in with a feathered elliptical mask. Only the
face region changes; background, hair and motion are the real clip's.

Both identities appear on both sides of the split, so a high AUC here shows the pipeline learns
the manipulation on this data, not that it generalises to unseen people or generators.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.detect import DetectConfig, Detector, read_dataset, train_detector
from deepfake_cli.detect.splits import plan_split
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import STILLS, Clip, load_still, make_clip, write_clip
from deepfake_cli.media.video import VideoReader

OTHER = {"astronaut": "grace_hopper", "grace_hopper": "astronaut"}


def swap_face_region(clip: Clip, name: str, shrink: int = 4) -> list[np.ndarray]:
    """The clip's frames with the face replaced by a low-resolution, blended face of the other still."""
    target, donor = STILLS[name], STILLS[OTHER[name]]
    donor_image = load_still(OTHER[name])
    s = target.face_size / donor.face_size  # donor still -> target still: match face centre and size
    to_target = np.array([[s, 0, target.center[0] - s * donor.center[0]],
                          [0, s, target.center[1] - s * donor.center[1]]])
    ellipse = np.zeros(load_still(name).shape[:2], np.float32)
    centre = (int(target.center[0]), int(target.center[1] + 0.05 * target.face_size))
    cv2.ellipse(ellipse, centre, (int(0.36 * target.face_size), int(0.48 * target.face_size)), 0, 0, 360, 1.0, -1)
    fakes = []
    for frame, matrix in zip(clip.frames, clip.matrices):
        height, width = frame.shape[:2]
        to_frame = np.hstack([matrix[:, :2] @ to_target[:, :2],
                              (matrix[:, :2] @ to_target[:, 2] + matrix[:, 2])[:, None]])
        donor_frame = cv2.warpAffine(donor_image, to_frame, (width, height), borderMode=cv2.BORDER_REFLECT)
        small = cv2.resize(donor_frame, (width // shrink, height // shrink), interpolation=cv2.INTER_AREA)
        swapped = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        mask = cv2.warpAffine(ellipse, matrix, (width, height))
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        mask = cv2.GaussianBlur(mask, (0, 0), 0.04 * target.face_size * scale)[..., None]
        inside = mask[..., 0] > 0.5
        real = frame.astype(np.float32)
        swapped += real[inside].mean(axis=0) - swapped[inside].mean(axis=0)
        fakes.append(np.clip(real * (1 - mask) + swapped * mask, 0, 255).astype(np.uint8))
    return fakes


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, clip_a: Path, clip_b: Path, clip_a_data: Clip,
            clip_b_data: Clip) -> Path:
    """A DFDC-style dataset (metadata.json, real/ and fake/ folders): 8 real clips and their 8 swaps."""
    root = tmp_path_factory.mktemp("detect_dataset")
    clips = [("astronaut", clip_a_data, clip_a), ("grace_hopper", clip_b_data, clip_b)]
    clips += [(name, make_clip(name, 20, (320, 240), seed=seed), None)
              for name in OTHER for seed in (11, 12, 13)]
    metadata = {}
    for k, (name, clip, encoded) in enumerate(clips):
        real, fake = f"real/{name}_{k}.mp4", f"fake/{name}_{k}_swap.mp4"
        (root / "real").mkdir(exist_ok=True)
        if encoded is not None:
            shutil.copy(encoded, root / real)
        else:
            write_clip(root / real, clip.frames)
        write_clip(root / fake, swap_face_region(clip, name))
        metadata[real] = {"label": "REAL", "split": "train"}
        metadata[fake] = {"label": "FAKE", "split": "train", "original": real}
    (root / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return root


@pytest.fixture(scope="module")
def planned() -> list:
    """The (tracks, partition) of each split the ``trained`` fixture's training planned."""
    return []


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: Path, planned: list) -> tuple[Path, dict]:
    """The tiny detector trained on the dataset through the Python API, and its metrics."""
    from deepfake_cli.detect import trainer

    def recorded(tracks, *args, **kwargs):
        partition = plan_split(tracks, *args, **kwargs)
        planned.append((tracks, partition))
        return partition

    outdir = tmp_path_factory.mktemp("detector")
    config = load_config(DetectConfig, "detect", "tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "plan_split", recorded)
        report = train_detector(read_dataset(dataset), outdir, config, device="cpu", seed=0, progress=False)
    return outdir, report


def test_tiny_detector_separates_real_from_face_swapped(trained: tuple[Path, dict], planned: list,
                                                        dataset: Path) -> None:
    outdir, report = trained
    validation = report["val"]
    assert report["inputs"]["videos"] == {"real": 8, "fake": 8} and not report["inputs"]["skipped"]
    assert report["protocol"] == {"val": "held out", "test": None} and "test" not in report
    assert report["threshold_from"] == "val EER" and validation["video"]["threshold"] == report["threshold"]
    assert validation["video"]["auc"] >= 0.9 and validation["sequence"]["auc"] >= 0.9
    assert validation["sequence"]["accuracy"] >= 0.9  # calibrated at the threshold, not only ranked
    for key in ("accuracy", "auc", "eer", "average_precision", "log_loss", "confusion", "threshold"):
        assert key in validation["video"] and key in validation["sequence"]
    # Split by source group: no fake is validated while its original is trained on (or vice versa).
    data = report["data"]
    assert data["train"]["sequences"]["real"] == data["train"]["sequences"]["fake"]  # balanced
    (tracks, partition), = planned  # the split this training used
    assert partition.train and partition.val and not partition.test
    assert sorted(partition.train + partition.val) == list(range(len(tracks))) == list(range(16))
    groups = [{tracks[i].group for i in side} for side in (partition.train, partition.val)]
    assert not groups[0] & groups[1]
    side = {Path(tracks[i].key).name: part for part, indices in (("train", partition.train), ("val", partition.val))
            for i in indices}  # video file name -> the side it is on
    originals = {Path(k).name: Path(v["original"]).name
                 for k, v in json.loads((dataset / "metadata.json").read_text()).items() if v.get("original")}
    assert len(originals) == 8 and all(side[fake] == side[real] for fake, real in originals.items())


def test_detector_directory_contents(trained: tuple[Path, dict]) -> None:
    outdir, report = trained
    for name in ("model.pt", "config.yaml", "state.json", "metrics.json", "log.csv", "roc.png", "training.png"):
        assert (outdir / name).is_file(), name
    assert torch.load(outdir / "model.pt", weights_only=True)["model"]
    state = json.loads((outdir / "state.json").read_text())
    assert state["epoch"] == report["best_epoch"] and state["status"] == "done"
    assert state["threshold"] == report["threshold"]
    assert json.loads((outdir / "metrics.json").read_text())["val"] == report["val"]
    assert len((outdir / "log.csv").read_text().splitlines()) == report["epochs_run"] + 1


def test_frame_model_learns_the_swap_and_scores_every_face(trained: tuple[Path, dict], dataset: Path,
                                                          tmp_path: Path) -> None:
    shutil.copytree(trained[0] / "faces", tmp_path / "frame" / "faces")  # same face settings: reused
    config = load_config(DetectConfig, "detect", "tiny_frame")
    report = train_detector(read_dataset(dataset), tmp_path / "frame", config, device="cpu", seed=0, progress=False)
    assert report["inputs"]["faces_reused"] == 16 and report["model"]["kind"] == "frame"
    assert set(report["val"]) == {"frame", "sequence", "video"}
    assert report["val"]["video"]["auc"] >= 0.9 and report["val"]["frame"]["auc"] >= 0.9
    # every face of these 20- and 30-frame clips is scored (up to eval.frames_per_video = 32)
    assert report["val"]["frame"]["count"] >= 20 * sum(report["data"]["val"]["videos"].values())


def test_cross_validation_reuses_cached_faces(run_dfk, trained: tuple[Path, dict], dataset: Path,
                                              tmp_path: Path) -> None:
    shutil.copytree(trained[0] / "faces", tmp_path / "det" / "faces")
    result = run_dfk("-q", "train-detect", "--real", dataset / "real", "--fake", dataset / "fake",
                     "-o", tmp_path / "det", "--preset", "tiny", "--folds", "2", "--set", "train.epochs=2",
                     "--device", "cpu")
    assert result.code == 0, result
    assert "2-fold val video AUC" in result.out
    metrics = json.loads((tmp_path / "det" / "metrics.json").read_text())
    assert metrics["inputs"]["faces_reused"] == 16 and metrics["inputs"]["faces_extracted"] == 0
    assert len(metrics["folds"]) == 2 and metrics["kept_fold"] in (1, 2)
    auc = metrics["cross_validation"]["val"]["video"]["auc"]
    assert set(auc) == {"mean", "std", "folds"} and auc["folds"] == 2
    for fold in ("fold1", "fold2"):
        assert (tmp_path / "det" / fold / "model.pt").is_file()
    Detector(tmp_path / "det", device="cpu")  # the kept model loads


def test_detect_videos_to_json_csv_and_annotated_video(run_dfk, trained: tuple[Path, dict], dataset: Path,
                                                       tmp_path: Path) -> None:
    detector = trained[0]
    real, fake = dataset / "real" / "astronaut_0.mp4", dataset / "fake" / "astronaut_0_swap.mp4"
    result = run_dfk("-q", "detect", real, fake, "-m", detector, "-o", tmp_path / "scores.json",
                     "--device", "cpu")
    assert result.code == 0, result
    document = json.loads((tmp_path / "scores.json").read_text())
    by_input = {Path(r["input"]).name: r for r in document["results"]}
    assert by_input[real.name]["label"] == "real" and by_input[fake.name]["label"] == "fake"
    assert by_input[fake.name]["probability"] > by_input[real.name]["probability"]
    sequences = by_input[real.name]["sequences"]
    assert sequences[0]["start_frame"] == 0 and sequences[-1]["end_frame"] == 29 and len(sequences) == 6
    mean = np.mean([s["probability"] for s in sequences])
    assert by_input[real.name]["probability"] == pytest.approx(mean, abs=1e-5)
    assert len(by_input[real.name]["frames"]) == 30

    result = run_dfk("-q", "detect", fake, "-m", detector, "--format", "csv", "--annotate", tmp_path / "ann.mp4",
                     "--threshold", "0.99", "--device", "cpu")
    assert result.code == 0, result
    rows = result.out.strip().splitlines()
    assert rows[0] == "input,source,status,level,start_frame,end_frame,probability,label"
    assert rows[1].split(",")[3] == "video" and rows[1].endswith(",real")  # threshold 0.99
    assert sum(",sequence," in row for row in rows) == 6
    assert sum(1 for _ in VideoReader(tmp_path / "ann.mp4")) == 30


def test_images_faceless_and_unreadable_inputs_are_reported_not_fatal(run_dfk, trained: tuple[Path, dict],
                                                                      clip_a_data: Clip, faces_a: Path,
                                                                      tmp_path: Path) -> None:
    write_image(tmp_path / "face.png", clip_a_data.frames[0])
    write_image(tmp_path / "blank.png", np.full((120, 160, 3), 128, np.uint8))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    result = run_dfk("-q", "detect", tmp_path / "face.png", tmp_path / "blank.png", tmp_path / "broken.mp4",
                     faces_a, "-m", trained[0], "--device", "cpu")
    assert result.code == 0, result
    results = json.loads(result.out)["results"]
    assert [r["status"] for r in results] == ["ok", "no_face", "error", "ok"]
    image = results[0]
    assert image["level"] == "frame" and image["sequences"] == [] and 0 <= image["probability"] <= 1
    assert results[3]["level"] == "video" and results[3]["faces"] == 30  # an extract folder, one source


def test_dataset_evaluation_writes_the_training_metrics(run_dfk, trained: tuple[Path, dict], dataset: Path,
                                                        tmp_path: Path) -> None:
    result = run_dfk("-q", "detect", "--dataset", dataset, "-m", trained[0], "-o", tmp_path / "eval.json",
                     "--device", "cpu")
    assert result.code == 0, result
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert set(evaluation["metrics"]) == {"video", "sequence"}
    assert set(evaluation["metrics"]["video"]) == set(trained[1]["val"]["video"])
    assert evaluation["threshold"] == trained[1]["threshold"]
    assert evaluation["metrics"]["video"]["count"] == 16 and evaluation["metrics"]["video"]["auc"] >= 0.9
    assert (tmp_path / "eval.roc.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["train-detect", "--dataset", "{data}", "--real", "{data}", "-o", "{tmp}/x"], "not both"),
    (["train-detect", "--real", "{data}/real", "-o", "{tmp}/x"], "both --real and --fake"),
    (["train-detect", "--dataset", "{tmp}/nowhere", "-o", "{tmp}/x"], "dataset not found"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--preset", "huge"], "unknown detect preset"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--set", "model.depth=3"], "model.depth"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--set", "model.name=resnet"], "unknown model.name"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--preset", "efficientnet_b0", "--set",
      "sequence.input=canny"], "takes sequence.input rgb"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--set", "model.weights=imagenet"],
     "no ImageNet weights"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--set", "model.weights={tmp}/none.pt"],
     "model.weights file not found"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--set", "train.monitor=frame_auc"],
     "needs a frame model"),
    (["train-detect", "--dataset", "{data}", "-o", "{tmp}/x", "--set", "train.threshold=1.5"], "train.threshold"),
    (["detect", "{data}/real/astronaut_0.mp4", "-m", "{tmp}"], "not a detector directory"),
    (["detect", "-m", "{tmp}"], "--dataset ROOT"),
    (["detect", "{data}/real", "{data}/fake", "-m", "{tmp}", "--annotate", "{tmp}/a.mp4"], "exactly one input video"),
])
def test_cli_errors_are_one_line(run_dfk, dataset: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run_dfk(*[a.format(data=dataset, tmp=tmp_path) for a in args])
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result


def test_traversal_in_a_dataset_is_refused_by_the_cli(run_dfk, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "labels.csv").write_text("path,label\n../../etc/passwd,fake\n")
    result = run_dfk("train-detect", "--dataset", tmp_path / "ds" / "labels.csv", "-o", tmp_path / "x")
    assert result.code != 0 and "leaves the dataset root" in result.err
