"""Timed lyrics: ``.lrc`` or CSV files -> lyric lines -> a cue track that walks a bank's lyric axis.

Formats:

- ``.lrc`` (the common karaoke format): ``[mm:ss.xx]line text``; several time tags on one line repeat
  it (a chorus); ``[offset:+/-ms]`` shifts every time; other ``[tag:value]`` lines (ar, ti, al, by,
  length ...) are metadata. A time tag with no text is an instrumental break: the picture holds.
- CSV: ``time,line[,style,negative]`` (a header row with those names is optional); ``time`` is
  seconds or ``m:ss.s``. ``style`` is added to that line's prompt, ``negative`` to the bank's
  negative prompt.

Lines must be in time order and no two may start together: an unsorted or overlapping file is an
error naming the file, line and key, as is a bad time stamp.

The bank made from a lyric file (``vj-bank build --lyrics``, :mod:`bank_builder.lyrics`) has one
prompt per distinct lyric line on its ``lyrics`` axis, in order of first appearance, prompt ``i`` of
``n`` at axis position ``i / (n - 1)``. :func:`lyric_cues` makes the cue track that sets that axis at
each line's time (`vj render --lyrics`, or ``lyrics = "song.lrc"`` in a cue sheet, live too).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from vjengine.control.commands import Command
from vjengine.errors import ConfigError

LYRICS_AXIS = "lyrics"
_LRC_TIME = re.compile(r"\[(\d+):(\d{1,2}(?:[.:]\d{1,3})?)\]")
_LRC_TAG = re.compile(r"^\[([a-zA-Z]+):(.*)\]\s*$")
_CSV_TIME = re.compile(r"^(?:(\d+):)?(\d+(?:\.\d*)?)$")


@dataclass(frozen=True)
class LyricLine:
    time_s: float
    text: str
    style: str = ""
    negative: str = ""
    where: str = ""  # "line N", for messages


def _lrc_seconds(minutes: str, seconds: str) -> float:
    return int(minutes) * 60 + float(seconds.replace(":", "."))


def parse_lrc(text: str, source: str | Path) -> list[LyricLine]:
    offset_s = 0.0
    out: list[LyricLine] = []
    last_first = -1.0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        tag = _LRC_TAG.match(line)
        if tag and not _LRC_TIME.match(line):
            if tag.group(1).lower() == "offset":
                try:
                    offset_s = int(tag.group(2).strip()) / 1000.0
                except ValueError:
                    raise ConfigError(f"{source}: line {n}: offset: must be milliseconds, got "
                                      f"{tag.group(2).strip()!r}") from None
            continue
        if not line.startswith("["):
            raise ConfigError(f"{source}: line {n}: time: a lyric line starts with [mm:ss.xx], got {raw!r}")
        times = []
        pos = 0
        while True:
            m = _LRC_TIME.match(line, pos)
            if not m:
                break
            sec = float(m.group(2).replace(":", "."))
            if sec >= 60:
                raise ConfigError(f"{source}: line {n}: time: seconds must be below 60 in {m.group(0)}")
            times.append(_lrc_seconds(m.group(1), m.group(2)))
            pos = m.end()
        if not times or line[pos:].startswith("["):
            bad = line[pos:].split("]")[0] + "]"
            raise ConfigError(f"{source}: line {n}: time: bad time stamp {bad!r} (want [mm:ss.xx])")
        words = line[pos:].strip()
        if len(times) == 1:
            if times[0] < last_first:
                raise ConfigError(f"{source}: line {n}: time: {line[:pos]} comes before the line above (unsorted)")
            last_first = times[0]
        out.extend(LyricLine(max(0.0, t - offset_s), words, where=f"line {n}") for t in times)
    return _check_order(sorted(out, key=lambda x: x.time_s), source)


def _check_order(lines: list[LyricLine], source: str | Path) -> list[LyricLine]:
    for a, b in zip(lines, lines[1:]):
        if b.time_s < a.time_s:
            raise ConfigError(f"{source}: {b.where}: time: {b.time_s:.2f} s comes before {a.where} "
                              f"({a.time_s:.2f} s): lines must be in time order")
        if abs(b.time_s - a.time_s) < 1e-3:
            raise ConfigError(f"{source}: {b.where}: time: starts together with {a.where} "
                              f"({a.time_s:.2f} s): lines overlap")
    if not lines:
        raise ConfigError(f"{source}: no timed lyric lines")
    return lines


def parse_lyrics_csv(text: str, source: str | Path) -> list[LyricLine]:
    rows = list(csv.reader(io.StringIO(text)))
    out: list[LyricLine] = []
    for n, row in enumerate(rows, start=1):
        if not row or not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if n == 1 and row[0].strip().lower() == "time":
            if [c.strip().lower() for c in row[:2]] != ["time", "line"]:
                raise ConfigError(f"{source}: line 1: header must be time,line[,style,negative]")
            continue
        if len(row) < 2 or len(row) > 4:
            raise ConfigError(f"{source}: line {n}: want time,line[,style,negative], got {len(row)} fields")
        m = _CSV_TIME.match(row[0].strip())
        if not m:
            raise ConfigError(f"{source}: line {n}: time: must be seconds or m:ss.s, got {row[0]!r}")
        t = int(m.group(1) or 0) * 60 + float(m.group(2))
        if out and t < out[-1].time_s:
            raise ConfigError(f"{source}: line {n}: time: {t:g} s comes before the line above "
                              f"({out[-1].time_s:g} s): lines must be in time order")
        if out and abs(t - out[-1].time_s) < 1e-3:
            raise ConfigError(f"{source}: line {n}: time: {t:g} s starts together with the line above: lines overlap")
        text_ = row[1].strip()
        if not text_:
            raise ConfigError(f"{source}: line {n}: line: empty lyric")
        row = (row + ["", ""])[:4]
        out.append(LyricLine(t, text_, row[2].strip(), row[3].strip(), f"line {n}"))
    return _check_order(out, source)


def load_lyrics(path: str | Path) -> list[LyricLine]:
    """Lyric lines from ``.lrc`` or ``.csv``; :class:`ConfigError` names the file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read lyrics: {exc}") from None
    if path.suffix.lower() == ".csv":
        return parse_lyrics_csv(text, path)
    if path.suffix.lower() == ".lrc":
        return parse_lrc(text, path)
    raise ConfigError(f"{path}: lyrics must be .lrc or .csv (time,line[,style,negative])")


def prompt_lines(lines: list[LyricLine]) -> list[LyricLine]:
    """The distinct sung lines (text + style), in order of first appearance: the bank's prompts."""
    seen: dict[tuple[str, str], LyricLine] = {}
    for ln in lines:
        if ln.text and (ln.text, ln.style) not in seen:
            seen[(ln.text, ln.style)] = ln
    return list(seen.values())


def lyric_positions(lines: list[LyricLine]) -> list[tuple[float, float | None]]:
    """``(time_s, axis position 0..1)`` per line; ``None`` for a break (the picture holds)."""
    prompts = prompt_lines(lines)
    index = {(p.text, p.style): i for i, p in enumerate(prompts)}
    n = max(1, len(prompts) - 1)
    return [(ln.time_s, index[(ln.text, ln.style)] / n if ln.text else None) for ln in lines]


def lyric_cues(lines: list[LyricLine], *, axis: str = LYRICS_AXIS, source: str = "") -> list:
    """Timed cues that set ``axis`` to each line's prompt as the line starts."""
    from vjengine.show.cues import Cue  # noqa: PLC0415

    out = []
    for ln, (t, pos) in zip(lines, lyric_positions(lines)):
        if pos is None:
            continue
        cmd = Command("axis", axis, pos, source="cue", received_s=0.0)
        out.append(Cue((cmd,), t, None, ln.text[:40], ln.where, source=str(source)))
    return out
