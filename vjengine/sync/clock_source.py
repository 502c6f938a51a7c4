"""The beat-clock router: which clock drives the show's beat, switchable live without a phase jump.

Sources (``SOURCES``):

- ``audio``: the audio analysis' own beat clock (automatic tempo), the default;
- ``tap``: the same clock held at a tapped or set tempo (``tap`` / ``bpm`` commands);
- ``link``: an Ableton Link session (:mod:`vjengine.sync.link`);
- ``midi``: MIDI clock in (:mod:`vjengine.sync.midi_clock`).

:class:`ClockRouter` wraps the :class:`~vjengine.audio.engine.AudioEngine` and looks like one to the
frame loop: ``poll(now_s)`` returns the audio frame with its beat fields (``bpm``, ``beat_phase``,
``bar_phase``, ``beat_in_bar``, ``beat_count``, ``beat``, ``bar``, ``beat_env``, ``locked``,
``tempo_source``) taken from the chosen source. The audio analysis keeps running for the features.
Because the beat lives in the frame, ``--record`` logs what was shown and a replay needs no Link or
MIDI.

No jump: the router keeps its own output clock (:class:`SlewedClock`). Each frame it advances at the
source's tempo and aims its phase at the source's, changing its rate by at most ``max_slew`` of the
tempo (as the audio beat clock does), so a source switch, a Link peer re-mapping the timeline or a
MIDI Start re-aligns the beat over a few beats instead of jumping. When the phases agree the output
equals the source exactly (no smoothing lag while locked). Which beat of the bar is beat 1 comes from
the source too; a change of that label takes effect on the next beat.

External sources are read at display time: the frame's time plus ``latency_ms`` plus half a frame,
as the audio clock shows its own beats. ``poll`` never raises: a failing source is logged once and
the output clock free-runs at its last tempo.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("audio", "tap", "link", "midi")
DEFAULT_MAX_SLEW = 0.35  # the output clock's rate may differ from the tempo by this fraction while re-aligning
_MAX_LOOKAHEAD_S = 0.025  # as the audio engine: at most this much of half a frame
_BEAT_FIELDS = ("bpm", "beat_phase", "bar_phase", "beat_in_bar", "beats_per_bar", "beat_count", "beat", "bar",
                "beat_env", "locked", "confidence", "tempo_source")


@dataclass(frozen=True, slots=True)
class BeatReading:
    """What a clock source says at one instant.

    ``beat``: position on the source's own beat timeline (continuous; only its phase matters);
    ``bar_beat``: position within the bar, 0..beats_per_bar (None: the source does not know bars);
    ``playing``: transport running (beats fire); ``ok``: the source is alive (else it free-runs).
    """

    beat: float
    bpm: float
    bar_beat: float | None = None
    beats_per_bar: int = 4
    playing: bool = True
    ok: bool = True


class BeatSource(Protocol):
    name: str

    def read(self, t: float) -> BeatReading | None:
        """The source's beat at perf_counter time ``t`` (None: nothing known yet)."""

    def status_line(self) -> str:
        """One short HUD line."""


def wrap_half(x: float) -> float:
    """``x`` wrapped into [-0.5, 0.5)."""
    return (x + 0.5) % 1.0 - 0.5


class SlewedClock:
    """The output beat clock: follows a target phase with a bounded change of rate, never a jump.

    ``step(target_beat, bpm, dt_s)`` advances by ``bpm * dt / 60`` beats and moves toward the
    target's phase (mod 1) by at most ``max_slew`` of that advance. The integer part of ``beat``
    is the clock's own (beats counted since it started), so a new source never makes the count jump.
    """

    __slots__ = ("beat", "bpm", "max_slew", "error")

    def __init__(self, max_slew: float = DEFAULT_MAX_SLEW) -> None:
        if not 0.0 < max_slew < 1.0:
            raise ValueError(f"max_slew must be within (0, 1), got {max_slew}")
        self.beat: float | None = None
        self.bpm = 120.0
        self.max_slew = max_slew
        self.error = 0.0  # target - output after the last step (beats, -0.5..0.5)

    def step(self, target_beat: float | None, bpm: float, dt_s: float) -> float:
        bpm = bpm if math.isfinite(bpm) and bpm > 0 else self.bpm
        self.bpm = bpm
        if self.beat is None:
            self.beat = 0.0 if target_beat is None or not math.isfinite(target_beat) else target_beat
            self.error = 0.0
            return self.beat
        nominal = bpm / 60.0 * max(0.0, dt_s)
        predicted = self.beat + nominal
        if target_beat is None or not math.isfinite(target_beat):  # free-run
            self.beat = predicted
            return predicted
        err = wrap_half(target_beat - predicted)
        limit = self.max_slew * nominal
        step = err if -limit <= err <= limit else math.copysign(limit, err)
        self.beat = predicted + step
        self.error = err - step
        return self.beat


class ClockRouter:
    """Wraps an audio engine; ``poll`` returns its frames with the chosen clock's beat (module docstring).

    ``link`` / ``midi``: the optional sources (objects with ``read(t)`` and ``status_line()``);
    ``time_fn``: the perf_counter-like clock external sources are read with (tests inject one).
    Unknown attributes are the audio engine's (``source``, ``status``, ``close``, ...).
    """

    def __init__(self, audio: Any, *, source: str = "audio", link: BeatSource | None = None,
                 midi: BeatSource | None = None, max_slew: float = DEFAULT_MAX_SLEW,
                 time_fn: Callable[[], float] = time.perf_counter, lead: Any = None) -> None:
        self.audio = audio
        self.actives: dict[str, BeatSource | None] = {"link": link, "midi": midi}
        self.lead = lead  # a Link session in lead mode: proposed our tempo (see link.LinkSession.lead)
        self.time_fn = time_fn
        self.out = SlewedClock(max_slew)
        self.active = "audio"  # the beat clock's source (``source`` is the audio engine's)
        self._bar_offset = 0
        self._pending_bar_offset: int | None = None
        self._shown_beat: int | None = None
        self._last_now: float | None = None
        self._last_t: float | None = None
        self._dt_ema: float | None = None
        self._errors: set[str] = set()
        self.heard_offset_ms: float | None = None  # audio beats minus the external clock's, smoothed
        self.published: tuple[float, float, float, bool] | None = None  # (t, beat, bpm, playing) for clock out
        # (beat number on which bars start, modulo beats per bar; beats per bar): where MIDI clock out's
        # song positions count from. Replaced whole, read from clock out's thread.
        self.bar_grid: tuple[int, int] = (0, 4)
        self.switches = 0
        self.set_source(source)

    # ---------------------------------------------------------------- the AudioEngine face
    def __getattr__(self, name: str) -> Any:  # status, samplerate, frame, feed, latency_ms ...
        if name == "audio":  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.audio, name)

    @property
    def source(self) -> Any:
        """The audio engine's source (``--record`` wraps it; the latency figures read it)."""
        return self.audio.source

    @source.setter
    def source(self, value: Any) -> None:
        self.audio.source = value

    def tap(self, now_s: float | None = None) -> None:
        self.audio.tap(now_s)

    def set_bpm(self, bpm: float | None) -> None:
        """``bpm`` command: with Link driving, the session tempo (any peer may set it); else the audio clock's."""
        link = self.actives.get("link")
        if self.active == "link" and link is not None and bpm is not None and hasattr(link, "set_tempo"):
            link.set_tempo(float(bpm))
            return
        self.audio.set_bpm(bpm)

    def resync(self) -> None:
        self.audio.resync()

    def close(self) -> None:
        self.audio.close()

    # ---------------------------------------------------------------- switching
    def available(self) -> list[str]:
        return ["audio", "tap"] + [k for k in ("link", "midi") if self.actives.get(k) is not None]

    def set_source(self, name: Any) -> bool:
        """Switch the beat clock (a name of :data:`SOURCES` or its index); False (logged) if unavailable."""
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            i = int(name)
            name = SOURCES[i] if 0 <= i < len(SOURCES) else str(name)
        name = str(name).strip().lower()
        if name not in SOURCES:
            log.warning("clock source %r: unknown (one of %s)", name, ", ".join(SOURCES))
            return False
        if name in ("link", "midi") and self.actives.get(name) is None:
            hint = "--link follow" if name == "link" else "--midi-clock-in DEVICE"
            log.warning("clock source %s: not available (start with %s)", name, hint)
            return False
        if name == self.active:
            return True
        try:
            if name == "audio":
                self.audio.set_bpm(None)  # automatic tempo again
            elif name == "tap" and getattr(getattr(self.audio, "frame", None), "tempo_source", "auto") == "auto":
                bpm = float(getattr(self.audio.frame, "bpm", 120.0))  # hold the current tempo until taps
                self.audio.set_bpm(min(300.0, max(20.0, bpm)))
        except Exception as exc:  # noqa: BLE001 - a switch never breaks the show
            self._once("switch", exc)
        log.info("beat clock: %s -> %s", self.active, name)
        self.active = name
        self.switches += 1
        return True

    # ---------------------------------------------------------------- per frame
    def poll(self, now_s: float | None = None) -> Any:
        frame = self.audio.poll(now_s)
        try:
            return self._drive(frame, now_s)
        except Exception as exc:  # noqa: BLE001 - the frame loop never raises
            self._once("beat clock", exc)
            return frame

    def _once(self, key: str, exc: BaseException) -> None:
        if key not in self._errors:
            self._errors.add(key)
            log.error("%s failed, free-running: %r", key, exc, exc_info=exc)

    def _drive(self, frame: Any, now_s: float | None) -> Any:
        t = self.time_fn()
        if now_s is None:
            now_s = t
        dt = 0.0 if self._last_now is None else max(0.0, now_s - self._last_now)
        self._last_now = now_s
        latency_s = float(getattr(self.audio, "latency_ms", 0.0) or 0.0) * 1e-3
        if dt > 0:  # half a (smoothed) frame ahead: one late frame must not pull the display time back
            self._dt_ema = dt if self._dt_ema is None else self._dt_ema + 0.1 * (min(dt, 0.1) - self._dt_ema)
        t_show = t + latency_s + min(_MAX_LOOKAHEAD_S, 0.5 * (self._dt_ema or 0.0))
        if self._last_t is not None and t_show < self._last_t:
            t_show = self._last_t
        dt_show = 0.0 if self._last_t is None else t_show - self._last_t
        self._last_t = t_show
        audio_beat = float(frame.beat_count) + float(frame.beat_phase)
        external = self.actives.get(self.active) if self.active in ("link", "midi") else None
        reading: BeatReading | None = None
        if external is not None:
            try:
                reading = external.read(t_show)
            except Exception as exc:  # noqa: BLE001
                self._once(f"{self.active} clock", exc)
        if self.lead is not None:
            try:
                self.lead.lead(frame, t)
            except Exception as exc:  # noqa: BLE001
                self._once("link lead", exc)
        if external is None:
            bpb = int(getattr(frame, "beats_per_bar", 4)) or 4
            reading = BeatReading(audio_beat, float(frame.bpm), float(frame.beat_in_bar) + float(frame.beat_phase),
                                  bpb, playing=bool(frame.locked), ok=True)
        elif reading is not None and frame.locked:  # heard vs external beats (the HUD shows it)
            off_ms = wrap_half(audio_beat - reading.beat) * 60000.0 / max(reading.bpm, 1e-6)
            h = self.heard_offset_ms
            self.heard_offset_ms = off_ms if h is None or abs(off_ms - h) > 100.0 else h + 0.1 * (off_ms - h)
        elif external is not None and not frame.locked:
            self.heard_offset_ms = None
        if reading is None:  # nothing known yet: free-run
            beat = self.out.step(None, self.out.bpm, dt_show)
            playing, ok, bpb, bar_beat, bpm = False, False, 4, None, self.out.bpm
        else:
            beat = self.out.step(reading.beat if reading.ok else None, reading.bpm, dt_show)
            playing, ok, bpb, bar_beat, bpm = reading.playing and reading.ok, reading.ok, reading.beats_per_bar, \
                reading.bar_beat, reading.bpm
        bpb = max(1, int(bpb))
        index = math.floor(beat)
        frac = beat - index
        if bar_beat is not None and ok and reading is not None:
            # our beat number that corresponds to the source's current beat, and the source's beat in the bar
            ours = round(beat + self.out.error - (reading.beat % 1.0))
            self._pending_bar_offset = (ours - math.floor(bar_beat + 1e-9)) % bpb
        first = self._shown_beat is None
        fired = not first and index > self._shown_beat and playing
        if (first or index != self._shown_beat) and self._pending_bar_offset is not None:
            self._bar_offset = self._pending_bar_offset  # a new bar label takes effect on a beat
        self._shown_beat = index if first else max(self._shown_beat, index)
        self.published = (t_show, beat, bpm, playing)
        if self.bar_grid != (self._bar_offset, bpb):
            self.bar_grid = (self._bar_offset, bpb)
        if external is None and self.out.error == 0.0 and index == frame.beat_count:
            return frame  # in step with the audio clock: the frame as analysed
        in_bar = (index - self._bar_offset) % bpb
        fields = dict(frame.__dict__)
        fields.update(
            bpm=float(bpm), beat_phase=frac, bar_phase=(in_bar + frac) / bpb, beat_in_bar=int(in_bar),
            beats_per_bar=bpb, beat_count=int(index), beat=fired, bar=fired and in_bar == 0,
            beat_env=math.exp(-4.0 * frac) if playing else 0.0, locked=playing,
            confidence=(1.0 if playing else 0.0) if external is not None else frame.confidence,
            tempo_source=self.active if external is not None else frame.tempo_source,
        )
        return type(frame).from_fields(fields)

    # ---------------------------------------------------------------- HUD
    def hud_line(self) -> str:
        text = f"clock {self.active}"
        src = self.actives.get(self.active) if self.active in ("link", "midi") else None
        if src is not None:
            try:
                text += f": {src.status_line()}"
            except Exception as exc:  # noqa: BLE001
                text += f": status unavailable ({exc})"
        if self.heard_offset_ms is not None and src is not None:
            text += f", heard {self.heard_offset_ms:+.0f} ms"
        if self.lead is not None and self.active not in ("link",):
            try:
                text += f"; {self.lead.status_line()}"
            except Exception:  # noqa: BLE001
                pass
        return text
