"""The command queue: arrival order, and future commands held in a bounded, coalescing heap."""

from __future__ import annotations

import tracemalloc

from vjengine.control.commands import DEFER_COALESCE_S, Command, CommandQueue


def _cmd(kind: str, value=None, *, at: float | None = None, received: float = 0.0, target: str = "") -> Command:
    return Command(kind, target, value, "osc", received, at)


def test_drain_keeps_arrival_order_across_held_and_immediate() -> None:
    q = CommandQueue()
    q.put(_cmd("tap", at=1.0))
    q.put(_cmd("resync"))
    q.put(_cmd("preset", "a", at=0.5))
    assert [c.kind for c in q.drain(0.0)] == ["resync"]
    q.put(_cmd("hud"))
    assert [c.kind for c in q.drain(2.0)] == ["tap", "preset", "hud"]  # arrival order
    assert q.deferred == 0


def test_future_commands_are_bounded_in_count_and_horizon() -> None:
    q = CommandQueue(max_deferred=100, defer_horizon_s=10.0)
    assert not q.put(_cmd("tap", at=10.5, received=0.0))  # past the horizon
    accepted = sum(q.put(_cmd("tap", at=5.0 + i * 1e-3)) for i in range(1000))
    assert accepted == 100 and q.deferred == 100 and q.deferred_dropped == 901
    assert len(q.drain(100.0)) == 100 and q.deferred == 0


def test_future_absolute_controls_coalesce_to_the_newest_value() -> None:
    q = CommandQueue()
    # 10,000 fader values falling due in 2 s: a flood of bundles timed ahead
    for i in range(10_000):
        assert q.put(_cmd("axis", i, at=7.0 + i * 2.0 / 10_000, target="mood"))
    assert q.deferred <= 2.0 / DEFER_COALESCE_S + 1 and q.deferred_coalesced >= 9_500
    got = q.drain(20.0)
    assert got[-1].value == 9_999  # the last value sent is the one that stays
    assert [c.value for c in got] == sorted(c.value for c in got)
    # without coalescing each is kept, up to the cap
    q2 = CommandQueue(max_deferred=50)
    kept = sum(q2.put(_cmd("axis", i, at=9.0, target="mood"), coalesce=False) for i in range(200))
    assert kept == 50


def test_a_flood_of_future_commands_takes_bounded_memory() -> None:
    q = CommandQueue()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(50_000):  # 20 controls, due over 9 s, like the 15 s loopback flood
            q.put(_cmd("fx", i / 50_000, at=9.0 * i / 50_000, target=f"p{i % 20}.amount"))
            q.put(_cmd("tap", at=9.0 * i / 50_000))
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert q.deferred <= q.max_deferred
    assert held < 4 << 20, held  # a few thousand commands, not hundreds of thousands
    assert q.drain(100.0) and q.deferred == 0
