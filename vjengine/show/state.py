"""The show's state: applies :class:`Command` values and turns each AudioFrame into what to draw.

Only the render thread touches a :class:`ShowState`. ``apply(cmd, frame)`` never raises (a bad
command is logged once per kind of problem and ignored); ``update(frame, dt_s)`` maps the audio to
a :class:`FrameState` (bank, coordinate, effects, crossfade). Everything here is deterministic in
``(commands per frame, AudioFrames, dt)``: record/replay depends on it.

Bank switches wait for the next beat or bar (``quantize``), then crossfade over ``crossfade_s``;
preset switches glide the coordinate over the new preset's ``switch_ms`` (or ``crossfade_s`` once a
``crossfade`` command has set it).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from vjengine.bank.format import MAX_AXES
from vjengine.control.commands import Command
from vjengine.effects import resolve_override
from vjengine.logonce import LogOnce
from vjengine.mapping.features import bars_elapsed, beats_elapsed
from vjengine.mapping.mapper import Controls, Mapper, short_delta, wrap_or_clamp
from vjengine.mapping.modes import AxisInfo
from vjengine.mapping.preset import PresetLibrary
from vjengine.mapping.smoothing import smoothstep

log = logging.getLogger(__name__)

Quantize = Literal["none", "beat", "bar"]
QUANTIZE_TIMEOUT_S = 8.0  # with no beat clock, a pending bank switch happens after this anyway
NUDGE_STEP = 0.02


@dataclass(frozen=True)
class BankEntry:
    """A bank of the set as the show sees it (the renderer owns the pixels)."""

    name: str
    axes: tuple[AxisInfo, ...]
    path: Path | None = None
    preset: str | None = None  # preset to switch to with this bank (setlist), or None

    @classmethod
    def from_bank(cls, bank: Any, name: str | None = None, preset: str | None = None) -> "BankEntry":
        axes = tuple(AxisInfo(str(a.name), int(a.size), bool(a.cyclic)) for a in bank.axes)
        path = Path(bank.path) if getattr(bank, "path", None) else None
        return cls(name or (path.name if path else "bank"), axes, path, preset)


@dataclass(frozen=True)
class FrameState:
    """What the renderer draws this frame."""

    bank: int
    coord: tuple[float, ...]
    fx: Mapping[str, float]  # effect parameter -> value (preset mapping, then overrides)
    from_bank: int | None = None  # outgoing bank during a crossfade
    from_coord: tuple[float, ...] = ()
    mix: float = 1.0  # 0 = all outgoing bank, 1 = all current bank
    blackout: bool = False
    intensity: float = 1.0


class ShowState:
    """Banks, presets, manual controls, effects overrides and switches of one show."""

    def __init__(
        self,
        banks: list[BankEntry],
        presets: PresetLibrary,
        *,
        preset: int = 0,
        bank: int = 0,
        crossfade_s: float = 2.0,
        quantize: Quantize = "bar",
        audio: Any = None,
    ) -> None:
        if not banks:
            raise ValueError("a show needs at least one bank")
        if len(presets) == 0:
            raise ValueError("a show needs at least one preset")
        self.banks = list(banks)
        self.presets = presets
        self.audio = audio  # receives tap / set_bpm / resync (None in replay: frames already carry them)
        self.crossfade_s = float(crossfade_s)
        self.crossfade_set = False  # True once a `crossfade` command chose the time
        self.quantize: Quantize = quantize
        self.controls = Controls()
        self.fx_overrides: dict[str, float] = {}  # Effects field -> value in its units
        self.intensity = 1.0
        self.blackout = False
        self.bank_index = min(max(bank, 0), len(banks) - 1)
        self.preset_index = min(max(preset, 0), len(presets) - 1)
        self.mapper = self._new_mapper(self.bank_index)
        self._seed_manual(self.mapper)
        # bank crossfade
        self.pending_bank: int | None = None
        self.pending_since_s = 0.0
        self.from_bank: int | None = None
        self.from_mapper: Mapper | None = None
        self.xfade_elapsed_s = 0.0
        self.xfade_total_s = 0.0
        # preset glide
        self.glide_from: np.ndarray | None = None
        self.glide_elapsed_s = 0.0
        self.glide_total_s = 0.0
        self._last_units: tuple[float, float] | None = None  # (beats, bars) of the previous frame
        self.requests: list[str] = []  # "fullscreen", "hud", "quit": for the app, drained by it
        # kind -> callable(cmd) for the kinds other parts own (clock_source, midi_learn: vjengine.sync.live);
        # none in a replay, whose frames already carry what they did
        self.handlers: dict[str, Any] = {}
        self.status_replies: list[Any] = []  # reply addresses of `status` commands
        self.time_s = 0.0  # show time: the sum of dt
        self.frames = 0
        self.last: FrameState | None = None
        self.errors = LogOnce(log)  # each distinct problem logged once
        self._status: Mapping[str, Any] = MappingProxyType({})
        self._preset_generation = presets.generation

    # ---- helpers

    def _new_mapper(self, bank_index: int, previous: Mapper | None = None) -> Mapper:
        return Mapper(self.presets[self.preset_index], list(self.banks[bank_index].axes), previous)

    def _seed_manual(self, mapper: Mapper) -> None:
        for slot, value in mapper.manual_defaults.items():
            if not self.controls.override[slot]:
                self.controls.manual[slot] = value

    def _warn(self, msg: str) -> None:
        """Log a problem once per distinct message (the frame loop must not flood the log)."""
        self.errors.warning(msg, "%s", msg)

    def axis_slot(self, target: Any) -> int | None:
        """An axis of the current bank by name or index (``"1"`` or ``1``)."""
        axes = self.banks[self.bank_index].axes
        names = [a.name for a in axes]
        if isinstance(target, str) and target in names:
            return names.index(target)
        try:
            i = int(str(target))
        except ValueError:
            return None
        return i if 0 <= i < len(axes) else None

    def find_bank(self, ref: Any) -> int | None:
        if isinstance(ref, bool):
            return None
        if isinstance(ref, (int, float)):
            i = int(ref)
            return i if 0 <= i < len(self.banks) else None
        ref_s = str(ref).strip()
        for i, b in enumerate(self.banks):
            if ref_s == b.name or ref_s.lower() == b.name.lower():
                return i
        if ref_s.lstrip("-").isdigit():
            return self.find_bank(int(ref_s))
        return None

    @property
    def current_preset(self):
        return self.presets[self.preset_index]

    @property
    def axes(self) -> tuple[AxisInfo, ...]:
        return self.banks[self.bank_index].axes

    # ---- commands

    def apply(self, cmd: Command, frame: Any = None) -> None:
        """Apply one command. Never raises: a bad command is logged (once per message) and ignored."""
        try:
            self._apply(cmd)
        except Exception as exc:  # noqa: BLE001 - the show goes on
            self._warn(f"command {cmd.kind} {cmd.target!r} {cmd.value!r} from {cmd.source or '?'} ignored: {exc}")

    def _apply(self, cmd: Command) -> None:
        kind, target, value = cmd.kind, cmd.target, cmd.value
        if kind in ("axis", "axis_release", "axis_nudge"):
            slot = self.axis_slot(target)
            if slot is None:
                self._warn(f"{kind}: no axis {target!r} in bank {self.banks[self.bank_index].name!r}")
                return
            c = self.controls
            if kind == "axis":
                v = float(value)
                if not math.isfinite(v):
                    raise ValueError("not a finite number")
                c.manual[slot] = min(max(v, 0.0), 1.0) if not self.axes[slot].cyclic else v % 1.0
                c.override[slot] = True
            elif kind == "axis_release":
                c.override[slot] = False
                c.offset[slot] = 0.0
                # a manual axis keeps its value; a mapped one goes back to the mapping
            else:
                delta = NUDGE_STEP if value is None else float(value)
                if not math.isfinite(delta):
                    raise ValueError("not a finite number")
                if c.override[slot] or self.mapper.manual_slots[slot]:
                    v = c.manual[slot] + delta
                    c.manual[slot] = v % 1.0 if self.axes[slot].cyclic else min(max(v, 0.0), 1.0)
                else:
                    c.offset[slot] = min(max(c.offset[slot] + delta, -1.0), 1.0)
        elif kind == "preset":
            i = self.presets.find(value)
            if i is None:
                self._warn(f"preset: no preset {value!r} (have {', '.join(p.key for p in self.presets.presets)})")
                return
            self.switch_preset(i)
        elif kind == "bank":
            i = self.find_bank(value)
            if i is None:
                self._warn(f"bank: no bank {value!r} (have {', '.join(b.name for b in self.banks)})")
                return
            self.request_bank(i)
        elif kind == "fx":
            v = float(value)
            if not math.isfinite(v):
                raise ValueError("not a finite number")
            resolved = resolve_override(str(target), v)
            if resolved is None:
                self._warn(f"fx: no effect parameter {target!r}")
                return
            self.fx_overrides[resolved[0]] = resolved[1]
        elif kind == "intensity":
            v = float(value)
            if not math.isfinite(v):
                raise ValueError("not a finite number")
            self.intensity = min(max(v, 0.0), 1.0)
        elif kind == "blackout":
            self.blackout = (not self.blackout) if value is None else bool(value)
        elif kind == "crossfade":
            v = float(value)
            if not math.isfinite(v) or v < 0:
                raise ValueError("must be a non-negative number of seconds")
            self.crossfade_s = min(v, 60.0)
            self.crossfade_set = True
        elif kind in ("tap", "bpm", "resync"):
            if self.audio is None:
                return
            if kind == "tap":
                self.audio.tap()
            elif kind == "bpm":
                bpm = float(value)
                if not math.isfinite(bpm) or bpm <= 0:
                    raise ValueError("must be a positive number of BPM")
                self.audio.set_bpm(bpm)
            else:
                self.audio.resync()
        elif kind == "status":
            self.status_replies.append(value)
        elif kind in ("fullscreen", "hud", "quit"):
            self.requests.append(kind)
        elif kind in self.handlers:
            self.handlers[kind](cmd)

    def switch_preset(self, index: int) -> None:
        """Switch preset now; the coordinate glides from where it is."""
        if index == self.preset_index and self.presets.generation == self._preset_generation:
            return
        self.preset_index = index
        self._rebuild_mappers(glide=True)

    def _rebuild_mappers(self, glide: bool) -> None:
        old = self.mapper
        if glide and self.last is not None:
            self.glide_from = np.array(self.last.coord, dtype=np.float64)
            self.glide_elapsed_s = 0.0
            p = self.presets[self.preset_index]
            self.glide_total_s = self.crossfade_s if self.crossfade_set else p.switch_ms / 1000.0
        self.mapper = self._new_mapper(self.bank_index, previous=old)
        self._seed_manual(self.mapper)
        if self.from_mapper is not None and self.from_bank is not None:
            self.from_mapper = self._new_mapper(self.from_bank, previous=self.from_mapper)
        self._preset_generation = self.presets.generation

    def request_bank(self, index: int) -> None:
        """Switch bank at the next beat or bar (``quantize``), with a crossfade."""
        if index == self.bank_index and self.pending_bank is None:
            return
        self.pending_bank = index
        self.pending_since_s = self.time_s
        if self.quantize == "none":
            self._start_bank_switch()

    def _start_bank_switch(self) -> None:
        index = self.pending_bank
        self.pending_bank = None
        if index is None or index == self.bank_index:
            return
        self.from_bank = self.bank_index
        self.from_mapper = self.mapper
        self.bank_index = index
        entry = self.banks[index]
        if entry.preset is not None:
            i = self.presets.find(entry.preset)
            if i is not None:
                self.preset_index = i
        self.mapper = self._new_mapper(index, previous=None)
        self._seed_manual(self.mapper)
        self.controls.override[:] = False
        self.controls.offset[:] = 0.0
        self.xfade_elapsed_s = 0.0
        self.xfade_total_s = self.crossfade_s
        log.info("bank switch: %s -> %s over %.2f s", self.banks[self.from_bank].name, entry.name, self.crossfade_s)

    def presets_changed(self) -> None:
        """Call after a hot reload changed presets: rebind the mappers (keeping what did not change)."""
        self._rebuild_mappers(glide=False)

    # ---- per frame

    def _boundary_crossed(self, frame: Any) -> bool:
        units = (beats_elapsed(frame), bars_elapsed(frame))
        prev, self._last_units = self._last_units, units
        if self.quantize == "beat":
            if getattr(frame, "beat", False):
                return True
            return prev is not None and math.floor(units[0]) > math.floor(prev[0])
        if getattr(frame, "bar", False):
            return True
        return prev is not None and math.floor(units[1]) > math.floor(prev[1])

    def update(self, frame: Any, dt_s: float) -> FrameState:
        """Advance the show by ``dt_s`` seconds with this frame's audio; never raises."""
        try:
            state = self._update(frame, dt_s)
        except Exception as exc:  # noqa: BLE001
            self._warn(f"mapping failed, keeping the last good frame: {exc!r}")
            state = self.last or FrameState(self.bank_index, tuple(0.5 for _ in self.axes), {})
        self.last = state
        return state

    def _update(self, frame: Any, dt_s: float) -> FrameState:
        dt_s = float(dt_s) if math.isfinite(dt_s) and dt_s > 0 else 0.0
        self.time_s += dt_s
        self.frames += 1
        crossed = self._boundary_crossed(frame)
        if self.pending_bank is not None and (
            crossed or self.time_s - self.pending_since_s >= QUANTIZE_TIMEOUT_S
        ):
            self._start_bank_switch()
        out = self.mapper.step(frame, self.controls, dt_s)
        coord = np.array(out.coord, dtype=np.float64)
        axes = list(self.axes)
        if self.glide_from is not None and len(self.glide_from) == len(coord):
            self.glide_elapsed_s += dt_s
            t = 1.0 if self.glide_total_s <= 0 else min(self.glide_elapsed_s / self.glide_total_s, 1.0)
            t = smoothstep(t)
            coord = wrap_or_clamp(self.glide_from + short_delta(self.glide_from, coord, axes) * t, axes)
            if t >= 1.0:
                self.glide_from = None
        else:
            self.glide_from = None
        from_bank, from_coord, mix = None, (), 1.0
        if self.from_bank is not None and self.from_mapper is not None:
            self.xfade_elapsed_s += dt_s
            mix = 1.0 if self.xfade_total_s <= 0 else min(self.xfade_elapsed_s / self.xfade_total_s, 1.0)
            if mix >= 1.0:
                self.from_bank, self.from_mapper = None, None
                mix = 1.0
            else:
                from_out = self.from_mapper.step(frame, Controls(), dt_s)
                from_bank, from_coord = self.from_bank, from_out.coord
        fx = dict(out.fx)
        fx.update(self.fx_overrides)
        return FrameState(
            bank=self.bank_index,
            coord=tuple(float(c) for c in coord),
            fx=MappingProxyType(fx),
            from_bank=from_bank,
            from_coord=tuple(from_coord),
            mix=float(mix),
            blackout=self.blackout,
            intensity=self.intensity,
        )

    def heading(self, frame: Any, times: Sequence[float]) -> list[tuple[float, ...]]:
        """Where the shown bank's coordinate will be ``times`` seconds from now with the audio as
        ``frame`` (the mapper looked ahead; a preset glide in progress is not included)."""
        return self.mapper.predict(frame, self.controls, times)

    # ---- status (read from other threads: an immutable snapshot swapped in whole)

    def publish_status(self, frame: Any = None, extra: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        last = self.last
        axes = self.axes
        status: dict[str, Any] = {
            "preset": self.current_preset.name,
            "preset_index": self.preset_index,
            "bank": self.banks[self.bank_index].name,
            "bank_index": self.bank_index,
            "blackout": self.blackout,
            "intensity": self.intensity,
            "crossfade": self.crossfade_s,
            "coord": {a.name: (last.coord[i] if last and i < len(last.coord) else 0.5) for i, a in enumerate(axes)},
            "override": {a.name: bool(self.controls.override[i]) for i, a in enumerate(axes) if i < MAX_AXES},
            "fx": dict(self.fx_overrides),
            "frames": self.frames,
            "time_s": self.time_s,
        }
        if self.pending_bank is not None:
            status["pending_bank"] = self.banks[self.pending_bank].name
        if frame is not None:
            status["bpm"] = float(getattr(frame, "bpm", 0.0))
            status["locked"] = bool(getattr(frame, "locked", False))
            status["input"] = str(getattr(frame, "input_status", ""))
        errors = self.presets.errors
        if errors:
            status["preset_errors"] = errors
        if extra:
            status.update(extra)
        self._status = MappingProxyType(status)
        return self._status

    def status(self) -> Mapping[str, Any]:
        """The latest published snapshot (thread-safe: an immutable mapping replaced whole)."""
        return self._status

    def hud_lines(self) -> list[str]:
        """Status lines for the HUD: preset, bank, switches, preset errors."""
        bank = self.banks[self.bank_index].name
        lines = [f"preset {self.preset_index + 1}: {self.current_preset.name}   bank: {bank}"]
        if self.pending_bank is not None:
            lines.append(f"bank -> {self.banks[self.pending_bank].name} on next {self.quantize}")
        if self.from_bank is not None:
            lines.append(f"crossfade from {self.banks[self.from_bank].name}")
        if self.blackout:
            lines.append("BLACKOUT")
        overridden = [a.name for i, a in enumerate(self.axes) if i < MAX_AXES and self.controls.override[i]]
        if overridden:
            lines.append("manual: " + ", ".join(overridden))
        for err in self.presets.errors:
            lines.append("PRESET ERROR: " + err)
        return lines

