"""The OSC address space, declared once: what the server accepts, what OSC out sends, why things fail.

Everything OSC-facing reads these tables: the server's routing and argument checks
(:class:`AddressSpace`, :func:`coerce_args`), OSC out's addresses (:data:`OUTPUTS`), the rejection
reasons counted in the stats and shown in the HUD, and ``docs/osc.md`` (:func:`render_markdown`).
Regenerate the doc after changing anything here::

    python -m vjengine.control.osc_space --write docs/osc.md
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from vjengine.control.osc_wire import PACKET_REASONS, compile_pattern, has_wildcard
from vjengine.mapping.features import BAND_NAMES

DEFAULT_PORT = 9000
DEFAULT_OUT_PORT = 9001
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_PACKET_BYTES = 8192
DEFAULT_MAX_DEFER_S = 10.0

# Argument kinds (column "arguments" in the doc).
ARG_HELP: dict[str, str] = {
    "float": "one number: `f`, `d`, `i`, `h`, `T`/`F` (1/0) or a numeric string; NaN/inf refused; "
    "clamped to the range",
    "bool": "one value: `T`/`F`, a number (non-zero = on) or a string `true/false/on/off/yes/no/1/0`",
    "name_or_index": "one value: a name (string) or a 0-based index (`i`, `h`, a whole `f`/`d`, "
    "or a digit string); negative indices clamp to 0",
    "trigger": "none, or one value: fires on non-zero / `T` / `I` / `N`; a 0 or `F` "
    "(a button's release) is ignored",
    "status": "none (reply to the sender's address and port), or one int: the port to reply to "
    "on the sender's host",
    "string": "one string (`s`); none, or an empty string, means off",
}


@dataclass(frozen=True)
class OscInput:
    """One accepted address. ``{axis}``, ``{effect}``, ``{param}`` in the template are names."""

    template: str
    kind: str  # vjengine.control.commands kind
    arg: str  # one of ARG_HELP
    help: str
    lo: float | None = None
    hi: float | None = None
    default: Any = None
    unit: str = ""

    @property
    def range_text(self) -> str:
        if self.lo is None:
            return ""
        return f"{self.lo:g}..{self.hi:g}" + (f" {self.unit}" if self.unit else "")


INPUTS: tuple[OscInput, ...] = (
    OscInput("/vj/axis/{axis}", "axis", "float",
             "hold an axis of the bank at this position (manual override of the audio mapping)", 0.0, 1.0),
    OscInput("/vj/axis/{axis}/release", "axis_release", "trigger",
             "hand the axis back to the audio mapping"),
    OscInput("/vj/axis/{axis}/nudge", "axis_nudge", "float",
             "move the axis by this much (added to where it is)", -1.0, 1.0),
    OscInput("/vj/preset", "preset", "name_or_index", "switch the mapping preset (crossfades)"),
    OscInput("/vj/bank", "bank", "name_or_index", "switch to another loaded bank (crossfades)"),
    OscInput("/vj/fx/{effect}/{param}", "fx", "float",
             "set an effect parameter; every parameter is normalised 0..1 at the OSC boundary", 0.0, 1.0),
    OscInput("/vj/intensity", "intensity", "float", "output level, a master dimmer: 0 black, 1 full (the audio reaction is unchanged)", 0.0, 1.0,
             default=1.0),
    OscInput("/vj/blackout", "blackout", "bool", "output black while on", default=False),
    OscInput("/vj/tap", "tap", "trigger", "tap tempo: one tap per beat"),
    OscInput("/vj/bpm", "bpm", "float", "set the tempo (the beat tracker follows from here)", 20.0, 300.0,
             unit="BPM"),
    OscInput("/vj/resync", "resync", "trigger", "the next beat is beat 1 of the bar (re-align the bar)"),
    OscInput("/vj/crossfade", "crossfade", "float", "crossfade time for preset and bank switches", 0.0, 60.0,
             default=2.0, unit="s"),
    OscInput("/vj/status", "status", "status", "reply with the current state as `/vj/status/...` messages"),
    OscInput("/vj/clock/source", "clock_source", "name_or_index",
             "what drives the beat clock: `audio`, `tap`, `link`, `midi` (or 0-3); the phase slews, never jumps"),
    OscInput("/vj/midi/learn", "midi_learn", "string",
             "arm MIDI learn for this address (e.g. `/vj/axis/warp`): the next control moved is bound to it "
             "and written to the MIDI map; empty disarms"),
)


@dataclass(frozen=True)
class OscOutput:
    """One address OSC out sends: a float (``pulse`` = 1 for one send, then 0) or a string."""

    template: str
    kind: str  # "float", "pulse", "string"
    help: str
    range_text: str = "0..1"


OUTPUTS: tuple[OscOutput, ...] = (
    OscOutput("/vj/audio/rms", "float", "loudness (adaptive gain, gated)"),
    *(OscOutput(f"/vj/audio/{band}", "float", f"{band.replace('_', '-')} band energy") for band in BAND_NAMES),
    OscOutput("/vj/audio/centroid", "float", "spectral centroid (brightness)"),
    OscOutput("/vj/audio/flux", "float", "spectral flux (onset strength)"),
    OscOutput("/vj/audio/onset", "pulse", "1 on a send that follows an onset, else 0"),
    OscOutput("/vj/audio/kick", "pulse", "1 on a send that follows a kick, else 0"),
    OscOutput("/vj/beat/pulse", "pulse", "1 on a send that follows a beat, else 0"),
    OscOutput("/vj/beat/downbeat", "pulse", "1 on a send that follows beat 1 of a bar, else 0"),
    OscOutput("/vj/beat/phase", "float", "position within the current beat"),
    OscOutput("/vj/beat/bar_phase", "float", "position within the current bar"),
    OscOutput("/vj/beat/bpm", "float", "current tempo", "BPM"),
    OscOutput("/vj/audio/drums", "float", "percussive level (streaming HPSS)"),
    OscOutput("/vj/audio/harmonic", "float", "harmonic (sustained) level (streaming HPSS)"),
    OscOutput("/vj/harmony/key", "float", "the key's tonic: pitch class / 12 (C = 0)"),
    OscOutput("/vj/harmony/mode", "float", "1 in a major key, 0 in a minor key"),
    OscOutput("/vj/harmony/chord_root", "float", "the chord's root: pitch class / 12 (C = 0)"),
    OscOutput("/vj/harmony/chord_change", "pulse", "1 on a send that follows a chord change, else 0"),
    OscOutput("/vj/harmony/hue", "float", "the chord on the circle of fifths (a colour wheel)"),
    OscOutput("/vj/harmony/key_name", "string", "the key, e.g. \"A minor\" (\"none\" before enough music)", ""),
    OscOutput("/vj/harmony/chord_name", "string", "the chord, e.g. \"F#m\" (\"N\": no chord)", ""),
    OscOutput("/vj/coord/{axis}", "float", "where the show is on each axis of the bank"),
    OscOutput("/vj/preset/index", "float", "0-based index of the current preset", "0..n-1"),
    OscOutput("/vj/preset/name", "string", "name of the current preset (a string: the OSC In DAT shows it)",
              ""),
)

PULSE_ADDRESSES: frozenset[str] = frozenset(o.template for o in OUTPUTS if o.kind == "pulse")

RESOLUME_TEMPO_ADDRESS = "/composition/tempocontroller/tempo"
RESOLUME_BPM_RANGE = (20.0, 500.0)  # Resolume maps its normalised 0..1 tempo onto this range

# Reasons a single message is refused (the packet itself was valid OSC).
MESSAGE_REASONS: dict[str, str] = {
    "unknown_address": "no declared address matches (or a wildcard pattern matches nothing)",
    "wrong_count": "wrong number of arguments",
    "wrong_type": "an argument of a type this address does not take (e.g. a word where a number goes)",
    "not_finite": "NaN or infinity",
    "too_far_future": "bundle time tag more than the defer limit (10 s) ahead",
}
REJECT_REASONS: dict[str, str] = {**PACKET_REASONS, **MESSAGE_REASONS}

_AXIS_DYNAMIC = re.compile(r"^/vj/axis/([A-Za-z0-9_.\-]{1,64})(/release|/nudge)?$")
_FX_DYNAMIC = re.compile(r"^/vj/fx/([A-Za-z0-9_\-]{1,64})/([A-Za-z0-9_\-]{1,64})$")
_TRUE_WORDS = frozenset({"true", "on", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "off", "no", "0"})


class ArgError(ValueError):
    """An argument problem; ``reason`` is one of :data:`MESSAGE_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


IGNORED = object()  # coerce_args result for a trigger's release (a 0 after a 1)


@dataclass(frozen=True, slots=True)
class Route:
    """A concrete address resolved to its declaration and the command target it feeds."""

    spec: OscInput
    target: str  # axis name, "<effect>.<param>", or ""


class AddressSpace:
    """The concrete addresses for one show: the declared templates filled with the bank's names.

    ``axis_names`` / ``fx_params`` (``"effect/param"`` strings) list the names that exist; with None,
    any well-formed name is accepted for that template (the app checks it) but wildcards cannot
    reach it. Immutable: the server swaps in a new one when the bank changes.
    """

    def __init__(self, axis_names: Iterable[str] | None = None, fx_params: Iterable[str] | None = None) -> None:
        self.axis_names = None if axis_names is None else tuple(axis_names)
        self.fx_params = None if fx_params is None else tuple(fx_params)
        routes: dict[str, Route] = {}
        for spec in INPUTS:
            if "{axis}" in spec.template:
                for name in self.axis_names or ():
                    routes[spec.template.format(axis=name)] = Route(spec, name)
            elif "{effect}" in spec.template:
                for key in self.fx_params or ():
                    effect, _, param = key.partition("/")
                    if not (effect and param):
                        raise ValueError(f"fx parameter {key!r} must be 'effect/param'")
                    routes[spec.template.format(effect=effect, param=param)] = Route(spec, f"{effect}.{param}")
            else:
                routes[spec.template] = Route(spec, "")
        self.routes = routes
        self._by_kind = {spec.kind: spec for spec in INPUTS}
        self._cache: dict[str, list[Route]] = {}

    def resolve(self, address: str) -> list[Route]:
        """Routes an address or address pattern reaches (empty: unknown address). Cached."""
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        routes = self._resolve(address)
        if len(self._cache) >= 4096:  # a flood of distinct junk addresses must not grow memory
            self._cache.clear()
        self._cache[address] = routes
        return routes

    def _resolve(self, address: str) -> list[Route]:
        route = self.routes.get(address)
        if route is not None:
            return [route]
        if has_wildcard(address):
            regex = compile_pattern(address)
            if regex is None:
                return []
            return [r for a, r in self.routes.items() if regex.match(a)]
        if self.axis_names is None:
            m = _AXIS_DYNAMIC.match(address)
            if m:
                kind = {None: "axis", "/release": "axis_release", "/nudge": "axis_nudge"}[m.group(2)]
                return [Route(self._by_kind[kind], m.group(1))]
        if self.fx_params is None:
            m = _FX_DYNAMIC.match(address)
            if m:
                return [Route(self._by_kind["fx"], f"{m.group(1)}.{m.group(2)}")]
        return []


# ---------------------------------------------------------------------------------------- arguments


def _number(tag: str, value: Any, address: str) -> float:
    if tag in "ifhd":
        number = float(value)
    elif tag in "TF":
        number = 1.0 if value else 0.0
    elif tag in "sS":
        try:
            number = float(value.strip())
        except ValueError:
            raise ArgError("wrong_type", f"{address} takes a number, got the string {value[:32]!r}") from None
    else:
        raise ArgError("wrong_type", f"{address} takes a number, got type '{tag}'")
    if not math.isfinite(number):
        raise ArgError("not_finite", f"{address} got {number}")
    return number


def coerce_args(spec: OscInput, address: str, tags: str, args: Sequence[Any]) -> tuple[Any, bool]:
    """The command value for a message's arguments, and whether it was clamped.

    Returns ``(IGNORED, False)`` for a trigger's release; raises :class:`ArgError` otherwise.
    """
    n = len(args)
    if spec.arg == "trigger":
        if n == 0:
            return None, False
        if n != 1:
            raise ArgError("wrong_count", f"{address} takes 0 or 1 argument, got {n}")
        tag = tags[0]
        if tag in "NI":
            return None, False
        value = _number(tag, args[0], address)
        return (None if value != 0.0 else IGNORED), False
    if spec.arg == "status":
        if n == 0:
            return None, False
        if n != 1:
            raise ArgError("wrong_count", f"{address} takes 0 or 1 argument (a reply port), got {n}")
        port = _number(tags[0], args[0], address)
        if port != int(port) or not 1 <= port <= 65535:
            raise ArgError("wrong_type", f"{address} reply port must be 1..65535, got {args[0]!r}")
        return int(port), False
    if spec.arg == "string":
        if n == 0:
            return "", False
        if n != 1:
            raise ArgError("wrong_count", f"{address} takes 0 or 1 argument, got {n}")
        if tags[0] not in "sS":
            raise ArgError("wrong_type", f"{address} takes a string, got type '{tags[0]}'")
        return str(args[0]).strip()[:256], False
    if n != 1:
        raise ArgError("wrong_count", f"{address} takes 1 argument, got {n}")
    tag, value = tags[0], args[0]
    if spec.arg == "float":
        number = _number(tag, value, address)
        assert spec.lo is not None and spec.hi is not None
        clamped = min(max(number, spec.lo), spec.hi)
        return clamped, clamped != number
    if spec.arg == "bool":
        if tag in "sS":
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                return True, False
            if word in _FALSE_WORDS:
                return False, False
            raise ArgError("wrong_type", f"{address} takes on/off, got the string {value[:32]!r}")
        return _number(tag, value, address) != 0.0, False
    if spec.arg == "name_or_index":
        if tag in "sS":
            text = value.strip()
            if text.isdigit():
                return int(text), False
            if not text:
                raise ArgError("wrong_type", f"{address} got an empty name")
            return text, False
        number = _number(tag, value, address)
        if number != int(number):
            raise ArgError("wrong_type", f"{address} index must be a whole number, got {number}")
        index = int(number)
        return max(index, 0), index < 0
    raise AssertionError(f"undeclared argument kind {spec.arg!r}")


# ---------------------------------------------------------------------------------------- the doc


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def render_markdown() -> str:
    """``docs/osc.md``, generated from the tables above."""
    lines = [
        "# OSC control (generated)",
        "",
        "<!-- Generated by `python -m vjengine.control.osc_space --write docs/osc.md`; do not edit. -->",
        "",
        f"`vj live` listens for OSC on UDP `{DEFAULT_HOST}:{DEFAULT_PORT}` (loopback only). To accept another",
        "machine (TouchDesigner or Resolume on a second laptop) pass `--osc-host 0.0.0.0`, and preferably",
        "`--osc-allow 192.168.1.20` (repeatable; an address or a network like `192.168.1.0/24`) so nobody",
        "else on the venue network can drive the show (without it `vj live` warns, and a `/vj/status` from",
        "another machine is answered only to the sender's own port, never to a port it names). Datagrams",
        f"over `--osc-max-packet` bytes "
        f"(default {DEFAULT_MAX_PACKET_BYTES}) are dropped.",
        "",
        "Wire it up with `vj osc-monitor` first: it prints every message that arrives, what it would do,",
        "and every rejection with its reason.",
        "",
        "## Addresses `vj live` accepts",
        "",
        "Names in braces come from the show: `{axis}` is an axis of the current bank, `{effect}`/`{param}`",
        "an effect parameter. Wildcard patterns work (`/vj/axis/*`, `/vj/fx/{zoom,feedback}/amount`,",
        "`/vj/axis/[a-m]*`, `//bpm`); a pattern applies to every address it matches.",
        "",
    ]
    lines += _table(
        ("address", "arguments", "range", "default", "does"),
        (
            (f"`{s.template}`", f"`{s.arg}`", s.range_text,
             "" if s.default is None else f"{s.default}", s.help)
            for s in INPUTS
        ),
    )
    lines += ["", "Effect parameters the show declares (`vjengine.effects.FX_CONTROLS`); 0..1 maps linearly onto",
              "the effect's own range:", ""]
    from vjengine.effects import FX_CONTROLS  # noqa: PLC0415 - docs only

    lines += _table(
        ("address", "drives", "0 ->", "1 ->"),
        ((f"`/vj/fx/{key.replace('.', '/')}`", f"`{field}`{' (whole steps)' if integer else ''}", f"{lo:g}", f"{hi:g}")
         for key, (field, lo, hi, integer) in FX_CONTROLS.items()),
    )
    lines += ["", "Argument kinds:", ""]
    lines += [f"- `{kind}`: {text}." for kind, text in ARG_HELP.items()]
    lines += [
        "",
        "Bundles (nested too) are unpacked; a message in a bundle whose time tag is in the future is applied",
        "at that time by the render thread (the server never waits for it). A tag more than "
        f"{DEFAULT_MAX_DEFER_S:g} s ahead is",
        "refused (`too_far_future`): it is nearly always a clock that is off, and it would sit in memory.",
        "",
        "`/vj/status` replies from the server thread with one message per value, in bundles, to the sender:",
        "`/vj/status/<key>` for each key of the show's state snapshot (nested keys joined by `/`), then",
        "`/vj/status/end`. The show supplies the snapshot; it is never read from the render state directly.",
        "Wildcard address patterns are matched in linear time and may be at most 256 characters long.",
        "Commands timed for the future (bundle time tags) wait in a queue of at most 4096, at most 10 s ahead;",
        "a newer value for the same fader due within 5 ms of a held one replaces it.",
        "",
        "## Rejections",
        "",
        "Bad input never reaches the show. Each refusal is counted by reason (HUD, `vj osc-monitor`),",
        "and logged at most once every few seconds per reason. A malformed datagram is refused whole.",
        "",
    ]
    lines += _table(("reason", "meaning"), ((f"`{k}`", v) for k, v in REJECT_REASONS.items()))
    lines += [
        "",
        "Not rejections: an out-of-range number is clamped to its range and applied (counted as",
        "`clamped`); a trigger's 0 (a button's release) is counted as `ignored`. Datagrams the operating",
        "system dropped because the server fell behind are counted as `kernel_dropped`, and commands lost",
        "to a full render queue as `queue_full`.",
        "",
        "Floods: for absolute controls (axis, fx, intensity, blackout, bpm, crossfade) only the newest value",
        "per control is kept while datagrams are waiting in the socket (`coalesced`); it is passed on as soon",
        "as the socket is empty, or within 2-4 ms. Everything else (taps, switches, releases, nudges) passes",
        "one by one, in order. `vj live` receives and validates OSC in a worker process (`--osc-worker",
        "process`, the default), so a flood does not compete with the frame loop for Python's GIL; that",
        "process also answers `/vj/status` from the show's latest published state (at most a few frames old),",
        "so the reply comes even while the show is busy; if that process dies, reception continues in a thread.",
        "",
        "## What `vj live` sends (`--osc-out HOST:PORT`)",
        "",
        "Up to `--osc-out-rate` times a second (default 60), to each target, one float per address, in",
        "bundles of at most 1024 bytes (`--osc-out-no-bundle` sends plain messages). TouchDesigner: an OSC In",
        "CHOP on that port turns each address into a channel (`vj/audio/rms`, `vj/beat/pulse`, ...). Pulses",
        "are latched between sends, so none is lost when the send rate is below the frame rate.",
        "",
    ]
    lines += _table(
        ("address", "type", "range", "what"),
        ((f"`{o.template}`", o.kind, o.range_text, o.help) for o in OUTPUTS),
    )
    lo, hi = RESOLUME_BPM_RANGE
    lines += [
        "",
        f"With `--osc-resolume` the tempo also goes to Resolume's `{RESOLUME_TEMPO_ADDRESS}`,",
        f"normalised 0..1 over {lo:g}..{hi:g} BPM (Resolume's own scaling), when it changes by 0.05 BPM or more",
        "and once a second. `--osc-map FEATURE=ADDRESS` (repeatable) sends any output above, named",
        "without the leading `/` (e.g. `vj/audio/bass=/composition/layers/1/video/opacity`), to a parameter",
        "address of your choice; Resolume listens on port 7000 by default.",
        "",
        "## Wiring up",
        "",
        "- TouchDesigner -> vj: an OSC Out CHOP sends each channel's value to the address made from its",
        "  channel name, so name the channels after the addresses above (`vj/intensity`, `vj/axis/warp`, ...;",
        "  a Rename CHOP helps). Floats are fine everywhere: triggers fire on a non-zero value and ignore",
        "  the 0 of a button's release. For names and one-shot messages use an OSC Out DAT:",
        "  `op('oscout1').sendOSC('/vj/preset', ['calm'])`.",
        "- vj -> TouchDesigner: `--osc-out TD_HOST:PORT` and an OSC In CHOP on that port: one channel per",
        "  address (`vj/audio/rms`, `vj/beat/pulse`, `vj/coord/warp`, ...). The preset name is a string:",
        "  an OSC In DAT shows it.",
        "- vj -> Resolume: enable OSC input in Resolume's preferences (port 7000 by default), then",
        "  `--osc-out RESOLUME_HOST:7000 --osc-resolume --osc-map vj/audio/bass=/composition/layers/1/video/opacity`.",
        "  Resolume shows a control's address in its OSC shortcut mode.",
        "- Another machine: `--osc-host 0.0.0.0 --osc-allow <its address>`; check with `vj osc-monitor`",
        "  (same options) that its messages arrive and nothing is refused.",
        "- Asking for the state: send `/vj/status` with the port you listen on (`/vj/status i 9001`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="print or write docs/osc.md")
    parser.add_argument("--write", type=Path, help="write the doc to this file instead of stdout")
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
