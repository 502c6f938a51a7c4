"""The OSC server over real UDP on 127.0.0.1: liblo's oscsend and python-osc as clients."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from typing import Iterator

import pytest
from pythonosc import osc_bundle_builder, osc_message_builder, udp_client

from _osc_helpers import DEADLINE_S, MALFORMED, NEEDS_LIBLO, oscsend, send_raw, wait_until
from vjengine.control.commands import Command, CommandQueue
from vjengine.control.osc_server import OscEvent, OscServer, status_messages
from vjengine.control.osc_wire import decode_packet, encode_message
from vjengine.errors import ConfigError

AXES = ["mood", "warp", "detail"]
FX = ["bloom/amount", "feedback/amount", "feedback/zoom"]


class Collector:
    """Drains the queue like the render thread does, keeping what came out."""

    def __init__(self, queue: CommandQueue, server: OscServer | None = None) -> None:
        self.queue = queue
        self.server = server  # for the failure message
        self.commands: list[Command] = []

    def wait_for(self, n: int, timeout_s: float = DEADLINE_S, now_s: float | None = None) -> list[Command]:
        start = len(self.commands)

        def enough() -> bool:
            self.commands += self.queue.drain(now_s)
            return len(self.commands) - start >= n

        ok = wait_until(enough, timeout_s)
        state = "" if self.server is None or ok else (
            f"; server {self.server.worker} receiving={self.server.receiving} {self.server.stats.snapshot()}")
        assert ok, f"expected {n} commands, got {self.commands[start:]}{state}"
        return self.commands[start:]


@pytest.fixture
def queue() -> CommandQueue:
    return CommandQueue()


@pytest.fixture(params=["thread", "process"])
def server(request: pytest.FixtureRequest, queue: CommandQueue) -> Iterator[OscServer]:
    """The server in both modes: receiving in a thread, or in a worker process."""
    events: list[OscEvent] = []
    srv = OscServer(queue, port=0, axis_names=AXES, fx_params=FX,
                    status_provider=lambda: {"preset": "calm", "bpm": 124.0, "blackout": False,
                                             "axes": {"mood": 0.25}},
                    observer=events.append, worker=request.param)
    srv.events = events  # type: ignore[attr-defined]
    srv.start()
    yield srv
    srv.stop()


def _stats_total(server: OscServer, key: str, n: int) -> bool:
    return wait_until(lambda: server.stats.snapshot()[key] >= n)


# (oscsend types/values) -> (kind, target, value)
ONE_OF_EACH = [
    (("/vj/axis/mood", "f", "0.25"), ("axis", "mood", 0.25)),
    (("/vj/axis/warp", "d", "0.75"), ("axis", "warp", 0.75)),
    (("/vj/axis/detail", "i", "1"), ("axis", "detail", 1.0)),
    (("/vj/axis/mood", "h", "0"), ("axis", "mood", 0.0)),
    (("/vj/axis/mood", "s", "0.5"), ("axis", "mood", 0.5)),
    (("/vj/axis/warp/release",), ("axis_release", "warp", None)),
    (("/vj/axis/warp/nudge", "f", "-0.125"), ("axis_nudge", "warp", -0.125)),
    (("/vj/preset", "s", "calm"), ("preset", "", "calm")),
    (("/vj/preset", "i", "2"), ("preset", "", 2)),
    (("/vj/preset", "S", "club"), ("preset", "", "club")),
    (("/vj/bank", "s", "night"), ("bank", "", "night")),
    (("/vj/bank", "f", "1"), ("bank", "", 1)),
    (("/vj/fx/bloom/amount", "f", "0.375"), ("fx", "bloom.amount", 0.375)),
    (("/vj/intensity", "f", "1.5"), ("intensity", "", 1.0)),  # clamped
    (("/vj/intensity", "s", "0.5"), ("intensity", "", 0.5)),
    (("/vj/blackout", "T"), ("blackout", "", True)),
    (("/vj/blackout", "F"), ("blackout", "", False)),
    (("/vj/blackout", "i", "1"), ("blackout", "", True)),
    (("/vj/tap",), ("tap", "", None)),
    (("/vj/tap", "T"), ("tap", "", None)),
    (("/vj/tap", "I"), ("tap", "", None)),
    (("/vj/bpm", "f", "128"), ("bpm", "", 128.0)),
    (("/vj/bpm", "d", "174.5"), ("bpm", "", 174.5)),
    (("/vj/resync", "i", "1"), ("resync", "", None)),
    (("/vj/crossfade", "f", "4"), ("crossfade", "", 4.0)),
]


@NEEDS_LIBLO
def test_oscsend_each_kind_and_argument_type(server: OscServer, queue: CommandQueue) -> None:
    collector = Collector(queue, server)
    for send, (kind, target, value) in ONE_OF_EACH:
        oscsend(server.port, *send)
        (cmd,) = collector.wait_for(1)
        assert (cmd.kind, cmd.target, cmd.value) == (kind, target, value), send
        assert type(cmd.value) is type(value), send
        assert cmd.source == "osc" and cmd.apply_at_s is None
    snap = server.stats.snapshot()
    assert snap["accepted"] == len(ONE_OF_EACH) and snap["clamped"] == 1 and snap["rejected_total"] == 0


@NEEDS_LIBLO
def test_oscsend_bad_arguments_are_counted_by_reason(server: OscServer, queue: CommandQueue) -> None:
    bad = [
        (("/vj/nope", "f", "1"), "unknown_address"),
        (("/vj/axis/colour", "f", "0.5"), "unknown_address"),
        (("/vj/intensity", "ff", "0.1", "0.2"), "wrong_count"),
        (("/vj/intensity",), "wrong_count"),
        (("/vj/intensity", "s", "loud"), "wrong_type"),
        (("/vj/intensity", "c", "x"), "wrong_type"),
        (("/vj/intensity", "m", "00903c64"), "wrong_type"),
        (("/vj/axis/mood", "f", "nan"), "not_finite"),
        (("/vj/axis/mood", "d", "inf"), "not_finite"),
        (("/vj/bpm", "f", "-inf"), "not_finite"),
        (("/vj/preset", "f", "1.5"), "wrong_type"),
    ]
    for send, _ in bad:
        oscsend(server.port, *send)
    oscsend(server.port, "/vj/tap", "i", "0")  # a button's release: ignored, not refused
    oscsend(server.port, "/vj/axis/mood", "f", "0.5")  # and the show goes on
    assert Collector(queue, server).wait_for(1)[0].value == 0.5
    snap = server.stats.snapshot()
    assert snap["rejected"] == dict(Counter(reason for _, reason in bad))
    assert snap["ignored"] == 1 and snap["accepted"] == 1
    assert snap["messages"] == snap["accepted"] + snap["ignored"] + snap["rejected_total"]
    assert "refused" in server.stats.hud_line()


@NEEDS_LIBLO
def test_wildcards_reach_every_matching_address(server: OscServer, queue: CommandQueue) -> None:
    collector = Collector(queue, server)
    oscsend(server.port, "/vj/axis/*", "f", "0.5")
    assert sorted((c.kind, c.target, c.value) for c in collector.wait_for(3)) == [
        ("axis", "detail", 0.5), ("axis", "mood", 0.5), ("axis", "warp", 0.5)]
    oscsend(server.port, "/vj/axis/[mw]*/release")
    assert sorted(c.target for c in collector.wait_for(2)) == ["mood", "warp"]
    oscsend(server.port, "/vj/fx/*/amount", "f", "0.25")
    assert sorted(c.target for c in collector.wait_for(2)) == ["bloom.amount", "feedback.amount"]
    oscsend(server.port, "/vj/{tap,resync}")
    assert sorted(c.kind for c in collector.wait_for(2)) == ["resync", "tap"]
    oscsend(server.port, "/vj/axis/z*", "f", "0.5")
    assert _stats_total(server, "rejected_total", 1)
    assert server.stats.snapshot()["rejected"] == {"unknown_address": 1}
    assert server.stats.snapshot()["commands"] == 9


def test_python_osc_client_bundles_nested_and_future_time_tag(server: OscServer, queue: CommandQueue) -> None:
    client = udp_client.UDPClient("127.0.0.1", server.port)
    collector = Collector(queue, server)

    def msg(address: str, *args: object) -> osc_message_builder.OscMessage:
        builder = osc_message_builder.OscMessageBuilder(address)
        for a in args:
            builder.add_arg(a)
        return builder.build()

    now_bundle = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
    now_bundle.add_content(msg("/vj/axis/mood", 0.125))
    now_bundle.add_content(msg("/vj/preset", "calm"))
    inner = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
    inner.add_content(msg("/vj/blackout", True))
    innermost = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
    innermost.add_content(msg("/vj/bpm", 130.0))
    inner.add_content(innermost.build())
    now_bundle.add_content(inner.build())
    client.send(now_bundle.build())
    got = collector.wait_for(4)
    assert [(c.kind, c.value) for c in got] == [("axis", 0.125), ("preset", "calm"), ("blackout", True), ("bpm", 130.0)]
    assert all(c.apply_at_s is None for c in got)

    delay_s = 1.5
    sent_perf_s = time.perf_counter()
    later = osc_bundle_builder.OscBundleBuilder(time.time() + delay_s)
    later.add_content(msg("/vj/intensity", 0.25))
    later.add_content(msg("/vj/tap"))
    client.send(later.build())
    client.send(msg("/vj/axis/warp", 0.875))  # the server does not wait for the future bundle
    # Drained as of the moment of sending (however long a loaded machine took to get here): only the
    # untimed message is due then; the bundle is held back.
    (immediate,) = collector.wait_for(1, now_s=sent_perf_s)
    assert (immediate.kind, immediate.value) == ("axis", 0.875)
    assert _stats_total(server, "deferred", 2)
    assert queue.drain(sent_perf_s + delay_s - 0.2) == []  # held back: not due yet
    due = collector.wait_for(2)
    # One bundle, one due time: drained together, in bundle order.
    assert [(c.kind, c.value) for c in due] == [("intensity", 0.25), ("tap", None)]
    assert due[0].apply_at_s == due[1].apply_at_s == pytest.approx(sent_perf_s + delay_s, abs=0.15)
    assert time.perf_counter() >= due[0].apply_at_s

    too_late = osc_bundle_builder.OscBundleBuilder(time.time() + 3600)
    too_late.add_content(msg("/vj/tap"))
    client.send(too_late.build())
    assert _stats_total(server, "rejected_total", 1)
    assert server.stats.snapshot()["rejected"] == {"too_far_future": 1}


def test_status_reply_from_provider(server: OscServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(DEADLINE_S)
        sock.sendto(encode_message("/vj/status"), ("127.0.0.1", server.port))
        replies = {}
        while "/vj/status/end" not in replies:
            data, sender = sock.recvfrom(65536)
            assert sender[1] == server.port  # replies come from the server's port
            replies.update({m.address: m.args[0] for m in decode_packet(data)})
        # A reply to another port on the sender's host (TouchDesigner listens on its OSC In port).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.settimeout(DEADLINE_S)
            sock.sendto(encode_message("/vj/status", [listener.getsockname()[1]]), ("127.0.0.1", server.port))
            data, _ = listener.recvfrom(65536)
            assert decode_packet(data)
    assert replies["/vj/status/preset"] == "calm"
    assert replies["/vj/status/bpm"] == 124.0
    assert replies["/vj/status/blackout"] == 0.0
    assert replies["/vj/status/axes/mood"] == 0.25
    assert replies["/vj/status/osc/accepted"] >= 0
    assert replies["/vj/status/end"] == len(replies) - 1


def test_status_without_provider_is_a_command_the_render_thread_answers(queue: CommandQueue) -> None:
    with OscServer(queue, port=0) as srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(DEADLINE_S)
        sock.sendto(encode_message("/vj/status"), ("127.0.0.1", srv.port))
        (cmd,) = Collector(queue).wait_for(1)
        assert cmd.kind == "status" and cmd.value == sock.getsockname()
        srv.send_status(cmd.value, {"fps": 60.0, "preset": "x"})  # what the render thread does
        replies = {m.address: m.args[0] for m in decode_packet(sock.recvfrom(65536)[0])}
    assert replies == {"/vj/status/fps": 60.0, "/vj/status/preset": "x", "/vj/status/end": 2}


def test_status_messages_split_into_bundles_under_cap() -> None:
    state = {f"key{i}": float(i) for i in range(200)}
    packets = status_messages(state)
    assert len(packets) > 1 and all(len(p) <= 1024 for p in packets)
    values = {m.address: m.args[0] for p in packets for m in decode_packet(p)}
    assert values["/vj/status/key199"] == 199.0 and values["/vj/status/end"] == 200


def test_malformed_corpus_counted_by_reason_and_server_keeps_working(server: OscServer, queue: CommandQueue) -> None:
    events: list[OscEvent] = server.events  # type: ignore[attr-defined]
    for _, data, _ in MALFORMED:
        if data:  # a zero-length datagram is sent too, below
            send_raw(server.port, data)
    send_raw(server.port, b"")
    send_raw(server.port, b"/vj/intensity\x00\x00\x00,f\x00\x00" + b"\x00" * (server.max_packet_bytes))  # oversize
    send_raw(server.port, encode_message("/vj/axis/mood", [0.5]))
    (cmd,) = Collector(queue, server).wait_for(1)
    assert (cmd.kind, cmd.target, cmd.value) == ("axis", "mood", 0.5)
    expected = Counter(reason for _, _, reason in MALFORMED) + Counter({"oversize": 1})
    assert _stats_total(server, "packets", len(MALFORMED) + 2)
    assert wait_until(lambda: server.stats.snapshot()["rejected"] == dict(expected))
    snap = server.stats.snapshot()
    assert snap["packets"] == snap["packets_ok"] + snap["rejected_total"] == len(MALFORMED) + 2
    assert wait_until(lambda: sum(e.outcome == "rejected" for e in events) == sum(expected.values()))
    assert Counter(e.reason for e in events if e.outcome == "rejected") == expected
    assert server.receiving


def test_burst_of_10000_messages_counts_add_up(server: OscServer, queue: CommandQueue) -> None:
    n = 10_000
    unknown = encode_message("/vj/nope", [1.0])
    broken = encode_message("/vj/axis/mood", [0.5])[:-2]
    plan = [encode_message("/vj/axis/mood", [i / n]) if i % 10 < 8 else unknown if i % 10 == 8 else broken
            for i in range(n)]
    last_good = (n - 3) / n
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in plan:
            sock.sendto(data, ("127.0.0.1", server.port))
    # Every datagram is either read by the server or counted as dropped by the kernel (SO_RXQ_OVFL).
    assert wait_until(lambda: (lambda s: s["packets"] + s["kernel_dropped"] >= n)(server.stats.snapshot()))
    assert wait_until(lambda: (lambda s: s["commands"] == s["enqueued"] + s["coalesced"] + s["queue_full"])(
        server.stats.snapshot()))
    snap = server.stats.snapshot()
    assert snap["packets"] + snap["kernel_dropped"] == n
    assert snap["packets"] == snap["packets_ok"] + snap["rejected"].get("truncated", 0)
    assert snap["messages"] == snap["accepted"] + snap["rejected"].get("unknown_address", 0)
    assert snap["packets"] > n // 10  # most arrive on loopback
    assert snap["commands"] == snap["accepted"]
    assert snap["commands"] == snap["enqueued"] + snap["coalesced"] + snap["queue_full"]
    drained = queue.drain()
    assert len(drained) + queue.dropped == snap["enqueued"]
    if snap["kernel_dropped"] == 0:
        assert drained[-1].value == pytest.approx(last_good, abs=1e-6)  # the newest value always gets through
    send_raw(server.port, encode_message("/vj/tap"))
    (cmd,) = Collector(queue, server).wait_for(1)
    assert cmd.kind == "tap"


def test_full_queue_is_counted_not_blocking() -> None:
    small = CommandQueue(maxsize=5)
    with OscServer(small, port=0) as srv:
        for _ in range(12):
            send_raw(srv.port, encode_message("/vj/tap"))
        assert _stats_total(srv, "messages", 12)
        snap = srv.stats.snapshot()
    assert snap["accepted"] == 12 and snap["rejected"] == {}
    assert (snap["enqueued"], snap["queue_full"]) == (5, 7)
    assert "7 lost to a full queue" in srv.stats.hud_line()
    assert len(small.drain()) == 5 and small.dropped == 7


def test_allowlist(queue: CommandQueue) -> None:
    with OscServer(queue, port=0, allow=["10.9.8.7", "192.168.0.0/16"]) as srv:
        send_raw(srv.port, encode_message("/vj/tap"))
        assert _stats_total(srv, "packets", 1)
        assert srv.stats.snapshot()["rejected"] == {"not_allowed": 1}
        assert queue.drain() == []
    with OscServer(queue, port=0, allow=["127.0.0.0/8"]) as srv:
        send_raw(srv.port, encode_message("/vj/tap"))
        assert Collector(queue).wait_for(1)[0].kind == "tap"
    with pytest.raises(ConfigError, match="not-an-ip"):
        OscServer(queue, port=0, allow=["not-an-ip"])


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))  # UDP connect sends nothing; it picks a route
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_default_bind_is_loopback_only(queue: CommandQueue) -> None:
    with OscServer(queue, port=0) as srv:
        assert srv.local_address is not None and srv.local_address[0] == "127.0.0.1"
        other_ip = _non_loopback_ipv4()
        if other_ip is not None:
            send_raw(srv.port, encode_message("/vj/tap"), host=other_ip)
            send_raw(srv.port, encode_message("/vj/tap"))  # a marker on loopback, sent after it
            assert wait_until(lambda: srv.stats.snapshot()["packets"] >= 1)
            assert srv.stats.snapshot()["packets"] == 1  # only the marker: not reachable from outside
    if other_ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine to test the 0.0.0.0 bind from")
    with OscServer(queue, host="0.0.0.0", port=0) as srv:
        send_raw(srv.port, encode_message("/vj/tap"), host=other_ip)
        assert Collector(queue).wait_for(1)[0].kind == "tap"


def test_port_in_use_is_a_config_error(server: OscServer, queue: CommandQueue) -> None:
    with pytest.raises(ConfigError, match=str(server.port)) as err:
        OscServer(queue, port=server.port).start()
    assert "--osc-port 0" in str(err.value)  # the way out: any free port


def test_observer_errors_and_renames_do_not_stop_the_server(server: OscServer, queue: CommandQueue) -> None:
    def broken(event: OscEvent) -> None:
        raise RuntimeError("observer bug")

    server.observer = broken
    server.set_names(["hue"], None)
    # A worker process takes the new names from its control pipe: poll until "hue" is accepted.
    applied: list[Command] = []

    def hue_accepted() -> bool:
        applied.extend(queue.drain())
        return bool(applied)

    deadline = time.monotonic() + DEADLINE_S
    while not applied and time.monotonic() < deadline:
        send_raw(server.port, encode_message("/vj/axis/hue", [0.5]))
        wait_until(hue_accepted, 0.2)
    assert [(c.target, c.value) for c in applied][:1] == [("hue", 0.5)]
    rejected_before = server.stats.snapshot()["rejected_total"]
    send_raw(server.port, encode_message("/vj/axis/mood", [0.5]))  # no longer exists
    assert _stats_total(server, "rejected_total", rejected_before + 1)


def test_stop_ends_the_receiver_and_frees_the_port(queue: CommandQueue) -> None:
    import threading

    srv = OscServer(queue, port=0).start()
    port = srv.port
    assert srv.receiving
    srv.stop()  # returns once the receiving thread has ended (it wakes at least every wait_timeout_s)
    assert not srv.receiving
    assert not [t for t in threading.enumerate() if t.name == f"osc-server:{port}"]
    with OscServer(queue, port=port) as again:
        assert again.port == port


def test_datagrams_the_kernel_drops_are_counted(queue: CommandQueue) -> None:
    """Stall the server thread so the socket buffer overflows: what is lost is still accounted for."""
    import threading

    gate = threading.Event()
    with OscServer(queue, port=0, observer=lambda event: gate.wait(DEADLINE_S)) as srv:
        n = 20_000
        tap = encode_message("/vj/tap")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(n):
                sock.sendto(tap, ("127.0.0.1", srv.port))
        gate.set()
        assert wait_until(lambda: (lambda s: s["packets"] + s["kernel_dropped"] >= n)(srv.stats.snapshot()))
        snap = srv.stats.snapshot()
    assert snap["packets"] + snap["kernel_dropped"] == n
    assert snap["packets"] == snap["accepted"]


def test_fader_flood_is_coalesced_in_order(queue: CommandQueue) -> None:
    """A backlog of fader values collapses to the newest per control, without reordering across a tap."""
    import threading

    gate, observing = threading.Event(), threading.Event()

    def hold(event) -> None:  # the server sits on the first message until the whole flood is queued
        observing.set()
        gate.wait(DEADLINE_S)

    with OscServer(queue, port=0, axis_names=AXES, observer=hold) as srv:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(200):
                sock.sendto(encode_message("/vj/axis/mood", [i / 1000]), ("127.0.0.1", srv.port))
                if i == 99:
                    sock.sendto(encode_message("/vj/tap"), ("127.0.0.1", srv.port))
        assert observing.wait(DEADLINE_S)  # loopback sendto queues at once: all of it waits in the socket
        gate.set()
        assert wait_until(lambda: srv.stats.snapshot()["messages"] == 201)
        assert wait_until(lambda: (lambda s: s["enqueued"] + s["coalesced"] == s["commands"])(srv.stats.snapshot()))
        snap = srv.stats.snapshot()
    drained = queue.drain()
    kinds = [c.kind for c in drained]
    tap_at = kinds.index("tap")
    before = [c.value for c in drained[:tap_at]]
    after = [c.value for c in drained[tap_at + 1:]]
    assert before == sorted(before) and after == sorted(after)
    assert before[-1] == pytest.approx(0.099, abs=1e-6) and after[-1] == pytest.approx(0.199, abs=1e-6)
    assert snap["coalesced"] > 0 and len(drained) == 201 - snap["coalesced"]


def test_coalescing_can_be_turned_off(queue: CommandQueue) -> None:
    with OscServer(queue, port=0, axis_names=AXES, coalesce=False) as srv:
        for i in range(50):
            srv.handle_datagram(encode_message("/vj/axis/mood", [i / 100]), ("127.0.0.1", 1))
    assert [c.value for c in queue.drain()] == pytest.approx([i / 100 for i in range(50)], abs=1e-6)


def test_worker_process_death_falls_back_to_a_thread(queue: CommandQueue) -> None:
    with OscServer(queue, port=0, worker="process") as srv:
        send_raw(srv.port, encode_message("/vj/tap"))
        assert Collector(queue).wait_for(1)[0].kind == "tap"
        os.kill(srv.worker_pid, signal.SIGKILL)
        assert wait_until(lambda: srv.worker == "thread" and srv.receiving)
        assert srv.worker_pid is None
        send_raw(srv.port, encode_message("/vj/resync"))
        assert Collector(queue).wait_for(1)[0].kind == "resync"
    with pytest.raises(ConfigError, match="fibre"):
        OscServer(queue, worker="fibre")


def test_rate_limited_log_says_how_many_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from vjengine.logonce import LogOnce

    now = [100.0]  # an injected clock: the test decides when the interval has passed
    limited = LogOnce(logging.getLogger("test.osc.ratelimit"), every_s=0.2, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.osc.ratelimit"):
        for _ in range(50):
            limited.warning("truncated", "refused %s", "x")
        limited.warning("bad_padding", "refused %s", "y")  # another reason is not held back by the first
        now[0] += 0.19
        limited.warning("truncated", "refused %s", "held")  # still inside the interval
        now[0] += 0.02
        limited.warning("truncated", "refused %s", "z")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["refused x", "refused y", "refused z (50 more like it since)"]


def test_fast_path_for_repeated_fader_shapes_decodes_the_same(queue: CommandQueue) -> None:
    srv = OscServer(queue, port=0, axis_names=AXES)  # not started: datagrams handed in directly
    sender = ("127.0.0.1", 1)
    good = encode_message("/vj/axis/mood", [0.25])
    for data in (good, encode_message("/vj/axis/mood", [0.75]), encode_message("/vj/axis/mood", [float("nan")]),
                 encode_message("/vj/axis/mood", [7.0]), good[:-1], good + b"\x00\x00\x00\x00",
                 encode_message("/vj/axis/mood", [1]), encode_message("/vj/axis/mood", [0])):
        srv.handle_datagram(data, sender)
    assert len(srv._shapes) == 2  # ",f" and ",i" for this address
    assert [c.value for c in queue.drain()] == [0.25, 0.75, 1.0, 1.0, 0.0]
    snap = srv.stats.snapshot()
    assert snap["rejected"] == {"not_finite": 1, "truncated": 1, "trailing_bytes": 1}
    assert snap["clamped"] == 1


def test_a_future_bundle_falls_due_as_one(queue: CommandQueue) -> None:
    """Every message of a bundle gets the same due time, so one drain applies them all, in order."""
    builder = osc_bundle_builder.OscBundleBuilder(time.time() + 0.5)
    sent = []
    for i in range(40):  # enough messages that per-message clock readings would drift apart
        m = osc_message_builder.OscMessageBuilder(address="/vj/intensity" if i % 2 else "/vj/tap")
        if i % 2:
            m.add_arg(i / 64.0)  # exact in float32
        builder.add_content(m.build())
        sent.append(("intensity", i / 64.0) if i % 2 else ("tap", None))
    server = OscServer(queue, port=0, coalesce=False)
    server.handle_datagram(builder.build().dgram, ("127.0.0.1", 9999))
    held = queue.drain(time.perf_counter())
    assert held == []
    due_s = {entry[0] for entry in queue._heap}
    assert len(due_s) == 1
    assert [(c.kind, c.value) for c in queue.drain(due_s.pop())] == sent


def test_open_bind_without_allowlist_warns(queue: CommandQueue, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="vjengine.control.osc_server"):
        with OscServer(queue, host="0.0.0.0", port=0):
            pass
        assert any("no allowlist" in r.getMessage() and "--osc-allow" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with OscServer(queue, host="0.0.0.0", port=0, allow=["10.0.0.0/8"]), OscServer(queue, port=0):
            pass
        assert not any("no allowlist" in r.getMessage() for r in caplog.records)


def test_status_reply_port_from_an_unlisted_remote_sender_is_ignored(queue: CommandQueue) -> None:
    """16 bytes in, a kilobyte out at a port of the sender's choosing: only for trusted senders."""
    srv = OscServer(queue, host="0.0.0.0", port=0)  # not started: handle_datagram is the receive path
    srv.handle_datagram(encode_message("/vj/status", [53]), ("10.1.2.3", 40000))
    srv.handle_datagram(encode_message("/vj/status", [9001]), ("127.0.0.1", 40001))
    trusted = OscServer(queue, host="0.0.0.0", port=0, allow=["10.0.0.0/8"])
    trusted.handle_datagram(encode_message("/vj/status", [9001]), ("10.1.2.3", 40002))
    replies = [c.value for c in queue.drain()]
    assert replies == [("10.1.2.3", 40000), ("127.0.0.1", 9001), ("10.1.2.3", 9001)]


def test_status_reply_over_the_network_goes_to_the_source_port(queue: CommandQueue) -> None:
    other_ip = _non_loopback_ipv4()
    if other_ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    provider = lambda: {"fps": 60.0}  # noqa: E731
    with OscServer(queue, host="0.0.0.0", port=0, status_provider=provider) as srv, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim:
        sock.bind((other_ip, 0))
        victim.bind((other_ip, 0))
        sock.settimeout(DEADLINE_S)
        victim.settimeout(0.2)  # the reply already came to sock: nothing can still be on its way here
        sock.sendto(encode_message("/vj/status", [victim.getsockname()[1]]), (other_ip, srv.port))
        replies = {m.address for m in decode_packet(sock.recvfrom(65536)[0])}
        assert "/vj/status/fps" in replies
        with pytest.raises(socket.timeout):
            victim.recvfrom(65536)


def test_loopback_flood_of_future_bundles_is_bounded(queue: CommandQueue) -> None:
    """Bundles timed 9 s ahead, as fast as loopback takes them: the held queue stays small."""
    with OscServer(queue, port=0, axis_names=AXES) as srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(20_000):
            b = osc_bundle_builder.OscBundleBuilder(time.time() + 9.0)
            b.add_content(osc_message_builder.OscMessageBuilder(address="/vj/axis/mood").build())
            m = osc_message_builder.OscMessageBuilder(address="/vj/axis/*")
            m.add_arg(i / 20_000)
            b.add_content(m.build())
            sock.sendto(b.build().dgram, ("127.0.0.1", srv.port))
        def through() -> bool:  # an untimed tap behind the flood (resent: the kernel may drop one)
            sock.sendto(encode_message("/vj/tap"), ("127.0.0.1", srv.port))
            return any(c.kind == "tap" for c in queue.drain())

        assert wait_until(through)
    assert srv.stats.snapshot()["deferred"] > 1_000
    assert 0 < queue.deferred <= queue.max_deferred
    assert queue.deferred < srv.stats.snapshot()["deferred"] / 5  # coalesced, not one per command


_STATUS_PROBE = r"""
import os, socket, sys, time
from vjengine.control.osc_wire import decode_packet, encode_message
port, verdict_fd, n_flood = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10.0)
    fader = encode_message("/vj/axis/mood", [0.5])
    for i in range(n_flood):  # more batches than the pipe to the (stalled) parent holds
        sock.sendto(encode_message("/vj/axis/mood", [i / n_flood]) if i % 2 else fader, ("127.0.0.1", port))
    sock.settimeout(0.2)
    verdict = b"timeout"
    deadline = time.monotonic() + 10.0
    try:
        while time.monotonic() < deadline:  # asked again now and then: the flood may fill the socket buffer
            sock.sendto(encode_message("/vj/status"), ("127.0.0.1", port))
            try:
                while True:
                    for m in decode_packet(sock.recv(65536)):
                        if m.address == "/vj/status/preset":
                            preset = str(m.args[0]).encode()
                        if m.address == "/vj/status/end":
                            raise StopIteration
            except OSError:
                continue
    except StopIteration:
        verdict = b"answered:" + preset
os.write(verdict_fd, verdict)
"""


def test_status_answered_while_the_render_process_cannot_run_python(queue: CommandQueue) -> None:
    """The worker answers /vj/status from the last pushed snapshot: the show process holding the GIL
    (a long frame, an overloaded machine) and not reading batches does not silence OSC."""
    import ctypes
    import os
    import subprocess
    import sys
    import threading

    pushes = []

    def provider():
        if threading.current_thread().name.startswith("vj-osc-status"):
            pushes.append(1)
        return {"preset": "pushed", "bpm": 120.0}

    with OscServer(queue, port=0, axis_names=AXES, status_provider=provider, worker="process") as srv:
        assert wait_until(lambda: len(pushes) >= 2)  # the control thread sent a snapshot (and looked again)
        r, w = os.pipe()
        probe = subprocess.Popen([sys.executable, "-c", _STATUS_PROBE, str(srv.port), str(w), "60000"],
                                 pass_fds=(w,), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        os.close(w)
        buf = ctypes.create_string_buffer(256)
        # read(2) through PyDLL keeps the GIL while it blocks: no thread of this process runs Python
        # until the probe has its answer (or gave up after 10 s)
        n = ctypes.PyDLL(None).read(r, buf, 255)
        os.close(r)
        probe.wait(timeout=30)
        verdict = buf.raw[:n].decode()
        assert verdict == "answered:pushed"
        Collector(queue).wait_for(1)  # and the commands held meanwhile arrive afterwards
