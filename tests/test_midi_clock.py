"""MIDI clock through real JACK ports: a clock master process at 128 BPM drives the beat clock (through
the router, as in `vj live --midi-clock-in`), a clock that stops mid-bar never stops the show, and
MIDI clock out from our beat clock is read back at its tempo."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

pytest.importorskip("mido", reason="the midi extra is not installed")
pytest.importorskip("rtmidi", reason="the midi extra is not installed")

from _jackd import Sender, jack_server, wait_until  # noqa: E402

from vjengine.audio.engine import AudioEngine  # noqa: E402
from vjengine.control.midi import MidiPort, open_backend  # noqa: E402
from vjengine.sync.clock_source import ClockRouter  # noqa: E402
from vjengine.sync.midi_clock import MidiClockIn, MidiClockOut, open_clock_out  # noqa: E402


@pytest.fixture()
def jack():
    with jack_server() as name:
        yield name


def _run_frames(router, audio, seconds, fps=60.0, until=None):
    """Poll the router as the frame loop does, paced at ``fps``; returns the frames and their times."""
    out = []
    period = 1.0 / fps
    t0 = time.perf_counter()
    nxt = t0
    while time.perf_counter() - t0 < seconds and not (until and until()):
        audio.feed(np.zeros(int(48000 * period), np.float32))
        f = router.poll(time.perf_counter())  # the frame clock never restarts, as in the show
        out.append((router.published, f))
        nxt += period
        wait = nxt - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # frame pacing, as vsync does
        else:
            nxt = time.perf_counter()
    return out


def test_clock_at_128_drives_the_beat_clock_and_a_stall_mid_bar_never_stops_it(jack):
    clk = MidiClockIn()
    sender = Sender("clockmaster", "out")
    port = MidiPort("clockmaster", clk.handle, api="jack", rescan_s=0.1).start()
    try:
        assert port.wait_for(lambda p: p.connected, 10.0)
        for _ in range(200):  # the connection is live once a Stop gets through
            sender.send(0xFC)
            if wait_until(lambda: clk.stops > 0, 0.05):
                break
        audio = AudioEngine.offline(48000)
        router = ClockRouter(audio, midi=clk, source="midi")
        ticks = 24 * 4 * 3 + 24 * 2 + 12  # three bars and two and a half beats: stops mid-bar, no Stop message
        sender.clock(128.0, ticks)
        frames = _run_frames(router, audio, 12.0, until=lambda: clk.ticks >= ticks)
        got = wait_until(lambda: clk.ticks >= ticks, 2.0)
        info = sender.clock_sent()
        assert got or clk.ticks >= 0.97 * ticks, (clk.ticks, len(info["sent"]), info["dropped"], port.messages)
        sent = info["sent"]
        assert len(sent) == ticks and clk.starts == 1
        # tempo once the fit spans its four beats (1.9 s). The 0.2 BPM target is benchmarks/sync.py's to
        # measure; on a shared, loaded test machine JACK's delivery jitters more, so the test holds 0.5.
        late = [f for (_, f) in frames if f.time_s > 2.0]
        bpms = np.array([f.bpm for f in late])
        assert np.median(np.abs(bpms - 128.0)) <= 0.2 and np.all(np.abs(bpms - 128.0) <= 0.5), (bpms.min(), bpms.max())
        assert all(f.tempo_source == "midi" for f in late)
        assert sum(f.locked for f in late) >= 0.95 * len(late)
        # phase: our beat against the master's (its clock times, beat = index / 24) at each frame
        sent_beats = np.arange(len(sent)) / 24.0
        errs = []
        for (t, beat, bpm, _), f in frames[60:]:
            if sent[0] < t < sent[-1]:
                ref = float(np.interp(t, sent, sent_beats))
                errs.append(((beat - ref + 0.5) % 1.0 - 0.5) * 60000.0 / 128.0)
        assert len(errs) > 100 and float(np.median(np.abs(errs))) < 6.0, np.percentile(np.abs(errs), [50, 99])
        assert sum(f.bar for _, f in frames) >= 2  # Start made beat 1 a downbeat; bars fire
        # the clock stops mid-bar (cable pulled): the show runs on, free-running at 128
        after = _run_frames(router, audio, 1.5)
        beats = np.array([p[1] for p, _ in after])
        assert np.all(np.diff(beats) >= 0)  # never backwards
        span = after[-1][0][0] - after[0][0][0]
        assert abs((beats[-1] - beats[0]) - span * 128.0 / 60.0) < 0.1 * span * 128.0 / 60.0  # free-running at 128
        assert not after[-1][1].locked and "LOST" in clk.status_line()
        assert abs(after[-1][1].bpm - 128.0) < 0.2
    finally:
        port.stop()
        sender.close()


def test_clock_out_sends_our_tempo(jack):
    backend = open_backend("jack")
    out_port = open_clock_out("virtual:vjclock", backend)
    clk = MidiClockIn()
    port = MidiPort("vjclock", clk.handle, api="jack", rescan_s=0.1).start()
    audio = AudioEngine.offline(48000)
    router = ClockRouter(audio, source="tap")
    audio.set_bpm(128.0)
    clock_out = MidiClockOut(out_port, lambda: router.published)
    try:
        assert port.wait_for(lambda p: p.connected, 10.0)
        _run_frames(router, audio, 0.2)  # the router publishes its clock from the first frame
        router.audio.analyzer.locked = True  # a set tempo is a locked clock (as the audio engine says)
        clock_out.start()
        _run_frames(router, audio, 8.0, until=lambda: clk.ticks >= 24 * 6)
        assert clk.ticks >= 24 * 6, clk.ticks
        assert abs(clk.bpm - 128.0) <= 1.5, clk.bpm  # our 128, not a default (send jitter: a loaded machine)
        assert clk.starts == 1  # Start came first
    finally:
        clock_out.stop()
        port.stop()
