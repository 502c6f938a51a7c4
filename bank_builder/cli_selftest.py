"""`vj-bank selftest`: prove the builder works on this machine, with no downloads.

It writes tiny random-weight models (an SD-1.x-shaped and an SDXL-shaped pipeline, a TAESD-class
decoder, a LoRA) into a temporary folder, bakes a small bank from each through the same code path as
`vj-bank build` (on the GPU when there is one), checks the banks as the player reads them, and
removes everything. The frames are noise by design: the models have random weights.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bank_builder import BUILD_EXTRA_HINT
from bank_builder.errors import BuildExtraMissing
from vjengine.errors import VJError


class SelfTestFailed(VJError):
    exit_code = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (models, specs, banks)")


SPEC = """
model = "{model}"
steps = 2
guidance = 3.0
size = [32, 32]
seed = 1
decoder = "{decoder}"
{lora}
[[axes]]
kind = "prompt"
prompts = ["a red cat", "a neon dog", "red neon"]
count = 5
densify = 2
[[axes]]
kind = "seed"
seeds = [1, 2, 3]
count = 6
cyclic = true
densify = 2
"""


def run(args: argparse.Namespace) -> int:
    try:
        import diffusers  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        raise BuildExtraMissing(f"vj-bank selftest needs the build extra: {BUILD_EXTRA_HINT} ({exc})") from None
    import numpy as np

    from bank_builder.build import BuildOptions, build_bank
    from bank_builder.pipeline import library_versions, pick_device
    from bank_builder.spec import parse_spec
    from bank_builder.testing import make_tiny_lora, make_tiny_pipeline, make_tiny_sdxl_pipeline, make_tiny_taesd
    from vjengine.bank import validate_bank

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import peft  # noqa: F401
        with_lora = True
    except ModuleNotFoundError:
        with_lora = False
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    print(f"vj-bank selftest on {device} ({versions}): tiny random-weight models, no downloads; "
          "the frames are noise by design")
    tmp = Path(tempfile.mkdtemp(prefix="vj-bank-selftest-"))
    t_start = time.perf_counter()
    try:
        make_tiny_taesd(tmp / "taesd")
        for family, make in (("SD 1.x", make_tiny_pipeline), ("SDXL", make_tiny_sdxl_pipeline)):
            folder = tmp / family.replace(" ", "").replace(".", "")
            pipe = make(folder / "model")
            lora = ""
            if with_lora and family == "SD 1.x":
                make_tiny_lora(pipe, folder / "style.safetensors")
                lora = '[[lora]]\nfile = "style.safetensors"\nweight = 0.5\n'
            spec = parse_spec(SPEC.format(model=folder / "model", decoder=tmp / "taesd", lora=lora),
                              source=f"selftest-{folder.name}.toml", base_dir=folder)
            t0 = time.perf_counter()
            result = build_bank(spec, folder / "bank", BuildOptions(device=device, progress=False,
                                                                    threads=args.threads))
            bank = validate_bank(folder / "bank")
            frames = np.asarray(bank.frames)
            if bank.count != spec.count or frames.std() == 0:
                raise SelfTestFailed(f"selftest: the {family} bank came out wrong ({bank.count} frames, "
                                     f"std {frames.std():.3f})")
            print(f"  {family}{' + LoRA' if lora else ''}: {result.keyframes} keyframes + {result.inbetweens} "
                  f"in-betweens, {bank.width}x{bank.height}, built and validated in {time.perf_counter() - t0:.1f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"selftest passed in {time.perf_counter() - t_start:.1f} s"
          + ("" if args.keep else f"; removed {tmp}") + ". Next: your first real bank (README).")
    return 0
