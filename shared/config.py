"""YAML config files loaded into typed, frozen dataclasses.

Both sides declare their config as dataclasses with defaults beside the
fields (Telegraf style). This module turns a YAML file into those objects and,
when the file is wrong, raises :class:`ConfigError` naming the file, the key
path, what was found and what is expected — the message an installer needs
to fix it without reading code. A field's ``metadata={"help": ...}`` is added
to the error as the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(Exception):
    """A config file that cannot be used; the message says where and how to fix it."""

    def __init__(self, source: str, key: str, problem: str, fix: str = "") -> None:
        message = f"{source}: {key}: {problem}" if key else f"{source}: {problem}"
        if fix:
            message += f" — fix: {fix}"
        super().__init__(message)
        self.source = source
        self.key = key


def load_config(path: Path | str, schema: type[T]) -> T:
    """Read ``path`` as YAML and build ``schema`` from it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found", "pass the right path with --config") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text", "save the file as UTF-8 YAML") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(str(path), "", f"YAML syntax error at {where}: {problem}", "check indentation and quoting") from None
    return build(schema, {} if document is None else document, source=str(path))


def build(schema: type[T], document: Any, source: str = "<config>", key: str = "") -> T:
    """Build a dataclass from plain data, checking every key and type."""
    if not isinstance(document, dict):
        raise ConfigError(source, key or "(top level)", f"expected a mapping, got {_describe(document)}")
    hints = get_type_hints(schema)
    known = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for name in document:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
            raise ConfigError(source, _join(key, str(name)), "unknown key", fix)
    values: dict[str, Any] = {}
    for name, field in known.items():
        path = _join(key, name)
        if name in document:
            values[name] = _convert(hints[name], document[name], source, path, field)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(source, path, "required key is missing", field.metadata.get("help", ""))
    try:
        return schema(**values)
    except ValueError as exc:
        raise ConfigError(source, key or "(top level)", str(exc)) from None


def _convert(hint: Any, value: Any, source: str, key: str, field: dataclasses.Field | None = None) -> Any:
    fix = field.metadata.get("help", "") if field is not None else ""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, source, key, field)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(source, key, f"got {value!r}", f"use one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, tuple):
        (item_hint, *_rest) = get_args(hint) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(source, key, f"expected a list, got {_describe(value)}", fix)
        items = [_convert(item_hint, item, source, f"{key}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        key_hint, value_hint = get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}", fix)
        return {
            _convert(key_hint, k, source, key): _convert(value_hint, v, source, _join(key, str(k)))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, key)
    return _scalar(hint, value, source, key, fix)


def _scalar(hint: Any, value: Any, source: str, key: str, fix: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(source, key, f"expected true or false, got {_describe(value)}", fix)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(source, key, f"expected a whole number, got {_describe(value)}", fix)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(source, key, f"expected a number, got {_describe(value)}", fix)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(source, key, f"expected text, got {_describe(value)}", fix)
    if hint is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise ConfigError(source, key, f"expected a file path, got {_describe(value)}", fix)
    raise TypeError(f"config schema uses unsupported type {hint!r} at {key}")


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (empty value)"
    return f"{type(value).__name__} {value!r}"[:80]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


__all__ = ["ConfigError", "build", "load_config"]
