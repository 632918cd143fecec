"""From YAML to typed sections, strictly: every unknown key, wrong type or bad value is
an error that names its key path and what was expected."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from resolver import yamltext
from resolver.config.sections import Config
from resolver.config.values import ConfigError

Section = TypeVar("Section")

_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _describe(kind: Any) -> str:
    origin = get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(kind))
    if origin is tuple:
        return f"a list of {_describe(get_args(kind)[0])}"
    if origin is dict:
        return f"a mapping of {_describe(get_args(kind)[0])} to {_describe(get_args(kind)[1])}"
    return _NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def _wrong(kind: Any, value: Any, path: str) -> ConfigError:
    return ConfigError(f"{path}: expected {_describe(kind)}, got {value!r}")


def _literal(kind: Any, value: Any, path: str) -> Any:
    if value not in get_args(kind):
        raise _wrong(kind, value, path)
    return value


def _tuple(kind: Any, value: Any, path: str) -> tuple[Any, ...]:
    if isinstance(value, str):
        # A lone string where a list belongs is a common slip; accept it as one item.
        value = [value]
    if not isinstance(value, list):
        raise _wrong(kind, value, path)
    item_kind = get_args(kind)[0]
    return tuple(_convert(item_kind, item, f"{path}[{i}]") for i, item in enumerate(value))


def _dict(kind: Any, value: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _wrong(kind, value, path)
    key_kind, value_kind = get_args(kind)
    return {
        _convert(key_kind, key, path): _convert(value_kind, item, f"{path}.{key}")
        for key, item in value.items()
    }


def _scalar(kind: type) -> Callable[[Any, Any, str], Any]:
    def convert(kind_: Any, value: Any, path: str) -> Any:
        # bool is an int to Python, never to a config reader; an int is a fine float.
        accepted = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not accepted or (kind is not bool and isinstance(value, bool)):
            raise _wrong(kind_, value, path)
        return float(value) if kind is float else value

    return convert


_CONVERTERS: dict[Any, Callable[[Any, Any, str], Any]] = {
    Literal: _literal,
    tuple: _tuple,
    dict: _dict,
    bool: _scalar(bool),
    int: _scalar(int),
    float: _scalar(float),
    str: _scalar(str),
}


def _convert(kind: Any, value: Any, path: str) -> Any:
    origin = get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        # Only "X | None" is used: None (or the key left out, or "") means "not set here".
        (inner,) = (arg for arg in get_args(kind) if arg is not type(None))
        return None if value is None or value == "" else _convert(inner, value, path)
    if isinstance(kind, type) and hasattr(kind, "from_config"):
        return kind.from_config(value, path)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, dict) and hasattr(kind, "from_scalar"):
            return kind.from_scalar(value, path)
        return _build(kind, value, path)
    converter = _CONVERTERS.get(origin or kind)
    if converter is None:
        raise TypeError(f"{path}: unsupported config type {kind}")  # a bug in this module
    return converter(kind, value, path)


def _build(kind: type[Section], raw: Any, path: str) -> Section:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys, got {raw!r}")
    hints = get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    known = [name for name, f in fields.items() if not f.metadata.get("internal")]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in known:
            raise ConfigError(f"{key_path}: unknown key (expected one of {', '.join(known)})")
        values[key] = _convert(hints[key], value, key_path)
    return kind(**values)


def config_from_mapping(raw: Any, base_dir: Path = Path(".")) -> Config:
    config = _build(Config, raw, "")
    config = dataclasses.replace(config, base_dir=base_dir)
    config.validate()
    return config


def load_config(path: Path | None) -> Config:
    """Load and validate a config file; None gives the defaults."""
    if path is None:
        return config_from_mapping({})
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from None
    try:
        raw = yamltext.load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return config_from_mapping(raw, base_dir=path.resolve().parent)
