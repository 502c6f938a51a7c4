"""OSC out: features, beat, coordinates and preset to TouchDesigner / Resolume, from the render thread.

The render thread builds a snapshot with :func:`out_values` each frame and hands it to
:meth:`OscOut.publish`, which sends at most ``rate_hz`` times a second over a non-blocking UDP socket
(a full socket buffer drops the send and counts it; nothing waits on the network). Pulses (beat,
onset, kick) are latched between sends so a beat in a frame that is not sent still goes out.
"""

from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from vjengine.control.osc_space import (
    DEFAULT_OUT_PORT,
    OUTPUTS,
    PULSE_ADDRESSES,
    RESOLUME_BPM_RANGE,
    RESOLUME_TEMPO_ADDRESS,
)
from vjengine.control.osc_wire import encode_float_message, encode_message, pack_bundles
from vjengine.errors import ConfigError
from vjengine.audio.harmony import chord_name, key_name
from vjengine.mapping.features import BAND_NAMES, read_feature
from vjengine.logonce import LogOnce

log = logging.getLogger(__name__)

OUT_BUNDLE_BYTES = 1024  # well under a 1500-byte Ethernet MTU: no IP fragmentation
RESOLUME_RESEND_S = 1.0
RESOLUME_MIN_BPM_CHANGE = 0.05

_FEATURE_OUT: tuple[tuple[str, str], ...] = (
    ("/vj/audio/rms", "rms"),
    *((f"/vj/audio/{band}", band) for band in BAND_NAMES),
    ("/vj/audio/centroid", "centroid"),
    ("/vj/audio/flux", "flux"),
    ("/vj/audio/onset", "onset"),
    ("/vj/audio/kick", "kick"),
    ("/vj/beat/pulse", "beat"),
    ("/vj/beat/downbeat", "downbeat"),
    ("/vj/beat/phase", "beat_phase"),
    ("/vj/beat/bar_phase", "bar_phase"),
    ("/vj/audio/drums", "drums"),
    ("/vj/audio/harmonic", "harmonic"),
    ("/vj/harmony/key", "key"),
    ("/vj/harmony/mode", "mode"),
    ("/vj/harmony/chord_root", "chord_root"),
    ("/vj/harmony/chord_change", "chord_change"),
    ("/vj/harmony/hue", "harmony_hue"),
)


def _finite(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def out_values(
    frame: Any,
    *,
    coord: Sequence[float] = (),
    axis_names: Sequence[str] = (),
    preset_name: str | None = None,
    preset_index: int | None = None,
) -> dict[str, float | str]:
    """The OSC out snapshot for one frame: address -> value (see ``OUTPUTS`` in osc_space).

    ``frame`` is an :class:`~vjengine.audio.frame.AudioFrame` (or anything with its fields; read
    through ``vjengine.mapping.features``, so names mean the same everywhere). ``coord`` is the grid
    coordinate 0..1 per axis, in the order of ``axis_names``. Never raises; non-finite values become 0.
    """
    values: dict[str, float | str] = {address: read_feature(frame, name) for address, name in _FEATURE_OUT}
    values["/vj/beat/bpm"] = _finite(getattr(frame, "bpm", 0.0))
    try:
        values["/vj/harmony/key_name"] = key_name(int(getattr(frame, "key", -1)))
        values["/vj/harmony/chord_name"] = chord_name(int(getattr(frame, "chord", -1)))
    except (TypeError, ValueError, IndexError):
        values["/vj/harmony/key_name"], values["/vj/harmony/chord_name"] = "none", "N"
    for name, position in zip(axis_names, coord):
        values[f"/vj/coord/{name}"] = _finite(position)
    if preset_index is not None:
        values["/vj/preset/index"] = float(preset_index)
    if preset_name is not None:
        values["/vj/preset/name"] = str(preset_name)
    return values


def parse_target(text: str, default_port: int = DEFAULT_OUT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` -> (host, port); :class:`ConfigError` names a bad one."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = text.strip(), str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"OSC out target {text!r}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"OSC out target {text!r}: port must be 1..65535")
    return host, port


def parse_feature_map(entries: Iterable[str]) -> dict[str, str]:
    """``FEATURE=ADDRESS`` strings (FEATURE an OSC out address, leading '/' optional) -> dict."""
    known = {o.template for o in OUTPUTS}
    mapping: dict[str, str] = {}
    for entry in entries:
        feature, sep, address = entry.partition("=")
        feature = "/" + feature.strip().lstrip("/")
        address = address.strip()
        if not sep or not address.startswith("/"):
            raise ConfigError(f"OSC map {entry!r} must be FEATURE=/osc/address, e.g. "
                              "vj/audio/bass=/composition/layers/1/video/opacity")
        if feature not in known and not feature.startswith("/vj/coord/"):
            raise ConfigError(f"OSC map {entry!r}: unknown feature {feature!r}; one of "
                              + ", ".join(sorted(a.lstrip("/") for a in known if "{" not in a)))
        mapping[feature] = address
    return mapping


@dataclass
class OscOutStats:
    sends: int = 0  # publish() calls that sent
    packets: int = 0
    dropped: int = 0  # datagrams the OS would not take (buffer full, unreachable network)


class OscOut:
    """Send OSC snapshots to ``targets`` at most ``rate_hz`` times a second; see the module docstring.

    ``resolume=True`` also sends the tempo to ``/composition/tempocontroller/tempo`` (normalised over
    ``resolume_bpm_range``); ``feature_map`` sends chosen outputs to extra addresses
    (``{"/vj/audio/bass": "/composition/layers/1/video/opacity"}``). ``bundle=False`` sends one
    datagram per message (for receivers that do not take bundles).
    """

    def __init__(
        self,
        targets: list[tuple[str, int]],
        *,
        rate_hz: float = 60.0,
        resolume: bool = False,
        feature_map: Mapping[str, str] | None = None,
        bundle: bool = True,
        resolume_bpm_range: tuple[float, float] = RESOLUME_BPM_RANGE,
    ) -> None:
        if not rate_hz > 0 or not math.isfinite(rate_hz):
            raise ConfigError(f"OSC out rate must be a positive number of Hz, got {rate_hz}")
        self.period_s = 1.0 / rate_hz
        self.resolume = resolume
        self.feature_map = {"/" + k.lstrip("/"): v for k, v in (feature_map or {}).items()}
        self.bundle = bundle
        self.resolume_bpm_range = resolume_bpm_range
        self.stats = OscOutStats()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.targets: list[tuple[str, int]] = []
        for host, port in targets:
            try:
                info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
            except socket.gaierror as exc:
                self._sock.close()
                raise ConfigError(f"OSC out target {host}:{port}: cannot resolve {host!r} ({exc.strerror})") from None
            self.targets.append(info[0][4][:2])
        self._next_s: float | None = None
        self._latched: dict[str, float] = {}
        self._resolume_bpm: float | None = None
        self._resolume_sent_s = -math.inf
        self._once = LogOnce(log)

    def close(self) -> None:
        self._sock.close()

    def publish(self, values: Mapping[str, float | str], now_s: float) -> bool:
        """Offer this frame's snapshot; sends it if a send is due. Returns True when it sent."""
        for address in PULSE_ADDRESSES:
            value = values.get(address)
            if isinstance(value, (int, float)) and value > self._latched.get(address, 0.0):
                self._latched[address] = float(value)
        if self._next_s is not None and now_s < self._next_s - 0.002:
            return False
        # Keep an even cadence; after a stall, restart from now instead of sending a burst.
        due = now_s + self.period_s if self._next_s is None else self._next_s + self.period_s
        self._next_s = due if due > now_s - self.period_s else now_s + self.period_s
        self._send(self._encode(values, now_s))
        self._latched.clear()
        return True

    def _encode(self, values: Mapping[str, float | str], now_s: float) -> list[bytes]:
        messages: list[bytes] = []
        for address, value in values.items():
            if address in self._latched:
                value = self._latched[address]
            if isinstance(value, str):
                messages.append(encode_message(address, [value]))
            else:
                messages.append(encode_float_message(address, _finite(value)))
        for feature, address in self.feature_map.items():
            value = values.get(feature)
            if value is not None and not isinstance(value, str):
                messages.append(encode_float_message(address, _finite(self._latched.get(feature, value))))
        if self.resolume:
            bpm = _finite(values.get("/vj/beat/bpm", 0.0))
            changed = self._resolume_bpm is None or abs(bpm - self._resolume_bpm) >= RESOLUME_MIN_BPM_CHANGE
            if bpm > 0 and (changed or now_s - self._resolume_sent_s >= RESOLUME_RESEND_S):
                lo, hi = self.resolume_bpm_range
                messages.append(encode_float_message(RESOLUME_TEMPO_ADDRESS, min(max((bpm - lo) / (hi - lo), 0.0), 1.0)))
                self._resolume_bpm = bpm
                self._resolume_sent_s = now_s
        if self.bundle:
            return pack_bundles(messages, OUT_BUNDLE_BYTES)
        return messages

    def _send(self, packets: list[bytes]) -> None:
        self.stats.sends += 1
        for target in self.targets:
            for packet in packets:
                try:
                    self._sock.sendto(packet, target)
                    self.stats.packets += 1
                except OSError as exc:  # BlockingIOError (buffer full), ECONNREFUSED, ENETUNREACH...
                    self.stats.dropped += 1
                    self._once.warning("send", "OSC out to %s:%d failed (%s); counting further failures silently",
                                       target[0], target[1], exc)
