"""The one command vocabulary of the show.

Keyboard, OSC, cue sheets and replay all produce :class:`Command` values; only the render thread
applies them (``vjengine.app``), so no other thread ever touches render state. Producers call
``CommandQueue.put`` (never blocks); the render thread calls ``drain`` once per frame.

Kinds and their ``target`` / ``value``:

==============  =====================  =========================================
kind            target                 value
==============  =====================  =========================================
axis            axis name              float 0..1 (manual override)
axis_release    axis name              None (hand the axis back to the mapping)
axis_nudge      axis name              float delta
preset          ""                     preset name (str) or index (int)
bank            ""                     bank name (str) or index (int)
fx              "<effect>.<param>"     float
intensity       ""                     float 0..1
blackout        ""                     bool
tap             ""                     None
bpm             ""                     float BPM
resync          ""                     None
crossfade       ""                     float seconds
status          ""                     (host, port) to reply to, or None
clock_source    ""                     source name (str: audio/tap/link/midi) or index (int)
midi_learn      "" or "prev"           OSC address to arm (str), "" disarms; None: the next address (L key; "prev": Shift+L)
fullscreen      ""                     None (toggle)
hud             ""                     None (toggle)
quit            ""                     None
==============  =====================  =========================================
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

KINDS = frozenset(
    {
        "axis", "axis_release", "axis_nudge", "preset", "bank", "fx", "intensity", "blackout",
        "tap", "bpm", "resync", "crossfade", "status", "fullscreen", "hud", "quit", "clock_source", "midi_learn",
    }
)


@dataclass(frozen=True)
class Command:
    kind: str
    target: str = ""
    value: Any = None
    source: str = ""  # "key", "osc", "cue", "replay", ...
    received_s: float = field(default_factory=time.perf_counter)
    apply_at_s: float | None = None  # perf_counter time; None = as soon as possible

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown command kind {self.kind!r}")


# Commands for absolute controls: a newer value replaces an older one (see CommandQueue).
COALESCE_KINDS = frozenset({"axis", "fx", "intensity", "blackout", "bpm", "crossfade"})
DEFAULT_MAX_DEFERRED = 4096  # future commands held at once
DEFAULT_DEFER_HORIZON_S = 10.0  # the furthest ahead a command may be due
DEFER_COALESCE_S = 0.005  # absolute-control commands due this close together keep only the newest value


class CommandQueue:
    """Many producers, one consumer (the render thread). ``put`` never blocks.

    Commands due in the future (``apply_at_s``) wait in a heap, bounded in count (``max_deferred``)
    and horizon (``defer_horizon_s`` past their ``received_s``): ``put`` refuses the rest (returns
    False). An absolute control (:data:`COALESCE_KINDS`) due within :data:`DEFER_COALESCE_S` of a held
    command for the same control replaces its value instead of taking another slot, so a flood of
    bundles timed ahead costs a bounded, small amount of memory and drain time.
    """

    def __init__(self, maxsize: int = 65536, *, max_deferred: int = DEFAULT_MAX_DEFERRED,
                 defer_horizon_s: float = DEFAULT_DEFER_HORIZON_S) -> None:
        self._q: queue.Queue[Command] = queue.Queue(maxsize=maxsize)
        self.max_deferred = int(max_deferred)
        self.defer_horizon_s = float(defer_horizon_s)
        self._lock = threading.Lock()
        self._heap: list[list[Any]] = []  # [apply_at_s, seq, command]
        self._slots: dict[tuple[str, str, int], list[Any]] = {}  # coalescing: control + due bucket -> entry
        self._seq = itertools.count()
        self.dropped = 0
        self.deferred_dropped = 0
        self.deferred_coalesced = 0

    @property
    def deferred(self) -> int:
        """How many future commands are held now."""
        return len(self._heap)

    def put(self, cmd: Command, *, coalesce: bool = True) -> bool:
        """Queue ``cmd``; False if refused (queue full; or, for a future command, too many held or
        too far ahead). ``coalesce=False`` keeps every future command (none replaces another)."""
        if cmd.apply_at_s is not None:
            return self._defer(cmd, next(self._seq), coalesce)
        try:
            self._q.put_nowait((next(self._seq), cmd))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _defer(self, cmd: Command, seq: int, coalesce: bool) -> bool:
        if cmd.apply_at_s - cmd.received_s > self.defer_horizon_s:
            self.deferred_dropped += 1
            return False
        key = None
        with self._lock:
            if coalesce and cmd.kind in COALESCE_KINDS:
                key = (cmd.kind, cmd.target, int(cmd.apply_at_s // DEFER_COALESCE_S))
                entry = self._slots.get(key)
                if entry is not None:
                    entry[2] = cmd  # the newest value, at the held command's time and place
                    self.deferred_coalesced += 1
                    return True
            if len(self._heap) >= self.max_deferred:
                self.deferred_dropped += 1
                return False
            entry = [cmd.apply_at_s, seq, cmd, key]
            heapq.heappush(self._heap, entry)
            if key is not None:
                self._slots[key] = entry
        return True

    def drain(self, now_s: float | None = None) -> list[Command]:
        """Every command due by ``now_s`` (perf_counter time), in arrival order."""
        now_s = time.perf_counter() if now_s is None else now_s
        due: list[tuple[int, Command]] = []
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= now_s:
                _, seq, cmd, key = heapq.heappop(heap)
                if key is not None:
                    del self._slots[key]
                due.append((seq, cmd))
        held = bool(due)
        while True:
            try:
                due.append(self._q.get_nowait())
            except queue.Empty:
                break
        if held:
            due.sort(key=lambda x: x[0])
        return [cmd for _, cmd in due]
