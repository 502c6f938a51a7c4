"""Benchmark the renderer: blend cost per K against a plain copy, upload speed, time to first frame.

In one GL context (headless EGL; Mesa llvmpipe on a machine without a GPU), at 1920x1080 output from a
512x512 bank:

- ``copy_ms``: a plain one-tap copy of a 1920x1080 RGBA8 texture to a 1920x1080 target (linear filter).
- ``ratio_kK``: a whole frame (blend of K neighbours at bank resolution + the default effects chain +
  the scaled pass to 1080p, ``fit="fill"`` so every output pixel is written) divided by ``copy_ms``.
  The table also shows the frame with effects switched on (hue, trails, zoom, intensity, flash) and
  with ``fit="fit"`` (the demo's square frames leave bars, fewer pixels to write), and K=4 with the
  Catmull-Rom scaling filter.
- ``upload_mb_s``: texture upload of a 1024-frame 512x512 RGB bank (from the page cache).
- ``first_frame_s``: wall time from starting ``vj live BANK --headless`` (that 1024-frame bank, file
  audio) to its first rendered frame, including interpreter start, imports, bank open and the upload
  of the frames that frame needs (the renderer streams the rest of the bank in afterwards).

Every frame is followed by ``ctx.finish()`` (as a swap would); configurations are interleaved round by
round and the median per frame is reported. The ratios use CPU time per frame (this process, llvmpipe's
rasterizer threads included): on a shared machine wall time mostly measures waiting for a CPU, CPU time
measures the work. Wall-time figures are printed too (``*_wall`` keys).

    python benchmarks/render.py [--rounds 7] [--frames 20]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT_W, OUT_H = 1920, 1080
BANK_SIDE = 512


def make_bank(path: Path, axes: int, count_per_axis: int = 2, frames_total: int | None = None):
    from vjengine.bank import Axis, open_bank, write_bank

    rng = np.random.default_rng(axes)
    if frames_total is not None:
        sizes = (frames_total,)
    else:
        sizes = (count_per_axis,) * max(axes, 1) if axes else (1,)
    n = int(np.prod(sizes))
    base = rng.integers(0, 256, (min(n, 16), BANK_SIDE, BANK_SIDE, 3), dtype=np.uint8)
    frames = base[np.arange(n) % len(base)]
    ax = [Axis(f"a{i}", tuple(range(s))) for i, s in enumerate(sizes)]
    return open_bank(write_bank(path, ax, frames))


def time_frames(ctx, draw, frames: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per frame of ``draw(); ctx.finish()``. The CPU time is the whole process's,
    llvmpipe's rasterizer threads included, so it counts the work and not the waiting for a shared CPU."""
    draw()
    ctx.finish()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(frames):
        draw()
        ctx.finish()
    return (time.perf_counter() - wall) / frames * 1000.0, (time.process_time() - cpu) / frames * 1000.0


def first_frame(bank_path: Path, audio_path: Path, workdir: Path) -> tuple[float, str]:
    """Seconds from spawning ``vj live BANK --headless`` to its first frame, and what was measured."""
    mark = workdir / "first_frame.txt"
    runner = (
        "import sys, time, os\n"
        "mark = sys.argv[1]\n"
        "import vjengine.presenters as presenters\n"
        "orig = presenters.HeadlessPresenter.present\n"
        "def present(self, compositor, *a, **k):\n"
        "    out = orig(self, compositor, *a, **k)\n"
        "    open(mark, 'w').write(repr(time.time()))\n"
        "    os._exit(0)\n"
        "presenters.HeadlessPresenter.present = present\n"
        "from vjengine.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-c", runner, str(mark), "live", str(bank_path), "--headless", "--no-osc",
           "--audio-file", str(audio_path), "--duration", "10", "--screenshot", str(workdir / "ff.png")]
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if mark.is_file():
        return float(mark.read_text()) - start, "vj live --headless"
    # Fall back to `vj still` (start to PNG written) if the app's presenter is not there.
    sys.stderr.write(f"vj live run did not reach a frame ({proc.returncode}): {proc.stderr[-1500:]}\n")
    start = time.time()
    subprocess.run([sys.executable, "-m", "vjengine.cli", "still", str(bank_path), "-o", str(workdir / "s.png")],
                   env=env, check=True, capture_output=True, timeout=300)
    return time.time() - start, "vj still (start to PNG)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=20, help="frames per configuration per round")
    parser.add_argument("--skip-first-frame", action="store_true")
    args = parser.parse_args()

    import moderngl

    from vjengine.render.context import headless_context, load_program
    from vjengine.effects import Effects
    from vjengine.render.renderer import Renderer
    from vjengine.render.textures import BankTextures

    ctx = headless_context()
    scratch = tempfile.TemporaryDirectory(prefix="vj-bench-render-")  # removed at exit, even on error
    work = Path(scratch.name)

    # The reference: a plain one-tap copy of a 1920x1080 texture to the output.
    rng = np.random.default_rng(0)
    src = ctx.texture((OUT_W, OUT_H), 4, rng.integers(0, 256, (OUT_H, OUT_W, 4), np.uint8).tobytes())
    src.filter = (moderngl.LINEAR, moderngl.LINEAR)
    out = ctx.framebuffer([ctx.texture((OUT_W, OUT_H), 4)])
    copy_prog = load_program(ctx, "output", {"CUBIC": 0})
    tri = ctx.buffer(np.array([[-1, -1, 0, 0], [3, -1, 2, 0], [-1, 3, 0, 2]], np.float32).tobytes())
    copy_vao = ctx.vertex_array(copy_prog, [(tri, "2f 2f", "in_pos", "in_uv")])

    def copy() -> None:
        out.use()
        src.use(0)
        copy_vao.render(moderngl.TRIANGLES, vertices=3)

    defaults = Effects()
    active = Effects(hue_deg=30.0, feedback=0.6, feedback_zoom=1.01, zoom=1.1, intensity=0.9, flash=0.2)
    configs: dict[str, object] = {"copy": copy}
    renderers = []
    for axes in range(5):
        k = 1 << axes
        bank = make_bank(work / f"k{k}", axes)
        coord = [0.37] * len(bank.sizes)
        for fit in ("fill", "fit"):
            r = Renderer(ctx, bank, output_size=(OUT_W, OUT_H), fit=fit, progress=False, raise_errors=True,
                         upload="eager")
            r.warm_up()
            renderers.append(r)
            configs[f"K={k} {fit}"] = (lambda r=r, c=coord: r.render(c, defaults, 1 / 60))
            if fit == "fill":
                configs[f"K={k} fill fx"] = (lambda r=r, c=coord: r.render(c, active, 1 / 60))
        if k == 4:  # the sharper scaling filter, for comparison
            r = Renderer(ctx, bank, output_size=(OUT_W, OUT_H), fit="fill", progress=False, raise_errors=True,
                         upload="eager", scale_filter="cubic")
            renderers.append(r)
            configs["K=4 fill cubic"] = (lambda r=r, c=coord: r.render(c, defaults, 1 / 60))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, draw in configs.items():
            samples[name].append(time_frames(ctx, draw, args.frames))
    wall = {name: float(np.median([s[0] for s in v])) for name, v in samples.items()}
    med = {name: float(np.median([s[1] for s in v])) for name, v in samples.items()}
    copy_ms = med["copy"]

    print(f"GL: {ctx.info['GL_RENDERER']}; output {OUT_W}x{OUT_H}, bank {BANK_SIDE}x{BANK_SIDE} RGB; "
          f"median of {args.rounds} rounds x {args.frames} frames (finish after each); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'configuration':<22}{'CPU ms':>9}{'x copy':>9}{'wall ms':>10}{'x copy':>9}")
    for name, ms in med.items():
        print(f"{name:<22}{ms:>9.2f}{ms / copy_ms:>9.2f}{wall[name]:>10.2f}{wall[name] / wall['copy']:>9.2f}")
    floor = {k: 1 + (k + 1) / 2 * (BANK_SIDE * BANK_SIDE) / (OUT_W * OUT_H) for k in (1, 2, 4, 8, 16)}
    print("memory-traffic floor (issue): " + ", ".join(f"K={k} {v:.2f}x" for k, v in floor.items()))
    for r in renderers:
        r.release()

    # Upload throughput: a 1024-frame 512x512 RGB bank.
    big = make_bank(work / "big", 0, frames_total=1024)
    np.asarray(big.frames).sum(dtype=np.uint64)  # into the page cache: measure the GPU upload, not the disk
    tex = BankTextures(ctx, big, progress=False, upload="eager")
    upload_mb_s = tex.nbytes / 1e6 / tex.upload_s
    print(f"upload: {tex.nbytes / 1e6:.0f} MB in {tex.upload_s:.2f} s = {upload_mb_s:.0f} MB/s "
          f"({tex.layout.arrays} array(s))")
    tex.release()
    ctx.release()

    first_s, what = float("nan"), "skipped"
    if not args.skip_first_frame:
        from vjengine.demo import demo_audio_path

        first_s, what = first_frame(big.path, demo_audio_path(), work)
        print(f"first frame: {first_s:.2f} s ({what}, 1024-frame 512x512 bank)")

    result = {
        "copy_ms": round(copy_ms, 3),
        "basis": "CPU time per frame (all threads); *_wall keys: wall time",
        **{f"ratio_k{k}": round(med[f"K={k} fill"] / copy_ms, 3) for k in (1, 2, 4, 8, 16)},
        "upload_mb_s": round(upload_mb_s, 1),
        "first_frame_s": round(first_s, 3),
        "first_frame_measured": what,
        **{f"ratio_k{k}_fx": round(med[f"K={k} fill fx"] / copy_ms, 3) for k in (1, 2, 4, 8, 16)},
        **{f"ratio_k{k}_fit": round(med[f"K={k} fit"] / copy_ms, 3) for k in (1, 2, 4, 8, 16)},
        "copy_wall_ms": round(wall["copy"], 3),
        **{f"ratio_k{k}_wall": round(wall[f"K={k} fill"] / wall["copy"], 3) for k in (1, 2, 4, 8, 16)},
    }
    scratch.cleanup()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
