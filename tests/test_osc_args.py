"""The shared --osc-* options build the server and OSC out the show runs."""

from __future__ import annotations

import argparse

import pytest

from vjengine.control.commands import Command, CommandQueue
from vjengine.control.osc_args import add_osc_arguments, format_event, out_from_args, server_from_args
from vjengine.control.osc_server import OscEvent
from vjengine.errors import ConfigError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_osc_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_loopback_9000_and_no_out() -> None:
    args = _parse()
    server = server_from_args(args, CommandQueue())
    assert (server.host, server.port, server.allow, server.worker) == ("127.0.0.1", 9000, None, "process")
    assert out_from_args(args) is None


def test_options_reach_server_and_out() -> None:
    args = _parse("--osc-host", "0.0.0.0", "--osc-port", "0", "--osc-allow", "10.0.0.0/8", "--osc-allow", "192.168.1.5",
                  "--osc-max-packet", "2048", "--osc-out", "127.0.0.1:9101", "--osc-out", ":9102",
                  "--osc-out-rate", "30", "--osc-resolume", "--osc-map", "vj/beat/bpm=/x/y", "--osc-out-no-bundle",
                  "--osc-worker", "thread")
    server = server_from_args(args, CommandQueue(), axis_names=["warp"])
    assert server.host == "0.0.0.0" and server.max_packet_bytes == 2048 and server.worker == "thread"
    assert [str(n) for n in server.allow or ()] == ["10.0.0.0/8", "192.168.1.5/32"]
    out = out_from_args(args)
    assert out is not None
    try:
        assert out.targets == [("127.0.0.1", 9101), ("127.0.0.1", 9102)]
        assert out.period_s == pytest.approx(1 / 30) and out.resolume and not out.bundle
        assert out.feature_map == {"/vj/beat/bpm": "/x/y"}
    finally:
        out.close()


def test_bad_options_are_config_errors_naming_the_value() -> None:
    with pytest.raises(ConfigError, match="nonsense"):
        server_from_args(_parse("--osc-allow", "nonsense"), CommandQueue())
    with pytest.raises(ConfigError, match="70000"):
        server_from_args(_parse("--osc-port", "70000"), CommandQueue())
    with pytest.raises(ConfigError, match="bogus"):
        out_from_args(_parse("--osc-out", "127.0.0.1:9101", "--osc-map", "bogus"))


def test_osc_log_prints_events(capsys: pytest.CaptureFixture[str]) -> None:
    server = server_from_args(_parse("--osc-log"), CommandQueue())
    assert server.observer is not None
    server.observer(OscEvent(0.0, ("127.0.0.1", 5000), "rejected", "wrong_type", "/vj/bpm takes a number",
                             "/vj/bpm", ("fast",)))
    assert "REFUSED  /vj/bpm 'fast' [wrong_type] /vj/bpm takes a number" in capsys.readouterr().out


def test_format_event_shows_deferred_commands() -> None:
    cmd = Command("tap", received_s=10.0, apply_at_s=10.25, source="osc")
    line = format_event(OscEvent(10.0, ("10.0.0.2", 7000), "accepted", "", "", "/vj/tap", (), (cmd,)))
    assert "10.0.0.2:7000" in line and "-> tap at +250 ms" in line
