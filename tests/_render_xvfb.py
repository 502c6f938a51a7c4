"""Xvfb for window tests: a private display found with -displayfd, screenshots with xwd -root."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest


@contextmanager
def xvfb(width: int = 1024, height: int = 768):
    """Start Xvfb on a free display; yields the DISPLAY string (e.g. ':5')."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
         "+extension", "GLX"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 20
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
        if not number.strip():
            proc.kill()
            err = proc.stderr.read().decode(errors="replace")[-500:]
            pytest.fail(f"Xvfb did not report a display: {err}")
        yield f":{number.decode().strip()}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def read_xwd(data: bytes) -> np.ndarray:
    """An XWD screenshot (32 bits per pixel, TrueColor) as uint8 [H, W, 3]."""
    fields = struct.unpack(">25I", data[:100])
    header_size, _version, _fmt, _depth, width, height = fields[:6]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    red_mask, green_mask, blue_mask = fields[14:17]
    ncolors = fields[19]
    if bits_per_pixel not in (24, 32):
        raise ValueError(f"expected a 24- or 32-bit TrueColor XWD, got {bits_per_pixel} bits per pixel")
    bpp = bits_per_pixel // 8
    offset = header_size + 12 * ncolors
    raw = np.frombuffer(data, np.uint8, count=height * bytes_per_line, offset=offset)
    rows = raw.reshape(height, bytes_per_line)[:, : width * bpp].reshape(height, width, bpp).astype(np.uint32)
    order = range(bpp) if byte_order == 1 else range(bpp - 1, -1, -1)  # MSB first, or LSB first
    pixels = np.zeros((height, width), np.uint32)
    for i in order:
        pixels = (pixels << 8) | rows[:, :, i]

    def channel(mask: int) -> np.ndarray:
        shift = (mask & -mask).bit_length() - 1
        return ((pixels & mask) >> shift).astype(np.uint8)

    return np.stack([channel(red_mask), channel(green_mask), channel(blue_mask)], axis=-1)


def screenshot(display: str) -> np.ndarray:
    """The whole screen of ``display`` as uint8 [H, W, 3]."""
    if shutil.which("xwd") is None:
        pytest.skip("xwd is not installed (Debian: apt-get install x11-apps)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shot.xwd"
        subprocess.run(["xwd", "-root", "-silent", "-display", display, "-out", str(path)], check=True,
                       timeout=30)
        return read_xwd(path.read_bytes())
