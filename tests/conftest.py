"""Shared fixtures: tiny real-face clips built at run time from public-domain stills."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from deepfake_cli.extract import ExtractOptions, extract
from deepfake_cli.media.synthetic import Clip, make_clip, write_clip

CLIP_FRAMES = 30
CLIP_SIZE = (320, 240)
FIXTURE_FACE_SIZE = 128


@pytest.fixture(autouse=True)
def _dfk_logs_reach_caplog() -> Iterator[None]:
    """A CLI run in this process stops the ``deepfake_cli`` logger propagating (its own handler
    prints instead); restore it so later tests' ``caplog`` sees dfk's log records."""
    yield
    logging.getLogger("deepfake_cli").propagate = True


@pytest.fixture(scope="session")
def clip_a_data() -> Clip:
    """30 frames (320x240) of the astronaut still moving, with the known still->frame matrices."""
    return make_clip("astronaut", CLIP_FRAMES, CLIP_SIZE, seed=1)


@pytest.fixture(scope="session")
def clip_b_data() -> Clip:
    """30 frames (320x240) of the Grace Hopper still moving."""
    return make_clip("grace_hopper", CLIP_FRAMES, CLIP_SIZE, seed=2)


@pytest.fixture(scope="session")
def clip_a(tmp_path_factory: pytest.TempPathFactory, clip_a_data: Clip) -> Path:
    """An H.264 clip of identity A with a sine-tone audio track."""
    return write_clip(tmp_path_factory.mktemp("clips") / "astronaut.mp4", clip_a_data.frames, audio=True)


@pytest.fixture(scope="session")
def clip_b(tmp_path_factory: pytest.TempPathFactory, clip_b_data: Clip) -> Path:
    """An H.264 clip of identity B (no audio)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "grace_hopper.mp4", clip_b_data.frames)


def _extracted(tmp_path_factory: pytest.TempPathFactory, clip: Path, name: str) -> Path:
    outdir = tmp_path_factory.mktemp(name)
    extract([clip], outdir, ExtractOptions(size=FIXTURE_FACE_SIZE), progress=False)
    return outdir


@pytest.fixture(scope="session")
def faces_a(tmp_path_factory: pytest.TempPathFactory, clip_a: Path) -> Path:
    """Extract output (128 px aligned PNGs + alignments.json) of clip A."""
    return _extracted(tmp_path_factory, clip_a, "faces_a")


@pytest.fixture(scope="session")
def faces_b(tmp_path_factory: pytest.TempPathFactory, clip_b: Path) -> Path:
    """Extract output (128 px aligned PNGs + alignments.json) of clip B."""
    return _extracted(tmp_path_factory, clip_b, "faces_b")


@pytest.fixture()
def rng() -> np.random.Generator:
    """A seeded random generator."""
    return np.random.default_rng(0)


class CliResult:
    """Exit code and captured output of one ``dfk`` invocation."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


@pytest.fixture()
def run_dfk(capsys: pytest.CaptureFixture[str]):
    """Run ``dfk`` in-process like the console script: ``run_dfk("extract", ...) -> CliResult``."""
    from deepfake_cli.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_swap_model(tmp_path_factory: pytest.TempPathFactory, faces_a: Path, faces_b: Path) -> Path:
    """A model folder of the ``tiny`` swap preset (32 px, 40 steps) trained on faces_a/faces_b."""
    import torch

    from deepfake_cli.swap import swap_config, train_swap

    model_dir = tmp_path_factory.mktemp("tiny_swap_model")
    config = swap_config(model_dir, "tiny", overrides=["train.iterations=40", "train.save_every=40",
                                                       "train.preview_every=40"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread, even on a busy machine
    try:
        train_swap(faces_a, faces_b, model_dir, config, device="cpu", seed=0)
    finally:
        torch.set_num_threads(threads)
    return model_dir


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models train fastest (and reproducibly) on one intra-op thread, even on a busy 2-core
    machine; test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
