"""OSC out: liblo's oscdump receives what we send, and the values match the AudioFrame."""

from __future__ import annotations

import math
import socket
import subprocess
import time
from types import MappingProxyType
from typing import Iterator

import pytest

from _osc_helpers import NEEDS_LIBLO, free_udp_port
from vjengine.audio.frame import AudioFrame
from vjengine.control.osc_out import OscOut, out_values, parse_feature_map, parse_target
from vjengine.control.osc_space import OUTPUTS, RESOLUME_BPM_RANGE, RESOLUME_TEMPO_ADDRESS
from vjengine.control.osc_wire import decode_packet
from vjengine.errors import ConfigError
from vjengine.mapping.features import read_feature

AXES = ("mood", "warp")


def _frame(**over: object) -> AudioFrame:
    bands = MappingProxyType({"sub": 0.125, "bass": 0.75, "low_mid": 0.375, "mid": 0.5, "high_mid": 0.25, "high": 0.0625})
    fields = dict(rms=0.3, level=0.625, bands=bands, centroid=0.4375, onset_strength=0.8125, onset=True, kick=False,
                  bpm=126.5, beat_phase=0.3125, bar_phase=0.578125, beat=True, bar=False, locked=True)
    fields.update(over)
    return AudioFrame(**fields)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _receive_all(sock: socket.socket, quiet_s: float = 0.15) -> list[tuple[str, tuple]]:
    got = []
    sock.settimeout(quiet_s)
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return got
        got += [(m.address, m.args) for m in decode_packet(data)]


@NEEDS_LIBLO
def test_oscdump_receives_features_beat_coordinates_and_preset() -> None:
    port = free_udp_port()
    dump = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frame = _frame()
    values = out_values(frame, coord=(0.25, 0.875), axis_names=AXES, preset_name="calm night", preset_index=2)
    out = OscOut([("127.0.0.1", port)], rate_hz=60.0)
    try:
        lines: list[str] = []
        import selectors

        sel = selectors.DefaultSelector()
        assert dump.stdout is not None
        sel.register(dump.stdout, selectors.EVENT_READ)
        now_s = 0.0
        deadline = time.monotonic() + 10.0
        # oscdump binds a moment after it starts: keep publishing until a whole snapshot arrived.
        while time.monotonic() < deadline and len({ln.split()[1] for ln in lines if len(ln.split()) > 2}) < len(values):
            out.publish(values, now_s)
            now_s += 1.0
            for _ in sel.select(timeout=0.1):
                lines.append(dump.stdout.readline())
    finally:
        dump.terminate()
        dump.wait(5)
        out.close()
    received: dict[str, tuple[str, str]] = {}
    for line in lines:  # "<timetag> /vj/audio/rms f 0.625000"
        parts = line.strip().split(" ", 3)
        if len(parts) == 4:
            received[parts[1]] = (parts[2], parts[3])
    assert set(received) == set(values)
    for address, value in values.items():
        tag, text = received[address]
        if isinstance(value, str):
            assert (tag, text) == ("s", f'"{value}"')
        else:
            assert tag == "f", address
            assert float(text) == pytest.approx(value, abs=2e-6), address
    # The values are the frame's, as the mapping reads them.
    assert float(received["/vj/audio/rms"][1]) == pytest.approx(read_feature(frame, "rms"), abs=1e-6)
    assert float(received["/vj/audio/bass"][1]) == pytest.approx(0.75, abs=1e-6)
    assert float(received["/vj/audio/flux"][1]) == pytest.approx(0.8125, abs=1e-6)
    assert float(received["/vj/beat/bpm"][1]) == pytest.approx(126.5, abs=1e-4)
    assert float(received["/vj/coord/warp"][1]) == pytest.approx(0.875, abs=1e-6)
    assert float(received["/vj/preset/index"][1]) == 2.0
    assert float(received["/vj/audio/onset"][1]) == 1.0 and float(received["/vj/audio/kick"][1]) == 0.0


def test_out_values_cover_the_declared_outputs() -> None:
    values = out_values(_frame(), coord=(0.1, 0.2), axis_names=AXES, preset_name="x", preset_index=0)
    declared = {o.template for o in OUTPUTS if "{" not in o.template} | {"/vj/coord/mood", "/vj/coord/warp"}
    assert set(values) == declared
    silent = out_values(AudioFrame.silent(), coord=(math.nan,), axis_names=("mood",))
    assert all(math.isfinite(v) for v in silent.values() if isinstance(v, float))


def test_rate_limit_and_pulse_latching(receiver: socket.socket) -> None:
    out = OscOut([receiver.getsockname()], rate_hz=30.0, bundle=True)
    fps = 120.0
    sends = 0
    pulse_frames = {7, 50}  # beats on frames that are not sent (30 Hz of 120 fps: every 4th frame)
    for i in range(240):  # two seconds of frames
        frame = _frame(beat=i in pulse_frames, onset=False)
        sends += out.publish(out_values(frame), i / fps)
    assert sends == 60  # 30 Hz for 2 s, evenly
    got = _receive_all(receiver)
    pulses = [args[0] for address, args in got if address == "/vj/beat/pulse"]
    assert len(pulses) == 60
    assert sum(pulses) == 2.0  # neither beat was lost, and each went out once
    assert pulses[pulses.index(1.0) + 1] == 0.0
    out.close()


def test_resolume_tempo_and_feature_map(receiver: socket.socket) -> None:
    out = OscOut([receiver.getsockname()], rate_hz=60.0, resolume=True,
                 feature_map=parse_feature_map(["vj/audio/bass=/composition/layers/1/video/opacity"]),
                 bundle=False)
    out.publish(out_values(_frame(bpm=128.0)), 0.0)
    out.publish(out_values(_frame(bpm=128.0)), 0.1)  # unchanged tempo: not re-sent within a second
    out.publish(out_values(_frame(bpm=140.0)), 0.2)
    got = _receive_all(receiver)
    lo, hi = RESOLUME_BPM_RANGE
    tempos = [args[0] for address, args in got if address == RESOLUME_TEMPO_ADDRESS]
    assert tempos == [pytest.approx((128 - lo) / (hi - lo), abs=1e-6), pytest.approx((140 - lo) / (hi - lo), abs=1e-6)]
    opacity = [args[0] for address, args in got if address == "/composition/layers/1/video/opacity"]
    assert opacity == [0.75, 0.75, 0.75]
    out.close()


def test_non_finite_values_go_out_as_zero_and_dead_targets_never_raise(receiver: socket.socket) -> None:
    dead_port = free_udp_port()
    out = OscOut([receiver.getsockname(), ("127.0.0.1", dead_port)], rate_hz=60.0, bundle=False)
    for i in range(5):
        out.publish({"/vj/audio/rms": math.nan, "/vj/beat/bpm": math.inf}, i / 10)
    got = _receive_all(receiver)
    assert got and all(args == (0.0,) for _, args in got)
    assert out.stats.sends == 5
    out.close()


def test_parse_target_and_map_errors() -> None:
    assert parse_target("10.0.0.2:7000") == ("10.0.0.2", 7000)
    assert parse_target("studio.local") == ("studio.local", 9001)
    assert parse_target(":7001") == ("127.0.0.1", 7001)
    with pytest.raises(ConfigError, match="'x:abc'"):
        parse_target("x:abc")
    with pytest.raises(ConfigError, match="70000"):
        parse_target("x:70000")
    with pytest.raises(ConfigError, match="unknown feature"):
        parse_feature_map(["vj/audio/nope=/a"])
    with pytest.raises(ConfigError, match="FEATURE=/osc/address"):
        parse_feature_map(["vj/audio/rms"])
    with pytest.raises(ConfigError, match="rate"):
        OscOut([("127.0.0.1", 9001)], rate_hz=0)
