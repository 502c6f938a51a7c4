"""`vj live` under the faults of issue 18, black box: SIGTERM / SIGHUP end it like Ctrl-C, a FIFO in
the preset folder does not stop the frames, --stats streams to its file, the governor reports itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _show_banks import smooth_bank, song
from _show_helpers import free_udp_port
from vjengine.control.osc_wire import decode_packet, encode_message

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("resilience")
    return {"a": smooth_bank(d / "bank-a", sizes=(3, 4)), "b": smooth_bank(d / "bank-b", sizes=(5,), seed=1),
            "song": song(d / "song.wav", seconds=4.0)}


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DISPLAY", None)
    return env


def _stat_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except OSError:
        return 0


def _wait(cond, proc: subprocess.Popen, err: Path, timeout_s: float = 90.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"vj live ended early ({proc.returncode}):\n{err.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out:\n{err.read_text(errors='replace')[-3000:]}")


def _start(assets, tmp_path: Path, *extra: str, stderr=None) -> tuple[subprocess.Popen, dict]:
    port = free_udp_port()
    files = {"record": tmp_path / "set.jsonl", "hashes": tmp_path / "hashes.txt", "stats": tmp_path / "stats.jsonl",
             "shot": tmp_path / "last.png", "err": tmp_path / "stderr.txt", "port": port}
    if (tmp_path / "hashes.fifo").exists():
        files["hashes"] = tmp_path / "hashes.fifo"
    cmd = [sys.executable, "-m", "vjengine.cli", "live", str(assets["a"]), str(assets["b"]), "--headless",
           "--audio-file", str(assets["song"]), "--loop", "--duration", "600", "--size", "160x100", "--fps", "30",
           "--osc-port", str(port), "--record", str(files["record"]), "--frame-hashes", str(files["hashes"]),
           "--stats", str(files["stats"]), "--screenshot", str(files["shot"]), *extra]
    err = open(files["err"], "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=_env(), stderr=err if stderr is None else stderr, stdout=subprocess.DEVNULL)
    files["err_fh"] = err
    return proc, files


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_the_show_cleanly(assets, tmp_path, sig):
    proc, f = _start(assets, tmp_path)
    try:
        _wait(lambda: _stat_lines(f["stats"]) > 30, proc, f["err"])  # frames are being drawn
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        f["err_fh"].close()
    err = f["err"].read_text(errors="replace")
    assert rc == 0, err[-3000:]
    assert sig.name in err and "Traceback" not in err
    lines = f["record"].read_text().splitlines()
    end = json.loads(lines[-1])
    assert end.get("end") is True  # the set log's end marker
    hashes = f["hashes"].read_text().splitlines()
    assert len(hashes) == end["frames"] and all(len(h) == 64 for h in hashes)  # every frame's hash flushed
    assert f["shot"].is_file() and f["shot"].stat().st_size > 0  # the last frame saved
    stats = f["stats"].read_text().splitlines()
    assert json.loads(stats[-1]).get("end") is True
    assert _port_free(f["port"])  # the OSC worker is gone with the show, not holding the port


def _full_pipe(path: Path | None = None) -> tuple[int, int]:
    """A pipe (a FIFO at ``path``) already full: whoever writes to it next waits until it is read."""
    if path is None:
        r, w = os.pipe()
    else:
        os.mkfifo(path)
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader that reads nothing (yet)
        w = os.open(path, os.O_WRONLY)
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)  # a writer waits, as on any pipe
    return r, w


def _read_again_then_sigterm(proc: subprocess.Popen, f: dict, r: int, frames: int) -> tuple[int, list[bytes]]:
    """Once ``frames`` frames were drawn with the pipe full, read it again, end the show with
    SIGTERM; its exit code and all the pipe carried."""
    try:
        _wait(lambda: _stat_lines(f["stats"]) > frames, proc, f["err"])
        os.set_blocking(r, True)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")), daemon=True)
        reader.start()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        reader.join(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        f["err_fh"].close()
        os.close(r)
    return rc, chunks


def test_frame_hashes_nobody_reads_never_stop_the_frames_and_are_complete_at_sigterm(assets, tmp_path):
    r, w = _full_pipe(tmp_path / "hashes.fifo")
    proc, f = _start(assets, tmp_path)
    os.close(w)  # the show's is the only writer now
    # the file takes nothing for a while (a 64 KB pipe holds ~1000 lines), the frames go on
    rc, chunks = _read_again_then_sigterm(proc, f, r, frames=400)
    err = f["err"].read_text(errors="replace")
    assert rc == 0, err[-3000:]
    end = json.loads(f["record"].read_text().splitlines()[-1])
    hashes = b"".join(chunks).lstrip(b"x").decode().splitlines()
    assert end.get("end") is True and end["frames"] > 400
    assert len(hashes) == end["frames"] and all(len(h) == 64 for h in hashes)  # every frame's hash, none lost


def test_a_stderr_nobody_reads_never_stops_the_frames(assets, tmp_path):
    r, w = _full_pipe()  # a supervisor that stopped reading the show's stderr
    proc, f = _start(assets, tmp_path, stderr=w)
    os.close(w)
    # every log line (set-up, the show's start, ...) finds the pipe full: the frames go on
    rc, chunks = _read_again_then_sigterm(proc, f, r, frames=200)
    err = b"".join(chunks).lstrip(b"x").decode(errors="replace")
    assert rc == 0, err[-3000:]
    assert "show: 2 bank(s)" in err and "SIGTERM: the show ended cleanly" in err  # the lines came late, not lost


def test_fifo_and_broken_preset_in_the_preset_folder_do_not_stop_frames(assets, tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    proc, f = _start(assets, tmp_path, "--preset-dir", str(folder))
    try:
        _wait(lambda: _stat_lines(f["stats"]) > 20, proc, f["err"])
        os.mkfifo(folder / "stuck.toml")  # nobody writes: reading it would block forever
        (folder / "broken.toml").write_text('name = "b"\n[fx]\nfeedback = -5\n')
        (folder / "fine.toml").write_text('name = "fine"\n[[layer]]\nmode = "lfo"\naxes = [0]\n')
        _wait(lambda: "fine.toml added" in f["err"].read_text(errors="replace"), proc, f["err"])
        before = _stat_lines(f["stats"])
        _wait(lambda: _stat_lines(f["stats"]) > before + 30, proc, f["err"])  # frames keep coming
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        f["err_fh"].close()
    err = f["err"].read_text(errors="replace")
    assert "stuck.toml: not a regular file" in err and "broken.toml" in err
    reloads = [json.loads(line) for line in f["record"].read_text().splitlines()[1:]]
    texts = [r for line in reloads if isinstance(line, dict) for r in line.get("r", [])]
    assert any("fine" in str(t) for t in texts)  # the new preset's text is in the set log, for replay


def test_stats_stream_and_status_reports_the_quality_level(assets, tmp_path):
    proc, f = _start(assets, tmp_path)
    try:
        _wait(lambda: _stat_lines(f["stats"]) > 40, proc, f["err"])  # written while the show runs
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(60.0)
            sock.sendto(encode_message("/vj/status"), ("127.0.0.1", f["port"]))
            got = {}
            while "/vj/status/end" not in got:
                got.update({m.address: m.args[0] for m in decode_packet(sock.recvfrom(65536)[0])})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        f["err_fh"].close()
    assert "/vj/status/quality/level" in got and "/vj/status/quality/render_scale" in got
    from vjengine.show.statslog import load_stats

    st = load_stats(f["stats"])
    assert st["complete"] and st["frames"] > 40 and len(st["quality"]) == st["frames"]


def test_the_loop_pulls_the_levers_when_frames_run_late_and_keeps_drawing(assets, caplog):
    """A governor whose budget no frame can meet (1 us: a 1 ms budget was met by the small frames of the
    lower levels on a quiet machine, so the ladder stopped at 4): the loop steps down to the last level,
    the compositor blends at half scale from the nearest cell with no trails, and frames keep coming."""
    import argparse
    import logging

    import numpy as np

    from vjengine.offline import PushAudio, read_song
    from vjengine.clock import FixedStepClock
    from vjengine.control.commands import CommandQueue
    from vjengine.frameloop import FrameLoop
    from vjengine.presenters import HeadlessPresenter
    from vjengine.render.compositor import Compositor
    from vjengine.render.context import headless_context
    from vjengine.render.textures import BankTextures
    from vjengine.show.degrade import Governor
    from vjengine.show.setup import build_setup
    from vjengine.show.state import ShowState

    setup = build_setup([str(assets["a"])], argparse.Namespace(preset=None, crossfade=None, quantize=None, cues=None))
    show = ShowState(setup.entries, setup.library)
    samples, sr = read_song(assets["song"])
    ctx = headless_context()
    compositor = Compositor(ctx, output_size=(48, 32), raise_errors=True)
    textures = BankTextures(ctx, setup.banks[0], progress=False)
    gov = Governor(1e6, down_hold_s=0.0, window_s=0.05)
    loop = FrameLoop(clock=FixedStepClock(30), queue=CommandQueue(), show=show, audio=PushAudio(samples, sr),
                     compositor=compositor, banks=[textures], presenter=HeadlessPresenter((48, 32), 30, pace=False),
                     governor=gov)
    with caplog.at_level(logging.WARNING):
        for _ in range(400):  # every frame is late: two frames per level
            assert loop.step()
            if gov.level.index == 5:
                break
    assert gov.level.index == 5 and gov.downs == 5
    assert compositor.render_scale == 0.5 and compositor.max_k == 1 and not loop.costly_effects
    assert sum("quality level" in r.getMessage() for r in caplog.records) == 5  # one line per change
    assert compositor.failures == 0 and np.asarray(compositor.read_rgb()).any()
    compositor.release()
    textures.release()
    ctx.release()
