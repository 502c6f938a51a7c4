"""OSC 1.0/1.1 on the wire: a strict datagram decoder, a small fast encoder, time tags, patterns.

Why not python-osc's parser for input: it is built to be lenient, and a show needs to know *why* a
packet was refused. Checked with python-osc 1.10: it pads a truncated float with zeros and accepts it,
skips unknown type tags with a warning, ignores non-zero padding, trailing bytes and a packet length
that is not a multiple of 4, does not check bundle element sizes, recurses without limit into nested
bundles, and lets ``UnicodeDecodeError`` escape on a non-UTF-8 address. Its ``Dispatcher`` sleeps on
future time tags (blocking the receiving thread) and compiles a regex per message. So this module
decodes every datagram strictly and names the reason for each refusal (:class:`OscDecodeError`);
python-osc stays the reference client in the tests, which cross-check this encoder against it.
"""

from __future__ import annotations

import functools
import re
import struct
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

BUNDLE_PREFIX = b"#bundle\x00"
IMMEDIATELY = 1  # the OSC time tag meaning "now" (0 is also treated as now)
NTP_UNIX_OFFSET_S = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
MAX_BUNDLE_DEPTH = 8

# Reasons a datagram is refused as a whole (stable names: stats, HUD, docs/osc.md).
PACKET_REASONS: dict[str, str] = {
    "not_allowed": "sender address is not in the allowlist",
    "oversize": "datagram larger than the size cap",
    "empty": "zero-length datagram",
    "not_osc": "does not start with '/' (message) or '#bundle' (bundle)",
    "truncated": "ends before a string, argument, blob or bundle element it declares",
    "bad_padding": "a string or blob is not zero-padded to a multiple of 4 bytes",
    "bad_type_tag": "type tag string missing its ',', an unknown type, or unbalanced '[' ']'",
    "bad_string": "a string argument is not valid UTF-8",
    "bad_address": "address is not UTF-8, does not start with '/', has spaces/control characters/'#', "
    "or an unbalanced '[' or '{'",
    "bad_bundle": "bundle element size is zero, negative, not a multiple of 4 or not a message/bundle; "
    "or nesting deeper than 8",
    "trailing_bytes": "bytes left over after the last argument",
}


class OscDecodeError(ValueError):
    """A datagram that is not valid OSC; ``reason`` is one of :data:`PACKET_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class OscMessage:
    """One decoded message. ``timetag`` is the raw 64-bit NTP tag of its bundle (1 = now)."""

    address: str
    typetags: str  # without the leading ','
    args: tuple[Any, ...]
    timetag: int = IMMEDIATELY


# ---------------------------------------------------------------------------------------- decoding

_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_UINT64 = struct.Struct(">Q")
_FLOAT32 = struct.Struct(">f")
_FLOAT64 = struct.Struct(">d")
_FIXED_SIZE = {"i": 4, "f": 4, "c": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8}
_NO_DATA = {"T": True, "F": False, "N": None, "I": float("inf")}  # I = impulse/infinitum
_KNOWN_TAGS = frozenset("ifsbhtdScrmTFNI[]")
_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20\x7f#]")


def _read_string(data: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """Raw bytes of the OSC string at ``pos`` and the position after its padding."""
    nul = data.find(b"\x00", pos, end)
    if nul < 0:
        raise OscDecodeError("truncated", f"{what} at byte {pos} has no terminating NUL")
    padded_end = (nul + 4) & ~3
    if padded_end > end:
        raise OscDecodeError("bad_padding", f"{what} at byte {pos} is not padded to 4 bytes")
    if data[nul:padded_end].count(0) != padded_end - nul:
        raise OscDecodeError("bad_padding", f"{what} at byte {pos} has non-zero padding")
    return data[pos:nul], padded_end


@functools.lru_cache(maxsize=1024)  # a show uses a few dozen addresses: check each once
def _check_address(raw: bytes) -> str:
    try:
        address = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OscDecodeError("bad_address", f"address {raw[:40]!r} is not UTF-8") from None
    if not address.startswith("/") or _BAD_ADDRESS_CHARS.search(address):
        raise OscDecodeError("bad_address", f"address {address[:60]!r} is not a valid OSC address")
    if address.count("[") != address.count("]") or address.count("{") != address.count("}"):
        raise OscDecodeError("bad_address", f"address pattern {address[:60]!r} has an unbalanced bracket")
    return address


@functools.lru_cache(maxsize=256)
def _numeric_struct(tags: str) -> struct.Struct | None:
    """One big-endian struct for a type tag string of only 'i', 'f', 'h', 'd' (else None)."""
    if not tags or len(tags) > 32 or any(t not in "ifhd" for t in tags):
        return None
    return struct.Struct(">" + tags.replace("h", "q"))


def decode_message(data: bytes, pos: int = 0, end: int | None = None, timetag: int = IMMEDIATELY) -> OscMessage:
    """Decode one OSC message occupying ``data[pos:end]`` exactly; raise :class:`OscDecodeError`."""
    end = len(data) if end is None else end
    raw_address, pos = _read_string(data, pos, end, "address")
    address = _check_address(raw_address)
    if pos == end:  # OSC 1.0 allows old senders to omit the type tag string
        return OscMessage(address, "", (), timetag)
    if data[pos] != 0x2C:  # ','
        raise OscDecodeError("bad_type_tag", f"type tag string of {address} does not start with ','")
    raw_tags, pos = _read_string(data, pos, end, "type tag string")
    tags = raw_tags[1:].decode("latin-1")
    numeric = _numeric_struct(tags)
    if numeric is not None:  # the common case (faders, buttons): one unpack, no per-argument loop
        if end - pos != numeric.size:
            if end - pos < numeric.size:
                raise OscDecodeError("truncated", f"arguments '{tags}' of {address} cut off at byte {end}")
            raise OscDecodeError("trailing_bytes", f"{end - pos - numeric.size} byte(s) after the arguments of {address}")
        return OscMessage(address, tags, numeric.unpack_from(data, pos), timetag)
    unknown = set(tags) - _KNOWN_TAGS
    if unknown:
        raise OscDecodeError("bad_type_tag", f"unknown type tag(s) {''.join(sorted(unknown))!r} in {address}")
    args: list[Any] = []
    stack: list[list[Any]] = [args]
    for tag in tags:
        if tag in _NO_DATA:
            stack[-1].append(_NO_DATA[tag])
            continue
        if tag == "[":
            inner: list[Any] = []
            stack[-1].append(inner)
            stack.append(inner)
            continue
        if tag == "]":
            if len(stack) == 1:
                raise OscDecodeError("bad_type_tag", f"unbalanced ']' in type tags of {address}")
            finished = stack.pop()
            stack[-1][-1] = tuple(finished)
            continue
        if tag in "sS":
            raw, pos = _read_string(data, pos, end, f"string argument of {address}")
            try:
                stack[-1].append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise OscDecodeError("bad_string", f"string argument of {address} is not UTF-8") from None
            continue
        if tag == "b":
            if pos + 4 > end:
                raise OscDecodeError("truncated", f"blob size of {address} cut off")
            (size,) = _INT32.unpack_from(data, pos)
            if size < 0:
                raise OscDecodeError("truncated", f"blob of {address} has negative size {size}")
            start = pos + 4
            padded_end = start + ((size + 3) & ~3)
            if start + size > end:
                raise OscDecodeError("truncated", f"blob of {address} declares {size} bytes, has {end - start}")
            if padded_end > end or data[start + size : padded_end].count(0) != padded_end - start - size:
                raise OscDecodeError("bad_padding", f"blob of {address} is not zero-padded")
            stack[-1].append(bytes(data[start : start + size]))
            pos = padded_end
            continue
        size = _FIXED_SIZE[tag]
        if pos + size > end:
            raise OscDecodeError("truncated", f"argument '{tag}' of {address} cut off at byte {end}")
        if tag == "i":
            value: Any = _INT32.unpack_from(data, pos)[0]
        elif tag == "f":
            value = _FLOAT32.unpack_from(data, pos)[0]
        elif tag == "h":
            value = _INT64.unpack_from(data, pos)[0]
        elif tag == "d":
            value = _FLOAT64.unpack_from(data, pos)[0]
        elif tag == "t":
            value = _UINT64.unpack_from(data, pos)[0]
        elif tag == "c":
            value = chr(_UINT32.unpack_from(data, pos)[0] & 0x10FFFF)
        else:  # r (RGBA) and m (MIDI): four raw bytes
            value = bytes(data[pos : pos + 4])
        stack[-1].append(value)
        pos += size
    if len(stack) != 1:
        raise OscDecodeError("bad_type_tag", f"unbalanced '[' in type tags of {address}")
    if pos != end:
        raise OscDecodeError("trailing_bytes", f"{end - pos} byte(s) after the arguments of {address}")
    return OscMessage(address, tags, tuple(args), timetag)


def _decode_bundle(data: bytes, pos: int, end: int, outer_tag: int, depth: int, out: list[OscMessage]) -> None:
    if depth > MAX_BUNDLE_DEPTH:
        raise OscDecodeError("bad_bundle", f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    if pos + 16 > end:
        raise OscDecodeError("truncated", "bundle header (8-byte '#bundle' + 8-byte time tag) cut off")
    (tag,) = _UINT64.unpack_from(data, pos + 8)
    # A nested bundle may not be earlier than its parent (OSC 1.0); use the later of the two.
    if outer_tag > IMMEDIATELY and (tag <= IMMEDIATELY or tag < outer_tag):
        tag = outer_tag
    pos += 16
    while pos < end:
        if pos + 4 > end:
            raise OscDecodeError("truncated", f"bundle element size at byte {pos} cut off")
        (size,) = _INT32.unpack_from(data, pos)
        pos += 4
        if size <= 0 or size % 4:
            raise OscDecodeError("bad_bundle", f"bundle element size {size} at byte {pos - 4}")
        if pos + size > end:
            raise OscDecodeError("truncated", f"bundle element declares {size} bytes, {end - pos} left")
        if data.startswith(BUNDLE_PREFIX, pos):
            _decode_bundle(data, pos, pos + size, tag, depth + 1, out)
        elif data[pos] == 0x2F:  # '/'
            out.append(decode_message(data, pos, pos + size, tag))
        else:
            raise OscDecodeError("bad_bundle", f"bundle element at byte {pos} is neither a message nor a bundle")
        pos += size


def decode_packet(data: bytes) -> list[OscMessage]:
    """All messages of one datagram (a message or a bundle, nested to any depth up to 8).

    Raises :class:`OscDecodeError` naming the reason when any part of the datagram is invalid:
    a packet is taken whole or not at all.
    """
    if not data:
        raise OscDecodeError("empty", "zero-length datagram")
    if data.startswith(BUNDLE_PREFIX):
        out: list[OscMessage] = []
        _decode_bundle(data, 0, len(data), 0, 1, out)
        return out
    if data[0] == 0x2F:
        return [decode_message(data)]
    if data.startswith(b"#bundle"):
        raise OscDecodeError("truncated", "bundle header cut off")
    raise OscDecodeError("not_osc", f"starts with {bytes(data[:8])!r}")


# ---------------------------------------------------------------------------------------- time tags


def timetag_to_unix_s(tag: int) -> float | None:
    """Seconds since 1970 for an OSC (NTP) time tag, or None for "immediately" (0 or 1)."""
    if tag <= IMMEDIATELY:
        return None
    return (tag >> 32) - NTP_UNIX_OFFSET_S + (tag & 0xFFFFFFFF) / 2**32


def unix_s_to_timetag(unix_s: float) -> int:
    """The OSC (NTP) time tag for a time in seconds since 1970."""
    ntp_s = unix_s + NTP_UNIX_OFFSET_S
    seconds = int(ntp_s)
    return (seconds << 32) | int((ntp_s - seconds) * 2**32)


def timetag_to_perf_s(tag: int, *, now_unix_s: float | None = None, now_perf_s: float | None = None) -> float | None:
    """``time.perf_counter`` time at which a time tag falls due; None when it is now or past."""
    unix_s = timetag_to_unix_s(tag)
    if unix_s is None:
        return None
    now_unix_s = time.time() if now_unix_s is None else now_unix_s
    now_perf_s = time.perf_counter() if now_perf_s is None else now_perf_s
    delay_s = unix_s - now_unix_s
    return now_perf_s + delay_s if delay_s > 0 else None


# ---------------------------------------------------------------------------------------- encoding


def _pad_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return raw + b"\x00" * (4 - len(raw) % 4)


@functools.lru_cache(maxsize=1024)
def _prefix(address: str, tags: str) -> bytes:
    return _pad_string(address) + _pad_string("," + tags)


def encode_message(address: str, args: Sequence[Any] = ()) -> bytes:
    """One OSC message: float -> 'f', bool -> 'T'/'F', int -> 'i' (or 'h' if wide), str -> 's',
    bytes -> 'b', None -> 'N'."""
    tags: list[str] = []
    body: list[bytes] = []
    for arg in args:
        if isinstance(arg, bool):
            tags.append("T" if arg else "F")
        elif isinstance(arg, int):
            if -(2**31) <= arg < 2**31:
                tags.append("i")
                body.append(_INT32.pack(arg))
            else:
                tags.append("h")
                body.append(_INT64.pack(arg))
        elif isinstance(arg, float):
            tags.append("f")
            body.append(_FLOAT32.pack(arg))
        elif isinstance(arg, str):
            tags.append("s")
            body.append(_pad_string(arg))
        elif isinstance(arg, (bytes, bytearray)):
            tags.append("b")
            body.append(_INT32.pack(len(arg)) + bytes(arg) + b"\x00" * (-len(arg) % 4))
        elif arg is None:
            tags.append("N")
        else:
            raise TypeError(f"cannot encode OSC argument {arg!r} of type {type(arg).__name__}")
    return _prefix(address, "".join(tags)) + b"".join(body)


def encode_float_message(address: str, value: float) -> bytes:
    """A one-float message (the hot path of OSC out)."""
    return _prefix(address, "f") + _FLOAT32.pack(value)


def encode_bundle(elements: Iterable[bytes], timetag: int = IMMEDIATELY) -> bytes:
    """A bundle of already-encoded messages or bundles."""
    parts = [BUNDLE_PREFIX, _UINT64.pack(timetag)]
    for element in elements:
        parts.append(_INT32.pack(len(element)))
        parts.append(element)
    return b"".join(parts)


def pack_bundles(messages: Sequence[bytes], max_bytes: int, timetag: int = IMMEDIATELY) -> list[bytes]:
    """Group encoded messages into as few bundles as fit ``max_bytes`` each (one message may exceed it)."""
    bundles: list[bytes] = []
    current: list[bytes] = []
    size = 16
    for msg in messages:
        if current and size + 4 + len(msg) > max_bytes:
            bundles.append(encode_bundle(current, timetag))
            current, size = [], 16
        current.append(msg)
        size += 4 + len(msg)
    if current:
        bundles.append(encode_bundle(current, timetag))
    return bundles


# ---------------------------------------------------------------------------------------- patterns

WILDCARD_CHARS = frozenset("*?[]{}")


def has_wildcard(address: str) -> bool:
    return not WILDCARD_CHARS.isdisjoint(address)


MAX_PATTERN_CHARS = 256  # longer wildcard patterns are refused: no controller needs them


class AddressPattern:
    """A compiled OSC address pattern; :meth:`match` runs in time linear in pattern x address length.

    The pattern is a list of tokens; matching keeps the set of reachable address positions as the bits
    of one integer (a bit-parallel NFA), so no input makes it backtrack: ``*`` extends every reachable
    position through its run of non-'/' characters in a few shifts, whatever the number of stars.
    """

    __slots__ = ("pattern", "tokens", "prefix")

    def __init__(self, pattern: str, tokens: tuple[tuple[str, Any], ...]) -> None:
        self.pattern = pattern
        self.tokens = tokens
        prefix = []
        for kind, arg in tokens:
            if kind != "lit":
                break
            prefix.append(arg)
        self.prefix = "".join(prefix)  # every match starts with it (a cheap pre-filter)

    def match(self, address: str) -> bool:
        if not address.startswith(self.prefix):
            return False
        n = len(address)
        masks: dict[str, int] = {}
        for i, ch in enumerate(address):
            masks[ch] = masks.get(ch, 0) | (1 << i)
        slash = masks.get("/", 0)
        full = (1 << n) - 1
        plain = full & ~slash  # positions holding a non-'/' character
        state = 1  # position 0 reachable
        for kind, arg in self.tokens:
            if kind == "lit":
                state = (state & masks.get(arg, 0)) << 1
            elif kind == "one":
                state = (state & plain) << 1
            elif kind == "star":
                state = _star(state, plain)
            elif kind == "set":
                chars, negate = arg
                m = 0
                for ch, bits in masks.items():
                    if ch != "/" and _in_set(ch, chars) != negate:
                        m |= bits
                state = (state & m) << 1
            elif kind == "alt":
                out = 0
                for option in arg:
                    x = state
                    for ch in option:
                        x = (x & masks.get(ch, 0)) << 1
                        if not x:
                            break
                    out |= x
                state = out
            else:  # "deep": '//' = '/' then any number of whole segments, each ending in '/'
                state = (state & slash) << 1
                if state:
                    low = state & -state
                    state |= (slash << 1) & ~((low << 1) - 1)
            if not state:
                return False
        return bool(state >> n & 1)

    def __repr__(self) -> str:
        return f"AddressPattern({self.pattern!r})"


def _star(state: int, plain: int) -> int:
    """Every position reachable from ``state`` over a run of non-'/' characters (log-step doubling)."""
    run, step = plain, 1
    while run and state:
        grown = state | ((state & run) << step)
        if grown == state:
            break
        state = grown
        run &= run >> step  # positions starting 2*step non-'/' characters in a row
        step <<= 1
    return state


def _in_set(ch: str, chars: tuple[tuple[str, str], ...]) -> bool:
    return any(lo <= ch <= hi for lo, hi in chars)


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> AddressPattern | None:
    """An OSC 1.0 address pattern as an :class:`AddressPattern`; None if malformed or too long.

    ``?`` one character, ``*`` any run (neither crosses '/'), ``[abc]`` / ``[a-z]`` / ``[!a-z]``
    a character set, ``{foo,bar}`` alternatives. OSC 1.1's ``//`` (any depth) is also accepted.
    Patterns over :data:`MAX_PATTERN_CHARS` characters are refused.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    tokens: list[tuple[str, Any]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if not tokens or tokens[-1][0] != "star":  # '**' is '*'
                tokens.append(("star", None))
        elif c == "?":
            tokens.append(("one", None))
        elif c == "[":
            close = pattern.find("]", i + 1)
            if close < 0:
                return None
            body = pattern[i + 1 : close]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not body or "/" in body:
                return None
            # '-' between two characters is a range; anywhere else it is itself.
            ranges: list[tuple[str, str]] = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    lo, hi = body[k], body[k + 2]
                    if lo > hi:
                        return None
                    ranges.append((lo, hi))
                    k += 3
                else:
                    ranges.append((body[k], body[k]))
                    k += 1
            tokens.append(("set", (tuple(ranges), negate)))
            i = close
        elif c == "{":
            close = pattern.find("}", i + 1)
            if close < 0:
                return None
            options = pattern[i + 1 : close].split(",")
            if any("/" in o or not WILDCARD_CHARS.isdisjoint(o) for o in options):
                return None
            tokens.append(("alt", tuple(dict.fromkeys(options))))
            i = close
        elif c == "/" and pattern.startswith("//", i):
            tokens.append(("deep", None))
            i += 1
        elif c in "]}":
            return None
        else:
            tokens.append(("lit", c))
        i += 1
    return AddressPattern(pattern, tuple(tokens))
