"""Ableton Link with real peers: our engine (AudioEngine + ClockRouter + LinkSession) and a second
peer of the same binding, on loopback in a private network namespace (``_netns``), so no multicast
leaves the machine and parallel test runs never join each other's session."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("link", reason="the link extra (LinkPython-extern) is not installed")

from _netns import unshare_prefix  # noqa: E402

HERE = Path(__file__).resolve().parent


def _scenario(name: str, **opts) -> dict:
    from _netns import run_isolated

    if unshare_prefix() is None:
        pytest.skip("no private network namespace here (unshare needs root or user namespaces)")
    proc = run_isolated([str(HERE / "_sync_scenarios.py"), name, json.dumps(opts)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_follow_agrees_with_the_peer_and_follows_its_tempo_change():
    r = _scenario("link_follow", duration_s=5.0, change_at_s=2.5, peer_bpm=124.0, new_bpm=137.0)
    assert r["peers"] == 1
    assert r["tempo_source"] == "link" and r["locked"]
    # phase: our shown beat against the peer's at the same instant, at each of our beats
    assert len(r["beat_errs_ms"]) >= 6
    assert max(abs(e) for e in r["beat_errs_ms"]) <= 5.0, r["beat_errs_ms"]
    # the peer's tempo change: followed (tempo equal, phase within 1 ms) within one bar at 137 BPM
    assert not r["unfollowed"]
    assert r["follow_s"] and r["follow_s"][0] <= 4 * 60.0 / 137.0
    assert abs(r["final_bpm"] - 137.0) < 0.01 and abs(r["peer_bpm"] - 137.0) < 1e-6


def test_lead_proposes_our_detected_tempo():
    r = _scenario("link_lead", bpm=128.0, timeout_s=20.0)
    assert r["peers"] == 1
    assert r["locked_at_s"] is not None
    assert r["proposals"] >= 1
    assert abs(r["proposed_bpm"] - 128.0) < 0.5
    assert abs(r["peer_bpm"] - r["proposed_bpm"]) < 0.01  # the peer took our tempo
    assert r["source"] == "audio" and "Link lead" in r["hud"]


def test_start_stop_follows_the_peers_transport():
    """--link-start-stop, following: the peer presses play (its beat 0 at the next bar, as Live does) and
    later stop; our beats start exactly on its beat 0, keep in step, and stop with it, and the shown
    beat never jumps."""
    r = _scenario("link_start_stop_follow", play_at_s=1.0, stop_at_s=3.2, duration_s=4.5, peer_bpm=120.0)
    assert r["peers"] == 1
    rows = r["rows"]
    play, stop = r["events"]["play"], r["events"]["stop"]
    before = [x for x in rows if x["t"] < play]
    assert before and not any(x["locked"] or x["beat"] for x in before)  # stopped session: no beats
    fired = [x for x in rows if x["beat"]]
    assert fired, "no beat fired while the peer played"
    # the first beat is the peer's beat 0 (the bar it started on), on the frame that crosses it
    i = rows.index(fired[0])
    assert rows[i - 1]["peer_beat"] < 0.0 <= fired[0]["peer_beat"], (rows[i - 1], fired[0])
    assert all(x["peer_beat"] >= 0.0 for x in fired)
    # pressed mid-bar, the peer's transport starts at its next bar: until then we wait, stopped
    waiting = [x for x in rows if x["t"] >= play and x["peer_beat"] < -0.05]
    assert waiting and not any(x["locked"] for x in waiting)
    # every beat of the peer's while it played fired once, none after it stopped
    ours_stopped = next(x["t"] for x in rows if x["t"] > stop and not x["locked"])
    during = [(a, b) for a, b in zip(rows, rows[1:]) if play < b["t"] < ours_stopped]
    crossed = [b["t"] for a, b in during if math.floor(b["peer_beat"]) > math.floor(a["peer_beat"]) >= -1
               and b["peer_beat"] >= 0.0]
    assert [b["t"] for _, b in during if b["beat"]] == crossed and len(crossed) >= 3
    after = [x for x in rows if x["t"] >= ours_stopped]
    assert after and not any(x["locked"] or x["beat"] or x["published_playing"] for x in after)
    assert "stopped" in r["hud"]
    # the phase ran on through start and stop: no step of the shown beat (between the display times it
    # was read at) is off its tempo's advance by more than the router's slew, 0.35 of it; the first half
    # second (joining) is left out
    steps = [(b["pos"] - a["pos"], b["t_show"] - a["t_show"]) for a, b in zip(rows, rows[1:]) if a["t"] > 0.5]
    assert all(abs(d - 2.0 * dt) <= 0.35 * 2.0 * dt + 1e-6 for d, dt in steps), max(
        abs(d - 2.0 * dt) - 0.7 * dt for d, dt in steps)


def test_start_stop_in_lead_mode_starts_and_stops_the_session():
    """--link lead --link-start-stop, built as `vj live` builds it: our clock locking on the music
    starts the session (the peer sees it playing), silence letting it go stops it; joining never
    stopped or started anything by itself."""
    r = _scenario("link_start_stop_lead", bpm=128.0, silence_s=6.0, timeout_s=40.0)
    assert r["peers"] == 1
    assert r["locked_at_s"] is not None and not r["peer_playing_before_lock"]
    assert r["peer_started_at_s"] is not None and r["peer_started_at_s"] >= r["locked_at_s"]
    assert r["unlocked_at_s"] is not None and r["peer_stopped_at_s"] is not None
    assert r["peer_stopped_at_s"] >= r["unlocked_at_s"] >= 8.0  # the clock let go in the silence, not before
    assert r["transport_sent"] == 2  # one start, one stop: edges only
    assert r["source"] == "audio" and "link" in r["available"]  # the session stays switchable to follow
