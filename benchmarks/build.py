"""Benchmark `vj-bank build` on the tiny model: the builder against a naive per-frame loop.

Same grid, same run: the builder (keyframes by the full pipeline, batched; in-betweens by latent
slerp + decode) against the naive loop that calls the full diffusers pipeline once per frame (what
stable-diffusion-videos does). Reports frames/s of both (model load and the seam report excluded
from both), the speed-up, the seams (MAD between neighbouring frames, 0..255) of both banks, and the
builder's cost split per frame (text encoding, UNet, decode, slerp, writing, packing).

Prints a table, then one JSON line with ``builder_fps``, ``naive_fps``, ``speedup``, ``seam_median``,
``seam_worst``, ``naive_seam_median`` (and the split).

    python benchmarks/build.py [--steps 20] [--size 64] [--seeds-count 12] [--prompts-count 9] [--densify 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--guidance", type=float, default=5.0, help="CFG scale (0: no CFG, as sd-turbo)")
    ap.add_argument("--seeds-count", type=int, default=12, help="cells on the cyclic seed axis")
    ap.add_argument("--prompts-count", type=int, default=9, help="cells on the prompt axis")
    ap.add_argument("--densify", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a shared 2-core machine 2 threads are often far slower)")
    args = ap.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from bank_builder.build import BuildOptions, build_bank
    from bank_builder.pipeline import Generator
    from bank_builder.plan import cell_params
    from bank_builder.seams import seam_report
    from bank_builder.spec import parse_spec
    from bank_builder.testing import make_tiny_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory(prefix="vj-bench-build-")  # the tiny model and the bank: ~50 MB a run
    tmp = Path(scratch.name)
    model = tmp / "tiny"
    make_tiny_pipeline(model)
    text = f"""
model = "{model}"
steps = {args.steps}
guidance = {args.guidance}
size = [{args.size}, {args.size}]
seed = 3
negative_prompt = "blurry"
[[axes]]
kind = "prompt"
prompts = ["a red cat", "a neon dog", "a cat on a red neon"]
count = {args.prompts_count}
densify = {args.densify}
[[axes]]
kind = "seed"
seeds = [1, 2, 3, 4]
count = {args.seeds_count}
cyclic = true
densify = {args.densify}
"""
    spec = parse_spec(text, source="bench.toml", base_dir=tmp)
    n = spec.count

    # --- builder -------------------------------------------------------------------------------
    result = build_bank(spec, tmp / "bank", BuildOptions(batch_size=args.batch_size, progress=False, threads=args.threads))
    t = result.timings_s
    builder_s = result.elapsed_s - t.get("load", 0.0) - t.get("seams", 0.0)
    builder_fps = n / builder_s
    seams = result.seams["overall"]

    # --- naive: the full pipeline once per frame, same cells ------------------------------------
    gen = Generator(spec)  # for the same per-cell embeddings and noise
    pipe = StableDiffusionPipeline.from_pretrained(str(model), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    neg = torch.from_numpy(gen.negative_embeds[None].numpy())
    naive = np.zeros((n, spec.height, spec.width, 3), np.uint8)
    pipe(prompt_embeds=torch.zeros(1, 77, 32), negative_prompt_embeds=neg, height=spec.height, width=spec.width,
         num_inference_steps=1, output_type="np")  # warm-up, like the builder's first batch
    t0 = time.perf_counter()
    for i in range(n):
        p = cell_params(spec, np.unravel_index(i, spec.sizes))
        emb = torch.from_numpy(gen.cell_embedding(p)[None]).float()
        lat = torch.from_numpy(gen.cell_noise(p)[None]).float()
        img = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, latents=lat, guidance_scale=spec.guidance,
                   num_inference_steps=spec.steps, height=spec.height, width=spec.width, output_type="np").images[0]
        naive[i] = np.round(img * 255).astype(np.uint8)
    naive_s = time.perf_counter() - t0
    naive_fps = n / naive_s
    naive_seams = seam_report(naive, spec.sizes, [a.cyclic for a in spec.axes], [a.name for a in spec.axes])["overall"]

    split = {k: t.get(k, 0.0) / n * 1000 for k in ("text", "unet", "decode", "slerp", "write", "pack")}
    print(f"grid {' x '.join(str(s) for s in spec.sizes)} = {n} frames at {args.size}x{args.size}, {args.steps} steps, "
          f"guidance {spec.guidance}, densify {args.densify}: {result.keyframes} keyframes + {result.inbetweens} in-betweens")
    print(f"{'':<28}{'frames/s':>10}{'seam MAD median':>17}{'seam MAD worst':>16}")
    print(f"{'builder (key + densify)':<28}{builder_fps:>10.2f}{seams['mad_median']:>17.2f}{seams['mad_max']:>16.2f}")
    print(f"{'naive (pipeline per frame)':<28}{naive_fps:>10.2f}{naive_seams['mad_median']:>17.2f}{naive_seams['mad_max']:>16.2f}")
    print(f"speed-up {builder_fps / naive_fps:.1f}x")
    print("builder cost per frame (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
    keyframe_unet_ms = t.get("unet", 0.0) / max(1, result.keyframes) * 1000
    decode_ms = t.get("decode", 0.0) / n * 1000
    print(f"per keyframe: UNet {keyframe_unet_ms:.1f} ms ({args.steps} steps, guidance {spec.guidance}); per frame decode {decode_ms:.1f} ms")
    print(json.dumps({
        "builder_fps": round(builder_fps, 3), "naive_fps": round(naive_fps, 3),
        "speedup": round(builder_fps / naive_fps, 2),
        "seam_median": seams["mad_median"], "seam_worst": seams["mad_max"],
        "naive_seam_median": naive_seams["mad_median"], "naive_seam_worst": naive_seams["mad_max"],
        "frames": n, "threads": args.threads, "keyframes": result.keyframes, "split_ms_per_frame": {k: round(v, 3) for k, v in split.items()},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
