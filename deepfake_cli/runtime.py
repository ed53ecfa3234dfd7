"""Device choice, seeding, precision and thread settings shared by every stage, and the process
group of a distributed (torchrun) training run."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import random
from typing import Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from deepfake_cli import device_name_error
from deepfake_cli.errors import ConfigError, TrainingError

log = logging.getLogger(__name__)
T = TypeVar("T")
_logged: set[str] = set()


def log_once(key: str, level: int, message: str, *args: object) -> None:
    """Log ``message`` at ``level`` the first time ``key`` is seen in this process only."""
    if key not in _logged:
        _logged.add(key)
        log.log(level, message, *args)


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N`` to a torch device; CUDA without a GPU (or without GPU N) is an error.

    Whenever the result is a CUDA device (``auto`` included) cuDNN's autotuner is switched on: every
    stage runs fixed-size batches, where picking the fastest convolution once pays off.
    """
    problem = device_name_error(name)
    if problem:
        raise ConfigError(problem, "device")
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for but no CUDA GPU is available", "device")
        device = torch.device(name)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name} was asked for but this machine has {count} CUDA GPU(s): "
                              + ", ".join(f"cuda:{i}" for i in range(count)), "device")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_threads(num_threads: int | None = None) -> None:
    """Set torch's intra-op threads to ``num_threads``, else to the DFK_THREADS variable if set."""
    try:
        wanted = num_threads or int(os.environ.get("DFK_THREADS", "0") or 0)
    except ValueError:
        raise ConfigError(f"DFK_THREADS must be a whole number, got {os.environ['DFK_THREADS']!r}") from None
    if wanted > 0:
        torch.set_num_threads(wanted)


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def autocast_dtype(device: torch.device, precision: str, cpu_bf16_when_native: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (fp32|bf16|fp16|auto) on ``device``; None = fp32.

    ``auto`` is bf16 (or fp16) on CUDA; on a CPU it is fp32, or bf16 when
    ``cpu_bf16_when_native`` and the CPU has native bf16 instructions. ``fp16`` off CUDA (a model
    trained in fp16 on a GPU, loaded on a CPU) becomes bf16 where the CPU has native bf16, else
    fp32, with one warning per process.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_bf16_when_native and native_cpu_bf16() else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cuda":
            return torch.float16
        # A model trained in fp16 on a GPU must still load, resume and run here: fp16 autocast is
        # not what a CPU computes well, so run in bf16 where the CPU has it natively, else in fp32.
        fallback = torch.bfloat16 if native_cpu_bf16() else None
        log_once(f"fp16-on-{device.type}", logging.WARNING, "precision fp16 needs a CUDA device; running in %s on "
                 "the %s instead", "bf16" if fallback is not None else "fp32", device.type)
        return fallback
    raise ConfigError(f"unknown precision {precision!r}; choose one of auto, fp32, bf16, fp16", "precision")


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``; a no-op when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


# --- distributed training (torchrun) --------------------------------------------------------------
#
# ``torchrun --nproc_per_node=N ...`` starts N processes and tells each its place through the
# environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; several nodes through torchrun's
# rendezvous). These helpers read that, join the process group (env://: NCCL for CUDA, gloo for
# the CPU) and are no-ops in a plain single process.


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {os.environ[name]!r} (set by torchrun)") from None


def _group_up() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of training processes: the process group's size, else WORLD_SIZE (1 without torchrun)."""
    if _group_up():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    if _group_up():
        return dist.get_rank()
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its node (LOCAL_RANK; 0 without torchrun): the GPU it trains on."""
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    """Whether this process is one of several training processes (torchrun with more than one)."""
    return world_size() > 1


def data_parallel(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` for this rank (on its GPU, or the CPU);
    backward through the wrapper averages the gradients over the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    devices = None
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(module, device_ids=devices)


def rank_device(name: str = "auto") -> torch.device:
    """``resolve_device(name)`` for this rank: under torchrun a CUDA device is ``cuda:LOCAL_RANK``.

    ``auto`` and ``cuda`` pick the rank's own GPU; ``cuda:N`` is accepted only when N is that GPU;
    a node with fewer GPUs than ranks is a ``ConfigError``. Without torchrun this is ``resolve_device``.
    """
    device = resolve_device(name)
    if device.type != "cuda" or not is_distributed():
        return device
    local, count = local_rank(), torch.cuda.device_count()
    if local >= count:
        raise ConfigError(f"torchrun started local rank {local} but this node has {count} CUDA GPU(s); "
                          "use --nproc_per_node at most the number of GPUs", "device")
    if name not in ("auto", "cuda") and device.index != local:
        raise ConfigError(f"under torchrun each rank trains on its own GPU (this one: cuda:{local}); "
                          f"--device {name} is another; pass --device cuda", "device")
    return torch.device("cuda", local)


def init_distributed(device: torch.device, timeout_minutes: float | None = None) -> bool:
    """Join the process group torchrun describes (env://): NCCL when ``device`` is CUDA, else gloo.

    ``timeout_minutes`` is how long any collective (a barrier, a broadcast) may wait for the other
    ranks before the run aborts; None keeps torch's default (10 minutes for NCCL, 30 for gloo).
    Returns whether this call created it (then ``destroy_distributed`` ends it); False without
    torchrun (one process) or when the caller already set the group up.
    """
    if not is_distributed() or _group_up():
        return False
    options: dict[str, object] = {}
    if timeout_minutes is not None:
        options["timeout"] = datetime.timedelta(minutes=timeout_minutes)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", init_method="env://", **options)
    else:
        dist.init_process_group("gloo", init_method="env://", **options)
    return True


def destroy_distributed() -> None:
    """Leave the process group, if there is one."""
    if _group_up():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (a no-op in one process)."""
    if not _group_up():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every rank in place (on the rank's device for NCCL); returns it.

    A no-op in one process.
    """
    if _group_up():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank; the other ranks' ``value`` is
    ignored and they wait here until rank 0 sends. Returns ``value`` itself in one process."""
    if not _group_up():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: T) -> list[T]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank; ``[value]`` in
    one process."""
    if not _group_up():
        return [value]
    box: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(box, value)
    return box  # type: ignore[return-value]


SHARED_FS = "every rank must see the output folder on a shared filesystem"


def same_on_every_rank(value: object, what: str, folder: object) -> None:
    """Raise one ``TrainingError`` on every rank unless every rank passes the same ``value`` (what
    it read of ``folder``, e.g. a checkpoint's step): ranks that do not share the output folder
    stop together instead of waiting in a collective. A no-op in one process."""
    seen = gather_objects(value)
    odd = [r for r, v in enumerate(seen) if v != seen[0]]
    if odd:
        raise TrainingError(f"{SHARED_FS}: rank {odd[0]} sees {what} of {folder} differently from rank 0 "
                            f"({seen[odd[0]]!r} vs {seen[0]!r})")


@contextlib.contextmanager
def distributed_group(device: torch.device, timeout_minutes: float | None = None) -> Iterator[bool]:
    """``init_distributed(device, timeout_minutes)`` for the ``with`` block, and
    ``destroy_distributed`` after it if this call created the group; yields whether training runs
    on several ranks."""
    created = init_distributed(device, timeout_minutes)
    try:
        yield is_distributed()
    finally:
        if created:
            destroy_distributed()
