"""Benchmark the show: the demo live under Xvfb from a file source, and offline render throughput.

Live: ``vj demo --audio-file <demo loop>`` in a glfw window on Xvfb for ``--seconds`` (default 120),
reporting frame time (work per frame) p50/p99, dropped frames (swap intervals longer than 1.5x the
target period) and the latency from an audio block's arrival to the frame that used it being
submitted (p50/p99). Offline: ``vj render`` of the demo loop at 1280x720/60 fps, in frames/s, and its
ratio to encoding the same frames alone with the same encoder settings.

Prints a table, then one JSON line with ``frame_ms_p99``, ``dropped_pct``, ``latency_ms_p99``,
``render_fps``, ``render_vs_encode``.

    python benchmarks/live.py [--seconds 120] [--render-seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def start_xvfb() -> tuple[subprocess.Popen, str] | None:
    if shutil.which("Xvfb") is None:
        return None
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as fh:
        num = fh.readline().strip()
    return proc, f":{num}"


def live(seconds: float, size: str, workdir: Path) -> dict:
    from vjengine.demo import demo_audio_path

    stats_path = workdir / "stats.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    xvfb = start_xvfb()
    mode = "window (Xvfb)"
    if xvfb is not None:
        env["DISPLAY"] = xvfb[1]
    else:
        mode = "headless (no Xvfb)"
        env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "vjengine.cli", "demo", "--audio-file", str(demo_audio_path()),
           "--duration", str(seconds), "--size", size, "--stats", str(stats_path), "--no-osc",
           "--screenshot", str(workdir / "last.png")]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        if xvfb is not None:
            xvfb[0].terminate()
            xvfb[0].wait()
    if proc.returncode != 0 or not stats_path.is_file():
        raise SystemExit(f"vj demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if "headless" in proc.stderr and xvfb is not None:
        mode = "headless (window failed)"
    from vjengine.show.statslog import load_stats

    st = load_stats(stats_path)
    frame_ms = np.array(st["frame_ms"][60:] or st["frame_ms"])  # skip start-up frames
    interval = np.array(st["interval_ms"][60:] or st["interval_ms"])
    latency = np.array(st["latency_ms"][60:] or [np.nan])
    period = float(np.median(interval)) if len(interval) else 1000 / 60
    target = 1000.0 / 60.0
    dropped = float(np.mean(interval > 1.5 * target) * 100.0) if len(interval) else 0.0
    stages = {k: (float(np.percentile(v[60:] or v, 50)), float(np.percentile(v[60:] or v, 99)))
              for k, v in st.get("stages_ms", {}).items() if v}
    return {
        "stages": stages,
        "mode": mode, "frames": int(st["frames"]), "fps": 1000.0 / period if period else 0.0,
        "frame_ms_p50": float(np.percentile(frame_ms, 50)), "frame_ms_p99": float(np.percentile(frame_ms, 99)),
        "dropped_pct": dropped,
        "latency_ms_p50": float(np.nanpercentile(latency, 50)), "latency_ms_p99": float(np.nanpercentile(latency, 99)),
    }


def offline(seconds: float, workdir: Path) -> dict:
    import imageio_ffmpeg

    from vjengine.cli import main
    from vjengine.demo import demo_audio_path, demo_bank_path

    demo_bank_path()
    song = demo_audio_path()
    out = workdir / "render.mp4"
    fps, size = 60, (1280, 720)
    t0 = time.perf_counter()
    rc = main(["render", str(song), "-o", str(out), "--size", f"{size[0]}x{size[1]}", "--fps", str(fps),
               "--duration", str(seconds), "--no-progress", "--no-audio"])
    render_s = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit("vj render failed")
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    # set-up (bank upload, shader compile) is not throughput: time it alone and take it out
    t0 = time.perf_counter()
    main(["render", str(song), "-o", str(workdir / "one.mp4"), "--size", f"{size[0]}x{size[1]}", "--fps", str(fps),
          "--duration", str(1.0 / fps), "--no-progress", "--no-audio"])
    setup_s = time.perf_counter() - t0
    reader = imageio_ffmpeg.read_frames(str(out))
    next(reader)  # metadata
    frames = [bytes(f) for f in reader]
    t0 = time.perf_counter()
    w = imageio_ffmpeg.write_frames(str(workdir / "enc.mp4"), size, fps=fps, codec="libx264", quality=7.0,
                                    macro_block_size=2, pix_fmt_in="rgb24", output_params=["-movflags", "+faststart"],
                                    ffmpeg_log_level="error")
    w.send(None)
    for f in frames:
        w.send(f)
    w.close()
    encode_s = time.perf_counter() - t0
    render_fps = n / max(render_s - setup_s, 1e-6)
    encode_fps = len(frames) / encode_s
    return {"frames": n, "render_s": render_s, "setup_s": setup_s, "render_fps": render_fps,
            "encode_fps": encode_fps, "render_vs_encode": render_fps / encode_fps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="live run length (default 120)")
    ap.add_argument("--render-seconds", type=float, default=5.0, help="offline render length (default 5)")
    ap.add_argument("--size", default="1280x720", help="live window size")
    ap.add_argument("--small-size", default="640x360",
                    help="also run live at this size for --small-seconds (table only; '' to skip)")
    ap.add_argument("--small-seconds", type=float, default=30.0)
    args = ap.parse_args()
    os.environ.setdefault("VJ_CACHE_DIR", str(Path(tempfile.gettempdir()) / "vj-bench-cache"))
    with tempfile.TemporaryDirectory(prefix="vj-bench-live-") as tmp:
        work = Path(tmp)
        lv = live(args.seconds, args.size, work)
        small = live(args.small_seconds, args.small_size, work) if args.small_size else None
        off = offline(args.render_seconds, work)
    rows = [
        ("live mode", lv["mode"]), ("live size, seconds", f"{args.size}, {args.seconds:g}"),
        ("live frames", lv["frames"]), ("live fps", f"{lv['fps']:.1f}"),
        ("frame time p50 (ms)", f"{lv['frame_ms_p50']:.2f}"), ("frame time p99 (ms)", f"{lv['frame_ms_p99']:.2f}"),
        ("dropped frames (%)", f"{lv['dropped_pct']:.2f}"),
        ("audio->frame latency p50 (ms)", f"{lv['latency_ms_p50']:.2f}"),
        ("audio->frame latency p99 (ms)", f"{lv['latency_ms_p99']:.2f}"),
        *((f"  stage {k} p50/p99 (ms)", f"{a:.2f} / {b:.2f}") for k, (a, b) in lv["stages"].items()),
    ]
    if small is not None:
        rows += [
            (f"[{args.small_size}] fps", f"{small['fps']:.1f}"),
            (f"[{args.small_size}] frame time p50/p99 (ms)", f"{small['frame_ms_p50']:.2f} / {small['frame_ms_p99']:.2f}"),
            (f"[{args.small_size}] dropped frames (%)", f"{small['dropped_pct']:.2f}"),
            (f"[{args.small_size}] latency p50/p99 (ms)", f"{small['latency_ms_p50']:.2f} / {small['latency_ms_p99']:.2f}"),
        ]
    rows += [
        ("offline frames (1280x720)", off["frames"]), ("offline render (frames/s)", f"{off['render_fps']:.1f}"),
        ("encode alone (frames/s)", f"{off['encode_fps']:.1f}"),
        ("render / encode", f"{off['render_vs_encode']:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({
        "frame_ms_p99": round(lv["frame_ms_p99"], 3), "dropped_pct": round(lv["dropped_pct"], 3),
        "latency_ms_p99": round(lv["latency_ms_p99"], 3), "render_fps": round(off["render_fps"], 2),
        "render_vs_encode": round(off["render_vs_encode"], 3),
    }))


if __name__ == "__main__":
    main()
