"""MIDI clock: in, as a beat-clock source (``--midi-clock-in DEVICE``), and out (``--midi-clock-out``).

In (:class:`MidiClockIn`, fed by a :class:`~vjengine.control.midi_port.MidiPort` on the MIDI thread):
24 clocks per quarter note; Start (the next clock is beat 1 of the bar), Stop, Continue and Song
Position Pointer (in sixteenths, 6 clocks each) as the MIDI spec has them. Jitter smoothing: a
least-squares line through the last ``window`` clocks (four beats by default) gives the tempo and the
phase; a clock that lands far off the line three times running (a tempo change, or a clock that
came back after a gap) restarts the line from the newest clocks. A gap of whole clock periods is
clocks lost on the way: they are numbered past, so the phase does not slip by 1/24 beat each (unless
the next clock follows at once: then the late one was only late). A clock that stops without a Stop
(cable pulled mid-bar) is ``ok = False`` after ``stall_ticks`` clock periods: the router free-runs at
the last tempo and the HUD says so. The fitted model is published as one tuple, so ``read`` on
the render thread takes no lock.

Out (:class:`MidiClockOut`): a thread sends 24 clocks per beat of the show's beat clock (the router's
published ``(time, beat, bpm, playing)``), each at its computed time, to a port matched by name or to
a virtual port gear can connect to. Where the bars are (the router's ``bar_grid``) gives the song
position, so gear plays in our bar and not only at our tempo. When our clock starts, the clocks
begin on a sixteenth: a Song Position Pointer of that sixteenth (counted from a bar start, modulo
the largest whole number of bars that 14 bits hold) and Continue go just before its clock (Start
instead when it is position 0, the top of a bar). When the bars move under a running clock
(``/vj/resync``, a source with other bar lines) or the clock comes back from a stall of over a beat,
it relocates the same way, as sequencers do: Stop, Song Position Pointer, Continue, then the clock.
Stop when our clock stops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any, Callable

from vjengine.sync.clock_source import BeatReading

log = logging.getLogger(__name__)

PPQN = 24
_OUTLIER_RUN = 3


class MidiClockIn:
    """A MIDI clock receiver and beat source (see module docstring)."""

    name = "midi"

    def __init__(self, *, window: int = 4 * PPQN, beats_per_bar: int = 4, stall_ticks: float = 6.0,
                 min_stall_s: float = 0.25, jitter_s: float = 0.004) -> None:
        if window < 3:
            raise ValueError("window must be at least 3 clocks")
        self.window = int(window)
        self.beats_per_bar = int(beats_per_bar)
        self.stall_ticks = stall_ticks
        self.min_stall_s = min_stall_s
        self.jitter_s = jitter_s
        self._ticks: deque[tuple[int, float]] = deque(maxlen=self.window)
        self._next = 0
        self._known_position = False
        self._playing = True
        self._outliers = 0
        self._spt = 60.0 / 120.0 / PPQN  # seconds per tick: the prior before two clocks are seen
        # (t0, i0, seconds per tick, last tick time, playing, position known) - replaced whole
        self._model: tuple[float, float, float, float, bool, bool] | None = None
        self.ticks = 0
        self.starts = 0
        self.stops = 0
        self.restarts = 0  # times the fit restarted (tempo change, clock back after a gap)
        self.lost = 0  # clocks that never arrived (a gap of whole periods), numbered past
        self._pending_gap = 0

    # ------------------------------------------------------------------ MIDI thread
    def handle(self, msg: Any, t: float) -> None:
        kind = msg.type
        if kind == "clock":
            self.tick(t)
        elif kind == "start":
            self.start()
        elif kind == "continue":
            self._playing = True
            self._ticks.clear()
            self._publish()
        elif kind == "stop":
            self._playing = False
            self.stops += 1
            self._publish()
        elif kind == "songpos":
            self._next = int(msg.pos) * 6
            self._known_position = True
            self._ticks.clear()

    def start(self) -> None:
        self._next = 0
        self._known_position = True
        self._playing = True
        self._ticks.clear()
        self.starts += 1
        self._publish()

    def tick(self, t: float) -> None:
        i = self._next
        self.ticks += 1
        model = self._model
        last_t = self._ticks[-1][1] if self._ticks else None
        gap, self._pending_gap = self._pending_gap, 0
        if gap and last_t is not None and t - last_t < 0.5 * self._spt:
            # a burst right after a gap: the previous clock was late, not clocks lost; its time says
            # nothing about the beat, so it leaves the fit
            self._ticks.pop()
            i -= gap
            self.lost -= gap
        elif model is not None and last_t is not None and len(self._ticks) >= 12:
            # a gap of whole clock periods: clocks lost on the way (count them, keep the phase)
            spt = self._spt
            missing = round((t - last_t) / spt) - 1
            if 1 <= missing <= PPQN and abs((t - last_t) - (missing + 1) * spt) < 0.35 * spt:
                i += missing
                self.lost += missing
                self._pending_gap = missing
        self._next = i + 1
        if model is not None and self._ticks:
            t0, i0, spt = model[0], model[1], model[2]
            resid = t - (t0 + (i - i0) * spt)
            if abs(resid) > max(3.0 * self.jitter_s, 0.35 * spt):
                self._outliers += 1
                if self._outliers >= _OUTLIER_RUN:
                    keep = list(self._ticks)[-(_OUTLIER_RUN - 1):]
                    self._ticks.clear()
                    self._ticks.extend(keep)
                    self._outliers = 0
                    self.restarts += 1
            else:
                self._outliers = 0
        self._ticks.append((i, t))
        self._fit()

    def _fit(self) -> None:
        pts = self._ticks
        n = len(pts)
        if n >= 2:
            mi = sum(p[0] for p in pts) / n
            mt = sum(p[1] for p in pts) / n
            sii = sum((p[0] - mi) ** 2 for p in pts)
            sit = sum((p[0] - mi) * (p[1] - mt) for p in pts)
            spt = sit / sii if sii > 0 else self._spt
            if spt > 0 and math.isfinite(spt):
                self._spt = min(max(spt, 60.0 / 400.0 / PPQN), 60.0 / 20.0 / PPQN)
            t0, i0 = mt, mi
        else:
            i0, t0 = pts[-1]
        self._model = (t0, float(i0), self._spt, pts[-1][1], self._playing, self._known_position)

    def _publish(self) -> None:
        m = self._model
        if m is not None:
            self._model = (m[0], m[1], m[2], m[3], self._playing, self._known_position)

    # ------------------------------------------------------------------ render thread
    @property
    def bpm(self) -> float:
        return 60.0 / (self._spt * PPQN)

    def read(self, t: float) -> BeatReading | None:
        m = self._model
        if m is None:
            return None
        t0, i0, spt, last_t, playing, known = m
        beat = (i0 + (t - t0) / spt) / PPQN
        stalled = t - last_t > max(self.min_stall_s, self.stall_ticks * spt) and playing
        bpb = self.beats_per_bar
        return BeatReading(beat=beat, bpm=60.0 / (spt * PPQN), bar_beat=(beat % bpb) if known else None,
                           beats_per_bar=bpb, playing=playing and not stalled, ok=not stalled)

    def status_line(self) -> str:
        m = self._model
        if m is None:
            return "MIDI clock: waiting for clocks"
        r = self.read(time.perf_counter())
        if r is not None and not r.ok:
            return f"MIDI clock LOST (free-running at {self.bpm:.1f} BPM)"
        return f"MIDI clock {self.bpm:.1f} BPM{'' if m[4] else ', stopped'}"


class MidiClockOut:
    """Sends MIDI clock from the show's beat clock on a thread of its own (module docstring).

    ``provider()`` returns ``(perf time, beat, bpm, playing)`` or None (the router's ``published``).
    """

    def __init__(self, port: Any, provider: Callable[[], tuple[float, float, float, bool] | None], *,
                 grid: Callable[[], tuple[int, int]] | None = None, max_wait_s: float = 0.004) -> None:
        self.port = port
        self.provider = provider
        self.grid = grid or (lambda: (0, 4))
        self.max_wait_s = max_wait_s
        self.sent = 0
        self.relocations = 0
        self.last_position: int | None = None  # the last song position sent (sixteenths)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tick: int | None = None
        self._running = False
        self._grid_sent: tuple[int, int] | None = None  # the bar grid of the last song position
        self._locate: str | None = None  # "start" or "relocate": a song position goes before the next 1/16

    def start(self) -> "MidiClockOut":
        self._thread = threading.Thread(target=self._run, name="midi-clock-out", daemon=True)
        self._thread.start()
        return self

    def _send(self, msg_type: str, **fields: Any) -> None:
        import mido  # noqa: PLC0415 - the midi extra, present whenever a port was opened

        try:
            self.port.send(mido.Message(msg_type, **fields))
        except Exception as exc:  # noqa: BLE001 - a gone port must not end the thread
            log.debug("MIDI clock out: %s", exc)

    @staticmethod
    def song_position(tick: int, grid: tuple[int, int]) -> int:
        """The Song Position Pointer (sixteenths, 0..16383) of clock ``tick`` (a multiple of 6) for bars
        starting on beat ``grid[0]`` (mod ``grid[1]`` beats): counted from a bar start, wrapped after the
        largest whole number of bars 14 bits hold, so the bar never slips when it wraps."""
        offset, bpb = grid
        span = 4 * max(1, bpb)
        wrap = (16384 // span) * span
        return (tick // 6 - 4 * offset) % wrap

    def _locate_before(self, tick: int) -> None:
        """Song position (and Start, Continue or Stop first) just before clock ``tick``."""
        grid = self.grid()
        pos = self.song_position(tick, grid)
        if self._locate == "relocate":
            self._send("stop")
            self.relocations += 1
        if self._locate == "start" and pos == 0:
            self._send("start")
        else:
            self._send("songpos", pos=pos)
            self._send("continue")
        self.last_position = pos
        self._grid_sent = grid
        self._locate = None

    def _run(self) -> None:
        while not self._stop.is_set():
            snap = self.provider()
            if snap is None:
                self._stop.wait(0.01)
                continue
            t_ref, beat_ref, bpm, playing = snap
            if playing != self._running:
                if not playing:
                    self._send("stop")
                self._running = playing
                self._last_tick = None
                self._locate = "start" if playing else None
            if not playing or bpm <= 0:
                self._stop.wait(0.01)
                continue
            now = time.perf_counter()
            beat_now = beat_ref + (now - t_ref) * bpm / 60.0
            current = math.floor(beat_now * PPQN)
            if self._last_tick is None or current - self._last_tick > PPQN:
                # start, or back from a stall of over a beat: no burst of clocks; from the next sixteenth
                if self._last_tick is not None and self._locate is None:
                    self._locate = "relocate"  # (a start still pending stays a start)
                self._last_tick = current + (-(current + 1)) % 6
            elif self._locate is None and self.grid() != self._grid_sent:
                self._locate = "relocate"  # the bars moved under the running clock
            k = self._last_tick + 1  # every clock is sent, late rather than never (a skipped one slows gear)
            t_k = t_ref + (k / PPQN - beat_ref) * 60.0 / bpm
            wait = t_k - time.perf_counter()
            if wait > self.max_wait_s:  # wake up a little before, re-read the clock (tempo may change)
                self._stop.wait(min(wait - self.max_wait_s * 0.5, 0.02))
                continue
            if wait > 0:
                time.sleep(wait)
            if self._locate is not None and k % 6 == 0:
                self._locate_before(k)
            self._send("clock")
            self.sent += 1
            self._last_tick = k

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._running:
            self._send("stop")
        try:
            self.port.close()
        except Exception:  # noqa: BLE001
            pass


def open_clock_out(target: str, backend: Any) -> Any:
    """An output port: the first whose name contains ``target``, or a virtual port named ``target``
    (``virtual:NAME``) that gear connects to."""
    if target.startswith("virtual:"):
        name = target.split(":", 1)[1] or "vjengine clock"
        return backend.open_output(name, virtual=True)
    for name in backend.get_output_names():
        if target.lower() in name.lower():
            return backend.open_output(name)
    from vjengine.errors import DeviceError  # noqa: PLC0415

    raise DeviceError(f"--midi-clock-out {target!r}: no MIDI output matches (have: "
                      f"{', '.join(backend.get_output_names()) or 'none'}; or use virtual:NAME)")
