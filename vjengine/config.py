"""TOML -> frozen dataclasses, validated loudly at load time.

One small, typed converter serves presets, cue sheets and setlists: a dataclass declares the
schema (field names, types, defaults, and optional ``metadata={"range": (lo, hi)}`` or
``metadata={"choices": (...)}``), and :func:`build` turns a TOML table into it. Every problem
raises :class:`~vjengine.errors.ConfigError` naming the file and the dotted key, e.g.
``presets/chill.toml: layer[0].speed_hz: must be a number, got 'fast'``. Unknown keys are errors
(a typo must not silently do nothing on stage).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types

from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from vjengine.errors import ConfigError

T = TypeVar("T")

__all__ = ["ConfigError", "build", "load_toml", "fail", "check_range"]


def fail(source: str | Path, key: str, message: str) -> ConfigError:
    """A ConfigError worded ``<file>: <key>: <message>``."""
    where = f"{source}: {key}: " if key else f"{source}: "
    return ConfigError(where + message)


def load_toml(path: str | Path, what: str = "file") -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a ConfigError naming the file.

    ``what`` names the file in the not-found message (e.g. "spec file" for a bank spec).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_toml(text, path)


def parse_toml(text: str, source: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None


def check_range(value: float, lo: float | None, hi: float | None, source: str | Path, key: str) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise fail(source, key, f"must be in [{lo_s}, {hi_s}], got {value:g}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, source: str | Path, key: str, meta: dict[str, Any]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key, meta)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise fail(source, key, f"must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise fail(source, key, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(source, key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(source, key, f"must be an integer, got {value!r}")
        rng = meta.get("range")
        if rng:
            check_range(value, rng[0], rng[1], source, key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(source, key, f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise fail(source, key, f"must be finite, got {value!r}")
        rng = meta.get("range")
        if rng:
            check_range(value, rng[0], rng[1], source, key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail(source, key, f"must be a string, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise fail(source, key, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(source, key, f"must be a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            out = tuple(_convert(args[0], v, source, f"{key}[{i}]", meta) for i, v in enumerate(value))
        else:
            if len(value) != len(args):
                raise fail(source, key, f"must have {len(args)} values, got {len(value)}")
            out = tuple(_convert(a, v, source, f"{key}[{i}]", meta) for i, (a, v) in enumerate(zip(args, value)))
        n = meta.get("length")
        if n is not None and len(out) not in (n if isinstance(n, tuple) else (n,)):
            raise fail(source, key, f"must have {n} values, got {len(out)}")
        return out
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(source, key, f"must be a table, got {value!r}")
        _, vt = get_args(tp)
        return {str(k): _convert(vt, v, source, f"{key}.{k}", {}) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, key)
    raise TypeError(f"config schema type {tp!r} is not supported (key {key})")


def build(cls: type[T], table: Any, source: str | Path, key: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a TOML table; unknown keys are errors.

    A dataclass may define ``_validate(self, source, key)`` for cross-field checks.
    """
    if not isinstance(table, dict):
        raise fail(source, key, f"must be a table, got {table!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # TOML keys may use dashes or underscores.
    normalised: dict[str, tuple[str, Any]] = {}
    for raw_key, value in table.items():
        name = str(raw_key).replace("-", "_")
        normalised[name] = (str(raw_key), value)
    unknown = [raw for name, (raw, _) in normalised.items() if name not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise fail(source, where, f"unknown key (known keys: {known})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub_key = f"{key}.{name}" if key else name
        if name in normalised:
            kwargs[name] = _convert(hints[name], normalised[name][1], source, sub_key, dict(f.metadata))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise fail(source, sub_key, "is required")
    obj = cls(**kwargs)
    validate = getattr(obj, "_validate", None)
    if validate is not None:
        validate(source, key)
    return obj


def join_key(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name




MAX_SIDE = 16384


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080): each side 16..16384 pixels; a ConfigError names ``option``."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: must be WIDTHxHEIGHT, e.g. 1920x1080") from None
    if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
        raise ConfigError(f"{option} {text!r}: width and height must be 16..{MAX_SIDE}")
    return w, h
