"""Grid math against an independent n-linear interpolator (scipy), plus the edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from vjengine.bank.grid import axis_position, blend, neighbours


def _scipy_blend(values, coord, cyclic):
    """n-linear interpolation of ``values`` (grid-shaped) by scipy; cyclic axes padded by wrapping."""
    grid_axes = []
    for d, n in enumerate(values.shape):
        if cyclic[d]:
            values = np.concatenate([values, np.take(values, [0], axis=d)], axis=d)
            grid_axes.append(np.arange(n + 1) / n)
        elif n == 1:
            values = np.concatenate([values, values], axis=d)
            grid_axes.append(np.array([0.0, 1.0]))
        else:
            grid_axes.append(np.linspace(0.0, 1.0, n))
    point = [c % 1.0 if cyc else min(max(c, 0.0), 1.0) for c, cyc in zip(coord, cyclic)]
    return RegularGridInterpolator(grid_axes, values)(np.array([point]))[0]


@pytest.mark.parametrize("sizes, cyclic", [
    ((5,), (False,)), ((4,), (True,)), ((3, 4), (False, True)), ((2, 3, 4), (True, False, False)),
    ((3, 2, 2, 3), (False, True, False, True)), ((1, 4), (False, False)),
])
def test_matches_scipy_interpolation(sizes, cyclic):
    rng = np.random.default_rng(len(sizes))
    values = rng.standard_normal(sizes)
    coords = list(rng.uniform(-0.3, 1.3, (200, len(sizes))))
    # cell edges and exact ends
    for k in range(5):
        coords.append(np.full(len(sizes), k / 4))
    for c in coords:
        idx, w = neighbours(c, sizes, cyclic)
        assert len(idx) == 2 ** len(sizes)
        assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
        ours = float(np.dot(values.reshape(-1)[idx], w))
        assert ours == pytest.approx(_scipy_blend(values, c, cyclic), abs=1e-9), c


def test_exact_cell_has_one_full_weight():
    idx, w = neighbours((0.5, 1 / 3), (3, 4), (False, False))
    assert idx[np.argmax(w)] == 1 * 4 + 1 and w.max() == pytest.approx(1.0)


def test_clamp_and_wrap():
    assert axis_position(-2.0, 5) == (0, 1, 0.0)
    assert axis_position(7.0, 5) == (3, 4, 1.0)
    lo, hi, f = axis_position(0.9, 5, cyclic=True)  # between the last value (0.8) and the first
    assert (lo, hi) == (4, 0) and f == pytest.approx(0.5)
    assert axis_position(1.0, 5, cyclic=True) == axis_position(0.0, 5, cyclic=True)
    assert axis_position(-0.1, 5, cyclic=True)[:2] == (4, 0)
    assert axis_position(float("nan"), 5) == (0, 1, 0.0)


def test_neighbour_order_bits():
    # neighbour j takes the upper index on axis d when bit (D-1-d) is set
    idx, _ = neighbours((0.25, 0.25), (5, 5))
    assert list(idx) == [1 * 5 + 1, 1 * 5 + 2, 2 * 5 + 1, 2 * 5 + 2]


def test_blend_of_frames():
    frames = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200)])
    assert blend(frames, (0.25,), (3,))[0, 0, 0] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="2 values but the grid has 1 axes"):
        neighbours((0.1, 0.2), (3,))
