"""Grid math for a bank: which 2**D frames surround a continuous coordinate, and their weights.

Pure numpy. This is the definition the GPU blend must match, and the oracle in the GL tests.

Coordinates run 0..1 on every axis. On a non-cyclic axis of ``n`` values, value ``i`` sits at
``i / (n - 1)`` and coordinates outside 0..1 clamp to the ends. On a cyclic axis value ``i`` sits at
``i / n`` and the coordinate wraps, so 0 and 1 are the same point and the last value blends back into
the first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def axis_position(coord: float, size: int, cyclic: bool = False) -> tuple[int, int, float]:
    """The lower index, upper index and fraction toward the upper one, on one axis."""
    if size < 1:
        raise ValueError(f"axis size must be >= 1, got {size}")
    c = float(coord)
    if not np.isfinite(c):
        c = 0.0
    if size == 1:
        return 0, 0, 0.0
    if cyclic:
        pos = (c - np.floor(c)) * size
        lo = int(np.floor(pos))
        frac = pos - lo
        lo %= size
        return lo, (lo + 1) % size, float(frac)
    pos = min(max(c, 0.0), 1.0) * (size - 1)
    lo = min(int(np.floor(pos)), size - 2)
    return lo, lo + 1, float(pos - lo)


def strides(sizes: Sequence[int]) -> np.ndarray:
    """Row-major strides (the last axis varies fastest), in frames."""
    out = np.ones(len(sizes), dtype=np.int64)
    for d in range(len(sizes) - 2, -1, -1):
        out[d] = out[d + 1] * int(sizes[d + 1])
    return out


def neighbours(
    coord: Sequence[float], sizes: Sequence[int], cyclic: Sequence[bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``2**D`` neighbour frame indices (int64) and n-linear weights (float64, summing to 1).

    Neighbour ``j`` takes, on axis ``d``, the upper index when bit ``D - 1 - d`` of ``j`` is set,
    else the lower one. Where an axis has one value, or a fraction is 0, some neighbours repeat or
    carry zero weight; callers may drop those.
    """
    dims = len(sizes)
    if len(coord) != dims:
        raise ValueError(f"coordinate has {len(coord)} values but the grid has {dims} axes")
    cyclic = [False] * dims if cyclic is None else list(cyclic)
    st = strides(sizes)
    lo = np.empty(dims, dtype=np.int64)
    hi = np.empty(dims, dtype=np.int64)
    frac = np.empty(dims, dtype=np.float64)
    for d in range(dims):
        lo[d], hi[d], frac[d] = axis_position(coord[d], int(sizes[d]), bool(cyclic[d]))
    count = 1 << dims
    indices = np.zeros(count, dtype=np.int64)
    weights = np.ones(count, dtype=np.float64)
    for j in range(count):
        for d in range(dims):
            upper = (j >> (dims - 1 - d)) & 1
            indices[j] += (hi[d] if upper else lo[d]) * st[d]
            weights[j] *= frac[d] if upper else 1.0 - frac[d]
    return indices, weights


def blend(frames: np.ndarray, coord: Sequence[float], sizes: Sequence[int],
          cyclic: Sequence[bool] | None = None) -> np.ndarray:
    """The n-linear blend of ``frames`` [N, H, W, C] at ``coord``, as float64 in 0..255."""
    indices, weights = neighbours(coord, sizes, cyclic)
    out = np.zeros(frames.shape[1:], dtype=np.float64)
    for i, w in zip(indices, weights):
        if w:
            out += w * frames[int(i)].astype(np.float64)
    return out
