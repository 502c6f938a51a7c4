"""The built-in demo bank: made once into the cache, smooth along every axis."""

from __future__ import annotations

import numpy as np

from vjengine.bank import open_bank
from vjengine.demo import demo_bank_path, demo_frame


def test_demo_bank_is_cached_and_valid():
    path = demo_bank_path()
    bank = open_bank(path)
    assert len(bank.axes) == 3 and bank.axes[0].cyclic and bank.count == np.prod(bank.sizes)
    mtime = (path / "frames.safetensors").stat().st_mtime_ns
    assert demo_bank_path() == path
    assert (path / "frames.safetensors").stat().st_mtime_ns == mtime  # not rebuilt


def test_demo_frames_change_smoothly_and_visibly():
    base = demo_frame(0.2, 0.5, 0.5, size=64).astype(float)
    for axis in range(3):
        near = [0.2, 0.5, 0.5]
        far = [0.2, 0.5, 0.5]
        near[axis] += 0.02
        far[axis] += 0.3
        d_near = np.abs(demo_frame(*near, size=64) - base).mean()
        d_far = np.abs(demo_frame(*far, size=64) - base).mean()
        assert d_far > 10.0, (axis, d_far)  # the axis does something visible
        assert d_near < d_far / 4, (axis, d_near, d_far)  # and small steps make small changes
    # the palette axis wraps: 0 and 1 are the same frame
    np.testing.assert_array_equal(demo_frame(0.0, 0.3, 0.3, size=32), demo_frame(1.0, 0.3, 0.3, size=32))
