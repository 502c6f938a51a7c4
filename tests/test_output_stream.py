"""srt:// and udp:// with a real ffmpeg receiver: frames of a counter bank arrive in order, all of
them on loopback; an SRT receiver that goes away and comes back gets the show again."""

from __future__ import annotations

import time

import pytest
from _osc_helpers import wait_until
from _output_helpers import FfmpegReceiver, counter_bank, free_port, udp_bound

from vjengine.output.hub import OutputHub
from vjengine.output.sinks import open_sinks
from vjengine.render.renderer import Renderer

SIZE = (320, 180)
COUNT = 90
BANK_COUNT = 600
SRT_COUNT = 600  # SRT takes 5 s to notice a receiver gone
DEADLINE_S = 60.0  # for what should happen; generous, for a loaded 2-core machine


def _show(ctx, bank, hub, frames, start=0, fps=30.0, flush=False):
    """Render frames start..start+frames-1 of the counter bank through the hub, paced at ``fps``.
    The hub is told each frame's time on the show's clock (as the frame loop does), so it paces the
    sinks by the show's frames even when a loaded machine draws them late."""
    r = Renderer(ctx, bank, output_size=SIZE, fit="stretch", progress=False, raise_errors=True, upload="eager")
    t0 = time.perf_counter()
    for k in range(frames):
        i = start + k
        r.render([i / (bank.count - 1)], None, 1 / fps)
        hub.on_frame(r.output, number=i, drawn_s=t0 + k / fps)
        delay = t0 + (k + 1) / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # real-time pacing of the show, not a wait for a condition
    if flush:
        hub.flush()  # hands over the last frame read back
    r.release()


def _check_order(numbers, sent, count=COUNT):
    got = [n for n in numbers if n is not None]
    assert len(got) == len(numbers), f"unreadable counters in {numbers}"
    assert got == sorted(set(got)), f"out of order or repeated: {got}"
    assert set(got) <= set(range(count))
    return got


@pytest.mark.slow
def test_udp_receiver_gets_every_frame_in_order(ctx, tmp_path):
    bank = counter_bank(tmp_path / "counter", BANK_COUNT, *SIZE)
    port = free_port()
    rx = FfmpegReceiver(f"udp://127.0.0.1:{port}", SIZE)
    [sink] = open_sinks([f"udp://127.0.0.1:{port}?fps=30"])
    hub = OutputHub([sink]).start(ctx, SIZE)
    shown = 0
    try:
        assert udp_bound(port), "the ffmpeg receiver did not open its socket"
        # the show goes on until the receiver has decoded COUNT frames (on a busy machine the sink
        # drops more, and the receiver probes the stream before its first picture)
        while len(rx.numbers) < COUNT and shown + 30 <= BANK_COUNT:
            _show(ctx, bank, hub, 30, start=shown)
            shown += 30
        # ... and until the receiver has decoded up to what was shown by then: at the end the encoder
        # gets 1 s to flush before it is stopped, which a loaded machine can miss (a decoder may also
        # hold its last frames until more come)
        last = shown - 6
        deadline = time.monotonic() + DEADLINE_S
        while not rx.wait_number(last, 0) and shown + 10 <= BANK_COUNT and time.monotonic() < deadline:
            _show(ctx, bank, hub, 10, start=shown)
            shown += 10
        hub.flush()
        assert sink.state == "live" and sink.errors == 0
    finally:
        hub.close()
        rx.stop()
    got = _check_order(rx.numbers, sink.sent, BANK_COUNT)
    # A receiver starts decoding at a key frame (two a second); from there on every frame the sink
    # sent arrives (what it dropped, or the hub did not offer at 30 fps, it never sent).
    assert len(got) >= COUNT and got[-1] >= last, got
    sent = [t.number for t in sink.timings]
    assert got == [n for n in sent if got[0] <= n <= got[-1]], (got, sent)
    assert sink.sent + sink.dropped >= 0.9 * shown  # the hub paces the sink at its own 30 fps (the show's clock)


@pytest.mark.slow
def test_srt_receiver_leaves_and_comes_back(ctx, tmp_path):
    bank = counter_bank(tmp_path / "counter", SRT_COUNT, 160, 96)
    port = free_port()
    listen = f"srt://127.0.0.1:{port}?mode=listener"
    rx = FfmpegReceiver(listen, SIZE)
    rx2 = None
    assert udp_bound(port), "the SRT listener did not open its socket"
    [sink] = open_sinks([f"srt://127.0.0.1:{port}?fps=30"])
    hub = OutputHub([sink]).start(ctx, SIZE)
    try:
        start, deadline = 0, time.monotonic() + DEADLINE_S
        while not rx.wait_for(5, 0) and time.monotonic() < deadline and start < 200:
            _show(ctx, bank, hub, 10, start=start)  # until the receiver has a picture (it probes first)
            start += 10
        assert rx.wait_for(5, DEADLINE_S), f"SRT receiver got {len(rx.numbers)} frames; sink {sink.status()}"
        rx.stop()  # the receiver goes away ...
        first = _check_order(rx.numbers, sink.sent, SRT_COUNT)
        _show(ctx, bank, hub, 15, start=start)  # ... the show goes on (and the sink notices) ...
        rx2 = FfmpegReceiver(listen, SIZE)  # ... and it comes back
        assert udp_bound(port)
        deadline = time.monotonic() + DEADLINE_S
        start += 15
        while not rx2.wait_for(5, 0) and time.monotonic() < deadline and start < SRT_COUNT - 10:
            # SRT notices a receiver gone after its peer idle time-out (5 s); ffmpeg exits; the sink restarts it
            _show(ctx, bank, hub, 10, start=start)  # the show goes on until the receiver has it again
            start += 10
        assert rx2.wait_for(5, DEADLINE_S), f"no frames after the receiver came back; sink {sink.status()}"
    finally:
        hub.close()
        rx.stop()
        if rx2 is not None:
            rx2.stop()
    second = _check_order(rx2.numbers, sink.sent, SRT_COUNT)
    assert sink.reconnects >= 1
    assert min(second) > max(first)


F_SETPIPE_SZ = 1031  # Linux fcntl


@pytest.mark.slow
def test_stalled_encoder_gets_the_newest_frame_not_a_queue():
    """ffmpeg stopped (SIGSTOP) stands for an encoder that cannot keep up: the sink writes at most
    MAX_IN_FLIGHT frames it has not encoded, the rest are dropped in the mailbox (counted), and when
    ffmpeg runs again the next frame it gets is the newest one, not the backlog."""
    import fcntl
    import os
    import signal

    import numpy as np

    from vjengine.output.counter import counter_image
    from vjengine.output.sink import OutFrame
    from vjengine.output.stream import MAX_IN_FLIGHT

    w, h = 160, 96
    [sink] = open_sinks([f"udp://127.0.0.1:{free_port()}?fps=30&size={w}x{h}"])

    def frame(n):
        rgba = np.dstack([counter_image(n, w, h), np.full((h, w), 255, np.uint8)])
        return OutFrame(np.ascontiguousarray(rgba[::-1]), n, time.perf_counter())

    def encoded():
        return [n for n, _ in list(sink.encoded_at)]

    sink.start((w, h))
    pid = None
    try:
        sink.offer(frame(0))
        assert wait_until(lambda: encoded() == [0]), sink.status()
        pid = sink.ffmpeg_pid
        if sink.status()["priority"] == "idle":  # the sink's thread idles; ffmpeg runs a step below
            assert os.sched_getscheduler(sink.thread_id) == os.SCHED_IDLE
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + 10)
        # ffmpeg's own queues (several frames between its stages) modelled by a pipe that holds 16
        # frames: without the sink's back-pressure they would fill with stale frames.
        fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, 16 * w * h * 4)
        finally:
            os.close(fd)
        os.kill(pid, signal.SIGSTOP)
        for n in range(1, 41):
            sink.offer(frame(n))
            assert wait_until(lambda: sink.sent + sink.dropped >= n or sink.status()["encoding"] >= MAX_IN_FLIGHT)
        assert sink.status()["encoding"] <= MAX_IN_FLIGHT
        assert sink.sent <= 1 + MAX_IN_FLIGHT and sink.dropped >= 40 - MAX_IN_FLIGHT - 1, sink.status()
        os.kill(pid, signal.SIGCONT)
        pid = None
        assert wait_until(lambda: 40 in encoded()), (encoded(), sink.status())
        got = encoded()
        assert got == sorted(got)
        during = [n for n in got if 0 < n < 40]  # written while ffmpeg was stopped
        assert len(during) <= MAX_IN_FLIGHT, f"frames queued behind the stall reached the encoder: {got}"
        delays = [t.done_s - t.drawn_s for t in sink.timings]
        assert len(delays) == sink.sent and all(d >= 0 for d in delays)
        assert sink.status()["delay_ms"] >= 0 and " ms" in sink.hud_line()
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        sink.stop()


@pytest.mark.slow
def test_frames_closer_than_a_period_all_arrive():
    """Frames written in a burst (after the encoder caught up, or with the hub's jitter allowance)
    keep distinct time stamps: none is thrown away by the muxer (a hole in the stream until the next
    key frame) and ffmpeg never stops on it."""
    import numpy as np

    from vjengine.output.counter import counter_image
    from vjengine.output.sink import OutFrame

    w, h = SIZE
    count = 40
    more = 300  # paced frames after the burst, until the receiver has the burst's last ones
    port = free_port()
    rx = FfmpegReceiver(f"udp://127.0.0.1:{port}", SIZE)
    [sink] = open_sinks([f"udp://127.0.0.1:{port}?fps=30"])

    def offer(n):
        rgba = np.dstack([counter_image(n, w, h), np.full((h, w), 255, np.uint8)])
        sink.offer(OutFrame(np.ascontiguousarray(rgba[::-1]), n, time.perf_counter()))
        assert wait_until(lambda: sink.sent + sink.dropped > n), sink.status()

    try:
        assert udp_bound(port), "the ffmpeg receiver did not open its socket"
        sink.start(SIZE)
        for n in range(count):  # as fast as the sink takes them: far less than 1/30 s apart
            offer(n)
        # The stream goes on at 30 fps until the receiver has the burst's frames (the encoder and a
        # live decoder hold their newest frames until more come; at the end the encoder gets 1 s to
        # flush, which a loaded machine can miss).
        n, deadline = count, time.monotonic() + DEADLINE_S
        while not rx.wait_number(count - 1, 0) and n < count + more and time.monotonic() < deadline:
            offer(n)
            n += 1
            time.sleep(1 / 30)  # the stream's pace, not a wait for a condition
    finally:
        sink.stop()
        rx.stop()
    assert sink.reconnects == 0 and sink.errors == 0, sink.status()
    got = _check_order(rx.numbers, sink.sent, count + more)
    assert got and got[-1] >= count - 1, got
    sent = [t.number for t in sink.timings]
    # from the receiver's first key frame on, every frame sent was decoded
    assert got == [n for n in sent if got[0] <= n <= got[-1]], (got, sent)


def _counter_frame(n, w, h):
    import numpy as np

    from vjengine.output.counter import counter_image
    from vjengine.output.sink import OutFrame

    rgba = np.dstack([counter_image(n, w, h), np.full((h, w), 255, np.uint8)])
    return OutFrame(np.ascontiguousarray(rgba[::-1]), n, time.perf_counter())


WATCHDOG_S = 0.3  # the stall limits, shortened: a frame below takes several times this to encode


@pytest.mark.slow
def test_slow_but_working_encoder_is_not_restarted(monkeypatch):
    """An ffmpeg that needs far longer than the stall limit per frame but works on it (here a costly
    denoise filter in front of the encoder; on a loaded machine, an encoder starved of CPU) keeps
    running: the watchdog sees it use CPU and does not restart it, and every frame it takes arrives."""
    from vjengine.output import stream

    monkeypatch.setattr(stream, "STALL_S", WATCHDOG_S)
    monkeypatch.setattr(stream, "START_S", WATCHDOG_S)
    w, h = 160, 96

    class SlowSink(stream.TsSink):
        def command(self):
            cmd = super().command()
            at = cmd.index("-vf") + 1
            cmd[at] += ",scale=960:576,nlmeans=s=10:p=7:r=15,scale=160:96"  # about a CPU second a frame
            return cmd

    [spec_sink] = open_sinks([f"udp://127.0.0.1:{free_port()}?fps=30&size={w}x{h}"])
    sink = SlowSink(spec_sink.spec)
    sink.size = spec_sink.size
    sink.start((w, h))
    n = 0

    def offered():  # the show goes on, a frame every 20 ms: two wait inside ffmpeg, the rest are dropped
        nonlocal n
        sink.offer(_counter_frame(n, w, h))
        n += 1
        return len(sink.encoded_at) >= 3 or sink.reconnects > 0

    try:
        assert wait_until(offered, 120.0, 0.02), sink.status()
        assert sink.reconnects == 0 and sink.errors == 0, sink.status()
        stamps = [t for _, t in list(sink.encoded_at)]
        assert stamps[-1] - stamps[0] > 2 * WATCHDOG_S, stamps  # slower than the limit, with frames waiting
    finally:
        sink.stop()


@pytest.mark.slow
def test_stopped_encoder_is_restarted(monkeypatch):
    """An ffmpeg that does not run at all (SIGSTOP: blocked for good) with frames waiting is stopped
    and started again after the stall limit, and the new one encodes the show's frames."""
    import fcntl
    import os
    import signal

    from vjengine.output import stream

    monkeypatch.setattr(stream, "STALL_S", WATCHDOG_S)
    w, h = 160, 96
    [sink] = open_sinks([f"udp://127.0.0.1:{free_port()}?fps=30&size={w}x{h}"])
    sink.start((w, h))
    pid = None
    try:
        sink.offer(_counter_frame(0, w, h))
        assert wait_until(lambda: len(sink.encoded_at) == 1, 120.0), sink.status()
        pid = sink.ffmpeg_pid
        fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
        try:  # writes of the frames in flight must not block the sink's thread
            fcntl.fcntl(fd, F_SETPIPE_SZ, 16 * w * h * 4)
        finally:
            os.close(fd)
        os.kill(pid, signal.SIGSTOP)
        n = 1

        def offered_until(condition):  # the show goes on (a frame every 20 ms) until ...
            nonlocal n
            sink.offer(_counter_frame(n, w, h))
            n += 1
            return condition()

        assert wait_until(lambda: offered_until(lambda: sink.reconnects >= 1), 120.0, 0.02), sink.status()
        assert "does not run" in sink.detail, sink.detail
        after = n
        assert wait_until(lambda: offered_until(lambda: any(k >= after for k, _ in list(sink.encoded_at))),
                          120.0, 0.02), sink.status()
        assert sink.ffmpeg_pid != pid
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        sink.stop()
