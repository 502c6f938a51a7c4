"""The frame-rate governor, driven frame by frame with an injected clock."""

from __future__ import annotations

import pytest

from vjengine.show.degrade import LEVELS, Governor

FPS = 60.0
B = 1.0 / FPS


def run(gov: Governor, seconds: float, cost, t0: float = 0.0) -> tuple[float, list[tuple[float, int]]]:
    """Feed ``seconds`` of frames; ``cost(level_index) -> (interval_s, busy_s)``. Returns the end time and
    the (time, level) of every change."""
    t, changes, last = t0, [], gov.index
    while t < t0 + seconds:
        interval, busy = cost(gov.index)
        t += interval
        gov.update(t, interval, busy)
        if gov.index != last:
            changes.append((t, gov.index))
            last = gov.index
    return t, changes


def test_fast_frames_stay_at_full_quality_and_one_spike_is_forgiven() -> None:
    gov = Governor(FPS)
    t, changes = run(gov, 30.0, lambda lv: (B, 0.3 * B))
    assert changes == [] and gov.level.index == 0
    gov.update(t + 0.2, 0.2, 0.19)  # one 200 ms hitch
    _, changes = run(gov, 5.0, lambda lv: (B, 0.3 * B), t + 0.2)
    assert changes == []


def test_sustained_lateness_steps_down_one_level_at_a_time_then_restores_slowly() -> None:
    gov = Governor(FPS)
    t, down = run(gov, 12.0, lambda lv: (2.5 * B, 2.4 * B))  # far too slow at every level
    assert [lv for _, lv in down] == [1, 2, 3, 4, 5]
    gaps = [b[0] - a[0] for a, b in zip(down, down[1:])]
    assert min(gaps) >= gov.down_hold_s  # each level gets time to show its effect
    assert down[0][0] < 0.6  # but the first step comes quickly
    lv = gov.level
    assert (lv.render_scale, lv.costly_effects, lv.max_taps) == (0.5, False, 1)
    t, up = run(gov, 40.0, lambda lv: (B, 0.2 * B), t)
    assert [lv for _, lv in up] == [4, 3, 2, 1, 0]
    gaps = [b[0] - a[0] for a, b in zip(up, up[1:])]
    assert min(gaps) >= gov.base_up_after_s - B  # several seconds per step up
    assert gov.status()["level"] == 0 and gov.hud_line() == "quality: full"


def test_a_level_that_is_just_too_slow_does_not_oscillate() -> None:
    """Late at full quality, fine one level down: it settles, and retries full quality ever more rarely."""
    gov = Governor(FPS)
    cost = lambda lv: (2 * B, 1.5 * B) if lv == 0 else (B, 0.3 * B)  # noqa: E731
    _, changes = run(gov, 120.0, cost)
    times = [t for t, _ in changes]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 1.0  # never faster than every few seconds...
    assert len(changes) <= 12  # ...and backing off: not 120 s / 5 s x 2 = 48 changes
    up_waits = [b[0] - a[0] for a, b in zip(changes, changes[1:]) if b[1] < a[1]]
    assert up_waits[-1] > up_waits[0] * 3  # the wait before trying full quality again grew


def test_busy_but_on_time_frames_do_not_restore() -> None:
    gov = Governor(FPS)
    t, _ = run(gov, 3.0, lambda lv: (2 * B, 1.8 * B))
    assert gov.level.index >= 2
    t, _ = run(gov, 0.5, lambda lv: (B, 0.7 * B), t)  # the last late frames leave the window
    held = gov.level.index
    _, changes = run(gov, 20.0, lambda lv: (B, 0.7 * B), t)  # on time, but no room to spare
    assert changes == [] and gov.level.index == held


def test_disabled_never_changes_and_levels_are_the_documented_ladder() -> None:
    gov = Governor(FPS, enabled=False)
    _, changes = run(gov, 5.0, lambda lv: (5 * B, 5 * B))
    assert changes == []
    assert [lv.render_scale for lv in LEVELS] == [1.0, 0.75, 0.5, 0.5, 0.5, 0.5]
    assert [lv.max_taps for lv in LEVELS][-2:] == [4, 1]
    with pytest.raises(ValueError):
        Governor(0)


def test_very_slow_frames_still_step_down() -> None:
    """Frames far longer than the window (400 ms each) still count: the ladder goes down."""
    gov = Governor(FPS)
    _, changes = run(gov, 12.0, lambda lv: (0.4, 0.39))
    assert [lv for _, lv in changes][:3] == [1, 2, 3]


def test_a_sudden_heavy_load_takes_the_ladder_down_in_about_a_second() -> None:
    """Frames suddenly 4x their budget (the show at 15 fps of 60): each level still gets a few frames
    to show, but the bottom is reached in about a second, not five; mild lateness keeps the 1 s hold."""
    gov = Governor(FPS)
    t, _ = run(gov, 5.0, lambda lv: (B, 0.3 * B))
    t_load = t
    _, down = run(gov, 3.0, lambda lv: (4 * B, 3.9 * B), t)
    assert [lv for _, lv in down] == [1, 2, 3, 4, 5]
    assert down[-1][0] - t_load < 2.0
    gaps = [b[0] - a[0] for a, b in zip(down, down[1:])]
    assert min(gaps) >= gov.severe_hold_s
    mild = Governor(FPS)
    _, down = run(mild, 6.0, lambda lv: (2 * B, 1.9 * B))
    gaps = [b[0] - a[0] for a, b in zip(down, down[1:])]
    assert len(down) >= 3 and min(gaps) >= mild.down_hold_s
