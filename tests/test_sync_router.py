"""The beat-clock router: source switches never jump the phase; the output equals the source once aligned."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vjengine.audio.engine import AudioEngine
from vjengine.audio.synth import click_train
from vjengine.sync.clock_source import BeatReading, ClockRouter, SlewedClock


class TimelineSource:
    """A clock source on a known timeline: beat = (t - t0) * bpm / 60 (a stand-in for a perfect Link)."""

    name = "link"

    def __init__(self, bpm: float, t0: float) -> None:
        self.bpm, self.t0 = bpm, t0

    def read(self, t: float) -> BeatReading:
        beat = (t - self.t0) * self.bpm / 60.0
        return BeatReading(beat, self.bpm, bar_beat=beat % 4.0, beats_per_bar=4)

    def status_line(self) -> str:
        return "test timeline"


def _run(router, audio, signal, now, fps=60.0, seconds=4.0, on_frame=None):
    step = int(48000 / fps)
    frames = []
    for _ in range(int(seconds * fps)):
        i = int(now[0] * 48000)
        audio.feed(signal[i:i + step])
        now[0] += 1.0 / fps
        f = router.poll(now[0])
        frames.append(f)
        if on_frame:
            on_frame(f)
    return frames


def test_slewed_clock_never_jumps_and_converges():
    c = SlewedClock(max_slew=0.3)
    c.step(0.0, 120.0, 0.0)
    beats = [c.beat]
    for i in range(1, 300):  # the target is half a beat away: slews at <= 30 % of the tempo
        beats.append(c.step(0.5 + i * 2.0 / 60.0, 120.0, 1.0 / 60.0))
    steps = np.diff(beats)
    nominal = 2.0 / 60.0
    assert steps.min() >= 0.7 * nominal - 1e-12 and steps.max() <= 1.3 * nominal + 1e-12
    assert abs(((beats[-1] - (0.5 + 299 * nominal)) + 0.5) % 1.0 - 0.5) < 1e-9  # then exactly on the target


def test_switch_to_link_and_back_slews_the_phase():
    now = [0.0]
    audio = AudioEngine.offline(48000)
    signal, _ = click_train(bpm=120.0, seconds=30.0, sr=48000, kind="kick")
    src = TimelineSource(120.0, t0=0.23)  # a quarter of a beat (and a bit) away from the audio's beats
    router = ClockRouter(audio, link=src, time_fn=lambda: now[0], max_slew=0.3)
    frames = _run(router, audio, signal, now, seconds=8.0)
    assert frames[-1].locked and frames[-1].tempo_source == "auto"
    assert router.set_source("link")
    frames = _run(router, audio, signal, now, seconds=6.0)
    pos = np.array([f.beat_count + f.beat_phase for f in frames])
    d = np.diff(pos)
    nominal = 2.0 / 60.0
    assert d.min() > 0.65 * nominal and d.max() < 1.35 * nominal  # no jump while re-aligning
    last = frames[-1]
    target = src.read(now[0] + min(0.025, 0.5 / 60.0))
    assert abs(((last.beat_phase - target.beat) + 0.5) % 1.0 - 0.5) < 1e-6  # then on Link's phase
    assert last.tempo_source == "link" and last.beat_in_bar == math.floor(target.bar_beat)
    assert sum(f.beat for f in frames) >= 10  # beats keep firing through the switch
    assert router.set_source("audio")
    frames = _run(router, audio, signal, now, seconds=6.0)
    d = np.diff([f.beat_count + f.beat_phase for f in frames])
    assert d.min() > 0.65 * nominal and d.max() < 1.35 * nominal


def test_unavailable_and_unknown_sources_keep_the_current_one():
    audio = AudioEngine.offline(48000)
    router = ClockRouter(audio)
    assert not router.set_source("link") and not router.set_source("midi") and not router.set_source("sundial")
    assert router.active == "audio"
    assert router.set_source(1) and router.active == "tap"
    assert audio.frame.tempo_source in ("auto", "manual", "tap")


def test_a_failing_source_free_runs_instead_of_raising():
    class Broken(TimelineSource):
        def read(self, t):
            raise RuntimeError("network gone")

    now = [0.0]
    audio = AudioEngine.offline(48000)
    router = ClockRouter(audio, link=Broken(120.0, 0.0), time_fn=lambda: now[0], source="link")
    frames = _run(router, audio, np.zeros(48000 * 3, np.float32), now, seconds=2.0)
    pos = [f.beat_count + f.beat_phase for f in frames]
    assert all(b > a for a, b in zip(pos, pos[1:]))
    assert not frames[-1].locked


def test_midi_clock_in_counts_lost_clocks_and_keeps_the_phase():
    from vjengine.sync.midi_clock import MidiClockIn

    period = 60.0 / 128.0 / 24.0
    clk = MidiClockIn()
    clk.start()
    times = [1.0 + k * period for k in range(24 * 8)]
    dropped = {60, 61, 130}  # lost on the way
    late = 100  # arrives a whole period late, with the next one right behind it
    for k, t in enumerate(times):
        if k in dropped:
            continue
        clk.tick(t + (period if k == late else 0.0) + (0.0001 if k == late + 1 else 0.0))
    assert clk.lost == 3
    r = clk.read(times[-1])
    assert abs(r.beat - (len(times) - 1) / 24.0) < 0.002  # on the master's beat (no 1/24 slips)
    assert abs(r.bpm - 128.0) < 0.05 and r.bar_beat is not None
