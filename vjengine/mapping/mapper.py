"""The mapper: one preset bound to one bank's axes; ``step(frame, controls, dt_s)`` -> coordinate + fx.

Layers name axes by index (0..3) or by the bank's axis name. Axes a preset does not drive (or
drives with ``mode = "manual"``) follow the manual value in :class:`Controls`; an OSC/keyboard
override glides over any mapped axis until it is released; a nudge shifts a mapped axis.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vjengine.bank.format import MAX_AXES
from vjengine.mapping.features import FrameAhead
from vjengine.mapping.modes import AxisInfo, ManualSpec, Mode, make_mode
from vjengine.mapping.preset import Preset
from vjengine.mapping.smoothing import cyclic_delta, follow_coefficient


@dataclass
class Controls:
    """The hand-set part of the coordinate, per axis slot; written only by the render thread."""

    manual: np.ndarray = field(default_factory=lambda: np.full(MAX_AXES, 0.5))
    override: np.ndarray = field(default_factory=lambda: np.zeros(MAX_AXES, dtype=bool))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(MAX_AXES))


@dataclass(frozen=True)
class MapOutput:
    coord: tuple[float, ...]  # one 0..1 value per bank axis (cyclic axes wrapped, others clamped)
    fx: dict[str, float]  # effect parameter -> value, from the preset


def wrap_or_clamp(values: np.ndarray, axes: list[AxisInfo]) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    for d, a in enumerate(axes):
        v = out[d] if math.isfinite(out[d]) else 0.5
        out[d] = v - math.floor(v) if a.cyclic else min(max(v, 0.0), 1.0)
    return out


def short_delta(a: np.ndarray, b: np.ndarray, axes: list[AxisInfo]) -> np.ndarray:
    """``b - a`` per axis, the short way round on cyclic axes."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    for i, ax in enumerate(axes):
        if ax.cyclic:
            d[i] = cyclic_delta(d[i])
    return d


class _Layer:
    def __init__(self, spec: Any, slots: list[int | None], mode: Mode) -> None:
        self.spec = spec
        self.slots = slots  # per layer axis: the bank axis slot it drives, or None (bank lacks it)
        self.mode = mode


class Mapper:
    """A preset bound to a bank's axes. Deterministic: same inputs, same outputs."""

    def __init__(self, preset: Preset, axes: list[AxisInfo], previous: "Mapper | None" = None) -> None:
        self.preset = preset
        self.axes = list(axes)
        self.dims = len(self.axes)
        self.layers: list[_Layer] = []
        self.manual_slots = np.ones(self.dims, dtype=bool)
        self.manual_defaults: dict[int, float] = {}
        names = [a.name for a in self.axes]
        for i, spec in enumerate(preset.layers):
            slots: list[int | None] = []
            for ref in spec.axes:
                if isinstance(ref, int):
                    slots.append(ref if ref < self.dims else None)
                else:
                    slots.append(names.index(ref) if ref in names else None)
            layer_axes = [self.axes[s] if s is not None else AxisInfo(str(r), 1) for s, r in zip(slots, spec.axes)]
            mode = None
            if previous is not None and i < len(previous.layers):
                old = previous.layers[i]
                if old.spec == spec and old.slots == slots:
                    mode = old.mode  # same layer on the same axes: keep its phase and followers
            if mode is None:
                mode = make_mode(spec, layer_axes, seed=(preset.seed * 1009 + i) & 0x7FFFFFFF)
            self.layers.append(_Layer(spec, slots, mode))
            if not isinstance(spec, ManualSpec):
                for s in slots:
                    if s is not None:
                        self.manual_slots[s] = False
            else:
                for s in slots:
                    if s is not None:
                        self.manual_defaults[s] = spec.value
        self.fx_modes: dict[str, Mode] = {}
        for j, (param, spec) in enumerate(sorted(preset.fx.items())):
            old_fx = previous.fx_modes.get(param) if previous is not None else None
            if old_fx is not None and old_fx.spec == spec:
                self.fx_modes[param] = old_fx
            else:
                self.fx_modes[param] = make_mode(spec, [AxisInfo(param, 1)], seed=(preset.seed * 7919 + j) & 0x7FFFFFFF)
        self.manual_pos: np.ndarray | None = (
            previous.manual_pos[: self.dims].copy()
            if previous is not None and previous.manual_pos is not None and previous.dims >= self.dims
            else None
        )
        self.override_w = (
            previous.override_w[: self.dims].copy()
            if previous is not None and previous.dims >= self.dims
            else np.zeros(self.dims)
        )
        self.mapped = np.full(self.dims, 0.5)
        self.coord = np.full(self.dims, 0.5)

    def step(self, frame: Any, controls: Controls, dt_s: float) -> MapOutput:
        """Advance every layer by ``dt_s`` seconds of show time and return the new coordinate."""
        mapped = self.mapped.copy()
        for layer in self.layers:
            values = layer.mode.step(frame, dt_s)
            for k, slot in enumerate(layer.slots):
                if slot is not None and k < len(values) and math.isfinite(float(values[k])):
                    mapped[slot] = values[k]
        self.mapped = mapped
        manual_target = controls.manual[: self.dims].astype(np.float64)
        if self.manual_pos is None:
            self.manual_pos = manual_target.copy()
        else:
            k = follow_coefficient(self.preset.glide_ms, dt_s)
            self.manual_pos = self.manual_pos + short_delta(self.manual_pos, manual_target, self.axes) * k
        want = np.where(self.manual_slots | controls.override[: self.dims], 1.0, 0.0)
        k = follow_coefficient(self.preset.glide_ms, dt_s)
        self.override_w = self.override_w + (want - self.override_w) * k
        # an axis that is manual from the start must not glide in from the mapped value
        self.override_w[self.manual_slots] = 1.0
        auto = mapped + controls.offset[: self.dims]
        coord = auto + short_delta(auto, self.manual_pos, self.axes) * self.override_w
        self.coord = wrap_or_clamp(coord, self.axes)
        fx = {}
        for param, mode in self.fx_modes.items():
            v = float(mode.step(frame, dt_s)[0])
            fx[param] = v if math.isfinite(v) else 0.0
        return MapOutput(tuple(float(c) for c in self.coord), fx)

    def predict(self, frame: Any, controls: Controls, times: Sequence[float]) -> list[tuple[float, ...]]:
        """Where the coordinate will be ``times`` seconds from now (increasing) if the audio stayed as
        ``frame``: a copy of this mapper stepped ahead, this one untouched. The streaming residency
        prefetches along it, so a deterministic jump (a saw LFO's wrap, a path's next point) is
        loaded before it happens rather than guessed from the velocity."""
        memo: dict[int, Any] = {id(self.preset): self.preset, id(self.axes): self.axes}
        for layer in self.layers:  # the specs are immutable: share them, copy only the state
            memo[id(layer.spec)] = layer.spec
        ahead = copy.deepcopy(self, memo)
        ahead.fx_modes = {}  # effects do not move the coordinate
        bpm = float(getattr(frame, "bpm", 0.0) or 0.0)  # the clock runs on at its tempo, locked or not
        beats_per_s = bpm / 60.0 if math.isfinite(bpm) and bpm > 0 else 0.0
        out, last = [], 0.0
        for t in times:
            t = max(float(t), last)
            out.append(ahead.step(FrameAhead(frame, beats_per_s * t), controls, t - last).coord)
            last = t
        return out
