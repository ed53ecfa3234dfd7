"""A regular (non-editable) install carries the presets and the command modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_presets_and_commands_resolve_after_a_non_editable_install(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                                  ".pytest_cache", "data", "runs"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(source)], check=True, capture_output=True, text=True)
    code = ("import deepfake_cli, deepfake_cli.commands.extract\n"
            "from deepfake_cli.config import available_presets as p\n"
            "print(deepfake_cli.__file__); print(p('swap')); print(p('detect'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    location, swap, detect = done.stdout.strip().splitlines()
    assert location.startswith(str(site))
    assert all(name in swap for name in ("tiny", "tiny-gan", "fast", "original", "gan"))
    assert all(name in detect for name in ("tiny", "convlstm"))
