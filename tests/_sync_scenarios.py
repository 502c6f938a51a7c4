"""Link scenarios with real peers, run in a private network namespace (see ``_netns``).

``python tests/_sync_scenarios.py NAME [JSON options]`` prints one JSON line. Used by
``tests/test_sync_link.py`` (short runs) and ``benchmarks/sync.py`` (the 60 s measurement).

Our side is the real chain of ``vj live --link``: an :class:`AudioEngine` (push source) wrapped by a
:class:`ClockRouter` whose ``link`` source is a :class:`LinkSession`, polled once per frame at
``fps``. The peer is a second Link instance of the same binding, in the same process.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _setup(mode: str, *, peer_bpm: float, our_bpm: float = 120.0, quantum: float = 4.0, start_stop: bool = False):
    import numpy as np  # noqa: F401

    import link

    from vjengine.audio.engine import AudioEngine
    from vjengine.sync.clock_source import ClockRouter
    from vjengine.sync.link import LinkSession

    peer = link.Link(peer_bpm)
    peer.startStopSyncEnabled = start_stop
    peer.enabled = True
    session = LinkSession(mode=mode, quantum=quantum, bpm=our_bpm, start_stop=start_stop)
    audio = AudioEngine.offline(48000)
    router = ClockRouter(audio, source="link" if mode == "follow" else "audio", link=session,
                         lead=session if mode == "lead" else None)
    t_end = time.perf_counter() + 10.0
    while (peer.numPeers() < 1 or session.peers < 1) and time.perf_counter() < t_end:
        time.sleep(0.01)  # waiting on the condition (discovery), bounded
    return peer, session, audio, router


def pace(next_frame: float, period: float) -> float:
    """Wait for the next frame's time, as vsync does in the show; returns the one after (a late frame
    does not make the next ones try to catch up)."""
    next_frame += period
    wait = next_frame - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
        return next_frame
    return time.perf_counter()


def _peer_beat(peer, session, t: float, q: float) -> float:
    return peer.captureAppSessionState().beatAtTime(session.link_micros(t), q)


def link_follow(duration_s: float = 4.0, change_at_s: float = 2.0, new_bpm: float = 140.0, fps: float = 60.0,
                peer_bpm: float = 124.0, changes: int = 1) -> dict:
    """Follow a peer: phase error at every beat of ours, and how long a tempo change takes to follow."""
    peer, session, audio, router = _setup("follow", peer_bpm=peer_bpm)
    q = session.quantum
    period = 1.0 / fps
    errs_ms: list[float] = []
    all_errs_ms: list[float] = []
    follow_s: list[float] = []
    bpm_seen: list[float] = []
    change_times = [change_at_s + i * (duration_s - change_at_s) / max(1, changes) for i in range(changes)]
    tempos = [new_bpm if i % 2 == 0 else peer_bpm for i in range(changes)]
    pending: tuple[float, float] | None = None  # (perf time of the change, target bpm)
    t0 = time.perf_counter()
    next_frame = t0
    last_beat = None
    frames = 0
    while True:
        now = time.perf_counter()
        if now - t0 >= duration_s:
            break
        if change_times and now - t0 >= change_times[0]:
            change_times.pop(0)
            target = tempos.pop(0)
            s = peer.captureAppSessionState()
            s.setTempo(target, peer.clock().micros())
            peer.commitAppSessionState(s)
            pending = (time.perf_counter(), target)
        audio.feed(np.zeros(int(48000 * period), dtype=np.float32))
        frame = router.poll(now - t0)
        frames += 1
        t_show, beat, bpm, _ = router.published
        err_ms = ((beat - _peer_beat(peer, session, t_show, q) + 0.5) % 1.0 - 0.5) * 60000.0 / bpm
        all_errs_ms.append(err_ms)
        bpm_seen.append(bpm)
        if last_beat is not None and math.floor(beat) > math.floor(last_beat) and pending is None:
            errs_ms.append(err_ms)
        last_beat = beat
        if pending is not None and abs(bpm - pending[1]) < 0.01 and abs(err_ms) < 1.0:
            follow_s.append(time.perf_counter() - pending[0])
            pending = None
        next_frame = pace(next_frame, period)
    result = {
        "peers": session.peers, "frames": frames, "beat_errs_ms": errs_ms, "follow_s": follow_s,
        "unfollowed": pending is not None, "final_bpm": bpm_seen[-1] if bpm_seen else None,
        "peer_bpm": peer.captureAppSessionState().tempo(), "tempo_source": frame.tempo_source,
        "locked": frame.locked, "max_abs_err_ms": max((abs(e) for e in all_errs_ms), default=None),
    }
    session.close()
    peer.enabled = False
    return result


def link_lead(bpm: float = 128.0, timeout_s: float = 10.0) -> dict:
    """Lead: our audio clock, locked on a 128 BPM click track, proposes its tempo to the peer."""
    from vjengine.audio.synth import click_train

    peer, session, audio, router = _setup("lead", peer_bpm=100.0)
    signal, _ = click_train(bpm=bpm, seconds=12.0, sr=48000, kind="kick")
    step = 800  # 1/60 s of audio per frame, fed faster than real time (the analysis is causal either way)
    locked_at = None
    i = 0
    t_end = time.perf_counter() + timeout_s
    frame = None
    while time.perf_counter() < t_end:
        if i + step <= signal.size:
            audio.feed(signal[i:i + step])
            i += step
        frame = router.poll(i / 48000.0)
        if frame.locked and locked_at is None:
            locked_at = i / 48000.0
        if session.proposals and abs(peer.captureAppSessionState().tempo() - session.proposed_bpm) < 0.01:
            break
        if i + step > signal.size:
            time.sleep(0.005)  # the audio is all in: wait for the peer to hear the proposal (bounded)
    result = {"peers": session.peers, "locked_at_s": locked_at, "proposed_bpm": session.proposed_bpm,
              "proposals": session.proposals, "peer_bpm": peer.captureAppSessionState().tempo(),
              "our_bpm": frame.bpm if frame is not None else None, "source": router.active,
              "hud": router.hud_line()}
    session.close()
    peer.enabled = False
    return result


def _set_peer_playing(peer, playing: bool, q: float) -> None:
    """The peer presses play (beat 0 of the bar at the next quantum, as Live does) or stop."""
    s = peer.captureAppSessionState()
    now = peer.clock().micros()
    if playing:
        s.setIsPlayingAndRequestBeatAtTime(True, now, 0.0, q)
    else:
        s.setIsPlaying(False, now)
    peer.commitAppSessionState(s)


def link_start_stop_follow(fps: float = 60.0, play_at_s: float = 1.0, stop_at_s: float = 3.0,
                           duration_s: float = 4.5, peer_bpm: float = 120.0) -> dict:
    """Follow with --link-start-stop: the peer starts, then stops playing; our beats start and stop.

    Per frame: time since the start, our frame's ``locked`` and ``beat`` (a beat fired), our shown beat
    position (to check it never jumps) and the peer's transport. The session is stopped at first.
    """
    peer, session, audio, router = _setup("follow", peer_bpm=peer_bpm, start_stop=True)
    q = session.quantum
    period = 1.0 / fps
    events: dict[str, float] = {}
    rows = []
    t0 = time.perf_counter()
    next_frame = t0
    while True:
        now = time.perf_counter()
        if now - t0 >= duration_s:
            break
        if "play" not in events and now - t0 >= play_at_s:
            _set_peer_playing(peer, True, q)
            events["play"] = now - t0  # this frame's time: its row is the first after the press
        if "stop" not in events and now - t0 >= stop_at_s:
            _set_peer_playing(peer, False, q)
            events["stop"] = now - t0
        audio.feed(np.zeros(int(48000 * period), dtype=np.float32))
        frame = router.poll(now - t0)
        t_show, beat, bpm, playing = router.published
        ps = peer.captureAppSessionState()
        rows.append({"t": now - t0, "t_show": t_show - t0, "locked": bool(frame.locked), "beat": bool(frame.beat),
                     "pos": beat,
                     "bpm": bpm, "published_playing": playing, "peer_playing": bool(ps.isPlaying()),
                     "peer_beat": ps.beatAtTime(session.link_micros(t_show), q)})
        next_frame = pace(next_frame, period)
    result = {"peers": session.peers, "events": events, "rows": rows, "hud": router.hud_line()}
    session.close()
    peer.enabled = False
    return result


def link_start_stop_lead(bpm: float = 128.0, silence_s: float = 6.0, timeout_s: float = 30.0) -> dict:
    """Lead with --link-start-stop, built as `vj live --link lead --link-start-stop` builds it
    (SyncParts): our clock locks on a click track, the peer sees the session start; silence lets the
    clock go, the peer sees it stop."""
    import argparse

    import link

    from vjengine.audio.engine import AudioEngine
    from vjengine.audio.synth import click_train
    from vjengine.sync.live import SyncParts

    peer = link.Link(100.0)
    peer.startStopSyncEnabled = True
    peer.enabled = True
    args = argparse.Namespace(link="lead", link_quantum=4.0, link_start_stop=True, clock=None, midi_in=None,
                              midi_map=None, midi_clock_in=None, midi_clock_out=None, midi_api=None)
    parts = SyncParts(args, queue=None)
    audio = AudioEngine.offline(48000)
    router = parts.wrap(audio)
    session = parts.link
    t_end = time.perf_counter() + 10.0
    while (peer.numPeers() < 1 or session.peers < 1) and time.perf_counter() < t_end:
        time.sleep(0.01)  # discovery, bounded
    signal, _ = click_train(bpm=bpm, seconds=8.0, sr=48000, kind="kick")
    signal = np.concatenate([signal, np.zeros(int(48000 * silence_s), np.float32)])
    step = 800
    i = 0
    seen: list[tuple[float, bool, bool]] = []  # (audio time, our frame locked, the peer's isPlaying)
    started_at = stopped_at = None
    t_end = time.perf_counter() + timeout_s
    while time.perf_counter() < t_end:
        # the audio is fed faster than real time; once our clock locked, the peer is given real time
        # to hear the start (over the network) before the silence comes
        waiting = bool(seen) and seen[-1][1] and started_at is None
        if not waiting and i + step <= signal.size:
            audio.feed(signal[i:i + step])
            i += step
        frame = router.poll(i / 48000.0)
        peer_playing = bool(peer.captureAppSessionState().isPlaying())
        seen.append((i / 48000.0, bool(frame.locked), peer_playing))
        if peer_playing and started_at is None:
            started_at = i / 48000.0
        if started_at is not None and not peer_playing and stopped_at is None:
            stopped_at = i / 48000.0
            break
        if waiting or i + step > signal.size:
            time.sleep(0.002)  # bounded by timeout_s
    locked_at = next((a for a, lk, _ in seen if lk), None)
    unlocked_at = next((a for a, lk, _ in seen if locked_at is not None and a > locked_at and not lk), None)
    result = {"peers": session.peers, "locked_at_s": locked_at, "unlocked_at_s": unlocked_at,
              "peer_started_at_s": started_at, "peer_stopped_at_s": stopped_at,
              "transport_sent": session.transport_sent, "source": router.active,
              "available": router.available(), "peer_playing_before_lock": any(p for a, lk, p in seen
                                                                               if locked_at is None or a < locked_at),
              "hud": router.hud_line()}
    parts.close()
    peer.enabled = False
    return result


def main(argv: list[str]) -> int:
    from _netns import loopback_up

    loopback_up()
    name = argv[0]
    opts = json.loads(argv[1]) if len(argv) > 1 else {}
    fn = {"link_follow": link_follow, "link_lead": link_lead, "link_start_stop_follow": link_start_stop_follow,
          "link_start_stop_lead": link_start_stop_lead}[name]
    print(json.dumps(fn(**opts)))
    return 0


if __name__ == "__main__":
    import numpy as np

    sys.exit(main(sys.argv[1:]))
