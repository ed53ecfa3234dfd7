"""The ``hires`` swap preset (128 px, sized for a GPU): config, generator, parameter count, the
memory of a training step at the preset's batch size, the 256 px variant, real training steps on the
CPU and, where there is one, on a CUDA GPU."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from deepfake_cli.config import available_presets
from deepfake_cli.swap import load_swap_model, swap_config, train_swap
from deepfake_cli.swap.data import FaceSet, load_faces
from deepfake_cli.swap.networks import build_generator
from deepfake_cli.swap.schema import MIN_SSIM_PX, SwapConfig, active_terms
from deepfake_cli.swap.trainer import SwapTrainer

GiB = 2**30
# ~101.1 M: encoder 69.9 M (convs 17.4 M, dense layers 33.6 M, closing upscale 18.9 M), decoders 15.6 M each.
PARAMS = (95e6, 108e6)
# A training step has to fit a 24 GB GPU with room for the CUDA context, cuDNN workspaces and
# fragmentation of the caching allocator.
MEMORY_BUDGET = 20 * GiB
# The trainer keeps both face sets on the training device: uint8 RGB + a float32 weight map per face.
FACES_PER_IDENTITY = 5000
MARKER_BYTES = 7_777_777  # an allocation of this size marks the start of the measured step
HIRES_256 = ("model.size=256", "model.encoder_widths=[32,64,128,256,512,1024]",
             "model.decoder_widths=[512,256,128,64,64]", "loss.ssim_scales=5")



def _hires(model_dir: Path, *overrides: str) -> SwapConfig:
    """The preset as ``dfk train-swap --preset hires --set ...`` resolves it (validated)."""
    return swap_config(model_dir, "hires", overrides=list(overrides))


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_preset_loads_and_is_a_gpu_sized_original_model(tmp_path: Path) -> None:
    assert "hires" in available_presets("swap")
    config = _hires(tmp_path)
    model, loss, train = config.model, config.loss, config.train
    assert (model.kind, model.size, model.attention_at) == ("original", 128, [])
    assert len(model.decoder_widths) == len(model.encoder_widths) - 1
    assert model.size // 2 ** len(model.encoder_widths) == 4  # the dense layers work on a 4x4 grid
    # L1 + multi-scale SSIM, every scale at least MIN_SSIM_PX (validate checks it; here it is explicit).
    assert loss.recon == 1.0 and loss.ssim == 1.0 and loss.ssim_scales >= 3
    assert model.size // 2 ** (loss.ssim_scales - 1) >= MIN_SSIM_PX
    assert {"recon", "ssim"} <= set(active_terms(config))
    assert 0 < loss.background < 1 and (loss.eye, loss.mouth) == (3.0, 2.0)
    assert train.warmup > 0 and train.lr_schedule == "cosine" and 0 < train.lr_min < 1
    assert train.precision == "auto" and 10_000 <= train.iterations < 100_000
    assert train.save_every >= 1000 and train.preview_every >= 100 and train.log_every >= 10
    assert train.warmup < train.save_every < train.iterations


def test_generator_maps_128px_faces_to_128px_faces(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_generator(_hires(tmp_path).model).eval()
    assert PARAMS[0] < _params(net) < PARAMS[1]
    faces = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        latent = net.encode(faces)
        assert latent.shape == (2, 512, 8, 8)
        for side in "ab":
            rgb, mask = net.decode(latent, side)
            assert rgb.shape == (2, 3, 128, 128) and mask is None
            assert 0 <= float(rgb.min()) and float(rgb.max()) <= 1


def test_256px_with_matching_widths_validates_and_builds(tmp_path: Path) -> None:
    config = _hires(tmp_path, *HIRES_256)
    assert (config.model.size, config.loss.ssim_scales) == (256, 5)
    with torch.device("meta"):  # shapes and parameters without allocating weights
        net = build_generator(config.model)
        rgb, _ = net(torch.empty(2, 3, 256, 256), "a")
    assert rgb.shape == (2, 3, 256, 256)
    assert PARAMS[0] < _params(net) < PARAMS[1]  # the same dense grid (4x4), so about the same size


def _allocations(prof: Any) -> list[Any]:
    """The profiler's CPU allocation records (size, running total) in time order."""
    def walk(nodes: Any) -> Iterator[Any]:
        for node in nodes:
            yield node
            yield from walk(node.children)

    tree = prof.profiler.kineto_results.experimental_event_tree()
    events = [(node.start_time_ns, node.extra_fields) for node in walk(tree)
              if node.tag == torch._C._profiler._EventType.Allocation]
    return [fields for _, fields in sorted(events, key=lambda event: event[0])]


def _state_bytes(trainer: SwapTrainer) -> int:
    """Bytes of the generator's weights, gradients and Adam moments (each storage once)."""
    tensors = [t for p in trainer.generator.parameters() for t in (p, p.grad) if t is not None]
    tensors += [v for state in trainer.opt_g.state.values() for v in state.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def test_training_step_memory_at_the_preset_batch_size_fits_the_budget(tmp_path: Path, one_thread: None) -> None:
    """Measures the peak tensor memory of one real ``SwapTrainer.step`` at the preset's batch size.

    Method: the step runs on the CPU in fp32 under ``torch.profiler`` with ``profile_memory``; the
    profiler records every tensor allocation and free of PyTorch's CPU allocator together with the
    running total of live bytes. The peak of that total over the step, above its value when the
    step starts, is the memory the step adds: warped/target batches, activations saved for the
    backward pass, losses (MS-SSIM), the new gradients (the previous step's are freed by
    ``zero_grad`` before the backward pass) and optimiser temporaries. A warm-up step runs first,
    inside the same profiling session, so the measured step is a steady-state one (Adam moments and
    old gradients exist, and every tensor freed during it was allocated under the profiler).
    Added to it: the weights, gradients and Adam moments present at the start (summed from the
    tensors themselves), a 2-byte copy of each weight that bf16/fp16 autocast caches on CUDA, and
    the face sets the trainer keeps on the device (``FACES_PER_IDENTITY`` per identity).

    fp32 bounds CUDA's bf16/fp16 autocast from above: there activations take half the bytes (losses
    run in fp32 either way). Not counted: the CUDA context and cuDNN workspaces (outside
    ``max_memory_allocated`` or transient); the budget leaves room for them. The CUDA test below
    checks ``torch.cuda.max_memory_allocated`` against the same budget on a real GPU.
    """
    config = _hires(tmp_path, "train.precision=fp32")
    size, batch_size = config.model.size, config.train.batch_size
    assert batch_size == 16  # the figure below is for the preset's batch size
    generator = torch.Generator().manual_seed(0)
    faces = {side: FaceSet(tmp_path, torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8,
                                                   generator=generator),
                           torch.ones(batch_size, 1, size, size), [], None) for side in "ab"}
    trainer = SwapTrainer(config, faces, torch.device("cpu"), seed=0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        config.train.batch_size = 1
        trainer.step(0)  # Adam moments and gradients now exist
        state = _state_bytes(trainer)
        marker = torch.empty(MARKER_BYTES, dtype=torch.uint8)
        del marker
        config.train.batch_size = batch_size
        losses = trainer.step(1)
    assert all(math.isfinite(float(v)) for v in losses.values())
    records = _allocations(prof)
    start = next(i for i, r in enumerate(records) if r.alloc_size == MARKER_BYTES)
    before = records[start].total_allocated - MARKER_BYTES
    step_peak = max(r.total_allocated for r in records[start + 2:]) - before  # past the marker and its free

    params = _params(trainer.generator)
    # fp32 weights, gradients and two Adam moments (plus Adam's step counters): the state was all seen.
    assert 16 * params <= state < 16 * params + 2**20
    face_bytes = 2 * FACES_PER_IDENTITY * (3 + 4) * size * size
    estimate = state + step_peak + 2 * params + face_bytes
    print(f"\nhires step memory at batch {batch_size} (x2 identities): weights+grads+Adam {state / GiB:.2f} GiB, "
          f"step peak +{step_peak / GiB:.2f} GiB (fp32), autocast weight copies {2 * params / GiB:.2f} GiB, "
          f"faces {face_bytes / GiB:.2f} GiB -> {estimate / GiB:.2f} GiB (budget {MEMORY_BUDGET / GiB:.0f} GiB)")
    # The step itself allocates: at least the new gradients, plus activations of 32 faces.
    assert step_peak > 4 * params + 2 * batch_size * 3 * size * size * 4
    assert estimate < MEMORY_BUDGET


def _log(model_dir: Path) -> list[dict[str, str]]:
    with (model_dir / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_dfk_train_swap_hires_steps_on_the_cpu(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path,
                                               one_thread: None) -> None:
    assert load_faces(faces_a, 128).images.shape[-1] == 128  # the fixture faces are 128 px: no upscaling
    model_dir = tmp_path / "hires"
    result = run_dfk("-q", "--device", "cpu", "train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir,
                     "--preset", "hires", "--iterations", "2", "--batch-size", "2")
    assert result.code == 0, result
    assert "trained steps 0->2" in result.out
    assert json.loads((model_dir / "state.json").read_text())["step"] == 2
    assert (model_dir / "model.pt").is_file() and (model_dir / "previews" / "latest.png").is_file()
    rows = _log(model_dir)
    assert [r["step"] for r in rows] == ["2"]
    losses = {k: float(v) for k, v in rows[0].items() if k[:2] in ("a_", "b_")}
    assert set(losses) == {f"{side}_{term}" for side in "ab" for term in ("recon", "ssim")}
    assert all(math.isfinite(v) and v > 0 for v in losses.values())
    model = load_swap_model(model_dir, "cpu")
    assert (model.kind, model.size, model.step) == ("original", 128, 2)
    swapped, _ = model.swap(load_faces(faces_a, 128).images[:2].float() / 255, "a2b")
    assert swapped.shape == (2, 3, 128, 128) and torch.isfinite(swapped).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_hires_steps_on_cuda_fit_the_budget(faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    """A few steps at the preset's batch size and precision (auto: bf16/fp16 autocast) on the GPU,
    checkpoints and a preview included; the peak of allocated CUDA memory must stay in the budget."""
    model_dir = tmp_path / "hires"
    config = _hires(model_dir, "train.iterations=3", "train.save_every=2", "train.preview_every=3",
                    "train.log_every=1")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    summary = train_swap(faces_a, faces_b, model_dir, config, device="cuda")
    peak = torch.cuda.max_memory_allocated()
    print(f"\nhires on {torch.cuda.get_device_name()}: batch {config.train.batch_size}, "
          f"max_memory_allocated {peak / GiB:.2f} GiB (budget {MEMORY_BUDGET / GiB:.0f} GiB), "
          f"{summary.faces_per_s:.0f} faces/s")
    assert summary.step == 3 and (model_dir / "model.pt").is_file()
    assert all(math.isfinite(float(r["a_ssim"])) for r in _log(model_dir))
    assert peak < MEMORY_BUDGET
