"""Clocks for the frame loop: real time for a show, a fixed step for offline render and tests."""

from __future__ import annotations

import time


class RealClock:
    """Monotonic wall-clock time; ``tick()`` returns seconds since the previous tick."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._last = self._start
        self.now_s = 0.0

    def tick(self) -> float:
        t = time.perf_counter()
        dt_s = t - self._last
        self._last = t
        self.now_s = t - self._start
        return dt_s


class FixedStepClock:
    """Advances exactly ``1 / fps`` seconds per tick, whatever the wall clock does."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.frame = 0
        self.now_s = 0.0

    def tick(self) -> float:
        self.frame += 1
        self.now_s = self.frame / self.fps
        return 1.0 / self.fps
