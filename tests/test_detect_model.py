"""The ConvLSTM cell, the stacked detector and detector directories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepfake_cli.config import load_config
from deepfake_cli.detect.config import DetectConfig, validate
from deepfake_cli.detect.detector import build_model, load_detector, save_detector
from deepfake_cli.detect.model import ConvLSTM, ConvLSTMCell, ConvLSTMDetector
from deepfake_cli.errors import CheckpointError, ConfigError


def test_cell_gates_are_one_convolution_over_input_and_hidden_state() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, kernel=3)
    x, h, c = torch.randn(1, 2, 6, 6), torch.randn(1, 3, 6, 6), torch.randn(1, 3, 6, 6)
    z = torch.nn.functional.conv2d(torch.cat([x, h], 1), cell.gates.weight, cell.gates.bias, padding=1)
    i, f, o, g = z.sigmoid()[:, 0:3], z.sigmoid()[:, 3:6], z.sigmoid()[:, 6:9], z.tanh()[:, 9:12]
    expected_c = f * c + i * g
    new_h, new_c = cell(x, (h, c))
    assert torch.allclose(new_c, expected_c, atol=1e-6)
    assert torch.allclose(new_h, o * expected_c.tanh(), atol=1e-6)


def test_stack_pools_between_layers_and_remembers_earlier_frames() -> None:
    torch.manual_seed(0)
    stack = ConvLSTM(1, [4, 6], kernel=3, pool=2)
    x = torch.randn(2, 5, 1, 16, 16)
    out = stack(x)
    assert out.shape == (2, 6, 8, 8)
    changed = x.clone()
    changed[:, 0] += 1.0  # only the first frame differs: the final state must still move
    assert not torch.allclose(stack(changed), out)


@pytest.mark.parametrize("stem", [0, 8])
def test_detector_gives_one_logit_per_sequence_and_learns(stem: int) -> None:
    torch.manual_seed(0)
    model = ConvLSTMDetector(1, hidden=[4, 8], pool=2, stem_channels=stem)
    x = torch.randn(6, 3, 1, 16, 16)
    y = torch.tensor([0.0, 1.0] * 3)
    x[y == 1] += 0.5
    assert model(x).shape == (6,)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_bf16_autocast_runs_on_cpu() -> None:
    model = ConvLSTMDetector(1, hidden=[4], pool=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 3, 1, 8, 8)).shape == (2,)


@pytest.mark.parametrize("preset", ["tiny", "convlstm"])
def test_presets_build_models_for_every_input_mode(preset: str) -> None:
    for mode, channels in (("canny", 1), ("rgb", 3), ("rgb+canny", 4)):
        config = load_config(DetectConfig, "detect", preset, None, [f"sequence.input={mode}", "sequence.size=32"])
        model = build_model(config)
        assert model(torch.zeros(1, config.sequence.frames, channels, 32, 32)).shape == (1,)


def test_out_of_range_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="model.kernel"):
        validate(load_config(DetectConfig, "detect", "tiny", None, ["model.kernel=4"]))
    with pytest.raises(ConfigError, match="sequence.input"):
        load_config(DetectConfig, "detect", "tiny", None, ["sequence.input=sobel"])


def test_detector_directory_round_trip_with_weights_only(tmp_path: Path) -> None:
    config = load_config(DetectConfig, "detect", "tiny")
    model = build_model(config)
    save_detector(tmp_path, model, config, {"threshold": 0.4})
    assert torch.load(tmp_path / "model.pt", weights_only=True)["model"].keys() == model.state_dict().keys()
    loaded = load_detector(tmp_path, torch.device("cpu"))
    assert loaded.config == config and loaded.state["threshold"] == 0.4
    x = torch.randn(1, 5, 1, 32, 32)
    assert torch.allclose(loaded.model(x), model.eval()(x))


def test_mismatched_or_missing_detector_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a detector directory"):
        load_detector(tmp_path, torch.device("cpu"))
    config = load_config(DetectConfig, "detect", "tiny")
    save_detector(tmp_path, build_model(config), config, {})
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace("- 16", "- 32"))
    with pytest.raises(CheckpointError, match="do not match"):
        load_detector(tmp_path, torch.device("cpu"))
