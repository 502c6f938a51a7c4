"""Benchmark video out: what each sink costs the render thread, and how late its frames arrive.

A headless (EGL) 1280x720 show of the demo bank at 60 fps, a frame counter stamped into every frame,
run with no sink, then each of ``ndi://``, ``http://`` (MJPEG) and ``srt://`` alone, then all three.
Each sink has a real receiver in its own process (the same NDI binding; an HTTP client decoding the
JPEGs; ffmpeg as the SRT listener), which reads the counter from the pictures it gets and stamps the
arrival with the same monotonic clock, so:

- ``cost_ratio_<sink>``: render-thread frame time (render + readback hand-over) with the sink, over
  without; reported for p50 and p99, and the key is the larger of the two (targets: <= 1.15 each,
  <= 1.3 all together); ``hub_cpu_ms_<sink>_mean``: the CPU time the render thread itself spends in
  readback and hand-over per frame (thread time: what a busy neighbour's load does not change);
- ``latency_ms_<sink>``: frame drawn to frame decoded by the receiver, p50 and p99 (targets p99: NDI
  <= 50, MJPEG <= 100, SRT <= 250), and where it went (``STAGES``: readback, mailbox, send, ffmpeg,
  transport; from the sink's ``timings`` and, for SRT, ffmpeg's progress reports);
- ``dropped_<sink>``: frames the sink dropped (its mailbox was full), and frames sent but never
  decoded.

Prints a table, then one JSON line. Timings on a shared 2-core machine without a GPU are noisy (the
receivers' decoders compete with the show for the same cores): read them as such.

    python benchmarks/video_out.py [--seconds 8] [--rounds 2] [--size 1280x720] [--fps 60]
                                   [--runs none,ndi,mjpeg,srt,all] [--receiver-nice N|idle]
                                   [--receiver-session own|shared]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WARMUP_S = 2.0
RECEIVER_START_S = 30.0  # measure anyway after this long without a picture at some receiver
# Where a frame's latency goes: drawn -> read back and handed over -> taken by the sink's thread ->
# converted, encoded and written (to the network, ffmpeg's pipe, the viewers) -> encoded by ffmpeg
# (srt/udp only) -> received and decoded by the receiver.
STAGES = ("readback", "mailbox", "send", "ffmpeg", "transport")
RECEIVER_NICE: int | str = 0  # --receiver-nice: a nice value, or "idle" (SCHED_IDLE)
RECEIVER_SESSION = "shared"  # --receiver-session


# ------------------------------------------------------------------------------------------ receivers

def _say(number, t):
    sys.stdout.write(f"{number} {t:.6f}\n")
    sys.stdout.flush()


def rx_ndi(name: str) -> None:
    from cyndilib.finder import Finder
    from cyndilib.receiver import ReceiveFrameType, Receiver
    from cyndilib.video_frame import VideoRecvFrame
    from cyndilib.wrapper import RecvBandwidth, RecvColorFormat

    from vjengine.output.counter import read_counter

    finder = Finder()
    finder.open()
    source = None
    while source is None:
        finder.wait_for_sources(0.5)
        source = next((s for s in finder.get_source_names() if s.endswith(f"({name})")), None)
    # "fastest": NDI's own UYVY(+alpha) planes, no conversion to RGBA in the receiver (which shares
    # the show's two cores here); the counter is read from the luma bytes.
    receiver = Receiver(color_format=RecvColorFormat.fastest, bandwidth=RecvBandwidth.highest)
    video = VideoRecvFrame()
    receiver.set_video_frame(video)
    receiver.set_source(finder.get_source(source))
    while True:
        if receiver.receive(ReceiveFrameType.recv_video, 200) & ReceiveFrameType.recv_video:
            t = time.perf_counter()
            w, h = video.get_resolution()
            stride = video.get_line_stride()
            uyvy = stride >= 2 * w and int(video.get_fourcc()).to_bytes(4, "little").startswith(b"UYV")
            with memoryview(video) as view:  # released before the next receive (a held view blocks it)
                data = np.frombuffer(view, np.uint8)
                if uyvy:
                    img = data[:h * stride].reshape(h, stride)[:, 1:2 * w:2, None]
                else:
                    img = data[:h * w * 4].reshape(h, w, 4)
                # read in place: the counter's cells are a few small means (copying the whole
                # luma plane first cost the shared cores a millisecond a frame at 60 fps)
                number = read_counter(img)
                del data, img
            _say(number, t)


def rx_mjpeg(url: str) -> None:
    import io
    import urllib.request

    from PIL import Image

    from vjengine.output.counter import read_counter

    while True:
        try:
            stream = urllib.request.urlopen(url, timeout=10)
            break
        except OSError:
            time.sleep(0.05)
    while True:
        length = 0
        while True:
            line = stream.readline()
            if not line:
                return
            line = line.strip()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if not line and length:
                break
        data = stream.read(length)
        t = time.perf_counter()
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (img.width // 4, img.height // 4))
        _say(read_counter(np.asarray(img.convert("RGB"))), t)


def rx_srt(url: str, size: str) -> None:
    from vjengine.output.counter import read_counter
    from vjengine.output.stream import ffmpeg_exe

    w, h = 320, 180
    proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-fflags", "nobuffer",
                             "-flags", "low_delay", "-probesize", "100000", "-analyzeduration", "200000", "-i", url,
                             "-fps_mode", "passthrough", "-s", f"{w}x{h}", "-f", "rawvideo", "-pix_fmt", "rgb24",
                             # each decoded frame written out whole at once: by default the tail of
                             # one (past ffmpeg's 32 KiB output buffer) waited for the next frame,
                             # a whole frame period of latency that no real receiver has
                             "-flush_packets", "1", "pipe:1"], stdout=subprocess.PIPE)
    n = w * h * 3
    while True:
        data = proc.stdout.read(n)
        if len(data) < n:
            return
        _say(read_counter(np.frombuffer(data, np.uint8).reshape(h, w, 3)), time.perf_counter())


# ------------------------------------------------------------------------------------------ the show

def _receiver_priority() -> None:
    if RECEIVER_SESSION == "own":
        os.setsid()  # a session (and so, with Linux autogroups, a CPU share) of its own
    if RECEIVER_NICE == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.setpriority(os.PRIO_PROCESS, 0, int(RECEIVER_NICE))


class Receiver:
    def __init__(self, argv: list[str], env: dict) -> None:
        # Receivers stand for other machines (Resolume, OBS, a phone): a normal program's priority (or
        # --receiver-nice), never the render thread's raised one, which they would otherwise inherit.
        self.proc = subprocess.Popen([sys.executable, __file__, "--receiver", *argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True,
                                     preexec_fn=_receiver_priority)
        self.got: list[tuple[int | None, float]] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            a, b = line.split()
            self.got.append((None if a == "None" else int(a), float(b)))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._t.join(5)


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else math.nan


def show(kinds: list[str], seconds: float, size: tuple[int, int], fps: float, ctx, renderer, env) -> dict:
    import socket

    from vjengine.output.counter import stamp_fbo
    from vjengine.output.hub import OutputHub
    from vjengine.output.sinks import open_sinks
    from vjengine.render.effects import Effects

    def port(kind=socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    urls, receivers = {}, {}
    if "ndi" in kinds:
        name = f"vj-bench-{os.getpid()}-{len(kinds)}"
        urls["ndi"] = f"ndi://{name}"
        receivers["ndi"] = ["ndi", name]
    if "srt" in kinds:
        p = port(socket.SOCK_DGRAM)
        urls["srt"] = f"srt://127.0.0.1:{p}"
        # SRT runs at the larger of both ends' latency: the listener's default (120 ms) would hide the
        # sink's own (40 ms), so the receiver asks for less (as OBS's "latency" field would).
        receivers["srt"] = ["srt", f"srt://127.0.0.1:{p}?mode=listener&latency=20000", f"{size[0]}x{size[1]}"]
    if "mjpeg" in kinds:
        p = port()
        urls["mjpeg"] = f"http://127.0.0.1:{p}/"
    sinks = dict(zip(urls, open_sinks(list(urls.values()))))
    rx = {k: Receiver(v, env) for k, v in receivers.items()}
    hub = OutputHub(list(sinks.values())).start(ctx, size)
    if "mjpeg" in sinks:
        rx["mjpeg"] = Receiver(["mjpeg", f"http://127.0.0.1:{sinks['mjpeg'].port}/stream.mjpg"], env)
    fx = Effects()
    period = 1.0 / fps
    frame_ms, hub_ms, hub_cpu_ms, drawn = [], [], [], {}
    n = 0
    start = time.perf_counter()
    next_t = start
    measure_from = None  # once every receiver has a picture (they start slowly on a busy machine)
    counts0: dict[str, tuple[int, int]] = {}
    while True:
        now = time.perf_counter()
        if measure_from is None and now - start >= WARMUP_S and (
                all(r.got for r in rx.values()) or now - start >= RECEIVER_START_S):
            measure_from = now
            counts0 = {k: (s.sent, s.dropped) for k, s in sinks.items()}
        if measure_from is not None and now - measure_from >= seconds:
            break
        t = now - start
        coord = [0.5 + 0.45 * math.sin(t * 0.7 + i) for i in range(len(renderer.bank.axes))]
        t0 = time.perf_counter()
        renderer.render(coord, fx, period)
        stamp_fbo(renderer.output, n)
        ctx.finish()
        t_drawn = time.perf_counter()
        c0 = time.thread_time()
        if sinks:
            hub.on_frame(renderer.output, number=n, drawn_s=t_drawn)
        t1 = time.perf_counter()
        c1 = time.thread_time()
        if measure_from is not None:
            frame_ms.append((t1 - t0) * 1000.0)
            hub_ms.append((t1 - t_drawn) * 1000.0)
            hub_cpu_ms.append((c1 - c0) * 1000.0)
            drawn[n] = t_drawn
        n += 1
        next_t += period
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.perf_counter()
    hub.flush()
    time.sleep(1.0)  # the last frames reach the receivers
    out = {"frame_ms": frame_ms, "hub_ms": hub_ms, "hub_cpu_ms": hub_cpu_ms, "sinks": {}}
    for kind, sink in sinks.items():
        got = [(k, t) for k, t in (rx[kind].got if kind in rx else []) if k is None or k in drawn]
        lat = [(t - drawn[k]) * 1000.0 for k, t in got if k is not None]
        seen = {k for k, _ in got if k is not None}
        timings = getattr(sink, "timings", None)  # (None: an older sink, for A/B runs against it)
        sent = sink.sent - counts0.get(kind, (0, 0))[0] if timings is None else sum(1 for t in timings if t.number in drawn)
        dropped = sink.dropped - counts0.get(kind, (0, 0))[1]
        offered = sent + dropped
        stamps = {t.number: t for t in timings or ()}
        encoded = dict(getattr(sink, "encoded_at", ()))  # ffmpeg's progress: when it had encoded each
        stages: dict[str, list[float]] = {name: [] for name in STAGES}
        for k, t in got:  # where each received frame's latency went
            st = stamps.get(k)
            if st is None or k not in drawn:
                continue
            enc = encoded.get(k, st.done_s)
            for name, (a, b) in zip(STAGES, ((st.drawn_s, st.ready_s), (st.ready_s, st.taken_s),
                                             (st.taken_s, st.done_s), (st.done_s, enc), (enc, t))):
                stages[name].append((b - a) * 1000.0)
        out["sinks"][kind] = {"latency_ms": lat, "received": len(seen), "dropped": dropped,
                              **{f"stage_{name}": v for name, v in stages.items()},
                              "not_received": max(0, sent - len(seen)), "sent": sent, "offered": offered,
                              "unreadable": sum(1 for k, _ in got if k is None), "state": sink.state}
    hub.close()
    for r in rx.values():
        r.stop()
    return out


def merge(into: dict, run: dict) -> None:
    """Pool one run's samples and counts into the configuration's totals."""
    for key in ("frame_ms", "hub_ms", "hub_cpu_ms"):
        into.setdefault(key, []).extend(run[key])
    for kind, s in run["sinks"].items():
        t = into.setdefault("sinks", {}).setdefault(kind, {})
        for key, value in s.items():
            if isinstance(value, list):
                t.setdefault(key, []).extend(value)
            elif isinstance(value, int):
                t[key] = t.get(key, 0) + value
            else:
                t[key] = value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--runs", default="none,ndi,mjpeg,srt,all")
    ap.add_argument("--rounds", type=int, default=2, help="repeat the runs this many times, interleaved")
    ap.add_argument("--receiver-nice", type=lambda v: v if v == "idle" else int(v), default=0,
                    help="the receivers' nice value (they stand for other machines; default 0, a normal program)")
    ap.add_argument("--receiver-session", choices=("own", "shared"), default="shared",
                    help="receivers in the show's session (default) or in one of their own, like another "
                         "program on this machine (e.g. OBS), which with Linux autogroups gets its own CPU "
                         "share: on a machine loaded by others that share can be too small for a receiver "
                         "to start within 30 s")
    ap.add_argument("--receiver", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global RECEIVER_NICE, RECEIVER_SESSION
    RECEIVER_NICE, RECEIVER_SESSION = args.receiver_nice, args.receiver_session
    if args.receiver:
        kind, *rest = args.receiver
        {"ndi": rx_ndi, "mjpeg": rx_mjpeg, "srt": rx_srt}[kind](*rest)
        return
    os.environ.setdefault("VJ_CACHE_DIR", str(Path(tempfile.gettempdir()) / "vj-bench-cache"))
    scratch = tempfile.TemporaryDirectory(prefix="vj-bench-ndi-")  # removed at exit, even on error
    cfg = Path(scratch.name)
    (cfg / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
    os.environ.setdefault("NDI_CONFIG_DIR", str(cfg))  # NDI discovery without multicast (see tests)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    from vjengine.app import parse_size
    from vjengine.bank import open_bank
    from vjengine.demo import resolve_bank_path
    from vjengine.render.context import headless_context
    from vjengine.render.renderer import Renderer

    size = parse_size(args.size)
    try:  # as the show does, before the GL context (llvmpipe's threads inherit it)
        from vjengine.priority import raise_render_priority

        priority = raise_render_priority()
    except ImportError:
        priority = "default"
    ctx = headless_context()
    bank = open_bank(resolve_bank_path("demo"))
    renderer = Renderer(ctx, bank, output_size=size, fit="fill", progress=False, upload="eager")
    results: dict = {}
    for _ in range(args.rounds):  # interleaved, so a neighbour's load falls on every configuration alike
        for name in args.runs.split(","):
            kinds = ["ndi", "mjpeg", "srt"] if name == "all" else ([] if name == "none" else [name])
            merge(results.setdefault(name, {}), show(kinds, args.seconds, size, args.fps, ctx, renderer, env))
    for res in results.values():
        res.update(frames=len(res["frame_ms"]), frame_ms_p50=pct(res["frame_ms"], 50),
                   frame_ms_p99=pct(res["frame_ms"], 99), hub_ms_p50=pct(res["hub_ms"], 50),
                   hub_ms_p99=pct(res["hub_ms"], 99), hub_cpu_ms_mean=float(np.mean(res["hub_cpu_ms"] or [math.nan])))
        for s in res.setdefault("sinks", {}).values():
            s.update(latency_ms_p50=pct(s["latency_ms"], 50), latency_ms_p99=pct(s["latency_ms"], 99))
            for name in STAGES:
                s[f"{name}_ms_p50"] = pct(s[f"stage_{name}"], 50)
                s[f"{name}_ms_p99"] = pct(s[f"stage_{name}"], 99)
    base = results.get("none")
    rows = [("show", f"headless EGL ({ctx.info['GL_RENDERER']}), {args.size} at {args.fps:g} fps, "
                     f"{args.rounds} x {args.seconds:g} s per run, render thread {priority}, receivers nice {RECEIVER_NICE}, "
                     f"{RECEIVER_SESSION} session")]
    summary: dict = {}
    for name, res in results.items():
        rows.append((f"[{name}] frame time p50 / p99 (ms)", f"{res['frame_ms_p50']:.2f} / {res['frame_ms_p99']:.2f}"))
        if name != "none":
            rows.append((f"[{name}] of which readback + hand-over p50 / p99 (ms)",
                         f"{res['hub_ms_p50']:.2f} / {res['hub_ms_p99']:.2f}"))
            rows.append((f"[{name}] readback + hand-over CPU time of the render thread, mean (ms a frame)",
                         f"{res['hub_cpu_ms_mean']:.3f}"))
            summary[f"hub_ms_{name}_p99"] = round(res["hub_ms_p99"], 3)
            summary[f"hub_cpu_ms_{name}_mean"] = round(res["hub_cpu_ms_mean"], 3)
        if base is not None and name != "none":
            r50 = res["frame_ms_p50"] / base["frame_ms_p50"]
            r99 = res["frame_ms_p99"] / base["frame_ms_p99"]
            rows.append((f"[{name}] cost ratio p50 / p99", f"{r50:.3f} / {r99:.3f}"))
            summary[f"cost_ratio_{name}"] = round(max(r50, r99), 3)
            summary[f"cost_ratio_{name}_p50"] = round(r50, 3)
            summary[f"cost_ratio_{name}_p99"] = round(r99, 3)
        for kind, s in res["sinks"].items():
            rows.append((f"[{name}] {kind} latency p50 / p99 (ms)", f"{s['latency_ms_p50']:.1f} / {s['latency_ms_p99']:.1f}"))
            rows.append((f"[{name}] {kind} p50 (p99) ms: " + " / ".join(STAGES),
                         " / ".join(f"{s[f'{st}_ms_p50']:.1f} ({s[f'{st}_ms_p99']:.1f})" for st in STAGES)))
            rows.append((f"[{name}] {kind} sent / received (measured) / dropped / sent-not-received",
                         f"{s['sent']} / {s['received']} / {s['dropped']} / {s['not_received']}"))
            key = "" if name != "all" else "_all"
            if name == kind or name == "all":
                summary[f"latency_ms_{kind}{key}_p50"] = round(s["latency_ms_p50"], 1)
                summary[f"latency_ms_{kind}{key}_p99"] = round(s["latency_ms_p99"], 1)
                summary[f"dropped_{kind}{key}"] = s["dropped"]
                summary[f"not_received_{kind}{key}"] = s["not_received"]
                for st in STAGES:
                    summary[f"{st}_ms_{kind}{key}_p50"] = round(s[f"{st}_ms_p50"], 1)
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
