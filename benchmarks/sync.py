"""Tempo and hands: Ableton Link phase and follow time, MIDI CC latency, MIDI clock accuracy.

Real parts throughout, as in the tests:

- Link: our engine (AudioEngine + ClockRouter + LinkSession, polled at 60 fps) and a second peer of the
  same binding, on loopback in a private network namespace (``tests/_netns.py``). Every beat of ours,
  our shown beat is compared with the peer's at the same instant (``link_phase_err_ms_p99``, over
  ``--link-s`` seconds, default 60); the peer changes tempo every 10 s and ``link_follow_s`` is the
  longest time until our tempo equals the new one and our phase is within 1 ms (target: one bar).
- MIDI: a JACK dummy server (realtime when allowed), a controller process (``tests/_midi_sender.py``)
  and the engine's MIDI port + MidiController feeding a CommandQueue that a 60 fps loop drains into a
  real ShowState. The port is the MIDI worker process, as `vj live --midi-api jack` runs it
  (``--midi-port worker``, the default), or ``MidiPort`` on a thread of this process, as ALSA runs it
  (``thread``; ``both`` measures both, the thread's keys ending in ``_thread``). ``midi_cc_latency_ms_p99``: from the controller's send (a thread of its own, at
  random times: the frame phase is random too) to the value applied on that loop (target: one frame +
  5 ms = 21.7 ms).
- MIDI clock: the controller process sends clock at 128 BPM, each clock due at an exact wall-clock
  time (the reference); the router (``--clock midi``) is polled at 60 fps. ``midi_clock_bpm_err``: p99 of
  |tempo - 128| once the fit spans its window; ``midi_clock_phase_err_ms_p99``: our beat against the
  master's at each of our beats (targets: 0.2 BPM, 5 ms).

Prints a table, then one JSON line. Timings on a shared machine are noisy: run it alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

FPS = 60.0


def bench_link(seconds: float) -> dict:
    from _netns import run_isolated

    changes = max(1, int(seconds // 10) - 1)
    opts = {"duration_s": seconds, "change_at_s": 10.0, "new_bpm": 132.0, "peer_bpm": 124.0, "changes": changes}
    proc = run_isolated([str(REPO / "tests" / "_sync_scenarios.py"), "link_follow", json.dumps(opts)],
                        timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    errs = np.abs(np.array(r["beat_errs_ms"]))
    follow = r["follow_s"]
    return {
        "link_beats": int(errs.size),
        "link_phase_err_ms_p50": float(np.percentile(errs, 50)),
        "link_phase_err_ms_p99": float(np.percentile(errs, 99)),
        "link_follow_s": float(max(follow)) if follow else None,
        "link_follow_s_all": [round(f, 4) for f in follow],
        "link_changes": changes,
        "link_unfollowed": r["unfollowed"],
        "link_bar_s_at_132": 4 * 60.0 / 132.0,
    }


def _loop(seconds: float, work) -> None:
    from _sync_scenarios import pace

    period = 1.0 / FPS
    t0 = time.perf_counter()
    nxt = t0
    while time.perf_counter() - t0 < seconds:
        work(time.perf_counter())
        nxt = pace(nxt, period)


def _port(kind: str, match: str, handler):
    from vjengine.control.midi_port import MidiPort
    from vjengine.control.midi_worker import MidiWorkerPort

    cls = MidiWorkerPort if kind == "worker" else MidiPort
    return cls(match, handler, api="jack", rescan_s=0.1).start()


def bench_midi_cc(probes: int, kind: str = "worker") -> dict:
    from _jackd import Sender, jack_server, wait_until
    from _show_helpers import DEMO_AXES, frame

    from vjengine.control.commands import CommandQueue
    from vjengine.control.midi import MidiController
    from vjengine.control.midi_map import loads_map
    from vjengine.mapping import PresetLibrary, shipped_preset_paths
    from vjengine.show.state import BankEntry, ShowState

    text = "".join(f'[[bind]]\ncc = {n}\naddress = "/vj/axis/warp"\ntakeover = "jump"\n' for n in range(16))
    with jack_server():
        queue = CommandQueue()
        ctl = MidiController(loads_map(text), queue)
        sender = Sender("benchctl", "out")
        port = _port(kind, "benchctl", ctl.handle)
        show = ShowState([BankEntry("demo", tuple(DEMO_AXES))], PresetLibrary.from_paths(shipped_preset_paths()))
        f = frame()
        try:
            port.wait_for(lambda p: p.connected, 10.0)
            for _ in range(200):
                sender.cc(119, 0, channel=16)
                if wait_until(lambda: ctl.stats["unbound"] > 0, 0.05):
                    break
            sent: list[tuple[float, int]] = []  # (time, CC value)
            applied: list[tuple[float, int]] = []

            def controller() -> None:  # the hand on the knob: its own thread, at times unrelated to frames
                rng = np.random.default_rng(3)
                for i in range(probes):
                    time.sleep(float(rng.uniform(0.012, 0.03)))
                    sent.append((sender.cc(i % 16, (i * 37) % 128), (i * 37) % 128))

            def work(now: float) -> None:
                for cmd in queue.drain():
                    show.apply(cmd, f)
                    applied.append((time.perf_counter(), round(float(cmd.value) * 127)))

            import threading

            hand = threading.Thread(target=controller, daemon=True)
            hand.start()
            _loop(probes * 0.021 + 2.0, work)
            hand.join(timeout=5.0)
            # match each applied command to its probe by value, in order (a value repeats every 128
            # probes): a probe lost on the way must not shift every later match by one probe
            lat_s, k = [], 0
            for t_applied, value in applied:
                j = next((j for j in range(k, min(k + 8, len(sent))) if sent[j][1] == value), None)
                if j is not None:
                    lat_s.append(t_applied - sent[j][0])
                    k = j + 1
            lat = np.array(lat_s) * 1000.0
        finally:
            port.stop()
            sender.close()
    return {"midi_cc_probes": int(lat.size), "midi_cc_lost": len(sent) - int(lat.size),
            "midi_cc_latency_ms_p50": float(np.percentile(lat, 50)),
            "midi_cc_latency_ms_p99": float(np.percentile(lat, 99)),
            "midi_cc_target_ms": 1000.0 / FPS + 5.0}


def bench_midi_clock(seconds: float, kind: str = "worker") -> dict:
    from _jackd import Sender, jack_server, wait_until

    from vjengine.audio.engine import AudioEngine
    from vjengine.sync.clock_source import ClockRouter
    from vjengine.sync.midi_clock import MidiClockIn

    with jack_server():
        clk = MidiClockIn()
        sender = Sender("benchclock", "out")
        port = _port(kind, "benchclock", clk.handle)
        try:
            port.wait_for(lambda p: p.connected, 10.0)
            for _ in range(200):
                sender.send(0xFC)
                if wait_until(lambda: clk.stops > 0, 0.05):
                    break
            audio = AudioEngine.offline(48000)
            router = ClockRouter(audio, midi=clk, source="midi")
            ticks = int(seconds * 128.0 / 60.0 * 24)
            sender.clock(128.0, ticks)
            samples: list[tuple[float, float, float]] = []
            silence = np.zeros(int(48000 / FPS), np.float32)

            def work(now: float) -> None:
                audio.feed(silence)
                router.poll(now)
                t, beat, bpm, _ = router.published
                samples.append((t, beat, bpm))

            _loop(seconds + 0.5, work)
            info = sender.clock_sent()
        finally:
            port.stop()
            sender.close()
    sent = np.array(info["sent"])
    ref_beats = np.arange(sent.size) / 24.0
    t = np.array([s[0] for s in samples])
    beat = np.array([s[1] for s in samples])
    bpm = np.array([s[2] for s in samples])
    warm = t > sent[0] + 4 * 60.0 / 128.0  # once the fit spans its four beats
    inside = warm & (t < sent[-1])
    bpm_err = np.abs(bpm[inside] - 128.0)
    # our beats: the frames where our beat count advanced; the master's beat at that instant
    idx = np.nonzero(np.floor(beat[1:]) > np.floor(beat[:-1]))[0] + 1
    idx = idx[inside[idx]]
    ref = np.interp(t[idx], sent, ref_beats)
    err = ((beat[idx] - ref + 0.5) % 1.0 - 0.5) * 60000.0 / 128.0
    return {"midi_clock_ticks_sent": int(sent.size), "midi_clock_ticks_received": int(clk.ticks),
            "midi_clock_sender_dropped": int(info.get("dropped", 0)),
            "midi_clock_bpm_err": float(np.percentile(bpm_err, 99)),
            "midi_clock_bpm_err_p50": float(np.percentile(bpm_err, 50)),
            "midi_clock_phase_err_ms_p99": float(np.percentile(np.abs(err), 99)),
            "midi_clock_phase_err_ms_p50": float(np.percentile(np.abs(err), 50)),
            "midi_clock_phase_bias_ms": float(np.mean(err)), "midi_clock_beats": int(idx.size)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link-s", type=float, default=60.0, help="Link measurement length (default 60 s)")
    parser.add_argument("--cc-probes", type=int, default=500, help="CC latency probes (default 500)")
    parser.add_argument("--clock-s", type=float, default=60.0, help="MIDI clock measurement length (default 60 s)")
    parser.add_argument("--skip", action="append", default=[], choices=("link", "cc", "clock"))
    parser.add_argument("--midi-port", choices=("worker", "thread", "both"), default="both",
                        help="the MIDI port measured: the worker process (JACK's), a thread (ALSA's), or both")
    args = parser.parse_args(argv)
    out: dict = {}
    if "link" not in args.skip:
        out.update(bench_link(args.link_s))
    kinds = ("worker", "thread") if args.midi_port == "both" else (args.midi_port,)
    for kind in kinds:
        suffix = "_thread" if kind == "thread" and len(kinds) > 1 else ""
        if "cc" not in args.skip:
            out.update({k + suffix: v for k, v in bench_midi_cc(args.cc_probes, kind).items()})
        if "clock" not in args.skip:
            out.update({k + suffix: v for k, v in bench_midi_clock(args.clock_s, kind).items()})
    out["midi_port"] = args.midi_port
    targets = {"link_phase_err_ms_p99": ("<=", 5.0), "link_follow_s": ("<=", 4 * 60.0 / 132.0),
               "midi_cc_latency_ms_p99": ("<=", 1000.0 / FPS + 5.0), "midi_clock_bpm_err": ("<=", 0.2),
               "midi_clock_phase_err_ms_p99": ("<=", 5.0)}
    print(f"{'metric':32s} {'value':>10s} {'target':>10s}  ok")
    for key, (_, limit) in targets.items():
        v = out.get(key)
        if v is None:
            continue
        print(f"{key:32s} {v:10.3f} {limit:10.3f}  {'yes' if v <= limit else 'NO'}")
    for key, v in out.items():
        if key not in targets and not isinstance(v, list):
            print(f"{key:32s} {v!s:>10s}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
