"""Ableton Link: join the session on the local network (``vj live --link follow|lead``).

The binding is ``LinkPython-extern`` (PyPI, the ``link`` extra: ``pip install 'vjengine[link]'``),
imported only when Link is asked for. It wraps Ableton's Link library, which is GPL-2.0-or-later
(the wrapper itself is Unlicense): see the README's licence note.

- ``follow``: the session's tempo and phase drive the beat clock (:meth:`LinkSession.read` is a
  :class:`~vjengine.sync.clock_source.BeatSource`); the audio analysis keeps running and the HUD
  shows how far the heard beats are from Link's.
- ``lead``: our detected tempo is proposed to the session (``setTempo``) when the audio clock is
  locked and confident, at most once per ``LEAD_EVERY_S`` and only when it differs by
  ``LEAD_MIN_CHANGE_BPM``; the beat clock stays on the audio.
- ``quantum``: beats per bar shared with the peers (Link aligns phase within it).
- ``start_stop``: share the session's transport (Link's start/stop sync). Following, a peer that
  starts or stops playing starts or stops our beats, from the first bar (quantum) at or after its
  start: while stopped no beat fires (the phase still runs, so nothing on screen jumps), and MIDI
  clock out sends Stop. Leading, ours goes out: the
  session starts playing when our beat clock locks (the music was found, or a tempo was set) and
  stops when it lets go (silence). Only changes are sent, so joining a session never stops it. Off
  by default, as many peers (VJ software) never start it.

Everything here runs on the render thread and costs a few microseconds a frame: capturing the
session state is lock-free in Link; the network work is Link's own threads.
Link's clock is CLOCK_MONOTONIC_RAW in microseconds; ours is ``time.perf_counter``
(CLOCK_MONOTONIC). The offset between the two is measured at start and re-measured every
``CALIBRATE_EVERY_S`` (they drift apart by parts per million under NTP slewing).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from vjengine.errors import ConfigError
from vjengine.sync.clock_source import BeatReading

log = logging.getLogger(__name__)

MODES = ("off", "follow", "lead")
LEAD_EVERY_S = 1.0
LEAD_MIN_CHANGE_BPM = 0.05
LEAD_MIN_CONFIDENCE = 0.5
CALIBRATE_EVERY_S = 2.0
INSTALL_HINT = "Ableton Link needs the link extra: pip install 'vjengine[link]' (LinkPython-extern)"


def import_link() -> Any:
    """The ``link`` module of LinkPython-extern, or a ConfigError saying how to install it."""
    try:
        import link  # noqa: PLC0415 - optional extra, imported lazily
    except ImportError as exc:
        raise ConfigError(f"--link: {INSTALL_HINT} ({exc})") from None
    if not hasattr(link, "Link"):
        raise ConfigError(f"--link: the installed 'link' module is not LinkPython-extern; {INSTALL_HINT}")
    return link


class LinkSession:
    """One Link peer; ``read(t)`` gives the session's beat at perf_counter time ``t``."""

    name = "link"

    def __init__(self, *, mode: str = "follow", quantum: float = 4.0, bpm: float = 120.0,
                 start_stop: bool = False, time_fn: Callable[[], float] = time.perf_counter,
                 module: Any = None) -> None:
        if mode not in MODES or mode == "off":
            raise ConfigError(f"--link {mode!r}: must be follow or lead")
        if not (1.0 <= quantum <= 16.0) or not math.isfinite(quantum):
            raise ConfigError(f"--link-quantum {quantum!r}: must be 1..16 beats")
        mod = module if module is not None else import_link()
        self.mode = mode
        self.quantum = float(quantum)
        self.start_stop = bool(start_stop)
        self.time_fn = time_fn
        self.link = mod.Link(float(bpm))
        self.link.startStopSyncEnabled = self.start_stop
        self._clock = self.link.clock()
        self._offset_us = 0.0
        self._next_calibration = 0.0
        self._calibrate()
        self._last_lead_s = -math.inf
        self.proposed_bpm: float | None = None
        self.proposals = 0
        self._our_playing = False  # lead + start_stop: the transport we last sent (edges only)
        self.transport_sent = 0
        self.link.enabled = True
        log.info("Ableton Link: %s, quantum %g, start/stop sync %s", mode, self.quantum,
                 "on" if self.start_stop else "off")

    # ------------------------------------------------------------------ clocks
    def _calibrate(self) -> None:
        best = None
        for _ in range(5):
            t0 = time.perf_counter()
            us = self._clock.micros()
            t1 = time.perf_counter()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, us - (t0 + t1) * 0.5e6)
        self._offset_us = best[1]
        self._next_calibration = time.perf_counter() + CALIBRATE_EVERY_S

    def link_micros(self, t: float) -> int:
        """Link's clock (microseconds) at perf_counter time ``t``."""
        if time.perf_counter() >= self._next_calibration:
            self._calibrate()
        return int(round(t * 1e6 + self._offset_us))

    def perf_time(self, micros: float) -> float:
        """perf_counter time of a Link clock reading."""
        return (micros - self._offset_us) * 1e-6

    # ------------------------------------------------------------------ the source
    def read(self, t: float) -> BeatReading:
        us = self.link_micros(t)
        state = self.link.captureAppSessionState()
        q = self.quantum
        beat = state.beatAtTime(us, q)
        playing = self._started(state, us) if self.start_stop else True
        return BeatReading(beat=beat, bpm=float(state.tempo()), bar_beat=state.phaseAtTime(us, q),
                           beats_per_bar=max(1, int(round(q))), playing=playing, ok=True)

    def _started(self, state: Any, us: int) -> bool:
        """The session plays at Link time ``us``: its transport runs, and the bar it starts on has come
        (a peer pressing play mid-bar starts on the next bar, as Live launches; before that, no beat)."""
        if not state.isPlaying():
            return False
        q = self.quantum
        t_play = state.timeForIsPlaying()
        if us < t_play:
            return False
        phase = state.phaseAtTime(t_play, q)
        if phase < 1e-6 or q - phase < 1e-6:  # started on a bar
            return True
        return us >= state.timeAtBeat(state.beatAtTime(t_play, q) - phase + q, q)

    @property
    def peers(self) -> int:
        return int(self.link.numPeers())

    def tempo(self) -> float:
        return float(self.link.captureAppSessionState().tempo())

    def set_tempo(self, bpm: float, t: float | None = None) -> None:
        """Set the session tempo (any peer may); clamped to Link's 20..999 BPM."""
        bpm = min(999.0, max(20.0, float(bpm)))
        state = self.link.captureAppSessionState()
        state.setTempo(bpm, self.link_micros(self.time_fn() if t is None else t))
        self.link.commitAppSessionState(state)

    def lead(self, frame: Any, t: float) -> bool:
        """Lead mode, once a frame: propose the audio clock's tempo when locked and confident (and,
        with start/stop sync, start or stop the session when the clock locks or lets go)."""
        if self.mode != "lead":
            return False
        locked = bool(getattr(frame, "locked", False))
        if self.start_stop and locked != self._our_playing:
            self._send_transport(locked, t)
        if not locked:
            return False
        if float(getattr(frame, "confidence", 0.0)) < LEAD_MIN_CONFIDENCE or t - self._last_lead_s < LEAD_EVERY_S:
            return False
        bpm = float(frame.bpm)
        if not math.isfinite(bpm) or abs(bpm - self.tempo()) < LEAD_MIN_CHANGE_BPM:
            return False
        self.set_tempo(bpm, t)
        self._last_lead_s = t
        self.proposed_bpm = bpm
        self.proposals += 1
        return True

    def _send_transport(self, playing: bool, t: float) -> None:
        state = self.link.captureAppSessionState()
        state.setIsPlaying(playing, self.link_micros(t))
        self.link.commitAppSessionState(state)
        self._our_playing = playing
        self.transport_sent += 1
        log.info("Ableton Link: %s the session (our beat clock %s)", "starting" if playing else "stopping",
                 "locked" if playing else "let go")

    def status_line(self) -> str:
        state = self.link.captureAppSessionState()
        text = f"Link {self.mode} {state.tempo():.1f} BPM, {self.peers} peer{'s' if self.peers != 1 else ''}"
        if self.start_stop:
            text += ", playing" if state.isPlaying() else ", stopped"
        if self.mode == "lead" and self.proposed_bpm is not None:
            text += f", proposed {self.proposed_bpm:.1f}"
        return text

    def close(self) -> None:
        try:
            self.link.enabled = False
        except Exception as exc:  # noqa: BLE001
            log.debug("disabling Link: %s", exc)
