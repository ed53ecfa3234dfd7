"""Typed config loading: presets, files, --set overrides, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from deepfake_cli.config import dump_yaml, from_dict, load_config, parse_override, read_preset
from deepfake_cli.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])


@dataclass
class Demo:
    kind: Literal["original", "gan"] = "original"
    size: int = 64
    precision: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_defaults_file_and_overrides_merge_in_order(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("size: 128\noptim:\n  lr: 0.001\n")
    config = load_config(Demo, "swap", None, file, ["optim.lr=5e-5", "kind=gan"])
    assert config.size == 128 and config.kind == "gan"
    assert config.optim.lr == pytest.approx(5e-5) and config.optim.betas == [0.5, 0.999]


def test_unknown_key_names_the_key_and_the_valid_choices() -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Demo, {"optim": {"lr": 1.0, "momentum": 0.9}})
    assert "optim.momentum" in str(info.value) and "lr, betas" in str(info.value)


def test_wrong_type_and_bad_choice_are_errors() -> None:
    with pytest.raises(ConfigError, match="size must be an integer"):
        from_dict(Demo, {"size": "big"})
    with pytest.raises(ConfigError, match="kind must be one of original, gan"):
        from_dict(Demo, {"kind": "vae"})
    with pytest.raises(ConfigError, match=r"betas\[1\] must be a number"):
        from_dict(Demo, {"optim": {"betas": [0.5, "x"]}})


def test_override_syntax_is_checked() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("novalue")


def test_unknown_preset_lists_the_presets_that_exist() -> None:
    with pytest.raises(ConfigError, match="unknown swap preset 'nope'"):
        read_preset("swap", "nope")


def test_missing_config_file_and_bad_yaml_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Demo, "swap", None, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Demo, "swap", None, bad)


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = from_dict(Demo, {"kind": "gan", "optim": {"lr": 0.01}})
    file = tmp_path / "resolved.yaml"
    file.write_text(dump_yaml(config))
    assert load_config(Demo, "swap", None, file) == config


def test_config_file_inherit_replaces_the_preset(tmp_path: Path) -> None:
    from deepfake_cli.swap.schema import SwapConfig

    file = tmp_path / "mine.yaml"
    file.write_text("inherit: tiny\ntrain:\n  lr: 0.0005\n")
    config = load_config(SwapConfig, "swap", "original", file)
    assert config.model.size == 32 and config.train.lr == pytest.approx(5e-4)
