"""Benchmark `vj-bank build` per model family: the real architectures with random weights, no downloads.

For each family (SD-Turbo (the SD 2.1 architecture), SDXL-Turbo, SD 1.5, SDXL, in that order) a
pipeline of the real architecture at full size with seeded random weights is written to a temporary
folder and baked into a GRID x GRID bank (prompt axis x cyclic seed axis, densify 4) through the
builder, with a TAESD-class decoder, exactly as an artist's build runs. Reported per family: frames/s
of the whole bake, keyframes/s (text + UNet), decode ms per frame with the VAE and with the
TAESD-class decoder, peak GPU memory, the batch size the builder chose, and the projected time of a
100x100 bank (676 keyframes at densify 4, 10000 TAESD decodes). On CUDA it also measures, for the
Turbo families, how far a batched build is from an exact one (one cell shape per call), since GPU
kernels are not bit-identical across batch shapes. Model build, load, torch.compile warm-up and the
seam report are not counted.

    python benchmarks/build_gpu.py --tiny              # CPU, CI-sized: tiny models, 32x32, 8x8 grid (~1 min)
    python benchmarks/build_gpu.py --check             # is this machine ready for the full run? (seconds)
    python benchmarks/build_gpu.py --out results/ --budget-s 420    # the full run on a CUDA GPU

**On a bare CUDA machine with no network** nothing is downloaded: the models are made on the spot.
It needs Python 3.11+, a CUDA build of torch, and this repository's build extra (diffusers,
transformers, accelerate, safetensors, numpy, scipy, pillow, tqdm, soundfile): on a machine online,
with the same Python version and platform, ``pip download -d wheels '.[build]' setuptools`` from a
checkout (PyPI's Linux x86-64 torch wheels are CUDA builds), copy ``wheels/`` over, then ``python -m
venv .venv && .venv/bin/pip install --no-index --find-links wheels -e '.[build]'``. ``--check`` says what is missing (exit 2) and the GPU,
its free memory and the free disk (SDXL's weights take 7 GB in the temporary folder, removed after).

How long: the families run cheapest first, and with ``--budget-s S`` no family starts after S seconds,
so a run fits a rented machine's slot; ``--out DIR`` rewrites ``DIR/build_gpu.json`` and
``DIR/build_gpu.txt`` after every family, so a run cut short keeps what it finished. Expected on a
4090-class card (estimated, not yet measured): about 1 minute each for SD-Turbo and SDXL-Turbo, 2 for
SD 1.5 and 3-4 for SDXL (1024x1024, 20 steps with guidance), each including a ~20-60 s model write.

Prints a progress line per family on stderr, then a table, then one JSON line: ``{"mode", "device",
"families": {name: {"frames_per_s", "keyframes_per_s", "decode_ms", "vae_decode_ms", "peak_mem_mb",
"projected_100x100_s", ...} or {"error": ...} or {"skipped": ...}}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAMILIES = ("sd-turbo", "sdxl-turbo", "sd15", "sdxl")  # cheapest first: a budget cuts the dearest
EXACTNESS_FAMILIES = ("sd-turbo", "sdxl-turbo")  # an exact rebuild doubles the bake: only the cheap ones
PROMPTS = ["a neon jellyfish in a dark ocean", "a city at night in the rain", "a field of glowing flowers"]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decode_ms(decoder, latent_shape, device, dtype, batch: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` ms per frame to decode a batch of random latents."""
    import torch

    z = torch.randn((batch, *latent_shape), generator=torch.Generator("cpu").manual_seed(0)).to(device, dtype)
    best = math.inf
    with torch.inference_mode():
        decoder.decode(z[:1], return_dict=False)  # warm-up
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            decoder.decode(z / decoder.config.scaling_factor, return_dict=False)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return best / batch * 1000


def run_family(name: str, tmp: Path, args, device: str) -> dict:
    import torch

    from bank_builder.build import BuildOptions, build_bank
    from bank_builder.spec import parse_spec
    from bank_builder.testing import (FULL_SIZE_FAMILIES, make_full_size_pipeline, make_full_size_taesd,
                                      make_tiny_pipeline, make_tiny_sdxl_pipeline, make_tiny_taesd)

    family, native, steps, guidance, _ = FULL_SIZE_FAMILIES[name]
    folder, taesd = tmp / name, tmp / f"{name}-taesd"
    t0 = time.perf_counter()
    if args.tiny:
        size = 32
        (make_tiny_sdxl_pipeline if family == "sdxl" else make_tiny_pipeline)(folder)
        make_tiny_taesd(taesd)
        steps = min(steps, 4)
    else:
        size = native
        make_full_size_pipeline(folder, name, device=device)
        make_full_size_taesd(taesd, device=device)
    made_s = time.perf_counter() - t0
    grid, densify = args.grid, args.densify
    text = f"""
model = "{folder}"
steps = {steps}
guidance = {guidance}
size = [{size}, {size}]
seed = 1
decoder = "{taesd}"
[[axes]]
kind = "prompt"
prompts = {json.dumps(PROMPTS)}
count = {grid}
densify = {densify}
[[axes]]
kind = "seed"
seeds = [1, 2, 3, 4]
count = {grid}
cyclic = true
densify = {densify}
"""
    spec = parse_spec(text, source=f"{name}.toml", base_dir=tmp)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    opts = BuildOptions(device=device, batch_size=args.batch_size, progress=False, compile_unet=args.compile,
                        threads=args.threads, work_dir=str(tmp / f"{name}.work"))
    result = build_bank(spec, tmp / f"{name}-bank", opts)
    t = result.timings_s
    bake_s = result.elapsed_s - t.get("load", 0.0) - t.get("seams", 0.0) - t.get("warmup", 0.0)
    key_s = t.get("unet", 0.0) + t.get("text", 0.0)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process' peak RSS so far

    from diffusers import AutoencoderKL, AutoencoderTiny

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    latent_shape = (4, size // 8, size // 8)
    batch = 8 if device.startswith("cuda") else 2
    vae = AutoencoderKL.from_pretrained(str(folder / "vae"), torch_dtype=dtype).to(device).eval()
    if family == "sdxl" and dtype == torch.float16:
        vae.to(torch.float32)  # SDXL's VAE overflows in fp16: the builder decodes it in fp32 too
    vae_ms = decode_ms(vae, latent_shape, device, vae.dtype, batch)
    del vae
    tiny = AutoencoderTiny.from_pretrained(str(taesd), torch_dtype=dtype).to(device).eval()
    taesd_ms = decode_ms(tiny, latent_shape, device, dtype, batch)
    del tiny

    keyframes_per_s = result.keyframes / key_s if key_s > 0 else float("nan")
    key_100 = 26 * 26  # densify 4 on a 100-cell axis: cells 0, 4, ..., 96 and 99
    projected = key_100 / keyframes_per_s + 100 * 100 * taesd_ms / 1000
    out = {
        "frames_per_s": round(spec.count / bake_s, 3), "keyframes_per_s": round(keyframes_per_s, 3),
        "decode_ms": round(taesd_ms, 3), "vae_decode_ms": round(vae_ms, 3), "peak_mem_mb": round(peak_mb, 1),
        "projected_100x100_s": round(projected, 1), "size": size, "steps": steps, "guidance": guidance,
        "frames": spec.count, "keyframes": result.keyframes, "batch_size": result.batch_size,
        "oom_retries": result.retries, "model_build_s": round(made_s, 1),
        "unet_ms_per_keyframe": round(t.get("unet", 0.0) / result.keyframes * 1000, 2),
    }
    if args.exactness and device.startswith("cuda") and name in EXACTNESS_FAMILIES:
        out["batched_vs_exact"] = exactness(spec, tmp, name, device, args, result.path)
    shutil.rmtree(tmp / f"{name}-bank", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def exactness(spec, tmp: Path, name: str, device: str, args, batched_path: Path) -> dict:
    """The same bank built exact (fixed call shape): how far the batched GPU build is from it."""
    import numpy as np

    from bank_builder.build import BuildOptions, build_bank
    from vjengine.bank import open_bank

    opts = BuildOptions(device=device, batch_size=args.batch_size, progress=False, exact=True,
                        work_dir=str(tmp / f"{name}-exact.work"))
    build_bank(spec, tmp / f"{name}-exact", opts)
    a, b = open_bank(batched_path), open_bank(tmp / f"{name}-exact")
    lat = float(np.abs(np.asarray(a.latents, np.float32) - np.asarray(b.latents, np.float32)).max())
    fr = np.abs(np.asarray(a.frames, np.int16) - np.asarray(b.frames, np.int16))
    shutil.rmtree(tmp / f"{name}-exact", ignore_errors=True)
    return {"latent_max_abs": lat, "frame_max_levels": int(fr.max()), "frames_differing": int((fr.max(axis=(1, 2, 3)) > 0).sum())}


REQUIRED = ("torch", "diffusers", "transformers", "safetensors", "numpy", "scipy", "PIL", "tqdm", "soundfile")


def preflight(tiny: bool) -> tuple[dict, list[str]]:
    """What this machine has for the run: library versions, GPU, free GPU memory and disk; and the
    problems that stop it (missing packages, no CUDA for the full run, too little disk)."""
    import importlib

    info: dict = {"python": sys.version.split()[0]}
    problems: list[str] = []
    for mod in REQUIRED + ("accelerate",):
        try:
            info[mod] = getattr(importlib.import_module(mod), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - any import failure is a missing package
            if mod != "accelerate":  # optional: diffusers loads faster with it
                problems.append(f"{mod} cannot be imported ({type(exc).__name__}: {exc})")
    if problems:
        return info, problems + ["install the build extra: pip install -e '.[build]' (offline: see this script's docstring)"]
    try:
        import bank_builder.build  # noqa: F401
        import bank_builder.pipeline  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return info, [f"the builder does not import ({type(exc).__name__}: {exc})"]
    import torch

    free_disk = shutil.disk_usage(tempfile.gettempdir()).free
    info["tmp_free_gb"] = round(free_disk / 2**30, 1)
    info["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        info.update(gpu=torch.cuda.get_device_name(0), gpu_free_gb=round(free / 2**30, 1),
                    gpu_total_gb=round(total / 2**30, 1))
    elif not tiny:
        problems.append(f"torch {torch.__version__} sees no CUDA GPU (torch.version.cuda = {torch.version.cuda}): the "
                        "full run needs one; use --tiny on the CPU")
    if not tiny and free_disk < 10 * 2**30:
        problems.append(f"{tempfile.gettempdir()} has {free_disk / 2**30:.1f} GB free; SDXL's random weights need about "
                        "10 GB there (set TMPDIR to a bigger disk)")
    return info, problems


def write_results(out_dir: Path | None, table: str, record: dict) -> None:
    if out_dir is None:
        return
    for name, text in (("build_gpu.json", json.dumps(record, indent=1) + "\n"), ("build_gpu.txt", table + "\n")):
        tmp = out_dir / (name + ".part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)


def table_text(results: dict, args, gpu: str) -> str:
    lines = [f"{'tiny (CPU)' if args.tiny else gpu}: {args.grid}x{args.grid} banks, densify {args.densify}, TAESD-class "
             "decoder",
             f"{'family':<12}{'size':>6}{'steps':>6}{'batch':>6}{'frames/s':>10}{'keys/s':>9}{'TAESD ms':>10}"
             f"{'VAE ms':>9}{'peak MB':>9}{'100x100':>10}"]
    for name, r in results.items():
        if "frames_per_s" not in r:
            lines.append(f"{name:<12}{r.get('error') or r.get('skipped')}")
            continue
        proj = r["projected_100x100_s"]
        proj_s = f"{proj / 60:.1f} min" if proj >= 60 else f"{proj:.0f} s"
        lines.append(f"{name:<12}{r['size']:>6}{r['steps']:>6}{r['batch_size']:>6}{r['frames_per_s']:>10.2f}"
                     f"{r['keyframes_per_s']:>9.2f}{r['decode_ms']:>10.2f}{r['vae_decode_ms']:>9.1f}"
                     f"{r['peak_mem_mb']:>9.0f}{proj_s:>10}")
        if "batched_vs_exact" in r:
            e = r["batched_vs_exact"]
            lines.append(f"{'':<12}batched vs exact: latents differ by up to {e['latent_max_abs']:.2e}, frames by up to "
                         f"{e['frame_max_levels']} levels in {e['frames_differing']} frames")
    return "\n".join(lines)


def main() -> int:
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU (CI-sized); default: full size on CUDA")
    ap.add_argument("--check", action="store_true", help="only check that this machine can run it (exit 2 if not)")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, from {', '.join(FAMILIES)}")
    ap.add_argument("--grid", type=int, default=None, help="cells per axis, a multiple of --densify (default 16; 8 "
                                                          "with --tiny)")
    ap.add_argument("--densify", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the builder's choice (from free memory)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet (warm-up not counted)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads with --tiny")
    ap.add_argument("--budget-s", type=float, default=None, help="start no family after this many seconds")
    ap.add_argument("--out", type=Path, default=None, help="write build_gpu.json and .txt here after each family")
    ap.add_argument("--no-exactness", dest="exactness", action="store_false",
                    help="skip the batched-vs-exact comparison on CUDA")
    args = ap.parse_args()
    args.grid = args.grid or (8 if args.tiny else 16)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        print(f"build_gpu.py: error: --families: unknown {unknown[0]!r} (one of {', '.join(FAMILIES)})", file=sys.stderr)
        return 2
    if not (1 <= args.densify <= 8) or args.grid < 2 * args.densify or args.grid % args.densify:
        print(f"build_gpu.py: error: --grid {args.grid}: must be a multiple of --densify {args.densify} and at least "
              "two of it (the seed axis is cyclic)", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)

    info, problems = preflight(args.tiny)
    print("build_gpu.py: " + ", ".join(f"{k} {v}" for k, v in info.items()), file=sys.stderr, flush=True)
    if problems:
        for p in problems:
            print(f"build_gpu.py: error: {p}", file=sys.stderr)
        return 2
    if args.check:
        print("build_gpu.py: ready", file=sys.stderr)
        return 0

    import torch

    if args.tiny:
        device = "cpu"
        torch.set_num_threads(args.threads)
    else:
        device = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"

    tmp = Path(tempfile.mkdtemp(prefix="vj-bench-build-gpu-"))
    results: dict = {}

    def record() -> dict:
        return {"mode": "tiny" if args.tiny else "full", "device": gpu, "grid": args.grid, "densify": args.densify,
                "environment": info, "wall_s": round(time.perf_counter() - t_start, 1), "families": results}

    try:
        for name in families:
            if args.budget_s is not None and time.perf_counter() - t_start > args.budget_s:
                results[name] = {"skipped": f"not started: past --budget-s {args.budget_s:g}"}
                continue
            print(f"{name}: building the {'tiny' if args.tiny else 'full-size'} random-weight model and a "
                  f"{args.grid}x{args.grid} bank ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                results[name] = run_family(name, tmp, args, device)
            except Exception as exc:  # noqa: BLE001 - one family's failure is reported, the others still run
                results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                print(f"{name}: failed: {results[name]['error']}", file=sys.stderr, flush=True)
                shutil.rmtree(tmp / name, ignore_errors=True)
                if device == "cuda":
                    torch.cuda.empty_cache()
            results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: done in {results[name]['wall_s']:.0f} s", file=sys.stderr, flush=True)
            write_results(args.out, table_text(results, args, gpu), record())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = table_text(results, args, gpu)
    write_results(args.out, table, record())
    print(table)
    print(json.dumps(record()))
    return 0 if all("frames_per_s" in r or "skipped" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
