"""``train-detect`` under torchrun: one data-parallel training over 2 CPU ranks (gloo).

Like ``test_distributed``: the ``multiprocess`` tests start ``torchrun --nproc_per_node=2`` in a
subprocess (one thread per rank); deselect them with ``-m "not multiprocess"``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler

import test_distributed
from deepfake_cli.detect.data import EpochSampler, ShardSampler
from detect_faces import write_dataset


@pytest.fixture(scope="module")
def faces_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces"), {f"g{k}": "" for k in range(4)}, frames=6)


@test_distributed.multiprocess
@pytest.mark.parametrize("preset", ["tiny", "tiny_frame"])
def test_two_ranks_train_one_detector_that_rank_0_writes(run_dfk, preset: str, faces_csv: Path,
                                                         tmp_path: Path) -> None:
    det = tmp_path / "det"
    result = test_distributed.torchrun("-m", "deepfake_cli", "-q", "train-detect", "--dataset", faces_csv, "-o", det,
                                       "--preset", preset, "--set", "train.epochs=2", "--set",
                                       "eval.frames_per_video=5", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("train-detect: val video AUC") == 1  # rank 0 reports, the other rank does not
    files = {str(p.relative_to(det)) for p in det.rglob("*") if p.is_file() and not p.parent.name.startswith("ckpt-")}
    assert files == {"config.yaml", "state.json", "log.csv", "metrics.json", "model.pt", "roc.png", "checkpoint.json",
                     "inputs.json", "run.json",
                     "training.png"}  # one writer: no strays or temp files (resume/ goes once the run is done)
    assert len([p for p in det.iterdir() if p.name.startswith("ckpt-")]) <= 2  # the set and the previous one
    state = json.loads((det / "state.json").read_text())
    assert (state["status"], state["world_size"], state["epochs_run"]) == ("done", 2, 2)
    metrics = json.loads((det / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["threshold"] == state["threshold"]
    assert len((det / "log.csv").read_text().splitlines()) == 3  # header + one row per epoch, no duplicates
    assert not any(key.startswith("module.") for key in torch.load(det / "model.pt", weights_only=True)["model"])

    scored = run_dfk("-q", "detect", faces_csv.parent / "fake" / "g0", "-m", det, "--device", "cpu")
    assert scored.code == 0, scored
    assert json.loads(scored.out)["results"][0]["status"] == "ok"


NAN_ON_RANK_1 = """
import torch
from deepfake_cli import runtime
from deepfake_cli.cli import main

if runtime.rank() == 1:  # only rank 1's loss turns NaN; rank 0's stays finite
    forward = torch.nn.BCEWithLogitsLoss.forward
    torch.nn.BCEWithLogitsLoss.forward = lambda self, x, y: forward(self, x, y) * float("nan")
main()
"""


@test_distributed.multiprocess
def test_a_nan_on_one_rank_stops_every_rank(faces_csv: Path, tmp_path: Path) -> None:
    script = tmp_path / "nan_rank.py"
    script.write_text(NAN_ON_RANK_1)
    result = test_distributed.torchrun(script, "-q", "train-detect", "--dataset", faces_csv, "-o", tmp_path / "det",
                                       "--preset", "tiny_frame", "--set", "train.epochs=2", "--device", "cpu")
    assert result.returncode != 0
    # both ranks roll back together, then stop on their own at the same check (no rank left waiting
    # in a collective)
    assert result.stderr.count("rolled back to epoch 0, learning rate x0.125 (rollback 3 of 3)") == 1  # rank 0 logs
    counts = re.findall(r"error: loss was not finite \((\d+) steps in epoch 1\) after 3 rollbacks", result.stderr)
    assert len(counts) == 2 and counts[0] == counts[1], result.stderr[-3000:]  # summed over the ranks
    assert not (tmp_path / "det" / "metrics.json").exists()


# Each rank writes and reads its own output folder (DET/rank<r>): what a rank on a node without
# the shared filesystem sees.
FOLDER_PER_RANK = """
import sys
from deepfake_cli import runtime
from deepfake_cli.cli import main

at = sys.argv.index("-o") + 1
sys.argv[at] = f"{sys.argv[at]}/rank{runtime.rank()}"
main()
"""


@test_distributed.multiprocess
def test_ranks_that_do_not_share_the_output_folder_stop_at_once_with_one_clear_error(faces_csv: Path,
                                                                                      tmp_path: Path) -> None:
    script = tmp_path / "folder_per_rank.py"
    script.write_text(FOLDER_PER_RANK)
    det = tmp_path / "det"
    result = test_distributed.torchrun(script, "-q", "train-detect", "--dataset", faces_csv, "-o", det,
                                       "--preset", "tiny_frame", "--set", "train.epochs=2", "--device", "cpu")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.stderr[-3000:]  # every rank, one line each
    assert all("every rank must see the output folder on a shared filesystem: rank 1 sees run.json" in line
               for line in errors)
    assert not (det / "rank0" / "model.pt").exists()  # before any training


# Rank 0 dies right after saving the resume checkpoint of epoch 1 (torchrun then ends rank 1).
DIES_AFTER_EPOCH_1 = """
import os
from deepfake_cli.detect import resume
from deepfake_cli.cli import main

save = resume.save_resume

def dying(folder, epoch, *args):
    save(folder, epoch, *args)
    if epoch == 1:
        os._exit(9)

resume.save_resume = dying
main()
"""


@test_distributed.multiprocess
def test_two_ranks_resume_a_killed_run_to_the_figures_of_an_uninterrupted_one(faces_csv: Path,
                                                                              tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text(DIES_AFTER_EPOCH_1)
    args = ["train-detect", "--dataset", faces_csv, "--preset", "tiny", "--set", "train.epochs=3", "--set",
            "eval.frames_per_video=5", "--device", "cpu"]
    whole = test_distributed.torchrun("-m", "deepfake_cli", "-q", *args, "-o", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = test_distributed.torchrun(script, "-q", *args, "-o", tmp_path / "cut")
    assert killed.returncode != 0 and (tmp_path / "cut" / "resume" / "progress.json").is_file()
    resumed = test_distributed.torchrun("-m", "deepfake_cli", "-q", *args, "-o", tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the unfinished run" in resumed.stderr

    def figures(path: Path) -> object:
        text = json.dumps(json.loads(path.read_text()))
        return re.sub(r'"seconds": [0-9.e-]+', '"seconds": 0', text)

    assert figures(tmp_path / "cut" / "metrics.json") == figures(tmp_path / "whole" / "metrics.json")


def test_ranks_share_each_epoch_of_one_shuffled_order() -> None:
    def passes(rank: int, ranks: int, count: int = 7) -> list[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(3)  # seeded alike on every rank
        sampler = EpochSampler(ShardSampler(RandomSampler(range(count), generator=generator), rank, ranks))
        return [list(sampler) for _ in range(2)]

    alone = passes(0, 1)
    shares = [passes(r, 2) for r in (0, 1)]
    for epoch in range(2):
        assert len(shares[0][epoch]) == len(shares[1][epoch]) == 4  # 7 padded to 8: the same steps per rank
        joined = [tag for pair in zip(shares[0][epoch], shares[1][epoch]) for tag in pair]
        assert joined[:7] == alone[epoch]  # the one-process order, dealt out; tags keep (epoch, index)
        assert joined[7] == alone[epoch][0]
    assert alone[0] != alone[1]  # a new order each epoch
    plain = EpochSampler(RandomSampler(range(7), generator=torch.Generator().manual_seed(3)))
    assert [list(plain) for _ in range(2)] == alone  # one rank: the sampler as it was
