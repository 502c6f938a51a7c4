"""Benchmark a real-size tesseract: a procedural 100 x 100 bank of 512x512 frames (7.9 GB raw).

Makes the banks once into the cache (``$VJ_CACHE_DIR`` or ``/tmp/vj-bench-cache``): raw and BC1 at
full size (10,000 frames), BC7 at full size only with ``--bc7-full`` (etcpak's BC7 encoder runs at
~5-10 frames/s per core: over 20 minutes for 10,000 frames), otherwise its figures come from a
sample of the same frames. Then in one run:

- compression: ``ratio_bc1``, ``ratio_bc7`` (raw bytes / stored bytes), ``psnr_bc1_db``,
  ``psnr_bc7_db`` (decoded against raw, over a sample of frames), encode frames/s per codec;
- render: time per 1920x1080 frame, K=4 (2 axes) and K=16 (4 axes), compressed vs raw, on banks that
  fit in memory (``render_ratio_bc1``, ``render_ratio_bc7``: the worse of K=4 and K=16) and the
  upload path each codec took on this driver;
- live: ``vj live`` headless at 1280x720 for ``--seconds`` (60) with the demo audio on the BC1 bank
  with ``--gpu-budget-mb 1024``, once with the orbit preset and once with kick-morph (jumps):
  ``fps``, ``dropped_pct``, ``low_tier_pct`` (frames in which any tap came from the low tier; for
  orbit after the first second), ``miss_to_sharp_ms_p99``, ``resident_mb_max``, ``first_frame_s``;
- load: ``load_vs_raw_read``: time to the first frame / time to read the manifest, checksums and low
  tier from disk (page cache dropped first where we may).

Prints a table, then one JSON line. Timings on a shared machine are noisy.

    python benchmarks/bigbank.py [--grid 100] [--seconds 60] [--bc7-full]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIDE = 512


def procedural_frame(u: float, v: float, side: int = SIDE) -> np.ndarray:
    """A smooth image that changes smoothly along both grid axes (u, v in 0..1; v is cyclic)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    a = 2 * np.pi * v
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
    w1 = np.sin(2 * np.pi * (3 + 2 * u) * (x * np.cos(a) + y * np.sin(a)) + 4 * u)
    w2 = np.cos(2 * np.pi * (2 + u) * r * 3 - a)
    w3 = np.sin(2 * np.pi * (x * (1 + 3 * u) - y * 2) + np.sin(a) * 2)
    img = np.stack([0.5 + 0.35 * w1 + 0.15 * w3, 0.5 + 0.3 * w2 + 0.2 * w1 * w3, 0.5 + 0.4 * w3 * np.cos(a + u)], -1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def cache_root() -> Path:
    base = Path(os.environ.get("VJ_CACHE_DIR") or Path(tempfile.gettempdir()) / "vj-bench-cache")
    base.mkdir(parents=True, exist_ok=True)
    return base


def axes_for(grid: int):
    from vjengine.bank import Axis

    return (Axis("u", tuple(round(i / (grid - 1), 4) for i in range(grid))),
            Axis("v", tuple(round(i / grid, 4) for i in range(grid)), cyclic=True))


def uv(index: int, grid: int) -> tuple[float, float]:
    i, j = divmod(index, grid)
    return i / (grid - 1), j / grid


def make_big_banks(grid: int, bc7_full: bool) -> dict[str, Path]:
    """raw and bc1 (and bc7 with bc7_full) banks of grid x grid frames, made once, in one pass."""
    from tqdm import tqdm

    from vjengine.bank import BankWriter, open_bank
    from vjengine.errors import BankError

    root = cache_root()
    codecs_wanted = ["raw", "bc1"] + (["bc7"] if bc7_full else [])
    paths = {c: root / f"bigbank-{grid}x{grid}-{SIDE}-{c}" for c in codecs_wanted}
    todo = []
    for c, p in paths.items():
        try:
            open_bank(p)
        except BankError:
            todo.append(c)
    if not todo:
        return paths
    n = grid * grid
    writers = {c: BankWriter(paths[c], axes_for(grid), SIDE, SIDE, 3, codec=c, progress=True,
                             made_by={"tool": "benchmarks/bigbank.py", "grid": grid}) for c in todo}
    try:
        with ThreadPoolExecutor(2) as pool:
            for start in tqdm(range(0, n, 16), desc=f"making {', '.join(todo)} {grid}x{grid}", unit="x16 frames"):
                idx = list(range(start, min(n, start + 16)))
                frames = list(pool.map(lambda i: procedural_frame(*uv(i, grid)), idx))
                for c, w in writers.items():
                    if c == "raw":
                        w.frames[idx[0]: idx[-1] + 1] = np.stack(frames)
                    else:
                        from vjengine.bank import codecs

                        blocks = list(pool.map(lambda f, c=c: codecs.encode(f, c), frames))
                        w.blocks[idx[0]: idx[-1] + 1] = np.stack(blocks)
        for w in writers.values():
            w.commit()
    finally:
        for w in writers.values():
            if not w.committed:
                w.abort()
    return paths


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def compression(paths: dict[str, Path], grid: int, sample: int) -> dict:
    """Stored-size ratios, PSNR against raw over ``sample`` frames spread over the grid, encode rate."""
    from vjengine.bank import codecs, open_bank

    raw = open_bank(paths["raw"])
    n = raw.count
    idx = np.linspace(0, n - 1, sample).astype(int)
    out: dict = {}
    for c in ("bc1", "bc7"):
        info = codecs.CODEC_INFO[c]
        stored_per_frame = (SIDE // 4) ** 2 * info.block_bytes
        out[f"ratio_{c}"] = raw.stored_frame_bytes / stored_per_frame
        bank = open_bank(paths[c]) if c in paths else None
        errs = []
        t_enc = 0.0
        for i in idx:
            ref = np.asarray(raw.frames[i])
            if bank is not None:
                dec = bank.frames[i]
            else:
                t0 = time.perf_counter()
                blocks = codecs.encode(ref, c)
                t_enc += time.perf_counter() - t0
                dec = codecs.decode(blocks, c, SIDE, SIDE, 3)
            errs.append(float(np.mean((dec.astype(np.float64) - ref.astype(np.float64)) ** 2)))
        out[f"psnr_{c}_db"] = 10 * np.log10(255.0 ** 2 / max(float(np.mean(errs)), 1e-12))
        out[f"psnr_{c}_db_min"] = 10 * np.log10(255.0 ** 2 / max(float(np.max(errs)), 1e-12))
        if bank is not None:  # encode rate measured here, on a few frames
            t0 = time.perf_counter()
            for i in idx[: max(4, sample // 10)]:
                codecs.encode(np.asarray(raw.frames[i]), c)
            t_enc = time.perf_counter() - t0
            out[f"encode_fps_{c}"] = max(4, sample // 10) / t_enc
        else:
            out[f"encode_fps_{c}"] = sample / t_enc
        out[f"{c}_full_bank"] = bank is not None
    return out


def drop_page_cache(paths: list[Path]) -> bool:
    """Evict these files from the page cache (POSIX_FADV_DONTNEED); True if it was possible."""
    ok = True
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except (OSError, AttributeError):
            ok = False
    return ok


def load(path: Path) -> dict:
    """Time to the first drawn frame of a cold bank, against reading its manifest, checksum table and
    low tier from disk."""
    from vjengine.bank.format import CHECKSUMS_FILE, LOW_FILE, MANIFEST

    files = [path / MANIFEST, path / CHECKSUMS_FILE, path / LOW_FILE, path / "frames.safetensors"]
    cold = drop_page_cache(files)
    t0 = time.perf_counter()
    for f in files[:3]:
        with open(f, "rb") as fh:
            while fh.read(8 << 20):
                pass
    read_s = time.perf_counter() - t0
    drop_page_cache(files)
    code = (
        "import sys, time, json; t0 = time.perf_counter()\n"
        "from vjengine.render.context import headless_context\n"
        "from vjengine.render.renderer import Renderer\n"
        "from vjengine.bank import open_bank\n"
        "ctx = headless_context(); t_ctx = time.perf_counter() - t0\n"
        "t1 = time.perf_counter(); bank = open_bank(sys.argv[1])\n"
        "r = Renderer(ctx, bank, output_size=(1280, 720), progress=False, gpu_budget_mb=1024)\n"
        "t2 = time.perf_counter(); r.render((0.37, 0.61)); ctx.finish()\n"
        "print(json.dumps({'first_frame_s': time.perf_counter() - t1, 'ctx_s': t_ctx, 'open_s': t2 - t1,\n"
        "                  'source_open_s': r.textures.open_s, 'render_s': time.perf_counter() - t2}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"first-frame run failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"read_low_s": read_s, "first_frame_s": res["first_frame_s"], "cold": cold, "open_s": res["open_s"],
            "source_open_s": res["source_open_s"], "first_render_s": res["render_s"],
            "load_vs_raw_read": res["first_frame_s"] / max(read_s, 1e-9)}


def small_banks(root: Path) -> dict[tuple[int, str], Path]:
    """Banks that fit in memory for the render ratio: K=4 (8 x 8) and K=16 (3 x 3 x 3 x 3), 512x512,
    raw, bc1, bc7 (made once)."""
    from vjengine.bank import Axis, open_bank, write_bank
    from vjengine.errors import BankError

    out = {}
    for k, sizes in ((4, (8, 8)), (16, (3, 3, 3, 3))):
        n = int(np.prod(sizes))
        frames = None
        for c in ("raw", "bc1", "bc7"):
            p = root / f"bigbank-render-k{k}-{c}"
            try:
                open_bank(p)
            except BankError:
                if frames is None:
                    frames = np.stack([procedural_frame(i / n, (i * 7 % n) / n) for i in range(n)])
                axes = tuple(Axis(f"a{d}", tuple(range(s)), cyclic=d == len(sizes) - 1) for d, s in enumerate(sizes))
                write_bank(p, axes, frames, codec=c)
            out[(k, c)] = p
    return out


def render_ratio(paths: dict[tuple[int, str], Path], frames: int) -> dict:
    """Seconds per 1920x1080 frame per codec and K (every frame resident), and the upload path."""
    from vjengine.bank import open_bank
    from vjengine.render.context import headless_context
    from vjengine.render.renderer import Renderer

    ctx = headless_context()
    rng = np.random.default_rng(3)
    out: dict = {}
    for k in (4, 16):
        for c in ("raw", "bc1", "bc7", "bc1-as-is"):
            bank = open_bank(paths[(k, c.split("-")[0])])
            r = Renderer(ctx, bank, output_size=(1920, 1080), progress=False, gpu_budget_mb=1024, wait_full=True,
                         native=True if c == "bc1-as-is" else None)
            coords = [tuple(rng.random(len(bank.sizes))) for _ in range(frames)]
            for co in coords[:3]:
                r.render(co)
            r.textures.tick(10.0)  # everything resident before timing
            ctx.finish()
            times = []
            for co in coords:
                t0 = time.perf_counter()
                r.render(co)
                ctx.finish()
                times.append(time.perf_counter() - t0)
            out[(k, c)] = float(np.median(times))
            out[("path", c)] = r.textures.path
            r.release()
    res = {"paths": {c: out[("path", c)] for c in ("raw", "bc1", "bc7")}}
    for k in (4, 16):
        for c in ("raw", "bc1", "bc7", "bc1-as-is"):
            res[f"ms_k{k}_{c}"] = out[(k, c)] * 1000
    for c in ("bc1", "bc7", "bc1-as-is"):
        res[f"render_ratio_{c}"] = max(out[(k, c)] / out[(k, "raw")] for k in (4, 16))
    return res


def live(bank: Path, preset: str, seconds: float, budget_mb: float, work: Path) -> dict:
    """``vj live`` headless at 1280x720 with the demo audio; the residency figures from --stats."""
    import subprocess

    from vjengine.demo import demo_audio_path

    stats = work / f"stats-{preset}.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "vjengine.cli", "live", str(bank), "--headless", "--audio-file",
           str(demo_audio_path()), "--loop", "--duration", str(seconds), "--size", "1280x720", "--preset", preset,
           "--gpu-budget-mb", str(budget_mb), "--stats", str(stats), "--no-osc"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 300)
    if proc.returncode != 0 or not stats.is_file():
        raise SystemExit(f"vj live failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    from vjengine.show.statslog import load_stats

    st = load_stats(stats)  # the per-frame stream; a summary (residency) rides on its end line
    interval = np.array(st["interval_ms"][60:] or st["interval_ms"])
    period = float(np.median(interval)) if len(interval) else 1000 / 60
    if not st.get("residency"):  # a plain bank that fits: no streaming figures
        return {"fps": 1000.0 / period, "frames": int(st["frames"]),
                "dropped_pct": float(np.mean(interval > 1.5 * 1000 / 60) * 100) if len(interval) else 0.0}
    res = st["residency"][0]
    # where the long frames' time went (after the first second): the render stage, and how much of it
    # the render thread spent on the CPU (the rest it waited: for a read, the GPU, or a busy machine)
    frame_ms = np.array(st["frame_ms"])
    long_at = [k for k in np.nonzero(frame_ms > 1.5 * 1000 / 60)[0] if k >= 60]
    render_ms = st["stages_ms"].get("render") or []
    cpu_ms = [p.get("cpu", float("nan")) for p in st["probes"]]
    long_frames = {"count": len(long_at),
                   "render_ms": [float(render_ms[k]) for k in long_at if k < len(render_ms)],
                   "cpu_ms": [float(cpu_ms[k]) for k in long_at if k < len(cpu_ms)]}
    low = np.frombuffer(res["low_frames"].encode(), np.uint8) == ord("1")
    fps_nominal = 60
    after_1s = low[fps_nominal:] if len(low) > fps_nominal else low
    miss_all = np.array(res["miss_to_sharp_ms"] or [0.0])
    frames_at = np.array(res.get("miss_frames") or [0] * len(res["miss_to_sharp_ms"]))
    later = np.array(res["miss_to_sharp_ms"])[frames_at >= fps_nominal] if len(res["miss_to_sharp_ms"]) else np.array([])
    miss = later if len(later) else np.array([0.0])
    return {"fps": 1000.0 / period, "dropped_pct": float(np.mean(interval > 1.5 * 1000 / 60) * 100) if len(interval) else 0.0,
            "low_tier_pct": float(np.mean(low) * 100) if len(low) else 0.0,
            "low_tier_pct_after_1s": float(np.mean(after_1s) * 100) if len(after_1s) else 0.0,
            "miss_to_sharp_ms_p99": float(np.percentile(miss, 99)), "misses": int(len(later)),
            "miss_to_sharp_ms_p99_all": float(np.percentile(miss_all, 99)), "misses_all": int(len(miss_all)),
            "resident_mb_max": float(res["resident_mb_max"]), "first_frame_s": float(res["first_frame_s"] or 0.0),
            "frames": int(st["frames"]), "path": res["path"], "long_frames": long_frames}


def live_plain(bank: Path, preset: str, seconds: float, work: Path) -> dict:
    """``live`` without a budget on a plain bank that fits (BankTextures): the baseline drop rate."""
    import subprocess

    from vjengine.demo import demo_audio_path
    from vjengine.show.statslog import load_stats

    stats = work / f"stats-base-{preset}.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "vjengine.cli", "live", str(bank), "--headless", "--audio-file",
           str(demo_audio_path()), "--loop", "--duration", str(seconds), "--size", "1280x720", "--preset", preset,
           "--stats", str(stats), "--no-osc"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 300)
    if proc.returncode != 0 or not stats.is_file():
        raise SystemExit(f"vj live failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    st = load_stats(stats)
    interval = np.array(st["interval_ms"][60:] or st["interval_ms"])
    period = float(np.median(interval)) if len(interval) else 1000 / 60
    return {"fps": 1000.0 / period, "dropped_pct": float(np.mean(interval > 1.5 * 1000 / 60) * 100)}


def _long_row(lf: dict) -> str:
    if not lf["count"]:
        return "0"
    r, c = np.array(lf["render_ms"] or [np.nan]), np.array(lf["cpu_ms"] or [np.nan])
    return (f"{lf['count']}; {np.nanmedian(r):.1f} / {np.nanmedian(c):.1f}, "
            f"{np.nanmax(r):.1f} / {np.nanmax(c):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=100, help="grid side (default 100: 10,000 frames)")
    ap.add_argument("--seconds", type=float, default=60.0, help="live run length per preset (default 60)")
    ap.add_argument("--budget-mb", type=float, default=1024.0)
    ap.add_argument("--sample", type=int, default=200, help="frames for the PSNR (default 200)")
    ap.add_argument("--render-frames", type=int, default=30)
    ap.add_argument("--bc7-full", action="store_true", help="also make the full-size BC7 bank (slow)")
    args = ap.parse_args()
    os.environ.setdefault("VJ_CACHE_DIR", str(Path(tempfile.gettempdir()) / "vj-bench-cache"))
    t0 = time.perf_counter()
    paths = make_big_banks(args.grid, args.bc7_full)
    make_s = time.perf_counter() - t0
    comp = compression(paths, args.grid, args.sample)
    rend = render_ratio(small_banks(cache_root()), args.render_frames)
    ld = load(paths["bc1"])
    with tempfile.TemporaryDirectory(prefix="vj-bigbank-") as tmp:
        orbit = live(paths["bc1"], "1-chill-orbit", args.seconds, args.budget_mb, Path(tmp))
        kick = live(paths["bc1"], "2-techno-kick-morph", args.seconds, args.budget_mb, Path(tmp))
        from vjengine.demo import demo_bank_path

        # the same run on the demo bank (raw, fits whole): what this machine drops anyway right now
        base = live_plain(demo_bank_path(), "1-chill-orbit", args.seconds, Path(tmp))
    n = args.grid * args.grid
    rows = [
        ("bank", f"{args.grid}x{args.grid} = {n} frames of {SIDE}x{SIDE} RGB ({n * SIDE * SIDE * 3 / 1e9:.1f} GB raw)"),
        ("banks made in (s, 0 = cached)", f"{make_s:.0f}"),
        ("ratio bc1 / bc7", f"{comp['ratio_bc1']:.1f} / {comp['ratio_bc7']:.1f}"),
        ("PSNR bc1 / bc7 (dB, mean; worst frame)",
         f"{comp['psnr_bc1_db']:.1f} / {comp['psnr_bc7_db']:.1f}; {comp['psnr_bc1_db_min']:.1f} / {comp['psnr_bc7_db_min']:.1f}"),
        ("bc7 figures from", "the full bank" if comp["bc7_full_bank"] else f"{args.sample} sampled frames (no --bc7-full)"),
        ("encode frames/s bc1 / bc7", f"{comp['encode_fps_bc1']:.0f} / {comp['encode_fps_bc7']:.1f}"),
        ("upload path raw / bc1 / bc7", " / ".join(rend["paths"][c] for c in ("raw", "bc1", "bc7"))),
        *((f"1920x1080 ms/frame K={k} raw / bc1 / bc7 / bc1 as-is",
           " / ".join(f"{rend[f'ms_k{k}_{c}']:.1f}" for c in ("raw", "bc1", "bc7", "bc1-as-is"))) for k in (4, 16)),
        ("render ratio bc1 / bc7 / bc1 as-is (worse K)",
         f"{rend['render_ratio_bc1']:.2f} / {rend['render_ratio_bc7']:.2f} / {rend['render_ratio_bc1-as-is']:.2f}"),
        ("first frame (s) / read manifest+low (s)", f"{ld['first_frame_s']:.2f} / {ld['read_low_s']:.2f}"
                                                    + ("" if ld["cold"] else " (page cache not dropped)")),
        ("  of which: bank + low tier up / renderer / first draw (s)",
         f"{ld['source_open_s']:.2f} / {ld['open_s'] - ld['source_open_s']:.2f} / {ld['first_render_s']:.2f}"),
        ("load_vs_raw_read", f"{ld['load_vs_raw_read']:.1f}"),
    ]
    for name, lv in (("orbit", orbit), ("kick-morph", kick)):
        rows += [
            (f"[{name}] fps / dropped %", f"{lv['fps']:.1f} / {lv['dropped_pct']:.2f}"),
            (f"[{name}] low tier % (all; after 1 s)", f"{lv['low_tier_pct']:.2f}; {lv['low_tier_pct_after_1s']:.2f}"),
            (f"[{name}] misses after 1 s, miss->sharp p99 (ms)", f"{lv['misses']}, {lv['miss_to_sharp_ms_p99']:.1f}"),
            (f"[{name}] all misses, miss->sharp p99 (ms)", f"{lv['misses_all']}, {lv['miss_to_sharp_ms_p99_all']:.1f}"),
            (f"[{name}] resident MB max / budget", f"{lv['resident_mb_max']:.0f} / {args.budget_mb:.0f}"),
            (f"[{name}] first frame (s)", f"{lv['first_frame_s']:.2f}"),
            (f"[{name}] frames > 25 ms after 1 s; render / its CPU ms (median, max)",
             _long_row(lv["long_frames"])),
        ]
    rows.append(("[baseline: demo bank, raw, fits] fps / dropped %", f"{base['fps']:.1f} / {base['dropped_pct']:.2f}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({
        "ratio_bc1": round(comp["ratio_bc1"], 2), "ratio_bc7": round(comp["ratio_bc7"], 2),
        "psnr_bc1_db": round(comp["psnr_bc1_db"], 2), "psnr_bc7_db": round(comp["psnr_bc7_db"], 2),
        "encode_fps_bc1": round(comp["encode_fps_bc1"], 1), "encode_fps_bc7": round(comp["encode_fps_bc7"], 2),
        "render_ratio_bc1": round(rend["render_ratio_bc1"], 3), "render_ratio_bc7": round(rend["render_ratio_bc7"], 3),
        "path_bc1": rend["paths"]["bc1"], "path_bc7": rend["paths"]["bc7"],
        "fps": round(min(orbit["fps"], kick["fps"]), 2),
        "dropped_pct": round(max(orbit["dropped_pct"], kick["dropped_pct"]), 3),
        "dropped_pct_baseline": round(base["dropped_pct"], 3),
        "render_ratio_bc1_as_is": round(rend["render_ratio_bc1-as-is"], 3),
        "low_tier_pct_orbit_after_1s": round(orbit["low_tier_pct_after_1s"], 3),
        "low_tier_pct_kick_morph": round(kick["low_tier_pct"], 3),
        "miss_to_sharp_ms_p99": round(max(orbit["miss_to_sharp_ms_p99"], kick["miss_to_sharp_ms_p99"]), 2),
        "resident_mb_max": round(max(orbit["resident_mb_max"], kick["resident_mb_max"]), 1),
        "first_frame_s": round(max(ld["first_frame_s"], orbit["first_frame_s"], kick["first_frame_s"]), 3),
        "load_vs_raw_read": round(ld["load_vs_raw_read"], 2),
        "long_frames_orbit": orbit["long_frames"]["count"], "long_frames_kick_morph": kick["long_frames"]["count"],
    }))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--make-only":
    g = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    print(make_big_banks(g, "--bc7-full" in sys.argv))
    sys.exit(0)


if __name__ == "__main__":
    main()
