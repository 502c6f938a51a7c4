"""Record and replay a show: a JSON-lines log of everything that drives the visuals.

Line 1 is a header (format, version, banks, the full text of every preset, starting preset/bank,
crossfade and quantize settings, output size, the audio source). Then one line per rendered frame::

    {"f": 12, "dt": 0.016667, "t": 0.2, "a": {...changed AudioFrame fields...},
     "c": [["preset", "", "techno", "key"]], "r": [[2, "...preset TOML..."]],
     "o": {"bank": 0, "coord": [...], "mix": 1.0}}

``a`` holds only the AudioFrame fields that changed since the previous frame (floats are written
with ``repr`` precision, so they read back bit-identical); ``c`` the commands applied on that frame
in order (keys, OSC, cues); ``r`` presets hot-reloaded before them; ``o`` what the show drew (used
to check a replay). The last line is ``{"end": true, "frames": N}``.

Replaying feeds the same frames, commands and ``dt`` through a fresh :class:`ShowState`, so the
renderer sees the same sequence and draws the same pixels, frame for frame.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, TextIO

from vjengine.audio.frame import AudioFrame
from vjengine.control.commands import KINDS, Command
from vjengine.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "vjengine-set"
VERSION = 1
_FRAME_FIELDS = tuple(f.name for f in fields(AudioFrame))


def _plain(value: Any) -> Any:
    if isinstance(value, (MappingProxyType, dict)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def frame_to_dict(frame: AudioFrame) -> dict[str, Any]:
    return {name: _plain(getattr(frame, name)) for name in _FRAME_FIELDS}


def frame_from_dict(d: dict[str, Any]) -> AudioFrame:
    kwargs: dict[str, Any] = {}
    for name in _FRAME_FIELDS:
        if name not in d:
            continue
        v = d[name]
        if name in ("bands", "stems"):
            v = MappingProxyType(dict(v))
        elif name in ("chroma", "band_names"):
            v = tuple(v)
        elif v is None:
            continue
        kwargs[name] = v
    return AudioFrame(**kwargs)


def command_to_list(cmd: Command) -> list[Any]:
    return [cmd.kind, cmd.target, _plain(cmd.value), cmd.source]


def command_from_list(item: list[Any]) -> Command:
    kind, target, value, source = (list(item) + ["", None, ""])[:4]
    return Command(str(kind), str(target), value, source=f"replay:{source}" if source else "replay", received_s=0.0)


class Recorder:
    """Writes a set log as the show runs.

    The render thread only hands each frame's line (a dict) to a bounded backlog; a ``vj-setlog``
    thread (:class:`~vjengine.linewriter.LineWriter`) encodes and writes it, flushing about once a
    second. A disk that stalls (a hung network share, a FIFO nobody reads) never stops the frame
    loop: the backlog holds ``max_backlog`` lines, and past that the recording stops (logged once;
    the log ends with the lines written, which a replay plays up to). A write error (a full disk)
    stops it the same way. ``close`` writes the end line and waits at most ``close_timeout_s`` for
    the disk.
    """

    def __init__(self, path: str | Path, header: dict[str, Any], *, max_backlog: int = 18_000,
                 close_timeout_s: float = 5.0) -> None:
        from vjengine.linewriter import LineWriter, open_for_writing  # noqa: PLC0415

        self.path = Path(path)
        fh: TextIO = open_for_writing(self.path, "--record")  # the writer closes it
        head = {"format": FORMAT, "version": VERSION, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        head.update(header)
        self._prev: dict[str, Any] = {}
        self.frames = 0  # lines handed to the writer
        self._writer = LineWriter(fh, name="vj-setlog", encode=lambda item: json.dumps(item, default=_plain),
                                  on_fail=self._stopped, label=f"set log {self.path}", max_backlog=max_backlog + 1,
                                  close_timeout_s=close_timeout_s,
                                  end=lambda: json.dumps({"end": True, "frames": self.written}))
        self._writer.put(head)

    @property
    def failed(self) -> bool:
        return self._writer.failed

    @property
    def written(self) -> int:
        """Frame lines the writer has written (the header is not one)."""
        return max(0, self._writer.written - 1)

    @property
    def pending(self) -> int:
        """Lines handed over and not yet written."""
        return self._writer.pending

    def frame(
        self,
        dt_s: float,
        now_s: float,
        audio: AudioFrame,
        commands: list[Command],
        reloads: list[tuple[int, str]] | None = None,
        output: dict[str, Any] | None = None,
    ) -> None:
        """One frame's line (render thread: no I/O, never blocks)."""
        if self.failed:
            return
        try:
            d = frame_to_dict(audio)
            changed = {k: v for k, v in d.items() if self._prev.get(k, _MISSING) != v or k not in self._prev}
            self._prev = d
            line: dict[str, Any] = {"f": self.frames, "dt": dt_s, "t": now_s, "a": changed}
            if commands:
                line["c"] = [command_to_list(c) for c in commands]
            if reloads:
                line["r"] = [[i, text] for i, text in reloads]
            if output is not None:
                line["o"] = output
            if self._writer.put(line):
                self.frames += 1
        except Exception as exc:  # noqa: BLE001 - recording must never stop the show
            self._writer.fail(str(exc))

    def _stopped(self, why: str) -> None:
        log.error("recording stopped at frame %d: %s; %s ends there and the show goes on", self.frames, why,
                  self.path)

    def close(self) -> None:
        """Write what is waiting and the end line; give up (logged) after ``close_timeout_s``."""
        self._writer.close()


class _Missing:
    pass


_MISSING = _Missing()


@dataclass(frozen=True)
class ReplayFrame:
    index: int
    dt_s: float
    now_s: float
    audio: AudioFrame
    commands: tuple[Command, ...]
    reloads: tuple[tuple[int, str], ...]
    output: dict[str, Any] | None


class SetLog:
    """A recorded set: ``header`` and an iterator over :class:`ReplayFrame`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, encoding="utf-8") as fh:
                first = fh.readline()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc}") from None
        try:
            header = json.loads(first)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path}: line 1: not a set log header ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            fmt = header.get("format") if isinstance(header, dict) else None
            raise ConfigError(f"{self.path}: line 1: not a vjengine set log (format {fmt!r})")
        if header.get("version") != VERSION:
            raise ConfigError(f"{self.path}: version {header.get('version')!r} is not supported "
                              f"(this vjengine reads {VERSION})")
        self.header = header

    def frames(self) -> Iterator[ReplayFrame]:
        prev: dict[str, Any] = {}
        with open(self.path, encoding="utf-8") as fh:
            fh.readline()
            for n, line in enumerate(fh, start=2):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as exc:
                    # a show killed mid-write leaves a partial last line: stop there
                    log.warning("%s: line %d unreadable (%s); replay stops here", self.path, n, exc)
                    return
                if d.get("end"):
                    return
                prev = {**prev, **d.get("a", {})}
                cmds = []
                for item in d.get("c", []):
                    if item and item[0] in KINDS:
                        cmds.append(command_from_list(item))
                reloads = tuple((int(i), str(text)) for i, text in d.get("r", []))
                yield ReplayFrame(
                    index=int(d["f"]), dt_s=float(d["dt"]), now_s=float(d.get("t", 0.0)),
                    audio=frame_from_dict(prev), commands=tuple(cmds), reloads=reloads, output=d.get("o"),
                )

    def duration_s(self) -> float:
        """Show time covered by the recorded frames (the sum of their dt), seconds."""
        total = 0.0
        with open(self.path, encoding="utf-8") as fh:
            fh.readline()
            for line in fh:
                if line.startswith('{"f"'):
                    try:
                        total += float(json.loads(line)["dt"])
                    except (ValueError, KeyError):
                        break
        return total

    def count(self) -> int:
        n = 0
        with open(self.path, encoding="utf-8") as fh:
            fh.readline()
            for line in fh:
                if line.startswith('{"f"'):
                    n += 1
        return n


class AudioRecorder:
    """Wraps an audio source and writes every sample the show analysed to a WAV beside the set log.

    The replay muxes this file, so even a line-in show renders with its sound. The thread that reads
    the audio only hands arrays to a bounded queue; a ``vj-record-audio`` thread does the disk I/O.
    A disk that stalls fills the queue (``max_blocks``, about a minute of audio); past that, or on a
    write error, the recording of the sound stops (logged once) and the show goes on; memory stays
    bounded. ``close`` waits at most ``close_timeout_s`` for the disk.
    """

    def __init__(self, source: Any, path: str | Path, *, max_blocks: int = 12_000,
                 close_timeout_s: float = 10.0) -> None:
        import queue
        import threading

        import soundfile

        self.source = source
        self.path = Path(path)
        try:
            self._file = soundfile.SoundFile(str(self.path), "w", samplerate=int(source.samplerate), channels=1,
                                             subtype="FLOAT")
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"--record: cannot write {self.path}: {exc}") from None
        self._queue: queue.Queue = queue.Queue(max_blocks)
        self.samples = 0
        self.failed = False
        self.close_timeout_s = close_timeout_s
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="vj-record-audio", daemon=True)
        self._thread.start()

    def _stop(self, why: str) -> None:
        if not self.failed:
            self.failed = True
            log.error("audio recording stopped after %.1f s: %s; %s ends there and the show goes on",
                      self.samples / float(self.source.samplerate), why, self.path)

    def _run(self) -> None:
        import queue

        from vjengine.priority import lower_this_thread  # noqa: PLC0415

        lower_this_thread()  # the render thread comes first
        broken = False  # after a write error the rest is skipped; after a full queue what it held is written
        while True:
            try:
                block = self._queue.get(timeout=0.25)
            except queue.Empty:
                if self._closing:  # close() could not queue its None (the queue was full): all written now
                    break
                continue
            if block is None:
                break
            if broken:
                continue
            try:
                self._file.write(block)
            except Exception as exc:  # noqa: BLE001 - a full disk, a vanished share
                broken = True
                self._stop(f"cannot write: {exc}")
        try:
            self._file.close()
        except Exception as exc:  # noqa: BLE001
            self._stop(f"cannot close: {exc}")

    def read(self) -> Any:
        import queue

        block = self.source.read()
        if block is not None and len(block) and not self.failed:
            try:
                self._queue.put_nowait(block.copy())
                self.samples += len(block)
            except queue.Full:
                self._stop(f"the disk has not taken the last {self._queue.qsize()} blocks (stalled?)")
        return block

    def __getattr__(self, name: str) -> Any:  # samplerate, ok, status, finished, ...
        return getattr(self.source, name)

    def close(self) -> None:
        import queue

        try:
            self.source.close()
        finally:
            self._closing = True
            try:
                self._queue.put(None, timeout=self.close_timeout_s)
            except queue.Full:
                pass
            self._thread.join(timeout=self.close_timeout_s)
            if self._thread.is_alive():
                log.error("audio recording %s: the disk did not take the last blocks in %g s; the file may end "
                          "early", self.path, self.close_timeout_s)
