"""MIDI mapping files (``--midi-map FILE``): which control drives which OSC address, and how.

One vocabulary: a binding names an address of the OSC address space (``docs/osc.md``), and a MIDI
value becomes that address's argument, then goes through the same validation and clamping
(:func:`~vjengine.control.osc_space.coerce_args`) into the same command queue. A file::

    device = "APC"                 # optional: the input port (name substring) when --midi-in is not given

    [[bind]]
    cc = 48                        # one of: cc = 0..127, note = 0..127, pitchbend = true
    channel = 1                    # 1..16; omitted: any channel
    address = "/vj/axis/warp"
    curve = "linear"               # linear, exp (fine at the low end), log (fine at the top), scurve
    range = [0.2, 0.8]             # in the address's units; default: its whole range
    invert = false
    takeover = "pickup"            # pickup (soft takeover: wait until the knob meets the value) or jump

    [[bind]]
    note = 36
    address = "/vj/preset"
    value = "calm"                 # what a note sends to a name/index address (or a fixed number)

Notes on an on/off address (``/vj/blackout``) toggle (``mode = "toggle"``, the default) or hold
(``mode = "momentary"``); on a trigger (``/vj/tap``) each note-on fires; on a number they send the
velocity through the curve and range, or ``value``. A CC on a trigger fires when it rises past the
middle (a button's 127), on an on/off address it switches at the middle, on a name/index address it
picks ``round`` of the range (default 0..9).

Loading errors name the file and the key (``map.toml: bind[2].cc: must be in [0, 127], got 200``)
and exit 2, as presets do: unknown keys and addresses, values out of range, a control bound twice.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from vjengine.config import build, fail, load_toml, parse_toml
from vjengine.control.osc_space import AddressSpace, OscInput
from vjengine.errors import ConfigError

CURVES = ("linear", "exp", "log", "scurve")
TAKEOVERS = ("pickup", "jump")
NOTE_MODES = ("auto", "toggle", "momentary")
BINDABLE_ARGS = ("float", "bool", "trigger", "name_or_index", "string")
DEFAULT_INDEX_RANGE = (0.0, 9.0)
_TOP_KEYS = ("device", "bind")


def address_space() -> AddressSpace:
    """Addresses a binding may name: any well-formed axis name (banks differ), the show's effects."""
    from vjengine.effects import osc_fx_names  # noqa: PLC0415

    return AddressSpace(None, osc_fx_names())


@dataclass(frozen=True)
class Binding:
    """One control -> one address (see the module docstring for the keys)."""

    address: str
    cc: int | None = field(default=None, metadata={"range": (0, 127)})
    note: int | None = field(default=None, metadata={"range": (0, 127)})
    pitchbend: bool = False
    channel: int | None = field(default=None, metadata={"range": (1, 16)})
    curve: str = field(default="linear", metadata={"choices": CURVES})
    range: tuple[float, float] | None = None
    invert: bool = False
    takeover: str = field(default="pickup", metadata={"choices": TAKEOVERS})
    mode: str = field(default="auto", metadata={"choices": NOTE_MODES})
    value: float | str | None = None

    @property
    def control(self) -> tuple[str, int | None]:
        """``("cc", n)``, ``("note", n)`` or ``("pitchbend", None)``."""
        if self.cc is not None:
            return "cc", self.cc
        if self.note is not None:
            return "note", self.note
        return "pitchbend", None

    def describe(self) -> str:
        kind, number = self.control
        ch = f" ch {self.channel}" if self.channel else ""
        return f"{kind}{'' if number is None else ' ' + str(number)}{ch} -> {self.address}"

    def _validate(self, source: Any, key: str) -> None:
        chosen = [k for k in ("cc", "note") if getattr(self, k) is not None] + (["pitchbend"] if self.pitchbend else [])
        if len(chosen) != 1:
            raise fail(source, key, "needs exactly one of cc = 0..127, note = 0..127, pitchbend = true"
                       + (f" (got {', '.join(chosen)})" if chosen else ""))
        spec = resolve_address(self.address, source, f"{key}.address")
        lo, hi = value_range(self, spec)
        if self.range is not None:
            if spec.lo is not None and (min(self.range) < spec.lo or max(self.range) > spec.hi):
                raise fail(source, f"{key}.range", f"must be within {spec.lo:g}..{spec.hi:g} for {self.address}, "
                           f"got {list(self.range)}")
            if not all(math.isfinite(v) for v in self.range):
                raise fail(source, f"{key}.range", "must be finite")
        if spec.arg == "name_or_index" and self.note is not None and self.value is None:
            raise fail(source, f"{key}.value", f"is required for {self.address} on a note (a name or an index)")
        if spec.arg == "string" and self.value is None:
            raise fail(source, f"{key}.value", f"is required for {self.address} (the text to send)")
        if isinstance(self.value, float) and spec.lo is not None and not spec.lo <= self.value <= spec.hi:
            raise fail(source, f"{key}.value", f"must be within {spec.lo:g}..{spec.hi:g} for {self.address}, "
                       f"got {self.value:g}")
        if isinstance(self.value, str) and spec.arg in ("float", "bool", "trigger"):
            raise fail(source, f"{key}.value", f"{self.address} takes a number, got {self.value!r}")
        del lo, hi


def resolve_address(address: Any, source: Any, key: str) -> OscInput:
    """The declaration of a concrete, bindable address; ConfigError naming the key otherwise."""
    if not isinstance(address, str) or not address.startswith("/"):
        raise fail(source, key, f"must be an OSC address like /vj/axis/warp, got {address!r}")
    if any(c in address for c in "*?[]{}"):
        raise fail(source, key, f"must be one address, not a pattern: {address!r}")
    routes = address_space().resolve(address)
    if not routes:
        raise fail(source, key, f"unknown address {address!r} (see docs/osc.md)")
    spec = routes[0].spec
    if spec.arg not in BINDABLE_ARGS:
        raise fail(source, key, f"{address} cannot be bound to a MIDI control")
    return spec


def value_range(b: Binding, spec: OscInput) -> tuple[float, float]:
    """The range a control's 0..1 is mapped onto (address units)."""
    if b.range is not None:
        return float(b.range[0]), float(b.range[1])
    if spec.arg == "name_or_index":
        return DEFAULT_INDEX_RANGE
    if spec.lo is not None:
        return float(spec.lo), float(spec.hi)
    return 0.0, 1.0


def apply_curve(curve: str, x: float) -> float:
    x = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
    if curve == "exp":
        return x * x
    if curve == "log":
        return math.sqrt(x)
    if curve == "scurve":
        return x * x * (3.0 - 2.0 * x)
    return x


def _overlaps(a: Binding, b: Binding) -> bool:
    return a.control == b.control and (a.channel is None or b.channel is None or a.channel == b.channel)


@dataclass(frozen=True)
class MidiMap:
    bindings: tuple[Binding, ...] = ()
    device: str | None = None
    path: Path | None = None

    def with_binding(self, new: Binding) -> "MidiMap":
        """This map with ``new`` replacing any binding of the same control (learn re-binds a control)."""
        kept = tuple(b for b in self.bindings if not _overlaps(b, new))
        return replace(self, bindings=kept + (new,))


def parse_map(data: dict[str, Any], source: Any, path: Path | None = None) -> MidiMap:
    unknown = sorted(k for k in data if k not in _TOP_KEYS)
    if unknown:
        raise fail(source, unknown[0], f"unknown key (known keys: {', '.join(_TOP_KEYS)})")
    device = data.get("device")
    if device is not None and (not isinstance(device, str) or not device.strip()):
        raise fail(source, "device", f"must be a non-empty string (a port name substring), got {device!r}")
    raw = data.get("bind", [])
    if not isinstance(raw, list):
        raise fail(source, "bind", "must be an array of tables ([[bind]])")
    bindings: list[Binding] = []
    for i, table in enumerate(raw):
        key = f"bind[{i}]"
        b = build(Binding, table, source, key)
        for j, other in enumerate(bindings):
            if _overlaps(b, other):
                raise fail(source, key, f"{b.describe()}: the same control is already bound by bind[{j}] "
                           f"({other.describe()})")
        bindings.append(b)
    return MidiMap(tuple(bindings), device.strip() if device else None, path)


def load_map(path: str | Path) -> MidiMap:
    """Load and validate a mapping file (ConfigError naming the file and key; exit 2 in the CLI)."""
    path = Path(path)
    return parse_map(load_toml(path, "MIDI map"), path, path)


def loads_map(text: str, source: str = "<midi map>") -> MidiMap:
    return parse_map(parse_toml(text, source), source)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def dumps_map(m: MidiMap) -> str:
    lines = ["# vjengine MIDI map (see `vj live --help`: --midi-map). MIDI learn rewrites this file.", ""]
    if m.device:
        lines += [f"device = {_toml_value(m.device)}", ""]
    defaults = Binding(address="/")
    for b in m.bindings:
        lines.append("[[bind]]")
        kind, number = b.control
        lines.append(f"{kind} = {_toml_value(True if number is None else number)}")
        for name in ("channel", "address", "curve", "range", "invert", "takeover", "mode", "value"):
            v = getattr(b, name)
            if name == "address" or (v is not None and v != getattr(defaults, name)):
                lines.append(f"{name} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def save_map(m: MidiMap, path: str | Path) -> Path:
    """Write atomically (a crash mid-write never leaves half a file); re-read to prove it loads."""
    path = Path(path)
    text = dumps_map(m)
    loads_map(text, str(path))  # what we write must load
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def merge_checked(bindings: Iterable[Binding]) -> None:
    """Raise ConfigError if two bindings share a control (for maps assembled in code)."""
    seen: list[Binding] = []
    for b in bindings:
        for o in seen:
            if _overlaps(b, o):
                raise ConfigError(f"MIDI binding {b.describe()} overlaps {o.describe()}")
        seen.append(b)
