"""The sink interface: a frame mailbox on the render thread's side, a worker thread on the other.

The render thread calls :meth:`Sink.offer` (never blocks, never raises): the frame replaces any frame
the worker has not taken yet, and that one is counted as dropped. The worker thread opens the sink,
sends frames, and when sending fails closes it and opens it again after a pause (a receiver that went
away and came back), counting ``reconnects``; the projector output never waits for any of it.

A subclass implements ``open()``, ``send(frame)`` and ``close()`` (all on the worker thread), and may
implement ``check()`` (on the main thread before the show, raising :class:`ConfigError` for what can
never work: a missing library, device or operating system).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

import numpy as np

from vjengine.output.url import OutSpec
# Imported here, not on the worker thread. In a process that had not imported it yet, the import on
# the sink's thread shifted when the NDI sender came up against an NDI receiver in the same process,
# and that receiver then got 0-2 frames in 20 s in about half the runs (test_output_ndi.py alone).
from vjengine.priority import idle_this_thread, unidle_thread

log = logging.getLogger(__name__)

RETRY_S = (0.25, 0.5, 1.0, 2.0)  # pause before the 1st, 2nd, 3rd, later re-open
# A SCHED_IDLE sink thread that has left a frame waiting this long gets the normal policy (a lower
# nice) back until it has caught up: on a machine busy with other programs it got no CPU at all.
STARVED_S = 0.05  # three frames at 60 fps: below the page's 100 ms latency target
TIMINGS_KEPT = 1024  # the last sent frames' time stamps (status, benchmarks/video_out.py)


@dataclass(frozen=True)
class SentTiming:
    """When one sent frame passed each stage (perf_counter seconds): drawn on the render thread,
    read back and handed over (``ready_s``), taken by the sink's thread, done (converted, encoded and
    written to the sender: the network, ffmpeg's pipe, the viewers)."""

    number: int
    drawn_s: float
    ready_s: float
    taken_s: float
    done_s: float


@dataclass(frozen=True)
class OutFrame:
    """One frame for the sinks: ``bottom_up`` RGBA uint8 [H, W, 4] as GL reads it (last row on top),
    ``number`` counts drawn frames, ``drawn_s`` is the perf_counter time it was drawn, ``ready_s``
    when its readback was handed over (0: unknown)."""

    bottom_up: np.ndarray
    number: int
    drawn_s: float
    ready_s: float = 0.0

    @property
    def rgba(self) -> np.ndarray:
        """Top row first (a view)."""
        return self.bottom_up[::-1]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.bottom_up.shape[1]), int(self.bottom_up.shape[0])


class Sink:
    """Base class; see the module docstring."""

    kind = "sink"

    def __init__(self, spec: OutSpec) -> None:
        self.spec = spec
        self.size: tuple[int, int] | None = spec.size
        self.fps = float(spec.fps)
        self.state = "starting"
        self.detail = ""
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.reconnects = 0
        self.last_number = -1
        self.timings: collections.deque[SentTiming] = collections.deque(maxlen=TIMINGS_KEPT)
        self._slot: OutFrame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = False
        self.priority = ""  # what its thread got: "idle" (SCHED_IDLE) or "lowered" (nice)
        self.starved = 0  # times its idle thread was raised to the normal policy (STARVED_S)
        self._tid = 0
        self._raised = False
        self._waiting_since = 0.0  # when the frame in the mailbox arrived there

    # --- the subclass's part (worker thread, except check) ------------------------------------

    def check(self) -> None:
        """Raise ConfigError for what can never work here (main thread, before the show)."""

    def open(self) -> None:
        """Connect or create the sender (worker thread). Raise to retry later."""

    def send(self, frame: OutFrame) -> None:
        """Send one frame (worker thread). Raise when the connection is gone."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the sender (worker thread, or the stopping thread)."""

    def idle(self) -> None:
        """Called on the worker thread when no frame came for a while (keep-alives)."""

    def wait_ready(self, timeout_s: float) -> bool:
        """Called on the worker thread before it takes the next frame: a sink whose encoder still
        holds frames waits here (up to ``timeout_s``; False: still busy), so that it then takes the
        newest frame from the mailbox instead of queueing stale ones inside the encoder."""
        return True

    # --- the render thread's side --------------------------------------------------------------

    def offer(self, frame: OutFrame) -> None:
        """Hand over a frame; replaces (and counts as dropped) one the worker has not taken."""
        with self._cond:
            if self._slot is None:
                self._waiting_since = time.perf_counter()
            else:
                self.dropped += 1
                if (self.priority == "idle" and not self._raised
                        and time.perf_counter() - self._waiting_since > STARVED_S):
                    self._raise_starved()
            self._slot = frame
            self._cond.notify()

    @contextlib.contextmanager
    def children_normal(self) -> Iterator[None]:
        """On the sink's thread: threads and processes started inside this block (ffmpeg, NDI's
        network threads) get the normal policy a step below the show instead of inheriting
        SCHED_IDLE, which a machine busy with other programs can starve outright (an SRT stream
        seconds late); only the sink's own thread stays idle."""
        raised = self.priority == "idle" and unidle_thread(self._tid)
        try:
            yield
        finally:
            if raised:
                idle_this_thread()

    def _raise_starved(self) -> None:
        if unidle_thread(self._tid):
            self._raised = True
            self.starved += 1

    def start(self, size: tuple[int, int]) -> Sink:
        """Start the worker; ``size`` is the show's output size, used when the URL gave none."""
        if self.size is None:
            self.size = (int(size[0]) & ~1, int(size[1]) & ~1)
        self._thread = threading.Thread(target=self._run, name=f"vj-out-{self.spec.scheme}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._opened:
            self._close_quietly()
        self.state = "stopped"

    @property
    def thread_id(self) -> int:
        """The native id of the sink's thread (0 before it runs)."""
        return self._tid

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (threads serving this sink end when it is)."""
        return self._stop.is_set()

    # --- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        w, h = self.size or (0, 0)
        out = {"url": self.spec.label, "kind": self.kind, "state": self.state, "size": f"{w}x{h}",
               "fps": self.fps, "sent": self.sent, "dropped": self.dropped, "errors": self.errors,
               "reconnects": self.reconnects}
        delay = self.delay_ms()
        if delay is not None:
            out["delay_ms"] = delay
        if self.priority:
            out["priority"] = self.priority
            out["starved"] = self.starved
        if self.detail:
            out["detail"] = self.detail
        return out

    def delay_ms(self) -> float | None:
        """Drawn to sent, the median of the last 120 frames sent: this side's share of the latency."""
        try:  # (the sink's thread appends meanwhile; a copy caught mid-append is skipped this time)
            recent = list(itertools.islice(reversed(self.timings), 120))
        except RuntimeError:
            return None
        delays = sorted(t.done_s - t.drawn_s for t in recent)
        return round(1000.0 * delays[len(delays) // 2], 1) if delays else None

    def hud_line(self) -> str:
        line = f"out {self.spec.label}: {self.state}  sent {self.sent}  dropped {self.dropped}"
        delay = self.delay_ms()
        if delay is not None:
            line += f"  delay {delay:.0f} ms"
        if self.reconnects:
            line += f"  reconnects {self.reconnects}"
        return line

    # --- worker ---------------------------------------------------------------------------------

    def _take(self, timeout_s: float) -> OutFrame | None:
        with self._cond:
            if self._slot is None and not self._stop.is_set():
                self._cond.wait(timeout_s)
            frame, self._slot = self._slot, None
            return frame

    def _close_quietly(self) -> None:
        self._opened = False
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001
            log.debug("%s close: %s", self.spec.label, exc)

    def _run(self) -> None:
        try:  # below the render thread: encoding must not take the show's CPU (ffmpeg inherits it)
            self._tid = threading.get_native_id()
            self.priority = idle_this_thread()
        except Exception:  # noqa: BLE001
            pass
        failures = 0
        while not self._stop.is_set():
            if not self._opened:
                try:
                    self.open()
                    self._opened = True
                    self.state, self.detail = "live", ""
                    if failures:
                        log.info("out %s: back", self.spec.label)
                    failures = 0
                except Exception as exc:  # noqa: BLE001
                    self.errors += 1
                    self.state, self.detail = "retrying", f"{type(exc).__name__}: {exc}"[:200]
                    if failures == 0:
                        log.warning("out %s: cannot open (%s); retrying", self.spec.label, self.detail)
                    self._close_quietly()
                    self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])
                    failures += 1
                    continue
            try:
                if not self.wait_ready(0.5):
                    continue  # the encoder is still busy: frames wait in the mailbox (newest kept)
            except Exception as exc:  # noqa: BLE001
                self._lost(exc)
                continue
            frame = self._take(0.5)
            if frame is None:
                try:
                    self.idle()
                except Exception as exc:  # noqa: BLE001
                    self._lost(exc)
                continue
            try:
                self._send_one(frame)
            except Exception as exc:  # noqa: BLE001
                self.dropped += 1
                self._lost(exc)
                failures = 1
            if self._raised and self._slot is None:  # caught up: back to idle
                self._raised = False
                idle_this_thread()
        self._send_last()
        self.state = "stopped"

    def _send_one(self, frame: OutFrame) -> None:
        taken_s = time.perf_counter()
        if frame.size != self.size:  # read back at the show's size (software renderer): scale here
            from vjengine.output.readback import scale_bottom_up  # noqa: PLC0415

            frame = OutFrame(scale_bottom_up(frame.bottom_up, self.size), frame.number, frame.drawn_s,
                             frame.ready_s)
        self.send(frame)
        self.sent += 1
        self.last_number = frame.number
        self.timings.append(SentTiming(frame.number, frame.drawn_s, frame.ready_s or frame.drawn_s,
                                       taken_s, time.perf_counter()))

    def _send_last(self) -> None:
        """On stop: the frame still in the mailbox (the show's last) goes out if the sink is open
        and its encoder takes it within a second; otherwise it counts as dropped."""
        with self._cond:
            frame, self._slot = self._slot, None
        if frame is None:
            return
        try:
            if self._opened and self.wait_ready(1.0):
                self._send_one(frame)
                return
        except Exception as exc:  # noqa: BLE001
            log.debug("%s: last frame not sent: %s", self.spec.label, exc)
        self.dropped += 1

    def _lost(self, exc: Exception) -> None:
        self.errors += 1
        self.reconnects += 1
        self.state, self.detail = "reconnecting", f"{type(exc).__name__}: {exc}"[:200]
        log.warning("out %s: lost (%s); reconnecting", self.spec.label, self.detail)
        self._close_quietly()
        self._stop.wait(RETRY_S[0])
