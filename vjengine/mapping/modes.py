"""Mapping modes: audio features -> positions on a group of bank axes.

Each mode has a frozen *spec* (the preset's TOML table, validated at load time) and a small runtime
object whose ``step(frame, dt_s) -> np.ndarray`` returns one 0..1 value per axis of its layer. A
runtime holds only what the mode needs between frames (a phase, a follower), is deterministic
(seeded randomness, no clocks, no I/O) and never raises on odd input: the same sequence of
``(AudioFrame, dt_s)`` always gives the same positions, which is what record/replay relies on.

Modes (``mode = ...`` in a ``[[layer]]`` table):

- ``direct``: one feature -> a position, with input range, curve, invert and attack/release.
- ``orbit``: a closed path round the grid (circle, figure8, or listed points); the speed follows a
  feature, so calm music drifts slowly and loud music travels.
- ``kick_morph``: on a kick (or onset/beat) jump toward a random point, the jump's size set by a
  feature (RMS by default), then glide back to rest.
- ``softmax``: the spectrum split into one section per anchor, softmax with a temperature, and the
  weighted average of the anchor points.
- ``beat_step``: one step per beat or bar through a list of points (or the bank's grid cells),
  gliding in phase with the beat clock so each step lands exactly on the beat.
- ``lfo``: sine/triangle/saw/square locked to the beat clock.
- ``manual``: only the keyboard or OSC move it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vjengine.config import check_range, fail, join_key
from vjengine.mapping.features import FEATURES, TRIGGERS, bands, bars_elapsed, beats_elapsed, read_feature
from vjengine.mapping.smoothing import Follower, cyclic_delta, follow_coefficient, smoothstep

AxisRef = int | str
Point = tuple[float, ...]


@dataclass(frozen=True)
class AxisInfo:
    """What a mode needs to know about one bank axis."""

    name: str
    size: int
    cyclic: bool = False

    def cell_position(self, index: int) -> float:
        """The 0..1 coordinate of value ``index`` on this axis (see ``vjengine.bank.grid``)."""
        if self.size <= 1:
            return 0.5
        if self.cyclic:
            return (index % self.size) / self.size
        return min(max(index, 0), self.size - 1) / (self.size - 1)


# ---------------------------------------------------------------------------------------------
# Specs (the TOML schema). Field metadata carries ranges; ``_validate`` does cross-field checks.


def _check_feature(name: str, source: Any, key: str) -> None:
    if name not in FEATURES:
        raise fail(source, key, f"unknown feature {name!r} (known: {', '.join(FEATURES)})")


def _check_points(points: tuple[Point, ...], dims: int, source: Any, key: str, minimum: int) -> None:
    if len(points) < minimum:
        raise fail(source, key, f"needs at least {minimum} points, got {len(points)}")
    for i, p in enumerate(points):
        if dims and len(p) != dims:
            raise fail(source, f"{key}[{i}]", f"must have {dims} values (one per axis), got {len(p)}")
        for j, v in enumerate(p):
            check_range(v, 0.0, 1.0, source, f"{key}[{i}][{j}]")


@dataclass(frozen=True)
class _Shaped:
    """Input shaping shared by the feature-driven modes."""

    def shape(self, x: float) -> float:
        lo, hi = self.in_min, self.in_max  # type: ignore[attr-defined]
        t = (x - lo) / (hi - lo) if hi != lo else 0.0
        t = min(max(t, 0.0), 1.0) ** self.curve  # type: ignore[attr-defined]
        return 1.0 - t if self.invert else t  # type: ignore[attr-defined]

    def _validate_shape(self, source: Any, key: str, feature_field: str = "feature") -> None:
        _check_feature(getattr(self, feature_field), source, join_key(key, feature_field))
        if self.in_max == self.in_min:  # type: ignore[attr-defined]
            raise fail(source, join_key(key, "in_max"), "must differ from in_min")


@dataclass(frozen=True)
class DirectSpec(_Shaped):
    mode: Literal["direct"]
    axes: tuple[AxisRef, ...] = ()
    feature: str = "rms"
    in_min: float = 0.0
    in_max: float = 1.0
    curve: float = field(default=1.0, metadata={"range": (0.05, 20.0)})
    invert: bool = False
    out_min: float = 0.0
    out_max: float = 1.0
    attack_ms: float = field(default=20.0, metadata={"range": (0.0, 60000.0)})
    release_ms: float = field(default=250.0, metadata={"range": (0.0, 60000.0)})

    def _validate(self, source: Any, key: str) -> None:
        self._validate_shape(source, key)


@dataclass(frozen=True)
class OrbitSpec(_Shaped):
    mode: Literal["orbit"]
    axes: tuple[AxisRef, ...] = ()
    shape_kind: Literal["circle", "figure8", "path"] = "circle"
    path: tuple[Point, ...] = ()
    center: Point = ()
    radius: float = field(default=0.35, metadata={"range": (0.0, 1.0)})
    feature: str = "rms"
    in_min: float = 0.0
    in_max: float = 1.0
    curve: float = field(default=1.0, metadata={"range": (0.05, 20.0)})
    invert: bool = False
    speed_hz: float = field(default=0.05, metadata={"range": (-10.0, 10.0)})  # turns/s at feature 1
    base_hz: float = field(default=0.0, metadata={"range": (-10.0, 10.0)})  # turns/s at feature 0
    phase: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    attack_ms: float = field(default=300.0, metadata={"range": (0.0, 60000.0)})
    release_ms: float = field(default=1500.0, metadata={"range": (0.0, 60000.0)})

    def _validate(self, source: Any, key: str) -> None:
        self._validate_shape(source, key)
        if self.shape_kind == "path":
            _check_points(self.path, len(self.axes), source, join_key(key, "path"), 2)
        elif self.path:
            raise fail(source, join_key(key, "path"),
                       f"is only used with shape = \"path\" (shape is {self.shape_kind!r})")
        if self.center:
            _check_points((self.center,), len(self.axes), source, join_key(key, "center"), 1)


@dataclass(frozen=True)
class KickMorphSpec(_Shaped):
    mode: Literal["kick_morph"]
    axes: tuple[AxisRef, ...] = ()
    trigger: str = field(default="kick", metadata={"choices": TRIGGERS})
    feature: str = "rms"  # sets the size of each jump
    in_min: float = 0.0
    in_max: float = 1.0
    curve: float = field(default=1.0, metadata={"range": (0.05, 20.0)})
    invert: bool = False
    amount_min: float = field(default=0.15, metadata={"range": (0.0, 1.0)})
    amount_max: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    rest: Point = ()
    attack_ms: float = field(default=40.0, metadata={"range": (0.0, 10000.0)})
    release_ms: float = field(default=500.0, metadata={"range": (1.0, 60000.0)})  # glide-back time constant
    min_interval_ms: float = field(default=80.0, metadata={"range": (0.0, 10000.0)})

    def _validate(self, source: Any, key: str) -> None:
        self._validate_shape(source, key)
        if self.rest:
            _check_points((self.rest,), len(self.axes), source, join_key(key, "rest"), 1)


@dataclass(frozen=True)
class SoftmaxSpec:
    mode: Literal["softmax"]
    anchors: tuple[Point, ...]
    axes: tuple[AxisRef, ...] = ()
    temperature: float = field(default=0.1, metadata={"range": (1e-3, 100.0)})
    attack_ms: float = field(default=150.0, metadata={"range": (0.0, 60000.0)})
    release_ms: float = field(default=400.0, metadata={"range": (0.0, 60000.0)})
    # > 0: each section competes with its own running mean over this time (what stands out now),
    # so a mix that is always bass-heavy still visits every anchor
    adapt_ms: float = field(default=0.0, metadata={"range": (0.0, 600000.0)})

    def _validate(self, source: Any, key: str) -> None:
        _check_points(self.anchors, len(self.axes), source, join_key(key, "anchors"), 2)


@dataclass(frozen=True)
class BeatStepSpec:
    mode: Literal["beat_step"]
    axes: tuple[AxisRef, ...] = ()
    every: Literal["beat", "bar"] = "beat"
    count: int = field(default=1, metadata={"range": (1, 64)})  # one step every `count` beats or bars
    glide: float = field(default=0.5, metadata={"range": (0.0, 1.0)})  # fraction of a step spent moving
    ease: Literal["linear", "smooth"] = "smooth"
    points: tuple[Point, ...] = ()  # empty: walk the bank's grid cells
    order: Literal["sequence", "random"] = "sequence"

    def _validate(self, source: Any, key: str) -> None:
        if self.points:
            _check_points(self.points, len(self.axes), source, join_key(key, "points"), 2)


@dataclass(frozen=True)
class LfoSpec:
    mode: Literal["lfo"]
    axes: tuple[AxisRef, ...] = ()
    wave: Literal["sine", "triangle", "saw", "square"] = "sine"
    beats: float = field(default=4.0, metadata={"range": (1e-3, 4096.0)})  # period in beats
    phase: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    spread: float = field(default=0.25, metadata={"range": (0.0, 1.0)})  # phase offset between axes
    center: float = 0.5
    depth: float = 0.5
    out_min: float = -1e9
    out_max: float = 1e9


@dataclass(frozen=True)
class ManualSpec:
    mode: Literal["manual"]
    axes: tuple[AxisRef, ...] = ()
    value: float = field(default=0.5, metadata={"range": (0.0, 1.0)})


@dataclass(frozen=True)
class ConstSpec:
    """Effects only: a fixed value."""

    mode: Literal["const"]
    value: float = 0.0


MODE_SPECS: dict[str, type] = {
    "direct": DirectSpec,
    "orbit": OrbitSpec,
    "kick_morph": KickMorphSpec,
    "softmax": SoftmaxSpec,
    "beat_step": BeatStepSpec,
    "lfo": LfoSpec,
    "manual": ManualSpec,
}
FX_MODE_SPECS: dict[str, type] = {"direct": DirectSpec, "lfo": LfoSpec, "const": ConstSpec}

# TOML says `shape`; the dataclass avoids shadowing _Shaped.shape().
RENAMED_KEYS = {"shape": "shape_kind"}


# ---------------------------------------------------------------------------------------------
# Runtimes


def _wave(kind: str, x: float) -> float:
    """A -1..1 waveform of period 1: sine and triangle start at 0 rising, saw ramps from -1 to 1,
    square is +1 for the first half of the period."""
    f = x - math.floor(x)
    if kind == "sine":
        return math.sin(2.0 * math.pi * f)
    if kind == "triangle":
        # 0 at f=0, 1 at 0.25, 0 at 0.5, -1 at 0.75
        return 1.0 - abs(4.0 * ((f + 0.25) % 1.0) - 2.0)
    if kind == "saw":
        return 2.0 * f - 1.0
    return 1.0 if f < 0.5 else -1.0


class Mode:
    """Base runtime: ``step`` returns one value per axis of the layer."""

    def __init__(self, spec: Any, axes: list[AxisInfo], seed: int) -> None:
        self.spec = spec
        self.axes = axes
        self.dims = len(axes)
        self.seed = seed

    def step(self, frame: Any, dt_s: float) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class DirectMode(Mode):
    def __init__(self, spec: DirectSpec, axes: list[AxisInfo], seed: int) -> None:
        super().__init__(spec, axes, seed)
        self.follower = Follower(spec.attack_ms, spec.release_ms)

    def value(self, frame: Any, dt_s: float) -> float:
        s = self.spec
        t = self.follower.step(s.shape(read_feature(frame, s.feature)), dt_s)
        return s.out_min + (s.out_max - s.out_min) * t

    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        return np.full(self.dims, self.value(frame, dt_s))


def _periodic_catmull_rom(points: np.ndarray, p: float) -> np.ndarray:
    """A smooth closed curve through ``points`` [n, D] at parameter ``p`` (period 1)."""
    n = len(points)
    x = (p - math.floor(p)) * n
    i = int(math.floor(x)) % n
    t = x - math.floor(x)
    p0, p1, p2, p3 = points[(i - 1) % n], points[i], points[(i + 1) % n], points[(i + 2) % n]
    t2, t3 = t * t, t * t * t
    return 0.5 * (
        2.0 * p1 + (-p0 + p2) * t + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * t2 + (-p0 + 3.0 * p1 - 3.0 * p2 + p3) * t3
    )


class OrbitMode(Mode):
    def __init__(self, spec: OrbitSpec, axes: list[AxisInfo], seed: int) -> None:
        super().__init__(spec, axes, seed)
        self.phase = spec.phase  # turns
        self.speed = Follower(spec.attack_ms, spec.release_ms)
        self.center = np.array(spec.center if spec.center else (0.5,) * self.dims, dtype=np.float64)
        self.path = np.array(spec.path, dtype=np.float64) if spec.path else None
        self.speed_hz = 0.0

    def position(self, phase: float) -> np.ndarray:
        s = self.spec
        if s.shape_kind == "path" and self.path is not None:
            return _periodic_catmull_rom(self.path, phase)
        a = 2.0 * math.pi * phase
        if s.shape_kind == "circle":
            offs = np.array([math.cos(a - k * math.pi / 2.0) for k in range(self.dims)])
        else:  # figure8: a Lissajous 1:2 curve, the third and fourth axes ride along
            base = [math.sin(a), 0.5 * math.sin(2.0 * a), math.cos(a), 0.5 * math.cos(2.0 * a)]
            offs = np.array(base[: self.dims])
        return self.center + s.radius * offs

    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        s = self.spec
        drive = self.speed.step(s.shape(read_feature(frame, s.feature)), dt_s)
        self.speed_hz = s.base_hz + s.speed_hz * drive
        self.phase = (self.phase + self.speed_hz * dt_s) % 1.0
        return self.position(self.phase)


class KickMorphMode(Mode):
    def __init__(self, spec: KickMorphSpec, axes: list[AxisInfo], seed: int) -> None:
        super().__init__(spec, axes, seed)
        self.rng = np.random.default_rng(seed)
        self.rest = np.array(spec.rest if spec.rest else (0.5,) * self.dims, dtype=np.float64)
        self.pos = self.rest.copy()
        self.start = self.rest.copy()  # where the current jump started
        self.peak = self.rest.copy()  # where it is heading
        self.since_s = math.inf  # time since the last trigger
        self.kicks = 0

    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        s = self.spec
        self.since_s += dt_s
        if read_feature(frame, s.trigger) > 0.5 and self.since_s * 1000.0 >= s.min_interval_ms:
            amount = s.amount_min + (s.amount_max - s.amount_min) * s.shape(read_feature(frame, s.feature))
            target = self.rng.random(self.dims)
            self.start = self.pos.copy()
            self.peak = self.rest + (target - self.rest) * amount
            self.since_s = 0.0
            self.kicks += 1
        attack_s = s.attack_ms / 1000.0
        if self.since_s == math.inf:
            self.pos = self.rest.copy()
        elif self.since_s < attack_s:
            t = smoothstep(self.since_s / attack_s)
            self.pos = self.start + (self.peak - self.start) * t
        else:
            decay = math.exp(-(self.since_s - attack_s) * 1000.0 / s.release_ms)
            self.pos = self.rest + (self.peak - self.rest) * decay
        return self.pos.copy()


def _sections(values: np.ndarray, n: int) -> np.ndarray:
    """Split a spectrum into ``n`` contiguous sections and return each section's mean."""
    if len(values) == 0:
        return np.zeros(n)
    if len(values) < 4 * n:  # too coarse: resample so each section gets several samples
        x = np.linspace(0.0, len(values) - 1.0, 4 * n)
        values = np.interp(x, np.arange(len(values)), values)
    return np.array([chunk.mean() for chunk in np.array_split(values, n)])


class SoftmaxMode(Mode):
    def __init__(self, spec: SoftmaxSpec, axes: list[AxisInfo], seed: int) -> None:
        super().__init__(spec, axes, seed)
        self.anchors = np.array(spec.anchors, dtype=np.float64)[:, : self.dims]
        self.pos: np.ndarray | None = None
        self.weights = np.full(len(self.anchors), 1.0 / len(self.anchors))
        self.mean: np.ndarray | None = None

    def target(self, frame: Any, dt_s: float = 0.0) -> np.ndarray:
        energies = _sections(bands(frame), len(self.anchors))
        if self.spec.adapt_ms > 0.0:
            if self.mean is None:
                self.mean = energies.copy()
            else:
                self.mean += (energies - self.mean) * follow_coefficient(self.spec.adapt_ms, dt_s)
            energies = energies - self.mean
        z = energies / self.spec.temperature
        z = np.exp(z - z.max())
        self.weights = z / z.sum()
        return self.weights @ self.anchors

    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        target = self.target(frame, dt_s)
        if self.pos is None:
            self.pos = target
        else:
            # attack when moving away from the centre of the anchors, release when returning
            centre = self.anchors.mean(axis=0)
            going_out = np.linalg.norm(target - centre) > np.linalg.norm(self.pos - centre)
            k = follow_coefficient(self.spec.attack_ms if going_out else self.spec.release_ms, dt_s)
            self.pos = self.pos + (target - self.pos) * k
        return self.pos.copy()


class BeatStepMode(Mode):
    """Stateless in the beat clock: the position is a function of beats elapsed only."""

    def __init__(self, spec: BeatStepSpec, axes: list[AxisInfo], seed: int) -> None:
        super().__init__(spec, axes, seed)
        self.points = np.array(spec.points, dtype=np.float64)[:, : self.dims] if spec.points else None
        self.sizes = tuple(max(1, a.size) for a in axes)
        self.count = len(self.points) if self.points is not None else int(np.prod(self.sizes, dtype=np.int64))
        self.index = 0

    def _point_at(self, i: int) -> np.ndarray:
        if self.points is not None:
            return self.points[i]
        cell = np.unravel_index(i, self.sizes)  # the bank's grid cells, last axis fastest
        return np.array([self.axes[d].cell_position(int(cell[d])) for d in range(self.dims)], dtype=np.float64)

    def point(self, k: int) -> np.ndarray:
        n = self.count
        if self.spec.order == "random" and n > 1:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, k & 0xFFFFFFFF])
            return self._point_at(int(rng.integers(n)))
        return self._point_at(k % n)

    def steps_elapsed(self, frame: Any) -> float:
        units = bars_elapsed(frame) if self.spec.every == "bar" else beats_elapsed(frame)
        return units / self.spec.count

    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        x = self.steps_elapsed(frame)
        k = int(math.floor(x + 1e-9))
        self.index = k
        frac = x - k
        glide = self.spec.glide
        here = self.point(k)
        if glide <= 0.0 or frac < 1.0 - glide:
            return here.copy()
        # Glide toward the next point during the last `glide` of the step: it lands on the beat.
        t = (frac - (1.0 - glide)) / glide
        if self.spec.ease == "smooth":
            t = smoothstep(t)
        nxt = self.point(k + 1)
        delta = nxt - here
        for d, a in enumerate(self.axes):  # cyclic axes take the short way round
            if a.cyclic:
                delta[d] = cyclic_delta(delta[d])
        return here + delta * t


class LfoMode(Mode):
    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        s = self.spec
        x = beats_elapsed(frame) / s.beats + s.phase
        vals = [s.center + s.depth * _wave(s.wave, x + k * s.spread) for k in range(self.dims)]
        return np.clip(np.array(vals, dtype=np.float64), s.out_min, s.out_max)


class ManualMode(Mode):
    """Values come from the show's controls; the mapper fills them in."""

    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        return np.full(self.dims, self.spec.value)


class ConstMode(Mode):
    def step(self, frame: Any, dt_s: float) -> np.ndarray:
        return np.full(self.dims, self.spec.value)


MODE_RUNTIMES: dict[type, type[Mode]] = {
    DirectSpec: DirectMode,
    OrbitSpec: OrbitMode,
    KickMorphSpec: KickMorphMode,
    SoftmaxSpec: SoftmaxMode,
    BeatStepSpec: BeatStepMode,
    LfoSpec: LfoMode,
    ManualSpec: ManualMode,
    ConstSpec: ConstMode,
}


def make_mode(spec: Any, axes: list[AxisInfo], seed: int) -> Mode:
    return MODE_RUNTIMES[type(spec)](spec, axes, seed)
