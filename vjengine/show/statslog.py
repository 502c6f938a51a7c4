"""``--stats FILE``: per-frame timing streamed to a JSON-lines file, so a long show's memory stays flat.

The render thread calls :meth:`StatsWriter.frame` (appends a tuple to a bounded deque: no I/O, no
lock held for long); a writer thread moves the samples to the file every ``flush_s``. Layout::

    {"vj_stats": 1, "started_unix": 1764412345.2, "fields": ["t", "interval_ms", "frame_ms", ...]}
    [t_s, interval_ms, frame_ms, latency_ms, quality_level, {"audio": ms, "map": ms, ...}, {"cpu": ms, "gc": ms}]
    ...
    {"end": true, "frames": N, "dropped_samples": 0, ...}   (plus any summary given to close())

``t_s`` is seconds since ``started_unix`` (wall clock), ``interval_ms`` is null on the first frame,
``latency_ms`` null when no new audio came that frame. The last field (``probes``, absent in older
files) says where a slow frame's time went: ``cpu`` the render thread's own CPU time (a frame far
longer than its CPU time waited: preempted, blocked in I/O or on the GIL), ``gc`` the time spent in
garbage collection during it. If the disk stalls, at most ``max_pending``
samples wait (the oldest are dropped and counted), never the frame loop. :func:`load_stats` reads
the file back as columns.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FIELDS = ("t", "interval_ms", "frame_ms", "latency_ms", "quality", "stages_ms", "probes")


class StatsWriter:
    def __init__(self, path: str | Path, *, flush_s: float = 0.5, max_pending: int = 60 * 600,
                 started_unix: float | None = None) -> None:
        self.path = Path(path)
        self.started_unix = time.time() if started_unix is None else started_unix
        self._t0_perf = time.perf_counter()
        from vjengine.linewriter import open_for_writing  # noqa: PLC0415

        self._fh = open_for_writing(self.path, "--stats")  # closed in close(); a FIFO with no reader: exit 2
        self._fh.write(json.dumps({"vj_stats": 1, "started_unix": self.started_unix, "fields": list(FIELDS)}) + "\n")
        self._pending: collections.deque[tuple] = collections.deque()
        self.max_pending = int(max_pending)
        self.frames = 0
        self.dropped = 0
        self._flush_s = flush_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer to the file at a time (the thread, or close())
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="vj-stats", daemon=True)
        self._thread.start()

    def frame(self, perf_s: float, interval_ms: float | None, frame_ms: float, latency_ms: float | None,
              quality: int = 0, stages_ms: dict[str, float] | None = None,
              probes: dict[str, float] | None = None) -> None:
        """One frame's sample (render thread: constant time, no I/O)."""
        if len(self._pending) >= self.max_pending:
            try:
                self._pending.popleft()
                self.dropped += 1
            except IndexError:  # the writer emptied it meanwhile
                pass
        self._pending.append((round(perf_s - self._t0_perf, 4),
                              None if interval_ms is None else round(interval_ms, 3), round(frame_ms, 3),
                              None if latency_ms is None else round(latency_ms, 3), int(quality),
                              {k: round(v, 3) for k, v in (stages_ms or {}).items()},
                              {k: round(v, 3) for k, v in (probes or {}).items()}))
        self.frames += 1

    def _run(self) -> None:
        from vjengine.priority import lower_this_thread  # noqa: PLC0415

        lower_this_thread()  # the render thread comes first
        while not self._stop.wait(self._flush_s):
            self.flush()

    @property
    def pending(self) -> int:
        """Samples not yet written (at most ``max_pending``)."""
        return len(self._pending)

    def flush(self) -> None:
        """Write the pending samples now (what the writer thread does every ``flush_s``)."""
        with self._lock:
            if self._fh is None:
                return
            lines = []
            while self._pending:
                lines.append(json.dumps(self._pending.popleft(), separators=(",", ":")))
            if not lines:
                return
            try:
                self._fh.write("\n".join(lines) + "\n")
                self._fh.flush()
            except OSError as exc:
                if self._error is None:
                    self._error = str(exc)
                    log.error("--stats %s: cannot write (%s); frame samples are being dropped", self.path, exc)
                self.dropped += len(lines)

    def close(self, extra: dict[str, Any] | None = None) -> None:
        """Write what is pending and the end line (with ``extra``: a summary such as residency figures)."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.flush()
        with self._lock:
            if self._fh is None:
                return
            try:
                end = {**(extra or {}), "end": True, "frames": self.frames, "dropped_samples": self.dropped}
                self._fh.write(json.dumps(end, default=str) + "\n")
                self._fh.close()
            except OSError as exc:
                log.error("--stats %s: %s", self.path, exc)
            self._fh = None


def load_stats(path: str | Path) -> dict[str, Any]:
    """The file as columns: ``frames``, ``t``, ``frame_ms``, ``interval_ms`` (without the first frame's
    null), ``latency_ms`` (frames that had new audio), ``quality``, ``stages_ms`` {stage: [ms...]},
    ``probes`` (one dict per frame),
    ``started_unix``, ``complete`` (the end line is there), and the end line's other keys (a summary
    given to ``close``). A torn last line (a killed show) is skipped."""
    out: dict[str, Any] = {"frames": 0, "t": [], "frame_ms": [], "interval_ms": [], "interval_t": [],
                           "latency_ms": [], "quality": [], "stages_ms": {}, "probes": [], "started_unix": None,
                           "complete": False}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                if "vj_stats" in row:
                    out["started_unix"] = row.get("started_unix")
                elif row.get("end"):
                    out["complete"] = True
                    for k, v in row.items():
                        if k not in ("end", "frames"):
                            out.setdefault(k, v)
                continue
            t, interval, frame_ms, latency, quality, stages = row[:6]
            probes = row[6] if len(row) > 6 else {}
            out["frames"] += 1
            out["t"].append(t)
            out["frame_ms"].append(frame_ms)
            if interval is not None:
                out["interval_ms"].append(interval)
                out["interval_t"].append(t)
            if latency is not None:
                out["latency_ms"].append(latency)
            out["quality"].append(quality)
            for k, v in stages.items():
                out["stages_ms"].setdefault(k, []).append(v)
            out["probes"].append(probes)
    return out
