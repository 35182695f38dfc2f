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
    unknown = sorted(str(key) for key in data if key not in known)
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
    """`value` as type `tp`, or a one-line `ConfigError` naming the field (`steps: "abc"`, `batch_size: 1.5`)."""
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
                raise ConfigError(f"{where}.type {_show(value['type'])} is not one of: {names}")
            return from_dict(chosen, {k: v for k, v in value.items() if k != "type"}, where)
        non_none = [m for m in members if m is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], value, where)
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = get_origin(tp)
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} must be one of {', '.join(map(str, get_args(tp)))}, got {_show(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_show(value)}")
        items = get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(_convert(items[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if items and len(items) != len(value):
            raise ConfigError(f"{where} must be a list of {len(items)} values, got {len(value)}")
        return tuple(_convert(kind, item, f"{where}[{i}]") for i, (kind, item) in enumerate(zip(items, value)))
    return _convert_scalar(tp, value, where)


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    is_bool = isinstance(value, bool)
    if tp is bool:
        if not is_bool:
            raise ConfigError(f"{where} must be true or false, got {_show(value)}")
    elif tp is int:
        if is_bool or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {_show(value)}")
    elif tp is float:
        if is_bool or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {_show(value)}")
        return float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_show(value)}")
    elif tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path, got {_show(value)}")
        return Path(value)
    return value


def _show(value: Any, limit: int = 40) -> str:
    """A short repr for messages (a binary file's contents must not flood the line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"config {path} is not a text file (byte {error.start} is not UTF-8)") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    return data


def load_config(cls: type, path: Path) -> Any:
    """`cls` from the YAML file `path`; any bad value is one `ConfigError` line naming the file and field."""
    try:
        return from_dict(cls, load_yaml(path))
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from error


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
