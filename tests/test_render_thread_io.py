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
    assert wait_until(lambda: 0 < rec.written < 3000 and len(rec._backlog) > 0)  # noqa: SLF001 - the writer is stuck
    os.set_blocking(r, True)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")), daemon=True)
    reader.start()  # the disk comes back
    rec.close()
    reader.join(JOIN_S)
    lines = b"".join(chunks).decode().splitlines()
    assert json.loads(lines[-1]) == {"end": True, "frames": 3000}
    assert [json.loads(x)["f"] for x in lines[1:-1]] == list(range(3000))  # every line, in order


def test_a_backlog_past_its_bound_stops_the_recording_not_the_show(fifo, caplog):
    path, r = fifo
    w = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    with pytest.raises(BlockingIOError):
        while True:
            os.write(w, b"x" * 4096)  # the pipe is full before the show starts
    os.close(w)
    rec = Recorder(path, {"banks": [{"name": "a"}]}, max_backlog=200, close_timeout_s=0.2)
    with caplog.at_level(logging.ERROR, logger="vjengine.show.record"):
        t = _run_frames(rec, 5000)
        assert not t.is_alive(), "Recorder.frame blocked on a stalled set log"
        assert rec.failed and rec.frames < 5000
        rec.close()  # gives up on the disk after close_timeout_s
    text = caplog.text
    assert "recording stopped at frame" in text and "did not take the last" in text
    os.close(r)  # the stuck writer now gets EPIPE and ends


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
