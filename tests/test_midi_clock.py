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
from vjengine.control.midi_port import MidiPort, open_backend  # noqa: E402
from vjengine.control.midi_worker import MidiClockOutWorker, MidiWorkerPort  # noqa: E402
from vjengine.sync.clock_source import ClockRouter  # noqa: E402
from vjengine.sync.midi_clock import MidiClockIn, MidiClockOut, open_clock_out  # noqa: E402


@pytest.fixture()
def jack():
    with jack_server() as name:
        yield name


_last_in_bar = [None]  # the beat in the bar of the last frame _run_frames made (for its ``until``)


def _run_frames(router, audio, seconds, fps=60.0, until=None, wall_audio=False):
    """Poll the router as the frame loop does, paced at ``fps``; returns the frames and their times.
    ``wall_audio``: audio comes in real time, as from a sound card (a late frame gets more of it), so
    an audio (tap) beat clock keeps wall-clock time on a loaded machine; else a frame's worth a frame."""
    out = []
    period = 1.0 / fps
    t0 = time.perf_counter()
    nxt = t0
    fed = 0
    while time.perf_counter() - t0 < seconds and not (until and until()):
        due = (int((time.perf_counter() - t0) * 48000) if wall_audio else fed) + int(48000 * period)
        audio.feed(np.zeros(due - fed, np.float32))
        fed = due
        f = router.poll(time.perf_counter())  # the frame clock never restarts, as in the show
        out.append((router.published, f))
        _last_in_bar[0] = f.beat_in_bar
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
    # as `vj live --midi-api jack` reads it: in the MIDI worker process, arrival times sent across
    port = MidiWorkerPort("clockmaster", clk.handle, api="jack", rescan_s=0.1).start()
    try:
        assert port.wait_for(lambda p: p.connected, 60.0)
        # the connection is live once a Stop gets through
        assert sender.until_delivered(lambda: sender.send(0xFC), lambda: clk.stops > 0)
        audio = AudioEngine.offline(48000)
        router = ClockRouter(audio, midi=clk, source="midi")
        ticks = 24 * 4 * 3 + 24 * 2 + 12  # three bars and two and a half beats: stops mid-bar, no Stop message
        sender.clock(128.0, ticks)
        # until the last clock arrived, or (a loaded machine lost one on the way) was due a moment ago:
        # the frames after that belong to the stall, looked at below
        last_due = time.perf_counter() + 0.02 + ticks * 60.0 / 128.0 / 24.0
        frames = _run_frames(router, audio, 12.0,
                             until=lambda: clk.ticks >= ticks or time.perf_counter() > last_due + 0.1)
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
        assert port.wait_for(lambda p: p.connected, 60.0)
        _run_frames(router, audio, 0.2, wall_audio=True)  # the router publishes its clock from the first frame
        router.audio.analyzer.locked = True  # a set tempo is a locked clock (as the audio engine says)
        clock_out.start()
        # The receiver's tempo is fitted to when the clocks arrive; on a loaded machine the sending or the
        # receiving thread starved for a moment makes a burst that pulls the fit away for a while (seen:
        # 146.6), so the show goes on until it reads our 128 (bounded): a default never would.
        _run_frames(router, audio, 30.0, until=lambda: clk.ticks >= 24 * 6 and abs(clk.bpm - 128.0) <= 1.5,
                    wall_audio=True)
        assert clk.ticks >= 24 * 6, clk.ticks
        assert abs(clk.bpm - 128.0) <= 1.5, clk.bpm  # our 128, not a default
        # Start, or (started mid-bar) a song position and Continue, came first: the receiver knows its bar
        assert clk.read(time.perf_counter()).bar_beat is not None
    finally:
        clock_out.stop()
        port.stop()


def _run_to_beat(router, audio, beat_in_bar: int) -> None:
    """Run frames until one shows ``beat_in_bar`` (bounded)."""
    frames = _run_frames(router, audio, 5.0, until=lambda: _last_in_bar[0] == beat_in_bar, wall_audio=True)
    assert frames and frames[-1][1].beat_in_bar == beat_in_bar


def _bar_error(router, clk, t: float) -> float:
    """The receiver's place in the bar minus ours at perf time ``t`` (beats, wrapped to half a bar)."""
    t_show, beat, bpm, _ = router.published
    offset, bpb = router.bar_grid
    ours = (beat + (t - t_show) * bpm / 60.0 - offset) % bpb
    theirs = clk.read(t).bar_beat
    assert theirs is not None, "the receiver does not know its place in the bar"
    return (theirs - ours + bpb / 2) % bpb - bpb / 2


def test_clock_out_sends_song_position_on_start_and_relocate(jack):
    """Gear must play in our bar, not only at our tempo: started mid-bar, clock out sends a Song
    Position Pointer and Continue before its first clock (a receiving MidiClockIn then agrees with our
    place in the bar); when the bars move (/vj/resync on beat 3) it relocates: Stop, Song Position,
    Continue, and the receiver agrees again."""
    clk = MidiClockIn()
    got: list = []

    def receive(msg, t):
        got.append((msg.type, getattr(msg, "pos", None)))
        clk.handle(msg, t)

    port = MidiPort("vjspp", receive, api="jack", rescan_s=0.1).start()
    audio = AudioEngine.offline(48000)
    router = ClockRouter(audio, source="tap")
    audio.set_bpm(128.0)
    # as `vj live --midi-api jack` runs it: in the MIDI worker process, fed the router's clock and bars;
    # it opens its port first, and is given the clock (not None) from the moment the test says
    feeding = [False]
    clock_out = MidiClockOutWorker("virtual:vjspp", "jack", lambda: router.published if feeding[0] else None,
                                   lambda: router.bar_grid).start()
    try:
        assert port.wait_for(lambda p: p.connected, 60.0)
        _run_frames(router, audio, 0.2, wall_audio=True)
        router.audio.analyzer.locked = True  # a set tempo is a locked clock (as the audio engine says)
        _run_to_beat(router, audio, 1)  # start mid-bar: on the second beat of a bar
        feeding[0] = True
        _run_frames(router, audio, 8.0, until=lambda: clk.ticks >= 24 * 3, wall_audio=True)
        assert clk.ticks >= 24 * 3, (clk.ticks, got[:5])
        first_clock = [m for m, _ in got].index("clock")
        assert [m for m, _ in got[:first_clock]] == ["songpos", "continue"], got[:first_clock + 1]
        assert got[0][1] % 16 in range(4, 8), got[0]  # a sixteenth of the bar's second beat (or just after)
        errs = [_bar_error(router, clk, time.perf_counter()) for _ in _run_frames(router, audio, 0.5, wall_audio=True)]
        assert max(abs(e) for e in errs) < 0.15, errs  # the receiver is in our bar

        # the bars move under the running clock: "this is beat 1" on the bar's third beat
        _run_to_beat(router, audio, 2)
        grid_before = router.bar_grid
        n_before = len(got)
        router.resync()
        _run_frames(router, audio, 5.0, until=lambda: clock_out.relocations >= 1, wall_audio=True)
        assert router.bar_grid != grid_before and clock_out.relocations == 1
        ticks_then = clk.ticks
        _run_frames(router, audio, 5.0, until=lambda: clk.ticks >= ticks_then + 24 * 2, wall_audio=True)
        after = [m for m, _ in got[n_before:] if m != "clock"]
        assert after[:3] == ["stop", "songpos", "continue"], after
        # (a bar label that moves once more, as the tracker settles, is relocated too: wait for agreement)
        _run_frames(router, audio, 3.0, wall_audio=True,
                    until=lambda: abs(_bar_error(router, clk, time.perf_counter())) < 0.15)
        errs = [_bar_error(router, clk, time.perf_counter()) for _ in _run_frames(router, audio, 0.5, wall_audio=True)]
        assert max(abs(e) for e in errs) < 0.15, (errs[:3], clk.lost, clk.restarts, clock_out.relocations, after)
    finally:
        clock_out.stop()
        port.stop()
