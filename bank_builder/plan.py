"""The grid plan (pure): what each cell is, which cells are keyframes, how in-betweens are made.

Cells are numbered row-major over the axes (the last axis varies fastest), as in the bank.
Keyframes form a sub-grid: the product of one index set per axis. Every other cell is a nested
slerp of the ``2**m`` keyframes around it (m = the axes on which it is off-keyframe), decoded only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bank_builder.spec import AxisSpec, BankSpec


@dataclass(frozen=True)
class CellParams:
    """What the full pipeline needs for one cell (all plain numbers, no tensors)."""

    prompt_position: float                       # along the prompt axis' prompts (0 without one)
    token_weights: tuple[tuple[str, float], ...]  # (token, weight) from token_weight axes
    seed_position: float | None                  # along the seed axis' seeds, None = the base seed
    jitter: tuple[tuple[int, float], ...]        # (axis index, amplitude or angle in degrees)
    guidance: float
    strength: float | None                       # img2img strength, None for text-to-image
    lora_weights: tuple[tuple[str, float], ...] = ()  # (LoRA name, weight) from lora_weight axes


def cell_params(spec: BankSpec, cell: Sequence[int]) -> CellParams:
    prompt_position, seed_position = 0.0, None
    token_weights: list[tuple[str, float]] = []
    jitter: list[tuple[int, float]] = []
    lora_weights: list[tuple[str, float]] = []
    guidance = spec.guidance
    strength = spec.strength if spec.img2img else None
    for d, (axis, i) in enumerate(zip(spec.axes, cell)):
        v = axis.position(int(i))
        if axis.kind == "prompt":
            prompt_position = v
        elif axis.kind == "seed":
            seed_position = v
        elif axis.kind == "token_weight":
            token_weights.append((axis.token, v))
        elif axis.kind == "guidance":
            guidance = v
        elif axis.kind == "strength":
            strength = v
        elif axis.kind == "jitter":
            jitter.append((d, v))
        elif axis.kind == "lora_weight":
            lora_weights.append((axis.lora, v))
    return CellParams(prompt_position, tuple(token_weights), seed_position, tuple(jitter), guidance, strength,
                      tuple(lora_weights))


def batch_key(spec: BankSpec, params: CellParams) -> tuple:
    """Cells that may share one UNet batch have equal keys: the img2img start step and the LoRA weights."""
    return (denoise_start(spec.steps, params.strength), params.lora_weights)


def denoise_start(steps: int, strength: float | None) -> int:
    """The first of ``steps`` scheduler steps that img2img runs (0 for text-to-image), as diffusers."""
    if strength is None:
        return 0
    return max(steps - min(int(steps * strength), steps), 0)


KeySets = tuple[tuple[int, ...], ...]


class GridPlan:
    """Keyframes, in-betweens and their interpolation sources for one spec."""

    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        self.sizes = spec.sizes
        self.count = spec.count
        self.cyclic = tuple(a.cyclic for a in spec.axes)
        self.uniform_keys: KeySets = tuple(a.keyframe_indices() for a in spec.axes)

    def flat(self, cell: Sequence[int]) -> int:
        return int(np.ravel_multi_index(tuple(int(c) for c in cell), self.sizes))

    def cell(self, index: int) -> tuple[int, ...]:
        return tuple(int(c) for c in np.unravel_index(int(index), self.sizes))

    def keyframe_cells(self, keys: KeySets) -> list[int]:
        """Flat indices of the keyframe sub-grid ``keys``, in increasing order."""
        return sorted(self.flat(c) for c in itertools.product(*keys))

    def dense_cells(self, keys: KeySets) -> list[int]:
        """Flat indices of every cell that is not a keyframe, in increasing order."""
        key_set = set(self.keyframe_cells(keys))
        return [i for i in range(self.count) if i not in key_set]

    def sources(self, index: int, keys: KeySets) -> tuple[list[int], list[float]]:
        """The keyframe corners (flat indices, 2**m) and fractions (m) that make cell ``index``.

        Corner ``j`` takes the upper keyframe on the k-th off-keyframe axis when bit ``m - 1 - k`` is
        set (see :func:`bank_builder.interpolate.nested_slerp`).
        """
        cell = self.cell(index)
        per_axis: list[tuple[int, int]] = []
        fractions: list[float] = []
        off_axes: list[int] = []
        for d, c in enumerate(cell):
            ks = keys[d]
            if c in ks:
                continue
            n = self.sizes[d]
            lower = [k for k in ks if k < c]
            upper = [k for k in ks if k > c]
            lo = lower[-1] if lower else ks[-1] - n  # only a cyclic axis can wrap
            hi = upper[0] if upper else ks[0] + n
            per_axis.append((lo % n, hi % n))
            fractions.append((c - lo) / (hi - lo))
            off_axes.append(d)
        m = len(off_axes)
        corners = []
        for j in range(1 << m):
            corner = list(cell)
            for k, d in enumerate(off_axes):
                corner[d] = per_axis[k][(j >> (m - 1 - k)) & 1]
            corners.append(self.flat(corner))
        return corners, fractions

    def refine(self, frame_of: Callable[[int], np.ndarray]) -> KeySets:
        """Adaptive densify: up to ``axis.adaptive`` extra keyframes per axis, at the midpoints of the
        segments whose uniform keyframes differ most (mean absolute difference per cell step).

        ``frame_of(flat_index)`` returns a uniform keyframe's decoded frame. Deterministic: ties go to
        the lower segment.
        """
        keys = [list(k) for k in self.uniform_keys]
        for d, axis in enumerate(self.spec.axes):
            if not axis.adaptive:
                continue
            scored = []
            for lo, hi in _segments(self.uniform_keys[d], axis):
                if hi - lo < 2:
                    continue
                others = [self.uniform_keys[e] if e != d else (0,) for e in range(len(self.sizes))]
                diffs = []
                for c in itertools.product(*others):
                    a, b = list(c), list(c)
                    a[d], b[d] = lo, hi % axis.count
                    fa = frame_of(self.flat(a)).astype(np.float32)
                    fb = frame_of(self.flat(b)).astype(np.float32)
                    diffs.append(float(np.mean(np.abs(fa - fb))))
                scored.append((-(float(np.mean(diffs)) / (hi - lo)), lo, hi))
            for _, lo, hi in sorted(scored)[:axis.adaptive]:
                keys[d].append(((lo + hi) // 2) % axis.count)
        return tuple(tuple(sorted(set(k))) for k in keys)


def _segments(keys: Sequence[int], axis: AxisSpec) -> list[tuple[int, int]]:
    segs = list(zip(keys[:-1], keys[1:]))
    if axis.cyclic:
        segs.append((keys[-1], keys[0] + axis.count))
    return segs


def describe(spec: BankSpec) -> str:
    """A few lines about the plan, for ``--dry-run`` and the build log."""
    plan = GridPlan(spec)
    n_keys = math.prod(len(k) for k in plan.uniform_keys)
    lines = [f"{spec.count} cells ({' x '.join(f'{a.name}:{a.count}' for a in spec.axes)}), "
             f"{spec.width}x{spec.height}, {spec.steps} steps, model {spec.model}"]
    for a, k in zip(spec.axes, plan.uniform_keys):
        extra = f", up to {a.adaptive} adaptive" if a.adaptive else ""
        lines.append(f"  axis {a.name!r} ({a.kind}{', cyclic' if a.cyclic else ''}): {a.count} values "
                     f"{a.values()[0]} .. {a.values()[-1]}, {len(k)} keyframes (densify {a.densify}{extra})")
        if a.kind == "strength":
            starts = [denoise_start(spec.steps, a.position(i)) for i in k]
            if len(set(starts)) < len(starts):
                lines.append(f"  warning: axis {a.name!r}: some strength keyframes run the same number of the "
                             f"{spec.steps} steps (img2img strength is quantised to steps); raise steps or densify")
    for lo in spec.loras:
        how = "weighed by an axis" if lo.name in spec.axis_loras else f"fused at weight {lo.weight:g}"
        lines.append(f"  LoRA {lo.name!r} ({lo.file}): {how}")
    lines.append(f"  {n_keys} keyframes by the full pipeline, {spec.count - n_keys} in-betweens by slerp + decode")
    return "\n".join(lines)
