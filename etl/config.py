"""Configuration: dataclasses loaded from YAML plus ``key=value`` overrides, one source of defaults.

Each component declares a dataclass with its defaults (the single source of truth) and an optional
``validate()`` that raises ``ValueError`` with a clear message.  ``load_config`` merges, in order:
dataclass defaults < YAML file < overrides (``a.b=c`` dotted keys, values parsed as YAML scalars).

Every value is checked against its field's annotation before the dataclass is built (``int`` fields
take integers, not ``1.5`` or ``"abc"``; a section takes a mapping, not ``null`` or ``3``), so a wrong
type is a ``ValueError`` naming the key, never a ``TypeError``/``AttributeError`` later.  Text fields
take text: a YAML number there (``model: 3.10`` reads as 3.1) must be quoted; a YAML date becomes its
ISO text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["engine.batch_size=8", "seed=1"]`` -> nested dict; values parsed as YAML scalars."""
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = [part.strip() for part in key.split(".")]
        if not all(parts):
            raise ValueError(
                f"override {item!r} has an empty key (write key=value, e.g. engine.batch_size=8)"
            )
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = _yaml_value(item, raw)
    return result


def _yaml_value(item: str, raw: str) -> Any:
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(
            f"override {item!r}: the value is not valid YAML ({problem}); quote text with special characters"
        ) from None


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_dict(cls: type[T], data: dict[str, Any], *, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclasses.

    Unknown keys are an error (a typo in a config must never be silently ignored).
    """
    if not isinstance(data, dict):
        raise ValueError(f"config section {path or '<root>'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in section {path!r}" if path else ""
        raise ValueError(
            f"unknown config key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = {
        name: coerce(value, hints[name], f"{path}.{name}" if path else name) for name, value in data.items()
    }
    obj = cls(**kwargs)
    _validate_tree(obj)
    return obj


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against annotation ``tp`` (and converted: int -> float, str -> Path, list ->
    tuple, nested mappings -> dataclasses); ``ValueError`` naming ``key`` when it does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        for alternative in alternatives:
            try:
                return coerce(value, alternative, key)
            except _WrongType as exc:
                if len(alternatives) == 1 and exc.key != key:  # a list item or mapping value: say which
                    raise
        raise _wrong_type(key, tp, value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _WrongType(key, f"{key} must be one of {', '.join(map(repr, args))}, got {_shown(value)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _WrongType(
                key,
                f"{key} is a section ({_field_names(tp)}), not a single value: got {_shown(value)}; "
                f"set its keys instead, e.g. {key}.{dataclasses.fields(tp)[0].name}=...",
            )
        return from_dict(tp, value, path=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, dt.date):  # YAML reads 2026-11-01 as a date
            return value.isoformat()
    elif tp is Path:
        if isinstance(value, (str, Path)) and str(value) != "":
            return Path(value)
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            if not args:
                items = list(value)
            elif origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    raise _WrongType(
                        key, f"{key} must have {len(args)} items, got {len(value)}: {_shown(value)}"
                    )
                items = [coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
            else:
                items = [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if (origin or tp) is tuple else items
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            if not args:
                return dict(value)
            return {
                coerce(k, args[0], f"{key} key"): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()
            }
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:  # an annotation this checker does not know: left to the dataclass's validate()
        return value
    raise _wrong_type(key, tp, value)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        named = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(named + (["null"] if type(None) in args else []))
    if origin in (list, tuple) or tp in (list, tuple):
        return f"a list of {_describe(args[0])} values" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a section ({_field_names(tp)})"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a path"}
    return names.get(tp, f"a {getattr(tp, '__name__', tp)}")


def _field_names(cls: Any) -> str:
    names = [f.name for f in dataclasses.fields(cls)]
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    kind = {str: "text", int: "integer", float: "number", list: "list", dict: "mapping"}.get(type(value))
    return f"{value!r} ({kind or type(value).__name__})"


class _WrongType(ValueError):
    """A value that does not fit its field's annotation; ``key`` is the dotted key it was found at."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _wrong_type(key: str, tp: Any, value: Any) -> _WrongType:
    hint = ""
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool) and "[" not in key:
        hint = f"; quote it to mean text, e.g. {key}='\"{value}\"'"
    return _WrongType(key, f"{key} must be {_describe(tp)}, got {_shown(value)}{hint}")


def _validate_tree(obj: Any) -> None:
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (Paths as strings), for writing provenance next to results."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(obj)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults (the dataclass) < YAML file < CLI overrides; validated; ``ValueError`` on any problem."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {p} must contain a mapping at the top level")
        data = loaded
    data = deep_merge(data, parse_overrides(overrides))
    base = to_dict(cls())  # type: ignore[call-arg]
    try:
        return from_dict(cls, deep_merge(base, data))
    except TypeError as exc:  # wrong shapes reported as configuration errors
        raise ValueError(f"invalid configuration for {cls.__name__}: {exc}") from exc
