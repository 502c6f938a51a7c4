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
fullscreen      ""                     None (toggle)
hud             ""                     None (toggle)
quit            ""                     None
==============  =====================  =========================================
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any

KINDS = frozenset(
    {
        "axis", "axis_release", "axis_nudge", "preset", "bank", "fx", "intensity", "blackout",
        "tap", "bpm", "resync", "crossfade", "status", "fullscreen", "hud", "quit",
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


class CommandQueue:
    """Many producers, one consumer (the render thread). ``put`` never blocks."""

    def __init__(self, maxsize: int = 65536) -> None:
        self._q: queue.Queue[Command] = queue.Queue(maxsize=maxsize)
        self._deferred: list[Command] = []
        self.dropped = 0

    def put(self, cmd: Command) -> bool:
        try:
            self._q.put_nowait(cmd)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def drain(self, now_s: float | None = None) -> list[Command]:
        """Every command due by ``now_s`` (perf_counter time), in arrival order."""
        now_s = time.perf_counter() if now_s is None else now_s
        due: list[Command] = []
        later: list[Command] = []
        for cmd in self._deferred:
            (due if cmd.apply_at_s is None or cmd.apply_at_s <= now_s else later).append(cmd)
        while True:
            try:
                cmd = self._q.get_nowait()
            except queue.Empty:
                break
            (due if cmd.apply_at_s is None or cmd.apply_at_s <= now_s else later).append(cmd)
        self._deferred = later
        return due
