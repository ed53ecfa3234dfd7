"""``dfk train-swap --init-from``: a new model starts from another model's weights (encoder or all)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

DECODERS = "decoders."
# One step at this learning rate moves no weight by more than ~1e-10 (Adam's step is about lr), so the
# saved model still shows exactly what was loaded before training.
FROZEN = ("--iterations", "1", "--set", "train.lr=1e-10")


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(run_dfk, faces_a: Path, faces_b: Path, model_dir: Path, *args: str | Path):
    return run_dfk("train-swap", "-A", faces_a, "-B", faces_b, "-o", model_dir, "--device", "cpu", *args)


def _generator(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pt", weights_only=True)["generator"]


def _max_difference(new: dict[str, torch.Tensor], old: dict[str, torch.Tensor], decoders: bool) -> float:
    keys = [key for key in new if key.startswith(DECODERS) == decoders]
    assert keys
    return max(float((new[key].float() - old[key].float()).abs().max()) for key in keys)


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _state(model_dir: Path) -> dict:
    return json.loads((model_dir / "state.json").read_text())


def test_encoder_init_copies_every_weight_outside_the_decoders(run_dfk, tiny_swap_model: Path, faces_a: Path,
                                                              faces_b: Path, tmp_path: Path) -> None:
    new_dir = tmp_path / "new"
    # No --preset: a new model from --init-from takes the source's config (tiny).
    result = _train(run_dfk, faces_a, faces_b, new_dir, "--init-from", tiny_swap_model, *FROZEN)
    assert result.code == 0, result
    assert "trained steps 0->1" in result.out
    assert f"new model starts from {tiny_swap_model} (step 40): shared encoder weights" in result.err
    new, source = _generator(new_dir), _generator(tiny_swap_model)
    assert new.keys() == source.keys()
    assert _max_difference(new, source, decoders=False) < 1e-7
    assert _max_difference(new, source, decoders=True) > 1e-3  # fresh decoders, not the trained ones
    state = _state(new_dir)
    assert state["step"] == 1
    assert state["init_from"] == {"model": str(tiny_swap_model), "parts": "encoder", "step": 40}
    assert [row.split(",")[0] for row in (new_dir / "log.csv").read_text().splitlines()[1:]] == ["1"]


def test_all_init_copies_the_decoders_too_and_resuming_keeps_the_record(run_dfk, tiny_swap_model: Path,
                                                                       faces_a: Path, faces_b: Path,
                                                                       tmp_path: Path) -> None:
    new_dir = tmp_path / "new"
    result = _train(run_dfk, faces_a, faces_b, new_dir, "--preset", "tiny", "--init-from", tiny_swap_model,
                    "--init-parts", "all", *FROZEN)
    assert result.code == 0, result
    assert "all generator weights" in result.err
    new, source = _generator(new_dir), _generator(tiny_swap_model)
    assert _max_difference(new, source, decoders=False) < 1e-7
    assert _max_difference(new, source, decoders=True) < 1e-7
    record = {"model": str(tiny_swap_model), "parts": "all", "step": 40}
    assert _state(new_dir)["init_from"] == record
    resumed = _train(run_dfk, faces_a, faces_b, new_dir, "--iterations", "2")
    assert resumed.code == 0, resumed
    assert "trained steps 1->2" in resumed.out
    assert _state(new_dir)["init_from"] == record


def test_encoder_init_may_change_the_decoders_and_model_kind(run_dfk, tiny_swap_model: Path, faces_a: Path,
                                                             faces_b: Path, tmp_path: Path) -> None:
    new_dir = tmp_path / "gan"
    result = _train(run_dfk, faces_a, faces_b, new_dir, "--preset", "tiny", "--set", "model.kind=gan",
                    "--set", "model.decoder_widths=[24, 12]", "--init-from", tiny_swap_model, *FROZEN)
    assert result.code == 0, result
    new, source = _generator(new_dir), _generator(tiny_swap_model)
    assert any(key.startswith("decoders.a.mask") for key in new)
    assert _max_difference(new, source, decoders=False) < 1e-7


@pytest.mark.parametrize(("parts", "override", "named"), [
    ("encoder", "model.size=64", "model.size 32 vs 64"),
    ("encoder", "model.encoder_widths=[16, 32, 48]", "model.encoder_widths [16, 32, 64] vs [16, 32, 48]"),
    ("all", "model.decoder_widths=[24, 12]", "model.decoder_widths [32, 16] vs [24, 12]"),
    ("all", "model.kind=gan", "model.kind original vs gan"),
])
def test_a_different_architecture_is_refused_naming_the_key(run_dfk, tiny_swap_model: Path, faces_a: Path,
                                                            faces_b: Path, tmp_path: Path, parts: str,
                                                            override: str, named: str) -> None:
    new_dir = tmp_path / "new"
    result = _train(run_dfk, faces_a, faces_b, new_dir, "--preset", "tiny", "--set", override,
                    "--init-from", tiny_swap_model, "--init-parts", parts, *FROZEN)
    assert result.code == 2
    line = _error_line(result.err)
    assert f"--init-from {tiny_swap_model}: architecture differs" in line and named in line
    assert "model.bottleneck" not in line  # only the keys that differ
    assert not (new_dir / "model.pt").exists()


def test_weights_that_do_not_fit_their_config_are_a_clear_error(run_dfk, tiny_swap_model: Path, faces_a: Path,
                                                                faces_b: Path, tmp_path: Path) -> None:
    source_dir = tmp_path / "broken"
    shutil.copytree(tiny_swap_model, source_dir)
    payload = torch.load(source_dir / "model.pt", weights_only=True)
    key = next(key for key in payload["generator"] if not key.startswith(DECODERS) and key.endswith("weight"))
    payload["generator"][key] = torch.zeros(3, 3)
    (source_dir / "checkpoint.json").unlink()  # edited by hand: the top-level model.pt loads, unchecked
    torch.save(payload, source_dir / "model.pt")
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "new", "--init-from", source_dir, *FROZEN)
    assert result.code == 1
    line = _error_line(result.err)
    assert "weights do not fit the configured model" in line and f"{key} (3, 3) vs" in line


@pytest.mark.parametrize("kind", ["missing folder", "folder without model.pt"])
def test_init_from_without_a_model_is_a_clear_error(run_dfk, faces_a: Path, faces_b: Path, tmp_path: Path,
                                                    kind: str) -> None:
    source_dir = tmp_path / "nothing"
    if kind == "folder without model.pt":
        source_dir.mkdir()
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "new", "--preset", "tiny", "--init-from", source_dir,
                    *FROZEN)
    assert result.code == 1
    line = _error_line(result.err)
    assert "--init-from" in line and str(source_dir) in line
    assert not (tmp_path / "new" / "model.pt").exists()


def test_init_from_onto_a_folder_with_a_checkpoint_is_refused(run_dfk, tiny_swap_model: Path, faces_a: Path,
                                                              faces_b: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "existing"
    shutil.copytree(tiny_swap_model, model_dir)
    result = _train(run_dfk, faces_a, faces_b, model_dir, "--init-from", tiny_swap_model, "--iterations", "50")
    assert result.code == 1
    line = _error_line(result.err)
    assert "already has a checkpoint" in line and "drop --init-from to resume" in line
    assert torch.load(model_dir / "model.pt", weights_only=True)["step"] == 40


def test_init_parts_without_init_from_is_a_usage_error(run_dfk, faces_a: Path, faces_b: Path,
                                                       tmp_path: Path) -> None:
    result = _train(run_dfk, faces_a, faces_b, tmp_path / "new", "--init-parts", "all")
    assert result.code == 2 and "--init-parts needs --init-from" in result.err
