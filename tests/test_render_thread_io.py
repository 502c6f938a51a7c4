"""No I/O on the render thread: the set log and bank reads go through worker threads with bounded
backlogs, so a stalled or full target (a FIFO nobody reads, /dev/full, a hung read) never stops a
frame. Real files, FIFOs and devices; the render-side calls run in a thread the test joins, so a call
that blocks fails the test instead of hanging it."""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest

from _osc_helpers import wait_until
from _show_helpers import BeatClock
from vjengine.control.commands import Command
from vjengine.show.record import Recorder, SetLog

JOIN_S = 60.0  # a render-side loop that has not finished by then is blocked, not slow


def _run_frames(rec: Recorder, n: int) -> threading.Thread:
    clock = BeatClock()

    def frames() -> None:
        for i in range(n):
            cmds = [Command("axis", "warp", i / n, "osc", 0.0)] if i % 10 == 0 else []
            rec.frame(1 / 60, i / 60, clock.next(level=(i % 50) / 50), cmds, output={"bank": 0, "coord": [i / n]})

    t = threading.Thread(target=frames, daemon=True)
    t.start()
    t.join(JOIN_S)
    return t


def _fill(w: int) -> int:
    """Write to the pipe ``w`` (non-blocking) until it is full."""
    with pytest.raises(BlockingIOError):
        while True:
            os.write(w, b"x" * 4096)
    return w


def _reader(r: int) -> tuple[threading.Thread, list[bytes]]:
    """The pipe is read again, to its end, by a thread."""
    os.set_blocking(r, True)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")), daemon=True)
    reader.start()
    return reader, chunks


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "set.jsonl"
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader that reads nothing (yet)
    yield path, r
    try:
        os.close(r)
    except OSError:
        pass


def test_a_set_log_nobody_reads_never_blocks_the_frame_and_catches_up(fifo):
    path, r = fifo
    rec = Recorder(path, {"banks": [{"name": "a"}]}, close_timeout_s=60.0)
    t = _run_frames(rec, 3000)  # ~1.5 MB of lines: the pipe holds 64 KB
    assert not t.is_alive(), "Recorder.frame blocked on a stalled set log"
    assert not rec.failed and rec.frames == 3000
    assert wait_until(lambda: 0 < rec.written < 3000 and rec.pending > 0)  # the writer is stuck
    reader, chunks = _reader(r)  # the disk comes back
    rec.close()
    reader.join(JOIN_S)
    lines = b"".join(chunks).decode().splitlines()
    assert json.loads(lines[-1]) == {"end": True, "frames": 3000}
    assert [json.loads(x)["f"] for x in lines[1:-1]] == list(range(3000))  # every line, in order


def test_a_backlog_past_its_bound_stops_the_recording_not_the_show(fifo, caplog):
    path, r = fifo
    os.close(_fill(os.open(path, os.O_WRONLY | os.O_NONBLOCK)))  # the pipe is full before the show starts
    rec = Recorder(path, {"banks": [{"name": "a"}]}, max_backlog=200, close_timeout_s=0.2)
    with caplog.at_level(logging.ERROR, logger="vjengine.show.record"):
        t = _run_frames(rec, 5000)
        assert not t.is_alive(), "Recorder.frame blocked on a stalled set log"
        assert rec.failed and rec.frames < 5000
        rec.close()  # gives up on the disk after close_timeout_s
    text = caplog.text
    assert "recording stopped at frame" in text and "did not take the last" in text
    os.close(r)  # the stuck writer now gets EPIPE and ends


@pytest.mark.parametrize("make", ["record", "stats"])
def test_a_fifo_with_no_reader_is_a_clear_error_not_a_hang(tmp_path, make):
    """Opening a FIFO for writing waits for a reader: before the show's first frame, forever. It is
    refused at once instead, naming the option and the file (exit 2 from the CLI)."""
    from vjengine.errors import ConfigError
    from vjengine.show.statslog import StatsWriter

    path = tmp_path / "out.jsonl"
    os.mkfifo(path)
    result: list = []

    def open_it():
        try:
            w = Recorder(path, {"banks": [{"name": "a"}]}) if make == "record" else StatsWriter(path)
            result.append(w)
        except ConfigError as exc:
            result.append(exc)

    t = threading.Thread(target=open_it, daemon=True)
    t.start()
    t.join(JOIN_S)
    if t.is_alive():  # the old code: free it with a reader, then fail
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO with no reader hung")
    [err] = result
    assert isinstance(err, ConfigError)
    assert f"--{make} {path}: a FIFO with no reader" in str(err)


def test_a_full_disk_stops_the_recording_with_a_message(caplog):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with caplog.at_level(logging.ERROR, logger="vjengine.show.record"):
        rec = Recorder("/dev/full", {"banks": [{"name": "a"}]})
        t = _run_frames(rec, 2000)
        assert not t.is_alive()
        assert wait_until(lambda: rec.failed, 10.0)
        rec.close()
    assert "No space left on device" in caplog.text


def test_the_set_log_replays_after_the_writer_thread(tmp_path):
    path = tmp_path / "set.jsonl"
    rec = Recorder(path, {"banks": [{"name": "a"}]})
    _run_frames(rec, 500)
    rec.close()
    got = list(SetLog(path).frames())
    assert [g.index for g in got] == list(range(500)) and got[10].commands[0].value == 10 / 500


# --- bank reads ------------------------------------------------------------------------------------

SIDE = 32


def _hanging_bank(tmp_path, hang: set[int]):
    """A real bank on disk whose reads of the frames in ``hang`` block until ``release`` is set: a
    network share gone away under the show."""
    import numpy as np

    from vjengine.bank import Axis, open_bank, write_bank

    rng = np.random.default_rng(18)
    frames = rng.integers(0, 256, (16, SIDE, SIDE, 3), dtype=np.uint8)
    bank = open_bank(write_bank(tmp_path / "b", (Axis("a", tuple(range(4))), Axis("b", tuple(range(4)))), frames))
    release = threading.Event()
    stored = bank.read_stored
    entered: list[int] = []

    def read_stored(first, count=1):
        if first in hang:
            entered.append(first)
            release.wait()
        return stored(first, count)

    bank.read_stored = read_stored  # the file "hangs" for these frames
    return bank, frames, release, entered


def _on_render_thread(fn, release: threading.Event):
    """Run ``fn`` here (the GL thread); a watchdog ends the hang after a while, and if it had to, the
    render thread was blocked on the read."""
    watchdog = threading.Timer(20.0, release.set)
    watchdog.start()
    try:
        out = fn()
    finally:
        watchdog.cancel()
    assert not release.is_set(), "the render thread blocked on a bank read"
    return out


@pytest.mark.parametrize("fits", [True, False], ids=["bank-fits", "streaming"])
def test_a_hung_bank_read_never_blocks_the_render_thread(ctx, tmp_path, fits):
    from vjengine.render.residency import ResidentFrames

    bank, frames, release, entered = _hanging_bank(tmp_path, {5})
    try:
        frame_mb = SIDE * SIDE * 4 / (1 << 20)
        low_mb = 16 * 8 * 8 * 4 / (1 << 20)  # the low tier at most (8x8 RGBA each)
        budget = (16 if fits else 4.5) * frame_mb + low_mb  # all 16 frames, or one blend's 4
        res = ResidentFrames(ctx, bank, gpu_budget_mb=budget, sync_budget_ms=3)
        assert (res.slots == res.count) is fits
        res.load_low_tier()
        where = _on_render_thread(lambda: res.layers_for([4, 5]), release)
        assert wait_until(lambda: entered == [5], 10.0)  # the read of frame 5 is in flight (once the reader runs), and hangs
        assert id(where[1][0]) in res.low_ids  # frame 5 from the low tier meanwhile
        assert wait_until(lambda: res._reader.stuck(), 10.0)  # noqa: SLF001 - the reader says the disk stalled

        def frames_go_on():
            for _ in range(50):  # a stalled disk: no more waiting, the frames keep coming
                res.layers_for([4, 5])
                res.tick(0.004)
            return res.layers_for([4, 5])

        where = _on_render_thread(frames_go_on, release)
        assert id(where[1][0]) in res.low_ids
        release.set()  # the share is back: frame 5 turns sharp

        def sharp():
            res.tick(0.004)
            return res.slot_of[5] >= 0

        assert wait_until(sharp, 10.0)
        (array, layer), = res.layers_for([5])
        assert id(array) not in res.low_ids
        import numpy as np

        np.testing.assert_array_equal(array.read(layer)[..., :3], frames[5])
        res.release()
    finally:
        release.set()


def test_offline_reads_in_line_and_stays_exact(ctx, tmp_path):
    from vjengine.render.residency import ResidentFrames

    bank, frames, release, _ = _hanging_bank(tmp_path, set())
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, wait_full=True)
    assert res._reader is None  # noqa: SLF001 - no reader thread: the frame is read before layers_for returns
    (array, layer), = res.layers_for([7])
    import numpy as np

    np.testing.assert_array_equal(array.read(layer)[..., :3], frames[7])
    res.release()


def test_a_hung_read_never_blocks_a_whole_bank_upload(ctx, tmp_path):
    """The same for a bank that fits (BankTextures, streaming in the live show)."""
    import numpy as np

    from vjengine.render.textures import BankTextures

    bank, frames, release, entered = _hanging_bank(tmp_path, {5})
    try:
        tex = BankTextures(ctx, bank, upload="stream", progress=False, background_reads=True)
        _on_render_thread(lambda: tex.layers_for([4, 5]), release)
        assert entered == [5] and tex.resident[4] and not tex.resident[5]
        assert wait_until(lambda: tex._reader.stuck(), 10.0)  # noqa: SLF001

        def frames_go_on():
            for _ in range(50):
                tex.layers_for([4, 5])
                tex.tick(0.004)

        _on_render_thread(frames_go_on, release)
        release.set()

        def complete():
            tex.tick(0.004)
            return tex.complete

        assert wait_until(complete, 10.0)
        array, layer = tex.layers_for([5])[0]
        got = np.frombuffer(array.read(), np.uint8).reshape(16, SIDE, SIDE, 3)[layer]
        np.testing.assert_array_equal(got, frames[5])
        tex.release()
    finally:
        release.set()


def test_a_bank_truncated_under_background_reads_keeps_what_it_has(ctx, tmp_path, caplog):
    from vjengine.render.textures import BankTextures

    bank, _, release, _ = _hanging_bank(tmp_path, set())
    tex = BankTextures(ctx, bank, upload="stream", progress=False, background_reads=True)
    tex.layers_for([0])
    frames_file = bank.path / "frames.safetensors"
    with open(frames_file, "r+b") as fh:
        fh.truncate(frames_file.stat().st_size // 2)
    with caplog.at_level(logging.ERROR):

        def settled():
            tex.tick(0.004)
            return tex.complete

        assert wait_until(settled, 10.0)
    assert tex.failed and "changed on disk" in tex.failed and tex.resident[0]
    tex.release()


def test_the_reader_queue_is_bounded_and_says_when_the_disk_is_stuck(caplog):
    from vjengine.bank.reader import FrameReader

    gate = threading.Event()
    now = [0.0]
    reader = FrameReader(lambda key: (gate.wait(), key)[1], name="b", max_queued=3, stall_s=2.0,
                         clock=lambda: now[0])
    try:
        assert reader.request(1)  # taken by the thread: it hangs
        assert wait_until(lambda: reader.room() == 3)
        assert all(reader.request(k) for k in (2, 3, 4)) and not reader.request(5)  # full: refused, counted
        assert reader.dropped == 1 and reader.request(2)  # a key already queued is not a new request
        assert reader.request(4, urgent=True) and list(reader._queue) == [4, 2, 3]  # noqa: SLF001
        assert not reader.stuck()
        now[0] = 2.5
        with caplog.at_level(logging.ERROR, logger="vjengine.bank.reader"):
            assert reader.stuck() and reader.stuck()
        assert caplog.text.count("has not returned") == 1  # once per stall
        gate.set()
        assert wait_until(lambda: reader.busy == 4 and not reader._queue)  # noqa: SLF001
        assert [k for k, ok, v in reader.take()] == [1, 4, 2, 3] and not reader.stuck()
    finally:
        gate.set()
        reader.close()


# --- audio analysis --------------------------------------------------------------------------------

class _HangingSource:
    """A real file source played in real time whose ``read`` can be made to hang (a sound card
    driver stuck in a call)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.samplerate = inner.samplerate
        self.hang = threading.Event()
        self.release = threading.Event()
        self.entered = threading.Event()

    def read(self):
        if self.hang.is_set():
            self.entered.set()
            self.release.wait()
        return self.inner.read()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_audio_analysis_runs_off_the_render_thread_and_never_holds_it():
    from vjengine.audio.engine import AudioEngine
    from vjengine.audio.sources import FileSource
    from vjengine.demo import demo_audio_path

    source = _HangingSource(FileSource(demo_audio_path(), realtime=True, loop=True))
    engine = AudioEngine(source)
    engine.start_thread()
    try:
        assert wait_until(lambda: engine.poll(0.0).hops > 0, 10.0)  # the thread analyses; poll takes snapshots
        assert engine._thread.name == "vj-audio"  # noqa: SLF001
        source.hang.set()
        assert source.entered.wait(10.0)  # the analysis thread is stuck in the middle of a batch
        watchdog = threading.Timer(20.0, source.release.set)
        watchdog.start()
        try:
            last = engine.poll(0.0)
            frames = [engine.poll(i / 60) for i in range(120)]
            engine.tap()
            engine.set_bpm(128.0)  # handed to the thread, not waited for
        finally:
            watchdog.cancel()
        assert not source.release.is_set(), "poll waited for the stuck analysis"
        assert all(f is last for f in frames) and engine.skipped_snapshots >= 120  # the last good frame
        source.hang.clear()
        source.release.set()
        assert wait_until(lambda: engine.poll(3.0).hops > 0, 10.0)  # analysis resumed
        assert wait_until(lambda: engine.poll(3.0).bpm == 128.0, 10.0)  # and the tempo set meanwhile applied
    finally:
        source.release.set()
        engine.close()


def test_a_low_tier_truncated_on_disk_is_an_error_not_a_sigbus(tmp_path):
    """The low tier is read with plain reads too: truncated after the bank was opened and before it was
    uploaded, the show logs it once and draws full frames; a map read here would kill the process."""
    import subprocess
    import sys

    import numpy as np

    from vjengine.bank import Axis, write_bank

    rng = np.random.default_rng(3)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (64, 1, 1, 3)), 32, 1), 32, 2).astype(np.uint8)
    write_bank(tmp_path / "b", (Axis("x", tuple(range(64))),), frames, codec="bc1")
    script = f"""
import numpy as np
from vjengine.bank import open_bank
from vjengine.render.context import headless_context
from vjengine.render.residency import ResidentFrames
bank = open_bank({str(tmp_path / 'b')!r})
low = bank.path / "low.safetensors"
with open(low, "r+b") as fh:  # after the bank was opened (its map made), before any low-tier read
    fh.truncate(64)
ctx = headless_context()
res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, sync_budget_ms=0)
for _ in range(2000):
    where = res.layers_for([40, 41])
    res.tick(0.004)
    if res.slot_of[40] >= 0 and res.slot_of[41] >= 0 and res.status()["low_tier_ready"] >= 1.0:
        break
where = res.layers_for([40, 41])
print("full" if not any(id(a) in res.low_ids for a, _ in where) else "low", int(res.slot_of[40] >= 0))
res.release()
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-1500:]}"
    assert r.stdout.split() == ["full", "1"]
    assert "cannot read the low tier" in r.stderr and r.stderr.count("cannot read the low tier") == 1


# --- frame hashes ----------------------------------------------------------------------------------

class Pixels:
    """What the hook reads back: a distinct frame each time, as the compositor's ``read_rgb`` gives it."""

    def __init__(self, side: int = 24) -> None:
        import numpy as np

        self.rng = np.random.default_rng(18)
        self.side = side
        self.drawn: list = []

    def read_rgb(self):
        frame = self.rng.integers(0, 256, (self.side, self.side, 3), dtype="uint8")
        self.drawn.append(frame)
        return frame


def _hash_frames(hook, compositor: Pixels, n: int) -> threading.Thread:
    t = threading.Thread(target=lambda: [hook(compositor, None) for _ in range(n)], daemon=True)
    t.start()
    t.join(JOIN_S)
    return t


def _expected(drawn) -> list[str]:
    import hashlib

    return [hashlib.sha256(f.tobytes()).hexdigest() for f in drawn]


def test_frame_hashes_nobody_reads_never_block_the_frame_and_all_arrive(fifo):
    from vjengine.frameloop import FrameHashes

    path, r = fifo
    hook = FrameHashes(open(path, "w", encoding="utf-8"), background=True, close_timeout_s=60.0)
    pixels = Pixels()
    t = _hash_frames(hook, pixels, 3000)  # ~195 KB of lines: the pipe holds 64 KB
    assert not t.is_alive(), "a frame's hash blocked the render thread on a stalled file"
    assert hook.frames == 3000 and not hook.failed
    assert hook._sent_pixels - hook._hashed <= hook.max_frames  # noqa: SLF001 - at most 3 frames' pixels wait
    assert wait_until(lambda: hook._writer.pending > 0 and hook._writer.written < 3000)  # noqa: SLF001 - stuck
    reader, chunks = _reader(r)  # the disk comes back
    hook.close()
    reader.join(JOIN_S)
    assert b"".join(chunks).decode().splitlines() == _expected(pixels.drawn)  # every frame, in order


def test_frame_hashes_in_the_background_match_the_inline_ones(tmp_path):
    from vjengine.frameloop import FrameHashes

    pixels = Pixels(side=64)
    inline = tmp_path / "inline.txt"
    with open(inline, "w", encoding="utf-8") as fh:
        hook = FrameHashes(fh)
        for _ in range(200):
            hook(pixels, None)
    background = FrameHashes(open(tmp_path / "bg.txt", "w", encoding="utf-8"), background=True)
    replay = Pixels(side=64)  # the same frames again
    assert not _hash_frames(background, replay, 200).is_alive()
    background.close()
    assert (tmp_path / "bg.txt").read_text() == inline.read_text()
    assert inline.read_text().splitlines() == _expected(pixels.drawn)


def test_frame_hashes_past_their_bound_stop_the_file_not_the_show(fifo, caplog):
    from vjengine.frameloop import FrameHashes

    path, r = fifo
    os.close(_fill(os.open(path, os.O_WRONLY | os.O_NONBLOCK)))  # the pipe is full before the show starts
    hook = FrameHashes(open(path, "w", encoding="utf-8"), background=True, max_backlog=300, close_timeout_s=0.2)
    with caplog.at_level(logging.ERROR):
        t = _hash_frames(hook, Pixels(), 5000)
        assert not t.is_alive(), "a frame's hash blocked the render thread on a stalled file"
        assert hook.failed and hook.frames < 5000
        hook.close()  # gives up on the disk after close_timeout_s
    assert "--frame-hashes" in caplog.text and "stopped at frame" in caplog.text
    assert "did not take the last" in caplog.text
    os.close(r)  # the stuck writer now gets EPIPE and ends


def test_frame_hashes_to_a_full_disk_stop_with_a_message(caplog):
    from vjengine.frameloop import FrameHashes

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with caplog.at_level(logging.ERROR):
        hook = FrameHashes(open("/dev/full", "w", encoding="utf-8"), background=True)
        t = _hash_frames(hook, Pixels(), 2000)
        assert not t.is_alive()
        assert wait_until(lambda: hook.failed, 10.0)
        hook.close()
    assert "No space left on device" in caplog.text


# --- log lines -------------------------------------------------------------------------------------

@pytest.fixture
def stuck_stream():
    """A log output whose reader has stopped reading: a pipe already full."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.set_blocking(_fill(w), True)
    stream = os.fdopen(w, "w", buffering=1, encoding="utf-8")
    yield r, stream
    for close in (lambda: os.close(r), stream.close):  # the reader first: a writer stuck on the pipe gets EPIPE
        try:
            close()
        except OSError:
            pass


def _logger_on(stream, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.handleError = lambda record: None  # a line cut off when the test closes the pipe: no report
    logger.handlers = [handler]
    return logger


def _log_lines(logger: logging.Logger, n: int) -> threading.Thread:
    t = threading.Thread(target=lambda: [logger.info("frame %d: %s", i, "y" * 200) for i in range(n)], daemon=True)
    t.start()
    t.join(JOIN_S)
    return t


def test_a_log_output_nobody_reads_never_blocks_the_logging_thread_and_catches_up(stuck_stream):
    from vjengine.logqueue import LogOffThread

    r, stream = stuck_stream
    logger = _logger_on(stream, "vj-test-stuck-log")
    with LogOffThread(logger=logger, close_timeout_s=60.0) as off:
        t = _log_lines(logger, 500)  # ~100 KB of lines: the full pipe takes none of them
        assert not t.is_alive(), "a log call blocked on an output nobody reads"
        assert off.dropped == 0
        reader, chunks = _reader(r)  # the output is read again
    assert isinstance(logger.handlers[0], logging.StreamHandler) and len(logger.handlers) == 1  # put back
    stream.close()
    reader.join(JOIN_S)
    lines = b"".join(chunks).lstrip(b"x").decode().splitlines()
    assert lines == [f"frame {i}: {'y' * 200}" for i in range(500)]  # every line, in order


def test_a_log_queue_that_stays_full_drops_and_counts_lines(stuck_stream):
    from vjengine.logqueue import LogOffThread

    r, stream = stuck_stream
    logger = _logger_on(stream, "vj-test-full-log")
    off = LogOffThread(logger=logger, capacity=20, close_timeout_s=0.2).__enter__()
    t = _log_lines(logger, 300)
    assert not t.is_alive(), "a log call blocked on a full queue"
    assert off.dropped >= 300 - 20 - 1  # the queue's 20, and the one the writer is stuck on
    assert not off.close()  # the output took nothing for close_timeout_s: said so, handlers put back
    assert isinstance(logger.handlers[0], logging.StreamHandler) and len(logger.handlers) == 1


# --- the show's sound, recorded beside the set log ----------------------------------------------------

class Blocks:
    """An audio source: 256-sample blocks of a sine, as the capture gives them."""

    samplerate = 48000

    def __init__(self) -> None:
        import numpy as np

        self.n = 0
        self.np = np

    def read(self):
        t = (self.n * 256 + self.np.arange(256)) / self.samplerate
        self.n += 1
        return self.np.sin(2 * self.np.pi * 440 * t).astype("float32")

    def close(self) -> None:
        pass


def test_a_stalled_disk_stops_the_sound_recording_not_the_audio_thread(tmp_path, caplog):
    import soundfile

    from vjengine.show.record import AudioRecorder

    rec = AudioRecorder(Blocks(), tmp_path / "set.wav", max_blocks=50, close_timeout_s=0.5)
    release, entered = threading.Event(), threading.Event()
    write = rec._file.write  # noqa: SLF001 - the file "hangs" (a network share gone away)

    def hung_write(block):
        entered.set()
        release.wait()
        write(block)

    rec._file.write = hung_write  # noqa: SLF001
    with caplog.at_level(logging.ERROR, logger="vjengine.show.record"):
        t = threading.Thread(target=lambda: [rec.read() for _ in range(2000)], daemon=True)
        t.start()
        t.join(JOIN_S)
        assert not t.is_alive(), "the audio thread blocked on a stalled sound recording"
        assert rec.failed and rec._queue.qsize() <= 50  # noqa: SLF001 - memory bounded
        assert wait_until(entered.is_set, 10.0)  # the writer is stuck on the disk
        rec.close()  # gives up on the disk after close_timeout_s
    assert "audio recording stopped" in caplog.text and "did not take the last blocks" in caplog.text
    release.set()  # the share comes back: what was queued is written, then the file closes
    assert wait_until(lambda: not rec._thread.is_alive(), 10.0)  # noqa: SLF001
    data, sr = soundfile.read(str(tmp_path / "set.wav"), dtype="float32")
    assert sr == 48000 and len(data) == rec.samples and rec.samples in (50 * 256, 51 * 256)  # all taken, whole
    import numpy as np

    np.testing.assert_array_equal(data[:256], Blocks().read())
