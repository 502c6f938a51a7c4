"""Interpolation maths (pure numpy): slerp, lerp, seeded Lp-ball directions, nested multi-axis slerp.

Everything works on float arrays of any shape (flattened internally) and computes in float64, so
the result does not depend on the batch a latent came from or on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_PARALLEL_DOT = 0.9995


def lerp(v0: np.ndarray, v1: np.ndarray, t: float) -> np.ndarray:
    """Straight-line interpolation, ``t`` in 0..1; returns float64."""
    a = np.asarray(v0, dtype=np.float64)
    b = np.asarray(v1, dtype=np.float64)
    return a + (b - a) * float(t)


def slerp(v0: np.ndarray, v1: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between two arrays of the same shape, ``t`` in 0..1; returns float64.

    The angle is taken between the flattened arrays; the norm is interpolated linearly, so two
    Gaussian noises keep their statistics along the arc. Nearly parallel inputs fall back to lerp.
    ``t = 0`` and ``t = 1`` return the inputs exactly.
    """
    t = float(t)
    a = np.asarray(v0, dtype=np.float64)
    b = np.asarray(v1, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"slerp of arrays with different shapes {a.shape} and {b.shape}")
    if t == 0.0:
        return a.copy()
    if t == 1.0:
        return b.copy()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return lerp(a, b, t)
    dot = float(np.dot(a.ravel(), b.ravel()) / (na * nb))
    if abs(dot) > _PARALLEL_DOT:
        return lerp(a, b, t)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    ua, ub = a / na, b / nb
    direction = (np.sin((1.0 - t) * theta) / sin_theta) * ua + (np.sin(t * theta) / sin_theta) * ub
    return direction * ((1.0 - t) * na + t * nb)


def polyline(points: Sequence[np.ndarray], position: float, *, cyclic: bool = False,
             spherical: bool = True) -> np.ndarray:
    """The point at ``position`` along ``points`` (0 = the first, 1 = the second, ...).

    Non-cyclic: position in 0..len-1. Cyclic: position in 0..len, the last segment returns to the
    first point. Each segment is a slerp (``spherical``) or a lerp.
    """
    n = len(points)
    if n < 2:
        raise ValueError("a polyline needs two or more points")
    span = n if cyclic else n - 1
    pos = min(max(float(position), 0.0), float(span))
    k = min(int(np.floor(pos)), span - 1)
    t = pos - k
    a, b = points[k % n], points[(k + 1) % n]
    return slerp(a, b, t) if spherical else lerp(a, b, t)


def lp_direction(shape: Sequence[int], p: float, seed: int) -> np.ndarray:
    """A seeded random direction whose per-element Lp mean is 1 (float64).

    ``mean(|d|**p) ** (1/p) == 1`` (for p = inf: ``max |d| == 1``), so ``a * d`` lies on the Lp sphere
    of radius ``a`` measured per element: the same ``a`` means the same perturbation size at any
    latent resolution.
    """
    rng = np.random.default_rng(int(seed))
    d = rng.standard_normal(tuple(int(s) for s in shape))
    if np.isinf(p):
        scale = np.max(np.abs(d))
    else:
        scale = np.mean(np.abs(d) ** p) ** (1.0 / p)
    return d / scale


def perturb_keep_norm(noise: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``noise + delta`` rescaled to the L2 norm of ``noise`` (a Gaussian sample stays on its shell)."""
    base = np.asarray(noise, dtype=np.float64)
    out = base + np.asarray(delta, dtype=np.float64)
    norm = np.linalg.norm(out)
    return out if norm == 0.0 else out * (np.linalg.norm(base) / norm)


def nested_slerp(corners: Sequence[np.ndarray], fractions: Sequence[float]) -> np.ndarray:
    """Multi-axis slerp of ``2**m`` corner arrays at ``m`` fractions (float64).

    Corner ``j`` takes, on axis ``d``, the upper end when bit ``m - 1 - d`` of ``j`` is set (the
    convention of :func:`vjengine.bank.grid.neighbours`). Axis 0 is reduced first, then axis 1, ...:
    a fixed order, so the result is deterministic.
    """
    items = list(corners)
    if len(items) != 1 << len(fractions):
        raise ValueError(f"{len(fractions)} fractions need {1 << len(fractions)} corners, got {len(items)}")
    for t in fractions:
        half = len(items) // 2
        items = [slerp(items[j], items[j + half], t) for j in range(half)]
    return np.asarray(items[0], dtype=np.float64)
