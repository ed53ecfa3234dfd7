"""The `dfk` entry points: help, version, module execution."""

from __future__ import annotations

import subprocess
import sys

from deepfake_cli import __version__


def test_help_lists_the_implemented_commands(run_dfk) -> None:
    result = run_dfk("--help")
    assert result.code == 0 and "extract" in result.out and "--device" in result.out


def test_version(run_dfk) -> None:
    result = run_dfk("--version")
    assert result.code == 0 and __version__ in result.out


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "deepfake_cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and __version__ in done.stdout


def test_cuda_on_a_machine_without_one_is_a_clear_error(run_dfk, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        return
    result = run_dfk("--device", "cuda", "extract", tmp_path, "-o", tmp_path / "out")
    assert result.code != 0 and "no CUDA GPU" in result.err
