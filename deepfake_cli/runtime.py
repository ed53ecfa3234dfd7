"""Device choice, seeding, precision and thread settings shared by every stage."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

from deepfake_cli import DEVICE_CHOICES
from deepfake_cli.errors import ConfigError



def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:N]`` to a torch device; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available", "device")
        device = torch.device(name)
        torch.backends.cudnn.benchmark = True
        return device
    raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}", "device")


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
    ``cpu_bf16_when_native`` and the CPU has native bf16 instructions.
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
        if device.type != "cuda":
            raise ConfigError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU", "precision")
        return torch.float16
    raise ConfigError(f"unknown precision {precision!r}; choose one of auto, fp32, bf16, fp16", "precision")


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``; a no-op when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
