"""Setlists: several banks in one show, each with an optional preset, plus show-wide settings.

::

    crossfade_s = 2.0          # bank and preset crossfade
    quantize = "bar"           # bank switches land on the next "bar", "beat", or "none" (at once)
    cues = "cues.toml"         # optional cue sheet (relative paths are relative to this file)
    presets = ["mine.toml"]    # optional extra preset files, after the shipped ones

    [[bank]]
    path = "banks/forest"
    name = "forest"            # default: the folder name
    preset = "chill-orbit"     # optional: switch to this preset with the bank
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vjengine.config import fail, load_toml

_TOP = {"crossfade_s", "quantize", "cues", "presets", "bank"}
_BANK = {"path", "name", "preset"}


@dataclass(frozen=True)
class SetlistBank:
    path: Path
    name: str
    preset: str | None = None


@dataclass(frozen=True)
class Setlist:
    banks: tuple[SetlistBank, ...]
    crossfade_s: float = 2.0
    quantize: str = "bar"
    cues: Path | None = None
    presets: tuple[Path, ...] = ()
    path: Path | None = None


def is_setlist(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() == ".toml"


def load_setlist(path: str | Path) -> Setlist:
    path = Path(path)
    data = load_toml(path)
    base = path.parent
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise fail(path, unknown[0], f"unknown key (known keys: {', '.join(sorted(_TOP))})")
    crossfade = data.get("crossfade_s", 2.0)
    if isinstance(crossfade, bool) or not isinstance(crossfade, (int, float)) or not 0 <= crossfade <= 60:
        raise fail(path, "crossfade_s", f"must be seconds in [0, 60], got {crossfade!r}")
    quantize = data.get("quantize", "bar")
    if quantize not in ("none", "beat", "bar"):
        raise fail(path, "quantize", f"must be 'none', 'beat' or 'bar', got {quantize!r}")
    cues = data.get("cues")
    if cues is not None and not isinstance(cues, str):
        raise fail(path, "cues", "must be a path")
    presets = data.get("presets", [])
    if not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        raise fail(path, "presets", "must be a list of paths")
    raw_banks = data.get("bank", [])
    if not isinstance(raw_banks, list) or not raw_banks:
        raise fail(path, "bank", "needs at least one [[bank]] with a path")
    banks = []
    names: set[str] = set()
    for i, t in enumerate(raw_banks):
        key = f"bank[{i}]"
        if not isinstance(t, dict):
            raise fail(path, key, "must be a table")
        unknown = sorted(set(t) - _BANK)
        if unknown:
            raise fail(path, f"{key}.{unknown[0]}", f"unknown key (known keys: {', '.join(sorted(_BANK))})")
        if not isinstance(t.get("path"), str):
            raise fail(path, f"{key}.path", "is required: the bank directory")
        bank_path = _resolve(base, t["path"])
        name = t.get("name", bank_path.name)
        if not isinstance(name, str) or not name:
            raise fail(path, f"{key}.name", "must be a non-empty string")
        if name in names:
            raise fail(path, f"{key}.name", f"{name!r} is used twice; give each bank its own name")
        names.add(name)
        preset = t.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise fail(path, f"{key}.preset", "must be a preset name")
        banks.append(SetlistBank(bank_path, name, preset))
    return Setlist(
        banks=tuple(banks), crossfade_s=float(crossfade), quantize=quantize,
        cues=_resolve(base, cues) if cues else None, presets=tuple(_resolve(base, p) for p in presets), path=path,
    )


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def unique_names(paths: list[Any]) -> list[str]:
    """Folder names for banks given on the command line, made unique (``a``, ``a-2``)."""
    out: list[str] = []
    for p in paths:
        name = Path(p).name or "bank"
        candidate, n = name, 2
        while candidate in out:
            candidate = f"{name}-{n}"
            n += 1
        out.append(candidate)
    return out
