"""Sinks that need another OS or a kernel module: they run where that exists and are skipped with the
reason elsewhere (on this project's Linux CI: no v4l2loopback module, no macOS, no Windows)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vjengine.output.counter import counter_image, read_counter
from vjengine.output.sink import OutFrame
from vjengine.output.sinks import open_sinks


def _frame(n: int, size=(320, 180)) -> OutFrame:
    rgb = counter_image(n, *size)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    return OutFrame(np.ascontiguousarray(rgba[::-1]), n, time.perf_counter())


def _loopback_device() -> str | None:
    for node in sorted(Path("/sys/class/video4linux").glob("video*")) if sys.platform.startswith("linux") else ():
        try:
            if "loopback" in (node / "name").read_text().lower():
                return f"/dev/{node.name}"
        except OSError:
            continue
    return None


@pytest.mark.skipif(_loopback_device() is None,
                    reason="no v4l2loopback device (modprobe v4l2loopback; not loadable in this container)")
def test_v4l2_loopback_carries_the_frames():
    pytest.importorskip("pyvirtualcam", reason="pip install 'vjengine[vcam]'")
    from vjengine.output.stream import ffmpeg_exe

    device = _loopback_device()
    [sink] = open_sinks([f"v4l2://{device}?size=320x180&fps=30"])
    sink.start((320, 180))
    try:
        for n in range(60):
            sink.offer(_frame(n))
            time.sleep(1 / 30)
        grab = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "v4l2", "-i", device, "-frames:v", "1",
                               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=30)
    finally:
        sink.stop()
    img = np.frombuffer(grab.stdout[: 320 * 180 * 3], np.uint8).reshape(180, 320, 3)
    assert read_counter(img) is not None and sink.errors == 0


@pytest.mark.skipif(sys.platform != "darwin", reason="Syphon is macOS only")
def test_syphon_server_is_listed():
    syphon = pytest.importorskip("syphon", reason="pip install 'vjengine[syphon]'")
    [sink] = open_sinks(["syphon://vj-test?size=320x180"])
    sink.start((320, 180))
    try:
        for n in range(10):
            sink.offer(_frame(n))
            time.sleep(1 / 30)
        names = [s.name for s in syphon.SyphonServerDirectory().servers]
        assert "vj-test" in names and sink.sent > 0
    finally:
        sink.stop()


@pytest.mark.skipif(sys.platform != "win32", reason="Spout is Windows only")
def test_spout_sender_sends():
    pytest.importorskip("SpoutGL", reason="pip install 'vjengine[spout]'")
    [sink] = open_sinks(["spout://vj-test?size=320x180"])
    sink.start((320, 180))
    try:
        for n in range(10):
            sink.offer(_frame(n))
            time.sleep(1 / 30)
        assert sink.sent > 0 and sink.errors == 0
    finally:
        sink.stop()
