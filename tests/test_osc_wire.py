"""The strict OSC decoder/encoder, checked against python-osc (an independent implementation)."""

from __future__ import annotations

import math
import random
import struct
import time

import pytest
from pythonosc import osc_bundle_builder, osc_message_builder
from pythonosc.osc_message import OscMessage as PyOscMessage
from pythonosc.osc_packet import OscPacket

from _osc_helpers import MALFORMED
from vjengine.control.osc_wire import (
    IMMEDIATELY,
    OscDecodeError,
    compile_pattern,
    decode_packet,
    encode_bundle,
    encode_float_message,
    encode_message,
    pack_bundles,
    timetag_to_perf_s,
    timetag_to_unix_s,
    unix_s_to_timetag,
)


def _pyosc(address: str, *typed: tuple[str | None, object]) -> bytes:
    builder = osc_message_builder.OscMessageBuilder(address=address)
    for arg_type, value in typed:
        builder.add_arg(value, arg_type) if arg_type else builder.add_arg(value)
    return builder.build().dgram


def test_decodes_every_type_python_osc_builds() -> None:
    dgram = _pyosc(
        "/vj/test",
        ("i", -7), ("f", 0.25), ("d", 1e-300), ("s", "héllo"), ("b", b"\x01\x02\x03"),
        ("T", True), ("F", False), ("N", None), ("h", 2**40), ("m", (0, 0x90, 60, 100)),
        (None, [1, 2.5]),
    )
    (msg,) = decode_packet(dgram)
    assert msg.address == "/vj/test"
    assert msg.typetags == "ifdsbTFNhm[if]"
    assert msg.args[:9] == (-7, 0.25, 1e-300, "héllo", b"\x01\x02\x03", True, False, None, 2**40)
    assert msg.args[9] == bytes([0, 0x90, 60, 100])
    assert msg.args[10] == (1, 2.5)
    assert msg.timetag == IMMEDIATELY


def test_message_without_type_tags_is_zero_arguments() -> None:
    (msg,) = decode_packet(b"/vj/tap\x00")
    assert (msg.address, msg.typetags, msg.args) == ("/vj/tap", "", ())


def test_encoder_output_parses_in_python_osc() -> None:
    dgram = encode_message("/vj/status/x", [1, 2**40, 0.5, "calm", True, False, None, b"abcde"])
    parsed = PyOscMessage(dgram)
    assert parsed.address == "/vj/status/x"
    assert parsed.params == [1, 2**40, 0.5, "calm", True, False, None, b"abcde"]
    assert PyOscMessage(encode_float_message("/vj/audio/rms", 0.125)).params == [0.125]
    with pytest.raises(TypeError):
        encode_message("/x", [object()])


def test_bundles_and_nested_bundles_round_trip_through_python_osc() -> None:
    future_unix_s = time.time() + 3.0
    inner = osc_bundle_builder.OscBundleBuilder(future_unix_s)
    inner.add_content(osc_message_builder.OscMessageBuilder("/vj/bpm").build())
    outer = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
    outer.add_content(osc_message_builder.OscMessageBuilder("/vj/tap").build())
    outer.add_content(inner.build())
    first, second = decode_packet(outer.build().dgram)
    assert (first.address, first.timetag) == ("/vj/tap", IMMEDIATELY)
    assert second.address == "/vj/bpm"
    assert timetag_to_unix_s(second.timetag) == pytest.approx(future_unix_s, abs=1e-6)

    ours = encode_bundle([encode_float_message("/a", 1.0), encode_bundle([encode_message("/b", ["x"])], 5 << 32)])
    contents = [m.message for m in OscPacket(ours).messages]
    assert sorted((m.address, m.params[0]) for m in contents) == [("/a", 1.0), ("/b", "x")]


def test_nested_bundle_never_earlier_than_its_parent() -> None:
    parent_tag = unix_s_to_timetag(time.time() + 5)
    packet = encode_bundle([encode_bundle([encode_message("/x")], IMMEDIATELY)], parent_tag)
    (msg,) = decode_packet(packet)
    assert msg.timetag == parent_tag


@pytest.mark.parametrize("name,data,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_datagram_is_refused_with_its_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(OscDecodeError) as info:
        decode_packet(data)
    assert info.value.reason == reason, info.value


def test_python_osc_would_accept_what_we_refuse() -> None:
    """Why the server does not use python-osc's parser: these pass there, silently altered."""
    lenient = [d for _, d, _ in MALFORMED if d and d[:1] in b"/#"]
    accepted = 0
    for data in lenient:
        try:
            OscPacket(data)
            accepted += 1
        except Exception:
            pass
    assert accepted >= 5


def test_random_corruption_never_raises_anything_but_decode_errors() -> None:
    rng = random.Random(1234)
    seeds = [
        encode_message("/vj/axis/mood", [0.5]),
        encode_message("/vj/preset", ["calm"]),
        encode_bundle([encode_message("/vj/tap"), encode_bundle([encode_message("/vj/bpm", [128.0])], 9 << 32)]),
        encode_message("/vj/x", [b"blobby", 3, "s", None, True]),
    ]
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(4000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1:
                del data[rng.randrange(len(data) + 1):]
            elif op == 2:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
            elif data:
                i = rng.randrange(len(data))
                data[i:i + 4] = struct.pack(">i", rng.randint(-(2**31), 2**31 - 1))
        try:
            decode_packet(bytes(data))
            outcomes["ok"] += 1
        except OscDecodeError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000 and outcomes["ok"] > 0


@pytest.mark.parametrize(
    "pattern,address,matches",
    [
        ("/vj/axis/*", "/vj/axis/mood", True),
        ("/vj/axis/*", "/vj/axis/mood/release", False),
        ("/vj/*/mood", "/vj/axis/mood", True),
        ("/vj/axis/m??d", "/vj/axis/mood", True),
        ("/vj/axis/[a-m]*", "/vj/axis/mood", True),
        ("/vj/axis/[a-m]*", "/vj/axis/warp", False),
        ("/vj/axis/[!a-m]*", "/vj/axis/warp", True),
        ("/vj/axis/[mw]*", "/vj/axis/warp", True),
        ("/vj/{tap,resync}", "/vj/resync", True),
        ("/vj/{tap,resync}", "/vj/bpm", False),
        ("//bpm", "/vj/bpm", True),
        ("/vj/a.b", "/vj/axb", False),  # '.' is literal
        ("/vj/[-x]", "/vj/-", True),
    ],
)
def test_address_patterns(pattern: str, address: str, matches: bool) -> None:
    regex = compile_pattern(pattern)
    assert regex is not None
    assert bool(regex.match(address)) is matches


def test_malformed_patterns_compile_to_none() -> None:
    assert compile_pattern("/vj/[z-a]") is None
    assert compile_pattern("/vj/{a,b") is None
    assert compile_pattern("/vj/a]") is None


def test_time_tags() -> None:
    assert timetag_to_unix_s(0) is None and timetag_to_unix_s(IMMEDIATELY) is None
    now = time.time()
    assert timetag_to_unix_s(unix_s_to_timetag(now)) == pytest.approx(now, abs=1e-6)
    due = timetag_to_perf_s(unix_s_to_timetag(1000.5), now_unix_s=1000.0, now_perf_s=50.0)
    assert due == pytest.approx(50.5, abs=1e-6)
    assert timetag_to_perf_s(unix_s_to_timetag(999.0), now_unix_s=1000.0, now_perf_s=50.0) is None


def test_pack_bundles_respects_size_cap() -> None:
    messages = [encode_float_message(f"/vj/coord/axis{i}", i / 10) for i in range(100)]
    bundles = pack_bundles(messages, 1024)
    assert all(len(b) <= 1024 for b in bundles) and len(bundles) > 1
    decoded = [m for b in bundles for m in decode_packet(b)]
    assert [m.address for m in decoded] == [f"/vj/coord/axis{i}" for i in range(100)]
    assert all(math.isclose(m.args[0], i / 10, rel_tol=1e-6) for i, m in enumerate(decoded))


def _reference_regex(pattern: str):
    """The regex translation the matcher replaced (exponential on many stars), as an oracle."""
    import re

    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            close = pattern.index("]", i + 1)
            body = pattern[i + 1 : close]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            chars = "".join("-" if ch == "-" and 0 < k < len(body) - 1 else re.escape(ch) for k, ch in enumerate(body))
            out.append(("[^/" if neg else "[") + chars + "]")
            i = close
        elif c == "{":
            close = pattern.index("}", i + 1)
            out.append("(?:" + "|".join(re.escape(o) for o in pattern[i + 1 : close].split(",")) + ")")
            i = close
        elif c == "/" and pattern.startswith("//", i):
            out.append("/(?:.*/)?")
            i += 1
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "$")


def test_matcher_agrees_with_the_regex_oracle_on_random_patterns() -> None:
    import random

    rng = random.Random(18)
    atoms = ["a", "b", "/", "*", "?", "[ab]", "[!a]", "[a-b]", "{a,bb,}", "//", "-"]
    addresses = ["/" + "/".join("".join(rng.choice("ab-") for _ in range(rng.randint(0, 4)))
                                for _ in range(rng.randint(1, 3))) for _ in range(60)]
    checked = 0
    for _ in range(600):
        pattern = "/" + "".join(rng.choice(atoms) for _ in range(rng.randint(1, 7)))
        mine = compile_pattern(pattern)
        if mine is None:
            continue
        oracle = _reference_regex(pattern)
        for address in addresses:
            assert mine.match(address) == bool(oracle.match(address)), (pattern, address)
            checked += 1
    assert checked > 10000


def test_wildcard_flood_patterns_match_without_backtracking() -> None:
    """40 stars took the regex 55 s per message; here each is a handful of integer operations.
    Run in a child with a hard timeout so a regression fails instead of hanging the suite."""
    import subprocess
    import sys

    code = (
        "from vjengine.control.osc_space import AddressSpace\n"
        "from vjengine.control.osc_wire import compile_pattern, MAX_PATTERN_CHARS\n"
        "sp = AddressSpace(['prompt_blend', 'seed'], ['flash/amount'])\n"
        "for n in (32, 40, 60, 100):\n"
        "    assert sp.resolve('/vj/' + '*' * n + 'x') == []\n"
        "    assert sp.resolve('/vj/' + '*a' * n + 'b') == []\n"
        "    assert sp.resolve('/' + '*/' * 6 + '*' * n) == []\n"
        "assert sp.resolve('/vj/' + '*' * 40) != []  # still matches what it should\n"
        "assert compile_pattern('/vj/' + '*' * MAX_PATTERN_CHARS) is None\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
