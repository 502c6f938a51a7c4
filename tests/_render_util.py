"""Helpers for the renderer tests: a GL context that fails a test on any GL error, random banks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from vjengine.bank import Axis, open_bank, write_bank


def make_context():
    from vjengine.errors import DeviceError
    from vjengine.render.context import headless_context

    try:
        return headless_context()
    except DeviceError as exc:
        pytest.skip(f"no EGL/GL driver here: {exc}")


def assert_no_gl_error(ctx) -> None:
    err = ctx.error
    assert err == "GL_NO_ERROR", f"GL error {err}"


def random_bank(path: Path, sizes: Sequence[int], cyclic: Sequence[bool] | None = None, *,
                width: int = 20, height: int = 12, channels: int = 3, seed: int = 0, smooth: bool = False):
    """A bank of random frames (or smooth random gradients) with the given axis sizes; returns it opened."""
    rng = np.random.default_rng(seed)
    cyclic = cyclic or [False] * len(sizes)
    n = int(np.prod(sizes))
    if smooth:
        y, x = np.mgrid[0:height, 0:width]
        frames = np.empty((n, height, width, channels), np.uint8)
        for i in range(n):
            for c in range(channels):
                a, b, ph = rng.uniform(1, 3, 2).tolist() + [rng.uniform(0, 6.28)]
                frames[i, :, :, c] = (127.5 + 127 * np.sin(a * x / width * 3.1 + b * y / height * 3.1 + ph)).astype(np.uint8)
    else:
        frames = rng.integers(0, 256, (n, height, width, channels), dtype=np.uint8)
    axes = [Axis(f"axis{d}", tuple(range(s)), bool(c)) for d, (s, c) in enumerate(zip(sizes, cyclic))]
    return open_bank(write_bank(path, axes, frames))
