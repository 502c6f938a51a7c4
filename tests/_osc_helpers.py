"""Shared helpers for the OSC tests: free ports, waiting, liblo tools, the malformed-packet corpus."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from typing import Callable

import pytest

from vjengine.control.osc_wire import encode_bundle, encode_message

NEEDS_LIBLO = pytest.mark.skipif(
    shutil.which("oscsend") is None or shutil.which("oscdump") is None,
    reason="oscsend/oscdump not found: apt-get install liblo-tools",
)


def free_udp_port() -> int:
    """A UDP port that was free a moment ago (for tools that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# How long a test waits for something that should happen: generous, for a loaded 2-core machine (where
# starting the OSC worker process alone can take seconds). A wait that succeeds returns at once, so
# only a failing test pays it.
DEADLINE_S = 60.0


def wait_until(predicate: Callable[[], bool], timeout_s: float = DEADLINE_S, interval_s: float = 0.005) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout_s`` has passed (its last answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def oscsend(port: int, address: str, types: str = "", *values: str) -> None:
    """Send one message with liblo's oscsend (a third-party client)."""
    cmd = ["oscsend", "127.0.0.1", str(port), address]
    if types:
        cmd += [types, *values]
    subprocess.run(cmd, check=True, capture_output=True, timeout=DEADLINE_S)


def send_raw(port: int, data: bytes, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, port))


_GOOD = encode_message("/vj/intensity", [0.5])  # /vj/intensity\0\0\0 ,f\0\0 <4 bytes>


def _bundle_with_element(size: int, element: bytes) -> bytes:
    return b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", size) + element


def _nested(depth: int) -> bytes:
    packet = _GOOD
    for _ in range(depth):
        packet = encode_bundle([packet])
    return packet


# (name, datagram, expected reason). Each must be refused whole, under exactly this reason.
MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty"),
    ("garbage", b"\x00\x01\x02\x03hello", "not_osc"),
    ("http request", b"GET / HTTP/1.1\r\n\r\n", "not_osc"),
    ("address without NUL", b"/vj/intensity", "truncated"),
    ("address unpadded", b"/vj/a\x00", "bad_padding"),
    ("address non-zero padding", b"/vj/a\x00X\x00,f\x00\x00\x00\x00\x00\x00", "bad_padding"),
    ("type tags unpadded", b"/vj/intensity\x00\x00\x00,f\x00", "bad_padding"),
    ("float cut to 2 bytes", _GOOD[:-2], "truncated"),
    ("float missing", _GOOD[:-4], "truncated"),
    ("double cut", b"/vj/bpm\x00,d\x00\x00" + b"\x40\x5e\x00\x00", "truncated"),
    ("string arg without NUL", b"/vj/preset\x00\x00,s\x00\x00calm", "truncated"),
    ("string arg non-zero pad", b"/vj/preset\x00\x00,s\x00\x00calm\x00\x01\x00\x00", "bad_padding"),
    ("blob longer than packet", b"/vj/preset\x00\x00,b\x00\x00" + struct.pack(">i", 100) + b"abcd", "truncated"),
    ("blob negative size", b"/vj/preset\x00\x00,b\x00\x00" + struct.pack(">i", -4), "truncated"),
    ("blob non-zero pad", b"/vj/preset\x00\x00,b\x00\x00" + struct.pack(">i", 1) + b"a\x01\x00\x00", "bad_padding"),
    ("no comma", b"/vj/intensity\x00\x00\x00f\x00\x00\x00\x3f\x00\x00\x00", "bad_type_tag"),
    ("unknown type tag", b"/vj/intensity\x00\x00\x00,x\x00\x00", "bad_type_tag"),
    ("unbalanced ]", b"/vj/intensity\x00\x00\x00,]\x00\x00", "bad_type_tag"),
    ("unbalanced [", b"/vj/intensity\x00\x00\x00,[f\x00" + b"\x3f\x00\x00\x00", "bad_type_tag"),
    ("non-UTF-8 string", b"/vj/preset\x00\x00,s\x00\x00\xff\xfe\x00\x00", "bad_string"),
    ("non-UTF-8 address", b"/\xff\xfe\x00,\x00\x00\x00", "bad_address"),
    ("space in address", b"/vj/in tensity\x00\x00,f\x00\x00\x3f\x00\x00\x00", "bad_address"),
    ("unbalanced [ in pattern", b"/vj/[ab\x00,\x00\x00\x00", "bad_address"),
    ("trailing bytes", _GOOD + b"\x00\x00\x00\x00", "trailing_bytes"),
    ("trailing odd bytes", _GOOD + b"\x01\x02", "trailing_bytes"),
    ("bundle header cut", b"#bundle\x00\x00\x00\x00\x00", "truncated"),
    ("bundle prefix cut", b"#bund", "not_osc"),
    ("bundle element size past end", _bundle_with_element(256, _GOOD), "truncated"),
    ("bundle element size zero", _bundle_with_element(0, b""), "bad_bundle"),
    ("bundle element size negative", _bundle_with_element(-8, _GOOD), "bad_bundle"),
    ("bundle element size not x4", _bundle_with_element(len(_GOOD) - 2, _GOOD[:-2]), "bad_bundle"),
    ("bundle element neither", _bundle_with_element(8, b"xxxxxxxx"), "bad_bundle"),
    ("bundle element size cut", b"#bundle\x00" + struct.pack(">Q", 1) + b"\x00\x00", "truncated"),
    ("bundle with bad message", encode_bundle([_GOOD, _GOOD[:-4] + b"\x00\x00\x00"]), "bad_bundle"),
    ("bundle with truncated message", encode_bundle([_GOOD, _GOOD[:-4]]), "truncated"),
    ("bundles nested 9 deep", _nested(9), "bad_bundle"),
]
# "bundle with bad message": the element size (len-1) is not a multiple of 4 -> bad_bundle.
