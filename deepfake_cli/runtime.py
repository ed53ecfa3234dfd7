"""Device choice, seeding, precision and thread settings shared by every stage."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Iterator

import numpy as np
import torch

from deepfake_cli import device_name_error
from deepfake_cli.errors import ConfigError

log = logging.getLogger(__name__)
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
