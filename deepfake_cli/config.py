"""Typed configuration: YAML presets, config files and ``--set key.sub=value`` overrides.

A stage declares its settings as (nested) dataclasses. ``load_config`` merges, in order, the
schema's defaults, a named preset from ``configs/<stage>/<name>.yaml`` (installed as the package
``deepfake_cli.presets``), an optional YAML file and ``--set`` overrides, then validates every key
and type. Unknown keys and wrong types raise ``ConfigError`` naming the key and the valid choices.
A preset may start from another with ``inherit: <name>``; a config file that starts with
``inherit: <preset>`` builds on that preset instead of ``--preset``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deepfake_cli.errors import ConfigError

T = TypeVar("T")


def available_presets(stage: str) -> list[str]:
    """Names of the presets shipped for ``stage`` (e.g. ``swap``, ``detect``)."""
    folder = resources.files("deepfake_cli.presets") / stage
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}", where) from None
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of keys to values", where)
    return data


def read_preset(stage: str, name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The merged dictionary of preset ``name`` for ``stage``, following ``inherit:``."""
    if name in _seen:
        raise ConfigError(f"presets inherit in a loop: {' -> '.join(_seen + (name,))}", stage)
    resource = resources.files("deepfake_cli.presets") / stage / f"{name}.yaml"
    if not resource.is_file():
        choices = ", ".join(available_presets(stage)) or "none"
        raise ConfigError(f"unknown {stage} preset {name!r}; choose one of: {choices}", "--preset")
    data = _read_yaml(resource.read_text(encoding="utf-8"), f"preset {stage}/{name}")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    return deep_merge(read_preset(stage, str(parent), _seen + (name,)), data)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A new dict with ``extra`` merged over ``base``, recursing into nested mappings."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}`` (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key.sub=value, got {text!r}", "--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = [p.strip() for p in key.split(".")]
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(
    schema: type[T],
    stage: str,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
) -> T:
    """Build a validated ``schema`` instance from preset, file and overrides (in that order)."""
    data: dict[str, Any] = read_preset(stage, preset) if preset else {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError("config file not found", str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError("config file is not UTF-8 text", str(path)) from None
        file_data = _read_yaml(text, str(path))
        parent = file_data.pop("inherit", None)
        if parent is not None:  # the file names its own base preset, replacing --preset
            data = read_preset(stage, str(parent))
        data = deep_merge(data, file_data)
    for override in overrides:
        data = deep_merge(data, parse_override(override))
    return from_dict(schema, data)


def from_dict(schema: type[T], data: dict[str, Any], where: str = "") -> T:
    """Validate ``data`` against the dataclass ``schema``; missing keys take their defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", where or "config")
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(fields)}", "config")
    values = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        values[name] = _coerce(value, hints[name], key)
    return schema(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}", "config")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(errors[0], "config")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list; got {value!r}", "config")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false; got {value!r}", "config")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer; got {value!r}", "config")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number; got {value!r}", "config")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string; got {value!r}", "config")
        return value
    raise ConfigError(f"{key} has an unsupported type {hint!r}", "config")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config dataclass (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dump_yaml(config: Any) -> str:
    """The resolved config as YAML text, keys in declaration order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def diff_keys(old: dict[str, Any], new: dict[str, Any], keys: typing.Iterable[str]) -> list[str]:
    """Dotted ``keys`` whose values differ between two plain config dicts."""
    differing = []
    for dotted in keys:
        a: Any = old
        b: Any = new
        for part in dotted.split("."):
            a = a.get(part) if isinstance(a, dict) else None
            b = b.get(part) if isinstance(b, dict) else None
        if a != b:
            differing.append(f"{dotted}: {a!r} -> {b!r}")
    return differing


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    found: dict[str, Any] = {}
    for key, value in tree.items():
        found |= _leaves(value, f"{prefix}.{key}" if prefix else key)
    return found


def tree_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every dotted leaf key of two nested dicts (a run record's saved and
    wanted config) whose values differ, a key missing on one side included; sorted by key."""
    before, after = _leaves(old), _leaves(new)
    return [f"{key} {before.get(key)!r} -> {after.get(key)!r}" for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)]


def leaf_keys(schema: Any, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field of a config dataclass."""
    keys = []
    for item in dataclasses.fields(schema):
        name = f"{prefix}{item.name}"
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            keys.extend(leaf_keys(type(default), f"{name}."))
        else:
            keys.append(name)
    return keys
