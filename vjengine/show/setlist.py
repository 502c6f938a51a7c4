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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vjengine.config import build, fail, load_toml


@dataclass(frozen=True)
class _BankTable:
    """One ``[[bank]]`` as written (validated by :func:`vjengine.config.build`)."""

    path: str
    name: str | None = None  # default: the folder name
    preset: str | None = None


@dataclass(frozen=True)
class _SetlistFile:
    """A setlist file as written: the schema the reader checks every key against."""

    bank: tuple[_BankTable, ...] = ()
    crossfade_s: float = field(default=2.0, metadata={"range": (0.0, 60.0)})
    quantize: Literal["none", "beat", "bar"] = "bar"
    cues: str | None = None
    presets: tuple[str, ...] = ()

    def _validate(self, source: Any, key: str) -> None:
        if not self.bank:
            raise fail(source, "bank", "needs at least one [[bank]] with a path")


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
    """A :class:`Setlist` from a TOML file; every error names the file and the key (exit 2)."""
    path = Path(path)
    raw = build(_SetlistFile, load_toml(path), path)
    base = path.parent
    banks = []
    names: set[str] = set()
    for i, t in enumerate(raw.bank):
        bank_path = _resolve(base, t.path)
        name = bank_path.name if t.name is None else t.name
        if not name:
            raise fail(path, f"bank[{i}].name", "must be a non-empty string")
        if name in names:
            raise fail(path, f"bank[{i}].name", f"{name!r} is used twice; give each bank its own name")
        names.add(name)
        banks.append(SetlistBank(bank_path, name, t.preset))
    return Setlist(
        banks=tuple(banks), crossfade_s=raw.crossfade_s, quantize=raw.quantize,
        cues=_resolve(base, raw.cues) if raw.cues else None, presets=tuple(_resolve(base, p) for p in raw.presets),
        path=path,
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
