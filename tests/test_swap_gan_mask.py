"""The gan's learned mask: the coverage statistic, and the face-hull term that keeps it on the face."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepfake_cli.errors import InputError
from deepfake_cli.swap import load_swap_model, swap_config, train_swap
from deepfake_cli.swap.data import load_faces
from deepfake_cli.swap.loader import SwapModel
from deepfake_cli.swap.networks import build_generator
from deepfake_cli.swap.quality import mask_coverage


def _model_with_mask_bias(bias: float, tmp_path: Path) -> SwapModel:
    config = swap_config(tmp_path, "tiny-gan")
    net = build_generator(config.model)
    with torch.no_grad():
        for decoder in net.decoders.values():
            decoder.mask.weight.zero_()
            decoder.mask.bias.fill_(bias)
    return SwapModel(net=net.eval(), kind="gan", size=config.model.size, coverage=0.625, step=0,
                     device=torch.device("cpu"))


def test_mask_coverage_is_one_for_a_full_mask_and_zero_for_a_collapsed_one(faces_a: Path, tmp_path: Path) -> None:
    faces = load_faces(faces_a, 32)
    assert mask_coverage(_model_with_mask_bias(30.0, tmp_path), faces) == pytest.approx(1.0, abs=1e-4)
    assert mask_coverage(_model_with_mask_bias(-30.0, tmp_path), faces) == pytest.approx(0.0, abs=1e-4)
    assert mask_coverage(_model_with_mask_bias(0.0, tmp_path), faces) == pytest.approx(0.5, abs=1e-3)


def test_mask_coverage_needs_a_gan_and_landmarks(faces_a: Path, tiny_swap_model: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="gan"):
        mask_coverage(load_swap_model(tiny_swap_model, "cpu"), load_faces(faces_a, 32))
    for png in sorted(faces_a.glob("*.png"))[:8]:
        (tmp_path / png.name).write_bytes(png.read_bytes())
    with pytest.raises(InputError, match="landmarks"):
        mask_coverage(_model_with_mask_bias(0.0, tmp_path), load_faces(tmp_path, 32))


def _coverage_after_training(faces_a: Path, faces_b: Path, model_dir: Path, *overrides: str) -> float:
    config = swap_config(model_dir, "tiny-gan", overrides=["train.iterations=60", "train.save_every=60",
                                                           "train.preview_every=60", *overrides])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_swap(faces_a, faces_b, model_dir, config, device="cpu", seed=0)
    finally:
        torch.set_num_threads(threads)
    return mask_coverage(load_swap_model(model_dir, "cpu"), load_faces(faces_a, 32))


def test_face_hull_term_keeps_the_learned_mask_on_the_face(faces_a: Path, faces_b: Path, tmp_path: Path) -> None:
    pulled = _coverage_after_training(faces_a, faces_b, tmp_path / "hull", "loss.mask_face=1.0")
    free = _coverage_after_training(faces_a, faces_b, tmp_path / "free", "loss.mask_face=0")
    assert pulled >= 0.8 and pulled > free + 0.1, (pulled, free)
