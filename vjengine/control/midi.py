"""MIDI in: controllers bound to OSC addresses, MIDI learn, soft takeover.

The ports themselves (choosing one by name, hot-plug, reading python-rtmidi) are
:mod:`vjengine.control.midi_port`'s; with JACK they run in a worker process
(:mod:`vjengine.control.midi_worker`).

- :class:`MidiController`: turns CCs, notes and pitch bend into :class:`Command` values through the
  bindings of a :class:`~vjengine.control.midi_map.MidiMap`, with the OSC server's own argument
  checks and clamping (:func:`~vjengine.control.osc_space.coerce_args`), onto the same queue.
  ``arm(address)`` starts MIDI learn: the next control moved is bound to that address and the map
  file is rewritten (on a thread of its own: the MIDI thread never waits for a disk).
  Soft takeover (``takeover = "pickup"``): a knob whose position does not match the current value
  of its address does nothing until it reaches (or crosses) that value; the render thread publishes
  the current values with :meth:`MidiController.publish_values`.

Nothing here raises into the MIDI thread or the frame loop: garbage bytes are dropped by mido's
parser, SysEx is counted and ignored, every error is logged at a limited rate.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from vjengine.control.commands import Command, CommandQueue
from vjengine.control.midi_map import (
    Binding,
    MidiMap,
    address_space,
    apply_curve,
    save_map,
    value_range,
)
from vjengine.control.midi_port import RateLog
from vjengine.control.osc_space import IGNORED, ArgError, coerce_args
from vjengine.errors import ConfigError

log = logging.getLogger(__name__)

PICKUP_TOLERANCE = 0.03  # of the binding's range: a knob this close to the value picks it up
RELEASE_AFTER_S = 0.3  # a value someone else changed (OSC, a preset) releases a knob after this long
CLOCK_TYPES = frozenset({"clock", "start", "stop", "continue", "songpos"})
DEFAULT_LEARN_FILE = "vj-midi.toml"


@dataclass
class _State:
    """Per-binding state, touched only by the MIDI thread."""

    last_x: float | None = None  # last raw control position 0..1
    toggled: bool = False
    last_sent: Any = None
    sent_at: float = -1e9
    picked: bool = False


class MidiController:
    """Bindings -> commands; learn; soft takeover (module docstring)."""

    def __init__(self, midi_map: MidiMap, queue: CommandQueue, *, map_path: str | Path | None = None,
                 time_fn: Callable[[], float] = time.perf_counter) -> None:
        self.queue = queue
        self.time_fn = time_fn
        self.map_path = Path(map_path) if map_path is not None else midi_map.path
        self.space = address_space()
        self.clock_listener: Callable[[Any, float], None] | None = None
        self.armed: str | None = None
        self.learned: list[Binding] = []
        self.saves = 0
        self.save_error: str | None = None
        self._values: dict[str, float] = {}
        self._saving = threading.Lock()
        self.stats = {"messages": 0, "applied": 0, "sysex": 0, "unbound": 0, "waiting": 0, "rejected": 0,
                      "clamped": 0}
        self.waiting: dict[str, tuple[float, float]] = {}  # address -> (knob, value) while not picked up
        self._rate = RateLog()
        self.set_map(midi_map)

    # ------------------------------------------------------------------ bindings
    def set_map(self, midi_map: MidiMap) -> None:
        table: dict[tuple[str, int | None], list[tuple[Binding, Any, _State]]] = {}
        for b in midi_map.bindings:
            routes = self.space.resolve(b.address)
            if not routes:
                raise ConfigError(f"MIDI map: unknown address {b.address!r}")
            table.setdefault(b.control, []).append((b, routes[0], _State()))
        self.map = midi_map
        self._table = table  # swapped whole: the MIDI thread reads it without a lock

    def publish_values(self, values: dict[str, float]) -> None:
        """Current values of bound addresses, in address units (render thread, every few frames)."""
        self._values = values

    @property
    def addresses(self) -> list[str]:
        return sorted({b.address for b in self.map.bindings})

    # ------------------------------------------------------------------ learn
    def arm(self, address: str | None) -> bool:
        """Arm learn for ``address`` ("" or None disarms); False (logged) for an address that cannot be bound."""
        if not address:
            if self.armed:
                log.info("MIDI learn: disarmed")
            self.armed = None
            return True
        from vjengine.control.midi_map import resolve_address  # noqa: PLC0415

        try:
            resolve_address(address, "MIDI learn", "address")
        except ConfigError as exc:
            log.warning("%s", exc)
            return False
        self.armed = address
        log.info("MIDI learn: move a control to bind it to %s", address)
        return True

    def _learn(self, kind: str, number: int | None, channel: int) -> None:
        address, self.armed = self.armed, None
        spec = self.space.resolve(address)[0].spec
        kwargs: dict[str, Any] = {"address": address, "channel": channel}
        if kind == "cc":
            kwargs["cc"] = number
        elif kind == "note":
            kwargs["note"] = number
            if spec.arg == "name_or_index":
                kwargs["value"] = 0
        else:
            kwargs["pitchbend"] = True
        if spec.arg != "float" or kind == "note":
            kwargs["takeover"] = "jump"
        b = Binding(**kwargs)
        new_map = self.map.with_binding(b)
        self.set_map(new_map)
        self.learned.append(b)
        path = self.map_path or Path(DEFAULT_LEARN_FILE)
        log.info("MIDI learn: %s (saving to %s)", b.describe(), path)
        threading.Thread(target=self._save, args=(new_map, path), name="midi-learn-save", daemon=True).start()

    def _save(self, m: MidiMap, path: Path) -> None:
        with self._saving:
            try:
                save_map(self.map, path)  # the newest map (a second learn may have followed)
                self.map_path = path
                self.saves += 1
                self.save_error = None
            except Exception as exc:  # noqa: BLE001
                self.save_error = f"{path}: {exc}"
                log.error("MIDI learn: could not write %s: %s", path, exc)

    # ------------------------------------------------------------------ messages (MIDI thread)
    def handle(self, msg: Any, t: float) -> None:
        kind_ = msg.type
        self.stats["messages"] += 1
        if kind_ in CLOCK_TYPES:
            if self.clock_listener is not None:
                self.clock_listener(msg, t)
            return
        if kind_ == "sysex":
            self.stats["sysex"] += 1
            return
        if kind_ == "control_change":
            ctl, number, x, on = "cc", msg.control, msg.value / 127.0, None
        elif kind_ == "note_on" or kind_ == "note_off":
            on = kind_ == "note_on" and msg.velocity > 0
            ctl, number, x = "note", msg.note, msg.velocity / 127.0
        elif kind_ == "pitchwheel":
            ctl, number, x, on = "pitchbend", None, (msg.pitch + 8192) / 16383.0, None
        else:
            return
        channel = msg.channel + 1
        if self.armed is not None and on is not False:
            self._learn(ctl, number, channel)
            return
        entries = self._table.get((ctl, number))
        if not entries:
            self.stats["unbound"] += 1
            return
        for b, route, st in entries:
            if b.channel is not None and b.channel != channel:
                continue
            try:
                self._apply(b, route, st, x, on, t)
            except Exception as exc:  # noqa: BLE001
                self._rate.warning(b.address, "MIDI %s: %r", b.describe(), exc)

    def _apply(self, b: Binding, route: Any, st: _State, x: float, on: bool | None, t: float) -> None:
        spec = route.spec
        if b.invert:
            x = 1.0 - x
        prev_x, st.last_x = st.last_x, x
        arg = spec.arg
        value: Any
        if arg == "trigger":
            if on is None:  # a CC fires when it rises past the middle
                if not (x >= 0.5 and (prev_x is None or prev_x < 0.5)):
                    return
            elif not on:
                return
            value = 1.0
        elif arg == "bool":
            if on is None:
                state = x >= 0.5
                if prev_x is not None and (prev_x >= 0.5) == state:
                    return
            elif b.mode == "momentary":
                state = on
            else:
                if not on:
                    return
                st.toggled = not st.toggled
                state = st.toggled
            value = 1.0 if state else 0.0
        elif arg in ("name_or_index", "string"):
            if on is not None:
                if not on:
                    return
                value = b.value
            else:
                lo, hi = value_range(b, spec)
                value = float(round(lo + (hi - lo) * apply_curve(b.curve, x)))
                if value == st.last_sent:
                    return
        else:  # float
            lo, hi = value_range(b, spec)
            if on is not None:
                if b.value is not None:
                    if not on:
                        return
                    value = float(b.value)
                elif b.mode == "momentary":
                    value = hi if on else lo
                else:
                    if not on:
                        return
                    value = lo + (hi - lo) * apply_curve(b.curve, x)
            else:
                value = lo + (hi - lo) * apply_curve(b.curve, x)
                if b.takeover == "pickup" and not self._picked_up(b, st, value, prev_x, lo, hi, t):
                    return
        tag = "s" if isinstance(value, str) else "f"
        try:
            coerced, clamped = coerce_args(spec, b.address, tag, [value])
        except ArgError as exc:
            self.stats["rejected"] += 1
            self._rate.warning(f"reject {b.address}", "MIDI %s: %s", b.describe(), exc)
            return
        if coerced is IGNORED:
            return
        self.stats["clamped"] += bool(clamped)
        st.last_sent = value
        st.sent_at = t
        if self.queue.put(Command(spec.kind, route.target, coerced, source="midi", received_s=t)):
            self.stats["applied"] += 1

    def _picked_up(self, b: Binding, st: _State, value: float, prev_x: float | None, lo: float, hi: float,
                   t: float) -> bool:
        current = self._values.get(b.address)
        if current is None:
            return True  # nothing known about the value: the knob rules
        tol = PICKUP_TOLERANCE * abs(hi - lo)
        if st.picked:
            # someone else (OSC, a cue, a preset) moved the value since we last set it: wait again
            if isinstance(st.last_sent, float) and abs(current - st.last_sent) > 2 * tol \
                    and t - st.sent_at > RELEASE_AFTER_S:
                st.picked = False
            else:
                return True
        prev_value = None if prev_x is None else lo + (hi - lo) * apply_curve(b.curve, prev_x)
        crossed = prev_value is not None and (prev_value - current) * (value - current) <= 0
        if abs(value - current) <= tol or crossed:
            st.picked = True
            self.waiting.pop(b.address, None)
            return True
        self.stats["waiting"] += 1
        self.waiting[b.address] = (value, current)
        return False

    # ------------------------------------------------------------------ HUD
    def hud_line(self) -> str:
        s = self.stats
        text = f"MIDI {s['applied']} applied"
        if self.armed:
            text += f", LEARN armed: {self.armed} (move a control)"
        elif self.learned:
            text += f", learned {self.learned[-1].describe()}"
        if self.waiting:
            addr, (knob, cur) = next(iter(self.waiting.items()))
            text += f", takeover {addr}: knob {knob:.2f} -> {cur:.2f}"
        if s["sysex"]:
            text += f", {s['sysex']} SysEx ignored"
        if self.save_error:
            text += f", NOT SAVED: {self.save_error}"
        return text


def show_values(show: Any, frame: Any, addresses: Iterable[str]) -> dict[str, float]:
    """Current values of ``addresses`` in address units, read on the render thread (for soft takeover)."""
    from vjengine.effects import FX_CONTROLS  # noqa: PLC0415

    out: dict[str, float] = {}
    last = getattr(show, "last", None)
    for address in addresses:
        try:
            parts = address.strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["vj", "axis"]:
                slot = show.axis_slot(parts[2])
                if slot is None:
                    continue
                c = show.controls
                if c.override[slot]:
                    out[address] = float(c.manual[slot])
                elif last is not None:
                    out[address] = float(last.coord[slot])
            elif len(parts) == 4 and parts[:2] == ["vj", "fx"]:
                spec = FX_CONTROLS.get(f"{parts[2]}.{parts[3]}")
                if spec is None:
                    continue
                name, lo, hi, _ = spec
                v = show.fx_overrides.get(name)
                if v is None and last is not None:
                    v = last.fx.get(name)
                if v is not None and hi != lo:
                    out[address] = (float(v) - lo) / (hi - lo)
            elif address == "/vj/intensity":
                out[address] = float(show.intensity)
            elif address == "/vj/crossfade":
                out[address] = float(show.crossfade_s)
            elif address == "/vj/bpm" and frame is not None:
                out[address] = float(frame.bpm)
        except Exception:  # noqa: BLE001 - best effort: an unknown value means no takeover
            continue
    return out
