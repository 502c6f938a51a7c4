"""Video-out test parts: a bank whose frames carry their own number, and an ffmpeg receiver."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from vjengine.bank import Axis, open_bank, write_bank
from vjengine.output.counter import counter_image, read_counter
from vjengine.output.stream import ffmpeg_exe


def counter_bank(path: Path, count: int = 64, width: int = 320, height: int = 180):
    """One axis of ``count`` frames; frame i shows the number i (coordinate i / (count - 1))."""
    frames = np.stack([counter_image(i, width, height) for i in range(count)])
    return open_bank(write_bank(path, [Axis("frame", tuple(range(count)))], frames))


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_bound(port: int, timeout_s: float = 60.0) -> bool:
    """Wait until something on this machine has a UDP socket bound to ``port`` (SRT runs on UDP too)."""
    deadline = time.monotonic() + timeout_s
    want = f":{port:04X}"
    while time.monotonic() < deadline:
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            if any(row.split()[1].endswith(want) for row in rows if len(row.split()) > 1):
                return True
        time.sleep(0.02)
    return False


class FfmpegReceiver:
    """``ffmpeg -i URL`` decoding to raw RGB on a pipe; ``numbers`` are the counters it saw, in order."""

    def __init__(self, url: str, size: tuple[int, int]) -> None:
        self.size = size
        self.numbers: list[int | None] = []
        self.times: list[float] = []
        self.frame_event = threading.Event()
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-fflags", "nobuffer",
             "-flags", "low_delay", "-probesize", "100000", "-analyzeduration", "200000", "-i", url,
             "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        w, h = self.size
        n = w * h * 3
        while True:
            data = self.proc.stdout.read(n)
            if len(data) < n:
                return
            self.numbers.append(read_counter(np.frombuffer(data, np.uint8).reshape(h, w, 3)))
            self.times.append(time.perf_counter())
            self.frame_event.set()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.numbers) < count and time.monotonic() < deadline:
            self.frame_event.wait(0.1)
            self.frame_event.clear()
        return len(self.numbers) >= count

    def wait_number(self, number: int, timeout_s: float) -> bool:
        """Wait until a frame numbered ``number`` or later has arrived (``timeout_s`` 0: has it?)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if any(n is not None and n >= number for n in self.numbers[-5:]):
                return True
            if time.monotonic() >= deadline:
                return False
            self.frame_event.wait(0.1)
            self.frame_event.clear()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._thread.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
