"""Data-parallel training under torchrun (CPU, gloo) and the runtime pieces around it.

The ``multiprocess`` tests start ``torchrun --nproc_per_node=2`` in a subprocess (DFK_THREADS=1
for the ranks); deselect them with ``-m "not multiprocess"``. Ranks draw their own batches (seed +
rank), so a 2-rank run is not the same run as a 1-rank one; what must hold is that each step's
gradients are the average over the ranks, i.e. the gradients of one process on the ranks' batches
joined. ``tests/ddp_worker.py`` checks that at every step against a single-process twin.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepfake_cli import runtime
from deepfake_cli.config import load_config
from deepfake_cli.errors import ConfigError
from deepfake_cli.swap import trainer as trainer_module
from deepfake_cli.swap.data import load_faces
from deepfake_cli.swap.models import SIDES
from deepfake_cli.swap.networks import build_discriminators, build_generator
from deepfake_cli.swap.schema import SwapConfig, validate
from deepfake_cli.swap.trainer import SwapTrainer

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT_S = 150  # a hung collective fails the test instead of the suite
# Per step, |DDP - single process| / |single process| (L2, per tensor) of gradients and weights:
# measured at most 1.3e-5 (rounding: the two sum the batch in a different order).
TOLERANCE = 1e-4

multiprocess = pytest.mark.multiprocess


pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(*args: str | Path, ranks: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=ranks ARGS`` with one thread per rank; a run past
    ``TIMEOUT_S`` is killed (its whole process group) and fails the test."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DFK_THREADS="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               *map(str, args)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"torchrun ran past {TIMEOUT_S} s (a rank waiting on a collective?):\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _log_steps(model_dir: Path) -> list[str]:
    with (model_dir / "log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(len([v for v in row.values() if v]) == len(row) for row in rows)  # no torn or merged rows
    return [row["step"] for row in rows]


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


# --- two ranks, one training run ------------------------------------------------------------------


@multiprocess
@pytest.mark.parametrize(("preset", "arch"), [("tiny", "df"), ("tiny-gan", "df"), ("tiny-gan", "liae")])
def test_ranks_average_gradients_like_one_process_on_the_joined_batch(preset: str, arch: str, tmp_path: Path) -> None:
    result = torchrun(WORKER, "fixed", "--preset", preset, "--steps", "3", "--out", tmp_path / "ddp.pt",
                      "--set", f"model.arch={arch}")
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    # Generator and (tiny-gan) discriminators: every step's averaged gradients and the weights after
    # it match a single process taking that step on the whole global batch from the same state.
    assert len(ddp["errors"]) == 3
    for step in ddp["errors"]:
        for kind in ("grads", "weights"):  # all tensors together tightly; each one loosely (a tensor
            # left out of the all-reduce is off by tens of percent, rounding-level ones by a few)
            assert step[kind]["all"] < TOLERANCE and step[kind]["worst"] < 0.1, ddp["errors"]
    assert any(name.startswith("discriminators.") for name in ddp["grads"]) == (preset == "tiny-gan")
    if preset == "tiny":
        # The 1-rank run on the same global batches, independently: it reaches the same weights.
        # (A gan's first steps are too sensitive for this: mask and edge terms sit on |x| kinks at
        # x = 0, where a 1e-7 change of the weights moved the next gradients by 0.4%.)
        sys.path.insert(0, str(WORKER.parent))
        try:
            from ddp_worker import relative_error, train_fixed
        finally:
            sys.path.remove(str(WORKER.parent))
        alone = train_fixed(preset, 3)
        assert relative_error(ddp["weights"], alone["weights"])["worst"] < TOLERANCE


@multiprocess
@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_nccl_ranks_average_gradients_on_their_gpus(tmp_path: Path) -> None:
    result = torchrun(WORKER, "fixed", "--preset", "tiny-gan", "--steps", "3", "--device", "cuda",
                      "--out", tmp_path / "ddp.pt")
    assert result.returncode == 0, result.stderr[-3000:]
    errors = torch.load(tmp_path / "ddp.pt", weights_only=True)["errors"]
    # fp32 without TF32; cuDNN may pick other kernels for the half batch: a looser bound than on the CPU
    assert len(errors) == 3 and all(e[kind]["all"] < 1e-3 and e[kind]["worst"] < 0.1 for e in errors
                                    for kind in ("grads", "weights")), errors


@multiprocess
def test_rank_0_alone_writes_the_folder_and_one_rank_resumes(run_dfk, faces_a: Path, faces_b: Path,
                                                             tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    result = torchrun("-m", "deepfake_cli", "-q", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir,
                      "--preset", "tiny", "--iterations", "10", "--save-every", "5", "--preview-every", "5",
                      "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained steps 0->10") == 1  # rank 0 reports, the other rank does not
    sets = {f"{step}/{name}" for step in ("ckpt-5", "ckpt-10") for name in ("model.pt", "training.pt", "state.json")}
    assert _files(model_dir) == {"config.yaml", "state.json", "log.csv", "loss.png", "model.pt", "training.pt",
                                 "checkpoint.json", "model.step5.pt", "model.step10.pt", "previews/step_000005.png",
                                 "previews/step_000010.png", "previews/latest.png"} | sets  # no strays or temp files
    assert _log_steps(model_dir) == ["5", "10"]  # one writer: no duplicate or interleaved rows
    state = json.loads((model_dir / "state.json").read_text())
    assert (state["step"], state["world_size"]) == (10, 2)
    training = torch.load(model_dir / "training.pt", weights_only=True)
    weights = torch.load(model_dir / "model.pt", weights_only=True)["generator"]
    assert not any(key.startswith("module.") for key in weights)  # the plain module's state dict
    assert training["step"] == 10

    resumed = run_dfk("train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--iterations", "15",
                      "--device", "cpu")
    assert resumed.code == 0, resumed
    assert "trained steps 10->15" in resumed.out and "trained on 2 rank(s) on 1" in resumed.err
    assert _log_steps(model_dir) == ["5", "10", "15"]
    state = json.loads((model_dir / "state.json").read_text())
    assert (state["step"], state["world_size"]) == (15, 1)


@multiprocess
def test_a_nan_on_one_rank_rolls_every_rank_back(faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    # Only rank 1's loss turns NaN (during step 8); rank 0's own losses stay finite.
    result = torchrun(WORKER, "nan", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--nan-rank", "1",
                      "--nan-call", "15")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rolled back to step 5" in result.stderr
    state = json.loads((model_dir / "state.json").read_text())  # written by rank 0
    assert (state["step"], state["rollbacks"], state["lr_scale"], state["world_size"]) == (12, 1, 0.5, 2)
    assert _log_steps(model_dir) == ["5", "10", "12"]


# Each rank reads its own model folder (DIR/rank<r>): what a rank without the shared filesystem sees.
FOLDER_PER_RANK = """
import sys
from deepfake_cli import runtime
from deepfake_cli.cli import main

at = sys.argv.index("-o") + 1
sys.argv[at] = f"{sys.argv[at]}/rank{runtime.rank()}"
main()
"""


@multiprocess
def test_a_resume_that_rank_1_cannot_see_stops_every_rank_with_one_clear_error(run_dfk, faces_a: Path,
                                                                               faces_b: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    trained = run_dfk("-q", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir / "rank0", "--preset", "tiny",
                      "--iterations", "2", "--device", "cpu")  # rank 0's folder has a checkpoint, rank 1's none
    assert trained.code == 0, trained
    script = tmp_path / "folder_per_rank.py"
    script.write_text(FOLDER_PER_RANK)
    result = torchrun(script, "-q", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--preset", "tiny",
                      "--iterations", "4", "--device", "cpu")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.stderr[-3000:]  # every rank, one line each, at once
    assert all("every rank must see the output folder on a shared filesystem: rank 1 sees the checkpoint" in line
               for line in errors)
    assert not (model_dir / "rank1").exists()  # rank 1 wrote nothing


# --- single-process pieces ------------------------------------------------------------------------


def test_rank_and_world_size_come_from_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (runtime.rank(), runtime.world_size(), runtime.local_rank(), runtime.is_distributed()) == (0, 1, 0, False)
    assert runtime.init_distributed(torch.device("cpu")) is False  # one process: no group
    runtime.barrier()  # no-ops without a group
    assert runtime.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (runtime.rank(), runtime.world_size(), runtime.local_rank(), runtime.is_distributed()) == (3, 4, 1, True)
    assert runtime.rank_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "many")
    with pytest.raises(ConfigError, match="WORLD_SIZE must be a whole number"):
        runtime.world_size()


def test_rank_device_is_the_local_rank_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.rank_device("auto") == runtime.rank_device("cuda") == torch.device("cuda", 1)
    assert runtime.rank_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="own GPU"):
        runtime.rank_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="--nproc_per_node"):
        runtime.rank_device("cuda")


def test_the_training_forward_is_one_call_of_each_network() -> None:
    config = validate(load_config(SwapConfig, "swap", "tiny-gan"))
    torch.manual_seed(0)
    net, critics = build_generator(config.model).eval(), build_discriminators(config.model).eval()
    faces = torch.rand(6, 3, config.model.size, config.model.size)
    with torch.no_grad():
        pair = net(faces, SIDES)
        latent = net.encode(faces)
        for (rgb, mask), half, side in zip(pair, latent.chunk(2), SIDES, strict=True):
            want_rgb, want_mask = net.decode(half, side)
            assert torch.allclose(rgb, want_rgb, atol=1e-6) and torch.allclose(mask, want_mask, atol=1e-6)
        scores = critics(faces.chunk(2), faces.flip(0).chunk(2))
        assert [tuple(s.shape) for s in scores[0]] == [tuple(critics["a"](faces[:3]).shape)] * 2
    assert {key.split(".")[0] for key in critics.state_dict()} == set(SIDES)  # keys as the ModuleDict had them


def test_ranks_above_0_derive_their_random_stream_from_the_checkpoint(faces_a: Path, faces_b: Path) -> None:
    config = validate(load_config(SwapConfig, "swap", "tiny"))
    faces = {side: load_faces(folder, config.model.size) for side, folder in zip(SIDES, (faces_a, faces_b))}
    cpu = torch.device("cpu")
    fresh = [SwapTrainer(config, faces, cpu, seed=5, rank=r).rng.initial_seed() for r in (0, 1)]
    assert fresh == [5, 6]  # seed + rank
    saved = SwapTrainer(config, faces, cpu, seed=5).training_state()

    def draws(rank: int) -> torch.Tensor:
        trainer = SwapTrainer(config, faces, cpu, seed=99, rank=rank)
        trainer.load_training_state(saved, "training.pt")
        return torch.rand(4, generator=trainer.rng)

    assert torch.equal(draws(0), torch.rand(4, generator=torch.Generator().manual_seed(5)))  # rank 0 continues
    assert torch.equal(draws(1), draws(1)) and not torch.equal(draws(1), draws(0))  # others: deterministic, own
    assert not torch.equal(draws(1), draws(2))


def test_a_nan_is_caught_before_the_next_checkpoint(run_dfk, monkeypatch: pytest.MonkeyPatch, faces_a: Path,
                                                    faces_b: Path, tmp_path: Path) -> None:
    calls, real_l1 = {"n": 0}, trainer_module.weighted_l1

    def flaky_l1(*args: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return real_l1(*args) * (float("nan") if calls["n"] == 15 else 1.0)  # during step 8

    monkeypatch.setattr(trainer_module, "weighted_l1", flaky_l1)
    model_dir = tmp_path / "m"
    # Rows every 5 steps, checkpoints every 3: step 9's checkpoint is where the NaN is found.
    result = run_dfk("train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--preset", "tiny",
                     "--iterations", "12", "--save-every", "3", "--device", "cpu")
    assert result.code == 0, result
    assert "in steps 7-9: rolled back to step 6" in result.err
    payload = torch.load(model_dir / "model.step9.pt", weights_only=True)  # saved again after the rollback
    assert all(torch.isfinite(t).all() for t in payload["generator"].values())
    assert _log_steps(model_dir) == ["5", "10", "12"]


def test_an_interrupted_fp16_gan_step_does_not_break_the_next(faces_a: Path, faces_b: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A step cut short between a grad scaler's step and update (an exception, Ctrl-C) used to leave
    the shared scaler mid-step, and the step after the rollback raised; a reload starts fresh scalers."""
    config = validate(load_config(SwapConfig, "swap", "tiny-gan"))
    faces = {side: load_faces(folder, config.model.size) for side, folder in zip(SIDES, (faces_a, faces_b))}
    trainer = SwapTrainer(config, faces, torch.device("cpu"), seed=0)
    # The grad scalers of an fp16 CUDA run (torch allows enabled ones on the CPU too).
    trainer.scaler, trainer.scaler_d = (torch.amp.GradScaler("cpu", enabled=True) for _ in range(2))
    trainer.step(0)
    saved = trainer.training_state()
    assert saved["scaler"]["scale"] > 0 and saved["scaler_d"]["scale"] > 0  # one scaler per optimiser
    monkeypatch.setattr(trainer.scaler_d, "update", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.step(1)  # the discriminators' scaler stepped, never updated
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="already been called"):
        trainer.step(1)  # what a rollback that kept the scalers would hit
    trainer.load_training_state(saved, "training.pt")  # what a rollback does
    losses = trainer.step(1)
    assert all(torch.isfinite(v) for v in losses.values())
    # A NaN in the discriminators' loss: their scaler skips the step and lowers its scale, no error.
    scale = trainer.scaler_d.get_scale()
    monkeypatch.setattr(trainer_module, "discriminator_loss",
                        lambda real, fake, mode: (real.mean() + fake.mean()) * float("nan"))
    trainer.step(2)
    assert trainer.scaler_d.get_scale() < scale
    assert all(torch.isfinite(p).all() for p in trainer.discriminators.parameters())
