"""Shared helpers for the show tests: synthetic AudioFrames and a beat clock you can step."""

from __future__ import annotations

from types import MappingProxyType

from vjengine.audio.frame import AudioFrame
from vjengine.mapping import AxisInfo

BAND_NAMES = ("sub", "bass", "low_mid", "mid", "high_mid", "high")
DEMO_AXES = [AxisInfo("palette", 8, True), AxisInfo("warp", 8, False), AxisInfo("detail", 8, False)]


def frame(*, level: float = 0.0, bands: dict[str, float] | None = None, beats: float = 0.0,
          beats_per_bar: int = 4, **kw) -> AudioFrame:
    """An AudioFrame at ``beats`` beats elapsed (count + phase), with the bar fields consistent."""
    b = {n: 0.0 for n in BAND_NAMES}
    b.update(bands or {})
    count = int(beats)
    phase = beats - count
    in_bar = count % beats_per_bar
    return AudioFrame(
        level=level, bands=MappingProxyType(b), beat_count=count, beat_phase=phase,
        beat_in_bar=in_bar, bar_phase=(in_bar + phase) / beats_per_bar, beats_per_bar=beats_per_bar,
        locked=True, **kw,
    )


class BeatClock:
    """Frames at a fixed tempo and frame rate; ``beat``/``bar`` flags set on the frame a beat falls."""

    def __init__(self, bpm: float = 120.0, fps: float = 60.0) -> None:
        self.bpm = bpm
        self.fps = fps
        self.n = 0

    @property
    def dt_s(self) -> float:
        return 1.0 / self.fps

    def next(self, **kw) -> AudioFrame:
        beats_now = self.n / self.fps * self.bpm / 60.0
        beats_prev = (self.n - 1) / self.fps * self.bpm / 60.0
        self.n += 1
        crossed = self.n > 1 and int(beats_now) > int(beats_prev)
        return frame(beats=beats_now, beat=crossed or kw.pop("beat", False),
                     bar=crossed and int(beats_now) % 4 == 0, **kw)


def start_xvfb():
    """Start Xvfb on a free display (``-displayfd``); returns (process, ":N") or skips the test."""
    import os
    import shutil
    import subprocess

    import pytest

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as fh:
        num = fh.readline().strip()
    if not num:
        proc.kill()
        pytest.skip("Xvfb did not start")
    return proc, f":{num}"


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
