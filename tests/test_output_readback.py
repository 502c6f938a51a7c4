"""PBO readback on a headless context, the hub's pacing and hand-over, the frame counter."""

from __future__ import annotations

import threading

import numpy as np
from _osc_helpers import wait_until

from vjengine.output.counter import counter_image, read_counter, stamp_fbo
from vjengine.output.hub import OutputHub
from vjengine.output.readback import Readback, fit_rect
from vjengine.output.sink import OutFrame, Sink
from vjengine.output.url import parse_out_url


def _fbo(ctx, size, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    tex = ctx.texture(size, 4, pixels.tobytes())
    return ctx.framebuffer([tex]), pixels


def test_same_size_readback_is_double_buffered(ctx):
    size = (64, 36)
    rb = Readback(ctx, size)
    (fa, pa), (fb, pb) = _fbo(ctx, size, 1), _fbo(ctx, size, 2)
    rb.submit(fa, "a")
    assert rb.collect(keep=1) == []  # the newest stays in flight
    rb.submit(fb, "b")
    [(arr, meta)] = rb.collect(keep=1)
    assert meta == "a" and np.array_equal(arr, pa)  # bottom row first, as stored
    [(arr, meta)] = rb.collect(keep=0)
    assert meta == "b" and np.array_equal(arr, pb)
    rb.release()


def test_scaled_readback_letterboxes(ctx):
    src = ctx.framebuffer([ctx.texture((64, 32), 4)])
    src.clear(1.0, 0.0, 0.0, 1.0)
    rb = Readback(ctx, (32, 32))
    rb.submit(src)
    [(arr, _)] = rb.collect(keep=0)
    x, y, w, h = fit_rect((64, 32), (32, 32))
    assert (x, y, w, h) == (0, 8, 32, 16)
    assert np.all(arr[y:y + h, :, 0] == 255) and np.all(arr[y:y + h, :, 1] == 0)
    assert np.all(arr[:y, :, :3] == 0) and np.all(arr[y + h:, :, :3] == 0)  # bars
    rb.release()


def test_counter_roundtrip_through_gl(ctx):
    fbo = ctx.framebuffer([ctx.texture((320, 180), 4)])
    for n in (0, 1, 517, 65535):
        fbo.clear(0.3, 0.3, 0.3, 1.0)
        stamp_fbo(fbo, n)
        img = np.frombuffer(fbo.read(components=3, alignment=1), np.uint8).reshape(180, 320, 3)[::-1]
        assert read_counter(img) == n
        assert read_counter(counter_image(n, 200, 100)) == n
    assert read_counter(np.full((100, 200, 3), 128, np.uint8)) is None


class Collect(Sink):
    """A sink that keeps what it is offered and what it is sent (the base class's worker thread and
    mailbox: the worker may be slow to run on a loaded machine, and then takes only the newest)."""

    kind = "collect"

    def __init__(self, url):
        super().__init__(parse_out_url(url))
        self.offered: list[int] = []
        self.frames: list[OutFrame] = []
        self.done = threading.Condition()

    def offer(self, frame):
        self.offered.append(frame.number)
        super().offer(frame)

    def send(self, frame):
        with self.done:
            self.frames.append(frame)
            self.done.notify_all()

    def wait_last_sent(self, timeout_s=60.0):
        """Wait until the last frame offered has been sent (the ones before it were sent or dropped)."""
        with self.done:
            return self.done.wait_for(lambda: bool(self.frames) and self.frames[-1].number == self.offered[-1],
                                      timeout_s)


def test_hub_paces_each_sink_and_hands_over_top_down(ctx):
    fbo = ctx.framebuffer([ctx.texture((160, 90), 4)])
    fast, slow = Collect("ndi://fast?fps=60"), Collect("udp://127.0.0.1:9?fps=20&size=80x46")
    hub = OutputHub([fast, slow]).start(ctx, (160, 90))
    try:
        for n in range(60):  # one second of 60 fps frames, clocked by the caller
            fbo.clear(0.2, 0.2, 0.2, 1.0)
            stamp_fbo(fbo, n)
            hub.on_frame(fbo, number=n, drawn_s=100.0 + n / 60)
        hub.flush()
        assert fast.wait_last_sent() and slow.wait_last_sent()
    finally:
        hub.close()
    assert len(fast.offered) >= 55  # every frame went to the 60 fps sink
    assert 15 <= len(slow.offered) <= 25  # a third of them to the 20 fps one
    for sink in (fast, slow):  # each one sent or dropped (and counted): none lost
        assert sink.sent + sink.dropped == len(sink.offered)
    for f in fast.frames:
        assert f.size == (160, 90) and read_counter(f.rgba) == f.number
    assert slow.frames[0].size == (80, 46)
    numbers = [f.number for f in fast.frames]
    assert numbers == sorted(numbers)
    status = hub.status()
    assert status[0]["url"] == "ndi://fast?fps=60" and status[0]["state"] == "stopped"


def test_software_renderer_shrinks_in_the_sink(ctx):
    """On a software renderer the scaling pass is render-thread CPU: a sink at half the show's size
    gets the whole frame read back (the readback shared with a full-size sink) and shrinks it on its
    own thread, to what the pass gives (a box average at 2x); other sizes still go through the pass."""
    from vjengine.render.context import is_software_renderer

    fbo, pixels = _fbo(ctx, (160, 96), 3)
    full, half = Collect("ndi://full?fps=60"), Collect("udp://127.0.0.1:9?fps=60&size=80x48")
    odd = Collect("udp://127.0.0.1:9?fps=60&size=52x30")  # not a whole-number shrink: the pass
    hub = OutputHub([full, half, odd]).start(ctx, (160, 96))
    try:
        hub.on_frame(fbo, number=1, drawn_s=0.0)
        hub.flush()
        assert full.wait_last_sent() and half.wait_last_sent() and odd.wait_last_sent()
    finally:
        hub.close()
    software = is_software_renderer(ctx.info["GL_RENDERER"])
    assert hub.scale_in_sinks == software
    assert full.frames[-1].size == (160, 96) and np.array_equal(full.frames[-1].bottom_up, pixels)
    by_gl = {}
    for size in ((80, 48), (52, 30)):
        rb = Readback(ctx, size)
        rb.submit(fbo)
        [(by_gl[size], _)] = rb.collect(keep=0)
        rb.release()
    assert np.abs(half.frames[-1].bottom_up.astype(int) - by_gl[80, 48].astype(int)).max() <= 1
    assert np.array_equal(odd.frames[-1].bottom_up, by_gl[52, 30])
    if software:  # one readback served both: the same hand-over
        assert half.frames[-1].ready_s == full.frames[-1].ready_s != odd.frames[-1].ready_s


def test_cpu_shrink_matches_the_scaling_pass(ctx):
    from vjengine.output.readback import scale_bottom_up, shrink_factor

    fbo, pixels = _fbo(ctx, (160, 90), 4)
    rb = Readback(ctx, (80, 45))
    rb.submit(fbo)
    [(by_gl, _)] = rb.collect(keep=0)
    rb.release()
    by_cpu = scale_bottom_up(pixels, (80, 45))
    assert by_cpu.shape == by_gl.shape == (45, 80, 4)
    assert np.abs(by_cpu.astype(int) - by_gl.astype(int)).max() <= 1  # both the mean of each 2x2 block
    assert np.array_equal(by_cpu[0, 0], (pixels[:2, :2].astype(int).sum(axis=(0, 1)) + 2) // 4)
    assert shrink_factor((160, 90), (80, 45)) == 2 and shrink_factor((160, 90), (80, 44)) == 0
    assert shrink_factor((160, 90), (160, 90)) == 1 and shrink_factor((160, 90), (320, 180)) == 0
    letterboxed = scale_bottom_up(pixels, (64, 64))  # another aspect: bars, like fit_rect's
    x, y, w, h = fit_rect((160, 90), (64, 64))
    assert np.all(letterboxed[:y, :, :3] == 0) and np.all(letterboxed[y + h:, :, :3] == 0)
    assert np.all(letterboxed[:y, :, 3] == 255) and letterboxed[y:y + h].std() > 10


class Stuck(Collect):
    """A sink whose send hangs until ``release`` is set (a receiver that stopped reading)."""

    def __init__(self, url):
        super().__init__(url)
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, frame):
        self.entered.set()
        self.release.wait(60)
        super().send(frame)


def test_stuck_sink_drops_and_counts_without_blocking(ctx):
    fbo = ctx.framebuffer([ctx.texture((64, 36), 4)])
    stuck = Stuck("ndi://stuck?fps=60")
    hub = OutputHub([stuck]).start(ctx, (64, 36))
    try:
        hub.on_frame(fbo, number=0, drawn_s=0.0)
        hub.on_frame(fbo, number=1, drawn_s=1 / 60)
        assert stuck.entered.wait(60)
        for n in range(2, 50):  # the render thread goes on while the sink is stuck
            hub.on_frame(fbo, number=n, drawn_s=n / 60)
        assert stuck.dropped >= 45
        assert hub.status()[0]["dropped"] == stuck.dropped
    finally:
        stuck.release.set()
        hub.close()


def test_a_starved_idle_sink_is_raised_until_it_catches_up(ctx):
    """A SCHED_IDLE sink thread that leaves a frame waiting past STARVED_S (on a machine busy with
    other programs it may get no CPU at all) is put back under the normal policy by the next offer,
    and goes back to idle once its mailbox is empty."""
    import os
    import time

    from vjengine.output.sink import STARVED_S

    def frame(n):
        return OutFrame(np.zeros((16, 16, 4), np.uint8), n, time.perf_counter())

    sink = Stuck("ndi://starved?fps=60&size=16x16").start((16, 16))
    try:
        sink.offer(frame(0))
        assert sink.entered.wait(60)
        if sink.status()["priority"] != "idle":
            import pytest

            pytest.skip("SCHED_IDLE refused here: nothing to raise")
        assert os.sched_getscheduler(sink.thread_id) == os.SCHED_IDLE
        sink.offer(frame(1))  # waits in the mailbox from now
        assert sink.starved == 0
        deadline = time.monotonic() + 60
        n = 2
        while sink.starved == 0 and time.monotonic() < deadline:
            sink.offer(frame(n))  # the show goes on offering (replacing: dropped)
            n += 1
            sink.entered.wait(STARVED_S / 10)
        assert sink.starved == 1 and sink.status()["starved"] == 1
        assert os.sched_getscheduler(sink.thread_id) == os.SCHED_OTHER
        sink.release.set()
        assert sink.wait_last_sent()
        assert wait_until(lambda: os.sched_getscheduler(sink.thread_id) == os.SCHED_IDLE)
    finally:
        sink.release.set()
        sink.stop()


def test_software_renderer_hands_over_the_same_frame(ctx):
    """On llvmpipe the copy is done when submit returns: the hub hands the frame over at once instead
    of a frame later (a whole frame period of latency for nothing); a GPU keeps the double buffer."""
    from vjengine.render.context import is_software_renderer

    fbo = ctx.framebuffer([ctx.texture((64, 36), 4)])
    sink = Collect("ndi://now?fps=60")
    hub = OutputHub([sink]).start(ctx, (64, 36))
    try:
        stamp_fbo(fbo, 7)
        hub.on_frame(fbo, number=7, drawn_s=0.0)
        software = is_software_renderer(ctx.info["GL_RENDERER"])
        assert sink.offered == ([7] if software else [])
        if software:
            assert wait_until(lambda: sink.frames)
            [frame] = sink.frames
            assert frame.number == 7 and read_counter(frame.rgba) == 7 and frame.ready_s >= frame.drawn_s
    finally:
        hub.close()
    assert is_software_renderer("llvmpipe (LLVM 15.0.6, 256 bits)")
    assert not is_software_renderer("NVIDIA GeForce RTX 4090/PCIe/SSE2")
