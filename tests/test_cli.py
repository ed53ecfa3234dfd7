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


def test_cuda_on_a_machine_without_one_is_a_clear_error(run_dfk, tmp_path, monkeypatch) -> None:
    """Runs on every host: a CUDA host is made to look GPU-less, so the message is always checked."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_dfk("--device", "cuda", "extract", tmp_path, "-o", tmp_path / "out")
    assert result.code != 0 and "no CUDA GPU" in result.err, result
    assert not (tmp_path / "out").exists()


def test_a_gpu_index_past_the_last_gpu_is_a_clear_error(run_dfk, tmp_path, monkeypatch) -> None:
    """``cuda:N`` past the GPUs present names the ones there are (checked on any host, CUDA or not)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    result = run_dfk("--device", "cuda:3", "extract", tmp_path, "-o", tmp_path / "out")
    assert result.code != 0 and "this machine has 1 CUDA GPU(s): cuda:0" in result.err, result


def test_every_listed_command_loads_and_has_help(run_dfk) -> None:
    from deepfake_cli.cli import COMMANDS

    for name in COMMANDS:
        result = run_dfk(name, "--help")
        assert result.code == 0 and "Usage: dfk " + name in result.out, (name, result)


def test_top_level_help_does_not_load_torch() -> None:
    code = "import sys; from deepfake_cli.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("False"), done
