"""Dataclass configs <-> plain dicts (YAML), including union-typed fields such as the objective.

A union-typed field is stored with a `type` key naming the chosen class, e.g.

    objective:
      type: dsds
      guidance_scale: 100.0
      truncation_start: 2.0

The names are the ones the CLI uses for subcommands (`objective:dsds`), taken from each class's
`config_name` class attribute or else its lowercased class name. Without a `type` key the field
keeps the kind of its default (so `prior: {image_size: 64}` tunes the default prior). Unknown keys
are refused with a message naming them, so a typo in a preset never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from splatgen.errors import SplatgenError


class ConfigError(SplatgenError):
    """A config file or value is invalid; the message names the field."""


def config_name(cls: type) -> str:
    return getattr(cls, "config_name", cls.__name__.lower())


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any] | None:
    tp = _strip_annotated(tp)
    if get_origin(tp) in (typing.Union, types.UnionType):
        return [_strip_annotated(arg) for arg in get_args(tp)]
    return None


def to_dict(config: Any) -> Any:
    """A dataclass (tree) -> plain dict/list/scalars; union-typed dataclass fields get a `type` key."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        hints = get_type_hints(type(config), include_extras=True)
        result: dict[str, Any] = {}
        for field in dataclasses.fields(config):
            if not field.init:
                continue
            value = getattr(config, field.name)
            converted = to_dict(value)
            members = _union_members(hints[field.name])
            dataclass_members = [m for m in members or [] if dataclasses.is_dataclass(m)]
            if len(dataclass_members) > 1 and dataclasses.is_dataclass(value):
                converted = {"type": config_name(type(value)), **converted}
            result[field.name] = converted
        return result
    if isinstance(config, Path):
        return str(config)
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, dict):
        return {key: to_dict(item) for key, item in config.items()}
    return config


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build `cls` from a plain dict, starting from `cls`'s defaults; refuses unknown keys."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls, include_extras=True)
    known = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(_join(where, key) for key in unknown)}; known: {', '.join(known)}"
        )
    kwargs = {
        name: _convert(hints[name], value, _join(where, name), _default_kind(known[name]))
        for name, value in data.items()
    }
    return cls(**kwargs)


def _default_kind(field: dataclasses.Field) -> type | None:
    """The class of a field's default value, when it is a dataclass (a union field's default kind)."""
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    elif field.default is not dataclasses.MISSING:
        default = field.default
    else:
        return None
    return type(default) if dataclasses.is_dataclass(default) else None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(tp: Any, value: Any, where: str, default_kind: type | None = None) -> Any:
    tp = _strip_annotated(tp)
    members = _union_members(tp)
    if members is not None:
        if value is None and type(None) in members:
            return None
        dataclass_members = [m for m in members if dataclasses.is_dataclass(m)]
        if len(dataclass_members) > 1:
            if isinstance(value, dict) and "type" not in value and default_kind in dataclass_members:
                return from_dict(default_kind, value, where)
            if not isinstance(value, dict) or "type" not in value:
                names = ", ".join(config_name(m) for m in dataclass_members)
                raise ConfigError(f"{where} needs a 'type' key, one of: {names}")
            chosen = {config_name(m): m for m in dataclass_members}.get(value["type"])
            if chosen is None:
                names = ", ".join(config_name(m) for m in dataclass_members)
                raise ConfigError(f"{where}.type {value['type']!r} is not one of: {names}")
            return from_dict(chosen, {k: v for k, v in value.items() if k != "type"}, where)
        non_none = [m for m in members if m is not type(None)]
        return _convert(non_none[0], value, where) if len(non_none) == 1 else value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is Path:
        return Path(value)
    origin = get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
            return tuple(_convert(args[0], item, f"{where}[{index}]") for index, item in enumerate(value))
        if args:
            if len(args) != len(value):
                raise ConfigError(f"{where} needs {len(args)} values, got {len(value)}: {value}")
            return tuple(_convert(arg, item, f"{where}[{index}]") for index, (arg, item) in enumerate(zip(args, value)))
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    return data


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
