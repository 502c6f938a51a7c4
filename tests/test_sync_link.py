"""Ableton Link with real peers: our engine (AudioEngine + ClockRouter + LinkSession) and a second
peer of the same binding, on loopback in a private network namespace (``_netns``), so no multicast
leaves the machine and parallel test runs never join each other's session."""

from __future__ import annotations

import json
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
