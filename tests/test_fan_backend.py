"""The `fan` backend's wiring, tested with stand-in FAN weights made here (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepfake_cli.errors import BackendError
from deepfake_cli.faces import create_backend
from deepfake_cli.faces.fan import fan_weights_file
from deepfake_cli.media.synthetic import load_still


def test_missing_fan_weights_name_the_file_needed(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as info:
        create_backend("fan", fan_weights=tmp_path)
    assert fan_weights_file(tmp_path).name in str(info.value)
    assert str(tmp_path / "checkpoints") in str(info.value)


def test_fan_backend_runs_on_stand_in_weights_of_the_right_architecture(tmp_path: Path) -> None:
    from face_alignment.models import FAN

    torch.manual_seed(0)
    weights = fan_weights_file(tmp_path)
    weights.parent.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), weights)
    backend = create_backend("fan", fan_weights=tmp_path)
    faces = backend.detect(load_still("astronaut"))
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2) and faces[0].has_68


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    weights = fan_weights_file(tmp_path)
    weights.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(1)}, weights)
    with pytest.raises(BackendError, match="do not match"):
        create_backend("fan", fan_weights=tmp_path)
