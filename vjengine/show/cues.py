"""Timed cue sheets: at a song time or a bar, switch preset or bank, set axes or effects.

TOML (one ``[[cue]]`` per moment)::

    [[cue]]
    at = "1:04.5"            # song time: seconds (64.5) or "m:ss.s"; or use bar = 33
    preset = "techno-kick-morph"
    bank = "forest"
    axes = { warp = 0.8 }    # hold axes (manual override); release = ["warp"] hands them back
    fx = { "flash.amount" = 0.6 }
    intensity = 1.0
    blackout = false
    crossfade = 4.0          # seconds, for this and later switches
    label = "drop"

``bar = N`` counts bars from 1 (bar 1 starts when the beat clock starts), like a DAW.

A sheet may also name a lyric file, ``lyrics = "song.lrc"`` (and ``lyrics_axis``, default
``"lyrics"``): its lines become cues that walk that axis (:mod:`vjengine.show.lyrics`).

``section = "B"`` fires at the start of every section labelled B (``"B:2"``: only the second B), the
labels `vj analyze` writes to ``sections.txt``. The sheet names that file with a top-level
``sections = "song.analysis/sections.txt"`` (relative to the sheet); without it `vj render` finds the
song's sections itself. A label the song does not have is an error naming the cue.

CSV: a header ``at,kind,target,value`` and one command per row; ``at`` is seconds, ``m:ss.s``,
``bar N`` or ``section B`` / ``section B:2``; ``kind`` is a command kind (``preset``, ``bank``, ``axis``, ``axis_release``, ``fx``,
``intensity``, ``blackout``, ``crossfade``, ``bpm``).

A cue fires once, on the first frame at or after its moment; cues are applied through the same
:class:`~vjengine.control.commands.Command` path as keys and OSC (source ``"cue"``).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vjengine.config import build, fail, load_toml
from vjengine.control.commands import Command
from vjengine.errors import ConfigError
from vjengine.mapping.features import bars_elapsed

_TIME_RE = re.compile(r"^(?:(\d+):)?(\d+(?:\.\d*)?)$")
_BAR_RE = re.compile(r"^bar\s*(\d+)$", re.IGNORECASE)
_SECTION_RE = re.compile(r"^section\s+(\S+)$", re.IGNORECASE)
_SECTION_NAME_RE = re.compile(r"^([^:\s]+)(?::(\d+))?$")
_CSV_KINDS = {"preset", "bank", "axis", "axis_release", "axis_nudge", "fx", "intensity", "blackout", "crossfade", "bpm"}


@dataclass(frozen=True)
class Cue:
    """One moment of the sheet: ``at_s`` (song seconds) or ``bar`` (1-based), and its commands."""

    commands: tuple[Command, ...]
    at_s: float | None = None
    bar: int | None = None
    label: str = ""
    line: str = ""  # where it came from, for messages
    section: str | None = None  # a section label (fires at each start), resolved by resolve_sections
    occurrence: int | None = None  # only that occurrence of the label (1-based)
    source: str = ""  # the sheet's path, for messages


def parse_time(text: Any, source: Any, key: str) -> float:
    """Seconds from a number, ``"12.5"`` or ``"m:ss.s"``."""
    if isinstance(text, bool):
        raise fail(source, key, f"must be seconds or \"m:ss\", got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _TIME_RE.match(str(text).strip())
        if not m:
            raise fail(source, key, f"must be seconds or \"m:ss\", got {text!r}")
        value = int(m.group(1) or 0) * 60 + float(m.group(2))
    if not math.isfinite(value) or value < 0:
        raise fail(source, key, f"must be a time >= 0, got {text!r}")
    return value


def _cmd(kind: str, target: str = "", value: Any = None) -> Command:
    return Command(kind, target, value, source="cue", received_s=0.0)


@dataclass(frozen=True)
class _CueTable:
    """One ``[[cue]]`` as written: the schema :func:`vjengine.config.build` checks every key against."""

    at: float | str | None = None  # seconds or "m:ss.s"
    bar: int | None = field(default=None, metadata={"range": (1, None)})
    section: str | None = None
    preset: str | int | None = None
    bank: str | int | None = None
    axes: dict[str, float] = field(default_factory=dict)
    release: tuple[str | int, ...] = ()
    fx: dict[str, float] = field(default_factory=dict)
    intensity: float | None = None
    blackout: bool | None = None
    crossfade: float | None = field(default=None, metadata={"range": (0.0, None)})
    bpm: float | None = None
    label: str = ""

    def _validate(self, source: Any, key: str) -> None:
        if sum(v is not None for v in (self.at, self.bar, self.section)) != 1:
            raise fail(source, key, "needs exactly one of `at` (song time), `bar` (1-based bar number) or `section`")
        for name, v in self.axes.items():
            if not 0.0 <= v <= 1.0:
                raise fail(source, f"{key}.axes.{name}", f"must be in [0, 1], got {v:g}")


def _cue_from_table(table: Any, source: Any, key: str) -> Cue:
    t = build(_CueTable, table, source, key)
    section = occurrence = None
    if t.section is not None:
        section, occurrence = _section_name(t.section, source, f"{key}.section")
    at_s = parse_time(t.at, source, f"{key}.at") if t.at is not None else None
    cmds: list[Command] = []
    if t.crossfade is not None:
        cmds.append(_cmd("crossfade", value=t.crossfade))
    for kind, value in (("preset", t.preset), ("bank", t.bank)):
        if value is not None:
            cmds.append(_cmd(kind, value=value))
    cmds.extend(_cmd("axis", str(name), v) for name, v in t.axes.items())
    cmds.extend(_cmd("axis_release", str(n)) for n in t.release)
    cmds.extend(_cmd("fx", str(name), v) for name, v in t.fx.items())
    for kind, value in (("intensity", t.intensity), ("bpm", t.bpm), ("blackout", t.blackout)):
        if value is not None:
            cmds.append(_cmd(kind, value=value))
    if not cmds:
        raise fail(source, key, "does nothing: give preset, bank, axes, release, fx, intensity, blackout, "
                                "crossfade or bpm")
    return Cue(tuple(cmds), at_s, t.bar, t.label, key, section, occurrence, str(source))


def _section_name(value: Any, source: Any, key: str) -> tuple[str, int | None]:
    m = _SECTION_NAME_RE.match(str(value).strip()) if isinstance(value, str) else None
    if not m or (m.group(2) is not None and int(m.group(2)) < 1):
        raise fail(source, key, f"must be a section label like \"B\" or \"B:2\" (the second B), got {value!r}")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _parse_at(text: str, source: Any, key: str) -> tuple[float | None, int | None]:
    text = text.strip()
    if _SECTION_RE.match(text):
        return None, None
    m = _BAR_RE.match(text)
    if m:
        bar = int(m.group(1))
        if bar < 1:
            raise fail(source, key, "bars count from 1")
        return None, bar
    return parse_time(text, source, key), None


def _value_for(kind: str, text: str, source: Any, key: str) -> Any:
    text = text.strip()
    if kind in ("axis_release",):
        return None
    if kind == "blackout":
        low = text.lower()
        if low in ("1", "true", "on", "yes"):
            return True
        if low in ("0", "false", "off", "no"):
            return False
        raise fail(source, key, f"must be true or false, got {text!r}")
    if kind in ("preset", "bank"):
        if not text:
            raise fail(source, key, "needs a name or an index")
        return int(text) if text.isdigit() else text
    try:
        v = float(text)
    except ValueError:
        raise fail(source, key, f"must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise fail(source, key, f"must be finite, got {text!r}")
    return v


def parse_cue_csv(text: str, source: Any) -> list[Cue]:
    reader = csv.reader(io.StringIO(text))
    rows = [r for r in reader if r and not (len(r) == 1 and not r[0].strip()) and not r[0].lstrip().startswith("#")]
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    need = ["at", "kind", "target", "value"]
    if header[:4] != need:
        raise fail(source, "line 1", f"header must be {','.join(need)}, got {','.join(rows[0])}")
    cues = []
    for n, row in enumerate(rows[1:], start=2):
        key = f"line {n}"
        row = (row + ["", "", "", ""])[:4]
        at_s, bar = _parse_at(row[0], source, f"{key}.at")
        kind = row[1].strip()
        if kind not in _CSV_KINDS:
            raise fail(source, f"{key}.kind", f"must be one of {', '.join(sorted(_CSV_KINDS))}, got {kind!r}")
        target = row[2].strip()
        if kind in ("axis", "axis_release", "axis_nudge", "fx") and not target:
            raise fail(source, f"{key}.target", f"{kind} needs a target (axis name or effect.param)")
        value = _value_for(kind, row[3], source, f"{key}.value")
        section = occurrence = None
        ms = _SECTION_RE.match(row[0].strip())
        if ms:
            section, occurrence = _section_name(ms.group(1), source, f"{key}.at")
        cues.append(Cue((_cmd(kind, target, value),), at_s, bar, "", key, section, occurrence, str(source)))
    return cues


def load_cues(path: str | Path) -> list[Cue]:
    """A cue sheet from ``.toml`` or ``.csv``; errors name the file and the cue/line and key."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
        return parse_cue_csv(text, path)
    data = load_toml(path)
    unknown = sorted(set(data) - {"cue", "sections", "lyrics", "lyrics_axis"})
    if unknown:
        raise fail(path, unknown[0], "unknown key (a cue sheet holds [[cue]] tables, `sections`, `lyrics` and "
                                     "`lyrics_axis`)")
    raw = data.get("cue", [])
    if not isinstance(raw, list):
        raise fail(path, "cue", "must be an array of tables ([[cue]])")
    cues = [_cue_from_table(t, path, f"cue[{i}]") for i, t in enumerate(raw)]
    if "sections" in data:
        if not isinstance(data["sections"], str):
            raise fail(path, "sections", "must be the path of a sections.txt (from `vj analyze`)")
        from vjengine.audio.sections import read_sections  # noqa: PLC0415

        cues = resolve_sections(cues, read_sections(path.parent / data["sections"]))
    if "lyrics" in data:
        from vjengine.show.lyrics import LYRICS_AXIS, load_lyrics, lyric_cues  # noqa: PLC0415

        axis = data.get("lyrics_axis", LYRICS_AXIS)
        if not isinstance(data["lyrics"], str):
            raise fail(path, "lyrics", "must be the path of a .lrc or .csv lyric file")
        if not isinstance(axis, str):
            raise fail(path, "lyrics_axis", "must be an axis name")
        lyric_path = path.parent / data["lyrics"]
        cues += lyric_cues(load_lyrics(lyric_path), axis=axis, source=str(lyric_path))
    return cues


def needs_sections(cues: list[Cue]) -> bool:
    """Some cue names a section that is not resolved to a time yet."""
    return any(c.section is not None for c in cues)


def require_resolved(cues: list[Cue]) -> None:
    """Live: a cue naming a section needs the sheet's ``sections = "...sections.txt"`` (ConfigError)."""
    for cue in cues:
        if cue.section is not None:
            raise ConfigError(f"{cue.source}: {cue.line}: section {cue.section!r}: live, the sheet must name the "
                              "song's sections: add sections = \"SONG.analysis/sections.txt\" (from `vj analyze`)")


def resolve_sections(cues: list[Cue], sections: list[Any]) -> list[Cue]:
    """Section cues become timed cues at the start of each matching section (``Section`` objects with
    ``start_s`` and ``label``); a label the song lacks raises :class:`ConfigError` naming the cue."""
    out: list[Cue] = []
    labels = [s.label for s in sections]
    for cue in cues:
        if cue.section is None:
            out.append(cue)
            continue
        starts = [s.start_s for s in sections if s.label == cue.section]
        known = ", ".join(dict.fromkeys(labels)) or "none"
        if not starts:
            raise ConfigError(f"{cue.source}: {cue.line}: unknown section {cue.section!r} (the song has: {known})")
        if cue.occurrence is not None:
            if cue.occurrence > len(starts):
                raise ConfigError(f"{cue.source}: {cue.line}: the song has {len(starts)} section(s) "
                                  f"{cue.section!r}, not {cue.occurrence}")
            starts = [starts[cue.occurrence - 1]]
        for t in starts:
            out.append(Cue(cue.commands, t, None, cue.label or cue.section, cue.line, None, None, cue.source))
    return out


@dataclass
class CueRunner:
    """Fires each cue once, in order, on the first frame at or past its moment."""

    cues: list[Cue]
    fired: list[bool] = field(default_factory=list)
    # song time is the audio stream's, which advances in analysis hops (<= 5.8 ms): it may sit up to a
    # hop short of the frame's time, so a cue within a hop is due now, not a frame late
    tolerance_s: float = 0.006

    def __post_init__(self) -> None:
        self.fired = [False] * len(self.cues)

    def due(self, song_time_s: float, frame: Any = None) -> list[Command]:
        """Commands of every cue whose time or bar has come; ``frame`` gives the bar count."""
        bar_now = bars_elapsed(frame) + 1.0 if frame is not None else None
        out: list[Command] = []
        for i, cue in enumerate(self.cues):
            if self.fired[i]:
                continue
            if cue.at_s is not None and song_time_s + self.tolerance_s >= cue.at_s:
                hit = True
            elif cue.bar is not None and bar_now is not None and bar_now + 1e-9 >= cue.bar:
                hit = True
            else:
                hit = False
            if hit:
                self.fired[i] = True
                out.extend(cue.commands)
        return out

    def upcoming_banks(self, song_time_s: float, frame: Any = None, *, horizon_s: float = 4.0,
                       horizon_bars: float = 2.0) -> list[Any]:
        """The bank references of cues not fired yet that come within ``horizon_s`` seconds (timed
        cues) or ``horizon_bars`` bars (bar cues), soonest first: what the renderer may load ahead."""
        bar_now = bars_elapsed(frame) + 1.0 if frame is not None else None
        soon: list[tuple[float, Any]] = []
        for i, cue in enumerate(self.cues):
            if self.fired[i]:
                continue
            if cue.at_s is not None and cue.at_s - song_time_s <= horizon_s:
                when = cue.at_s - song_time_s
            elif cue.bar is not None and bar_now is not None and cue.bar - bar_now <= horizon_bars:
                when = (cue.bar - bar_now) * horizon_s / max(horizon_bars, 1e-9)
            else:
                continue
            soon += [(when, c.value) for c in cue.commands if c.kind == "bank"]
        return [ref for _, ref in sorted(soon, key=lambda x: x[0])]

    @property
    def remaining(self) -> int:
        return self.fired.count(False)

