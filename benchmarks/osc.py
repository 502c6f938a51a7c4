"""OSC control cost: packet-sent -> applied latency, and frame time with and without an OSC flood.

The render loop is the real one, headless: an EGL context, the ``Renderer`` drawing the demo bank at
1280x720 every frame, a ``ShowState`` applying the drained commands, OSC out publishing each frame,
paced at 60 Hz (the sleep stands in for vsync). The OSC server runs in this process, as in ``vj live``.

A separate sender process (so its own CPU use does not borrow this process's GIL) sends probes
throughout, and in repeating blocks of three conditions: ``quiet`` (probes only), ``flood`` (plus
valid fader messages at ``--flood-hz``, default 10,000 messages/s, to the server), and ``decoy``
(the same flood to a socket nobody reads). The decoy condition costs the machine everything the
flood does (the sender's CPU, the kernel's UDP work) except the engine's own OSC work: on a 2-core
machine the sender alone slows the renderer, and ``server_frame_ratio`` (flood / decoy) isolates
what the OSC server costs the frame. Probes are ``/vj/axis/detail d <id>``; the latency is
from just before ``sendto`` in the sender to ``ShowState.apply`` on the render thread
(``perf_counter`` is CLOCK_MONOTONIC, shared by both processes). Frame time is the work of one frame
(drain + apply + map + render + ``ctx.finish()``), without the pacing sleep. Blocks alternate so that
load from other processes on this shared machine hits both conditions alike.

Prints a table, then one JSON line: ``apply_ms_p50``, ``apply_ms_p99`` (quiet),
``flood_frame_ratio`` (frame time p99 flood / quiet), and more.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROBE_AXIS = "detail"
CONDITIONS = ("quiet", "flood", "decoy")
FLOOD_AXES = ("warp", "palette")


def sender_main(args: argparse.Namespace) -> int:
    """The client process: probes throughout, a flood in odd-numbered blocks."""
    from pythonosc.osc_message_builder import OscMessageBuilder

    from vjengine.control.osc_wire import encode_message

    rng = random.Random(7)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", args.port)
    decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: the kernel drops
    decoy.bind(("127.0.0.1", 0))
    flood = [encode_message(f"/vj/axis/{FLOOD_AXES[i % 2]}", [rng.random()]) for i in range(64)]
    probe_period_s = 1.0 / args.probe_hz
    probes: list[tuple[int, float, int]] = []  # (id, sent perf_counter s, block)
    next_id = 1
    flood_sent = 0
    while time.perf_counter() < args.start_s:
        time.sleep(0.001)
    for block in range(args.blocks):
        block_start = args.start_s + block * args.block_s
        block_end = block_start + args.block_s
        condition = CONDITIONS[block % len(CONDITIONS)]
        flooding = condition != "quiet"
        flood_target = target if condition == "flood" else decoy.getsockname()
        sent_in_block = 0
        next_probe = block_start + rng.random() * probe_period_s
        while True:
            now = time.perf_counter()
            if now >= block_end:
                break
            if flooding:
                due = int((now - block_start) * args.flood_hz)
                while sent_in_block < due:
                    sock.sendto(flood[sent_in_block % len(flood)], flood_target)
                    sent_in_block += 1
            if now >= next_probe:
                builder = OscMessageBuilder(f"/vj/axis/{PROBE_AXIS}")
                builder.add_arg(next_id / 1e6, "d")  # a double carries the probe id exactly
                data = builder.build().dgram
                t = time.perf_counter()
                sock.sendto(data, target)
                probes.append((next_id, t, block))
                next_id += 1
                next_probe += probe_period_s * (0.5 + rng.random())
            time.sleep(0.0005)
        flood_sent += sent_in_block
    json.dump({"probes": probes, "flood_sent": flood_sent}, sys.stdout)
    return 0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def render_main(args: argparse.Namespace) -> int:
    from vjengine.audio.frame import AudioFrame
    from vjengine.bank import open_bank
    from vjengine.control.commands import CommandQueue
    from vjengine.control.osc_out import OscOut, out_values
    from vjengine.control.osc_server import OscServer
    from vjengine.demo import demo_bank_path
    from vjengine.mapping.preset import PresetLibrary, shipped_preset_paths
    from vjengine.render.context import headless_context
    from vjengine.render.renderer import Renderer
    from vjengine.effects import make_effects, osc_fx_names
    from vjengine.show.state import BankEntry, ShowState

    if args.switch_interval_ms > 0:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    bank = open_bank(demo_bank_path())
    ctx = headless_context()
    renderer = Renderer(ctx, bank, output_size=(args.width, args.height), progress=False)
    show = ShowState([BankEntry.from_bank(bank, "demo")], PresetLibrary.from_paths(shipped_preset_paths()))
    axis_names = [a.name for a in bank.axes]
    queue = CommandQueue()
    server = OscServer(queue, port=0, axis_names=axis_names, fx_params=osc_fx_names(), status_provider=show.status,
                       worker=args.worker, worker_nice=args.worker_nice)
    server.start()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    osc_out = OscOut([sink.getsockname()], rate_hz=60.0)

    start_s = time.perf_counter() + 3.0
    sender = subprocess.Popen(
        [sys.executable, __file__, "--sender", "--port", str(server.port), "--start-s", repr(start_s),
         "--blocks", str(args.blocks), "--block-s", str(args.block_s), "--flood-hz", str(args.flood_hz),
         "--probe-hz", str(args.probe_hz)],
        stdout=subprocess.PIPE, text=True,
    )
    end_s = start_s + args.blocks * args.block_s + 0.3
    period_s = 1.0 / 60.0
    applied: dict[int, float] = {}
    frames: list[tuple[float, float]] = []  # (frame start, work s)
    commands_applied = 0
    last_s = time.perf_counter()
    n = 0
    while True:
        t0 = time.perf_counter()
        if t0 > end_s:
            break
        dt_s, last_s = t0 - last_s, t0
        for cmd in queue.drain(t0):
            show.apply(cmd)
            commands_applied += 1
            if cmd.target == PROBE_AXIS:
                applied[round(cmd.value * 1e6)] = time.perf_counter()
        beat_phase = (t0 * 124 / 60) % 1.0
        frame = AudioFrame(level=0.5 + 0.4 * np.sin(t0 * 3), bpm=124.0, beat_phase=beat_phase, locked=True,
                           beat=beat_phase < 0.15, input_ok=True)
        state = show.update(frame, dt_s)
        fx = make_effects(state.fx, intensity=state.intensity, blackout=state.blackout)
        if not args.skip_render:
            renderer.render(state.coord, fx, dt_s)
        osc_out.publish(out_values(frame, coord=state.coord, axis_names=axis_names, preset_name="bench"), t0)
        if n % 30 == 0:
            show.publish_status(frame)
        ctx.finish()
        t1 = time.perf_counter()
        frames.append((t0, t1 - t0))
        n += 1
        try:
            while True:
                sink.recv(65536)  # keep the OSC-out sink empty
        except BlockingIOError:
            pass
        spare = t0 + period_s - time.perf_counter()
        if spare > 0:
            time.sleep(spare)
    out, _ = sender.communicate(timeout=60)
    worker_cpu_s = None
    if server.worker_pid is not None:  # the worker's CPU time: utime + stime from /proc
        with open(f"/proc/{server.worker_pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        worker_cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    server.stop()
    sent = json.loads(out)
    stats = server.stats.snapshot()

    def block_of(t: float) -> int | None:
        b = int((t - start_s) // args.block_s)
        in_block = (t - start_s) - b * args.block_s
        return b if 0 <= b < args.blocks and in_block > 0.2 else None

    lat: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    lost = 0
    for pid, t_sent, block in sent["probes"]:
        if pid in applied:
            lat[CONDITIONS[block % len(CONDITIONS)]].append((applied[pid] - t_sent) * 1000)
        else:
            lost += 1
    work: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    quiet_halves: tuple[list[float], list[float]] = ([], [])
    for t0, w in frames:
        b = block_of(t0)
        if b is not None:
            condition = CONDITIONS[b % len(CONDITIONS)]
            work[condition].append(w * 1000)
            if condition == "quiet":  # the noise floor: quiet blocks split in two interleaved halves
                quiet_halves[(b // len(CONDITIONS)) % 2].append(w * 1000)

    def p99(condition: str) -> float:
        return pct(work[condition], 99)

    ratio = p99("flood") / p99("quiet")
    # Less sensitive to load drifting over the run: each flood block against the quiet block just before it.
    per_block: dict[int, list[float]] = {}
    for t0, w in frames:
        b = block_of(t0)
        if b is not None:
            per_block.setdefault(b, []).append(w * 1000)
    paired = [pct(per_block[b], 99) / pct(per_block[b - 1], 99) for b in per_block
              if CONDITIONS[b % len(CONDITIONS)] == "flood" and b - 1 in per_block]
    paired_ratio = float(np.median(paired)) if paired else float("nan")
    server_ratio = p99("flood") / p99("decoy")
    aa_ratio = pct(quiet_halves[1], 99) / pct(quiet_halves[0], 99)
    flood_blocks = sum(1 for b in range(args.blocks) if CONDITIONS[b % len(CONDITIONS)] != "quiet")
    rows = [
        ("renderer", f"{args.width}x{args.height}, demo bank {bank.sizes}, {renderer.ctx.info.get('GL_RENDERER', '?')}"),
        ("OSC server", f"worker={args.worker} (nice {args.worker_nice}), coalescing on, "
                       f"switch interval {sys.getswitchinterval() * 1000:g} ms"),
        ("blocks", f"{args.blocks} x {args.block_s:g} s, cycling {' / '.join(CONDITIONS)}"),
        ("flood sent", f"{sent['flood_sent']} msgs ({sent['flood_sent'] / (flood_blocks * args.block_s):.0f}/s "
                       "in flood and decoy blocks)"),
        ("server", f"{stats['packets']} packets, {stats['accepted']} accepted, rejected {stats['rejected_total']}, "
                   f"coalesced {stats['coalesced']}, kernel dropped {stats['kernel_dropped']}"),
        ("worker CPU", "n/a (thread mode)" if worker_cpu_s is None else
         f"{worker_cpu_s:.2f} s = {worker_cpu_s / max(stats['packets'], 1) * 1e6:.1f} us per datagram"),
        ("commands applied", f"{commands_applied} on the render thread; queue dropped {queue.dropped}"),
        ("probes", f"{len(sent['probes'])} sent, {lost} lost (dropped by the kernel under flood)"),
        *((f"apply ms ({c})", f"p50 {pct(lat[c], 50):.2f}  p99 {pct(lat[c], 99):.2f}  (n={len(lat[c])})")
          for c in CONDITIONS),
        *((f"frame ms ({c})", f"mean {np.mean(work[c]):.2f}  p50 {pct(work[c], 50):.2f}  p99 {pct(work[c], 99):.2f}"
           f"  (n={len(work[c])})") for c in CONDITIONS),
        ("flood frame ratio", f"{ratio:.3f}  (p99 flood / p99 quiet; target <= 1.1)"),
        ("paired ratio", f"{paired_ratio:.3f}  (median over cycles of p99 flood block / p99 quiet block before it)"),
        ("server frame ratio", f"{server_ratio:.3f}  (p99 flood / p99 decoy: the OSC server's own share)"),
        ("noise floor", f"{aa_ratio:.3f}  (p99 ratio between two halves of the quiet blocks)"),
    ]
    if renderer.failures:
        rows.append(("WARNING", f"{renderer.failures} frames failed to render: the figures are not valid"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(json.dumps({
        "apply_ms_p50": round(pct(lat["quiet"], 50), 3),
        "apply_ms_p99": round(pct(lat["quiet"], 99), 3),
        "flood_frame_ratio": round(ratio, 3),
        "server_frame_ratio": round(server_ratio, 3),
        "paired_frame_ratio": round(paired_ratio, 3),
        "quiet_aa_ratio": round(aa_ratio, 3),
        "apply_ms_p50_flood": round(pct(lat["flood"], 50), 3),
        "apply_ms_p99_flood": round(pct(lat["flood"], 99), 3),
        "frame_ms_p99": round(p99("quiet"), 3),
        "frame_ms_p99_flood": round(p99("flood"), 3),
        "frame_ms_p99_decoy": round(p99("decoy"), 3),
        "flood_msgs_per_s": args.flood_hz,
        "probes_lost": lost,
        "kernel_dropped": stats["kernel_dropped"],
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "worker": args.worker,
        "worker_nice": args.worker_nice,
        "worker_cpu_us_per_datagram": None if worker_cpu_s is None else
        round(worker_cpu_s / max(stats["packets"], 1) * 1e6, 2),
    }))
    osc_out.close()
    renderer.release()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=12, help="blocks, cycling quiet / flood / decoy (a multiple of 6)")
    parser.add_argument("--block-s", type=float, default=2.5)
    parser.add_argument("--flood-hz", type=float, default=10_000.0, help="flood messages per second")
    parser.add_argument("--probe-hz", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--worker", choices=("process", "thread"), default="process",
                        help="where the OSC server receives and validates (default: process)")
    parser.add_argument("--worker-nice", type=int, default=0, help="CPU niceness of the worker process")
    parser.add_argument("--skip-render", action="store_true",
                        help="diagnostic: do everything but draw (is the GPU/CPU renderer what starves OSC?)")
    parser.add_argument("--switch-interval-ms", type=float, default=0.0,
                        help="set sys.setswitchinterval (default: Python's 5 ms)")
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return sender_main(args) if args.sender else render_main(args)


if __name__ == "__main__":
    sys.exit(main())
