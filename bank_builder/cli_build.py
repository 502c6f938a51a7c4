"""`vj-bank build SPEC.toml -o BANK`: bake a bank (resumes if run again with the same spec and output).

Importing this module does not import torch: ``--help``, ``--dry-run`` and spec errors are instant,
and a missing build extra gives one clear line.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from bank_builder import BUILD_EXTRA_HINT
from bank_builder.errors import BuildExtraMissing, SpecError

log = logging.getLogger("bank_builder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="bank spec (TOML); see presets/banks/")
    parser.add_argument("-o", "--output", required=True, help="bank directory to write (replaced atomically)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="auto: float16 on GPUs, float32 on the CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="keyframes per UNet batch (default 8 GPU, 4 CPU)")
    parser.add_argument("--decode-batch-size", type=int, default=None,
                        help="in-between frames per decode batch (default 2 x batch size)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet (pays off on long GPU builds; the warm-up is not counted)")
    parser.add_argument("--exact", action="store_true",
                        help="one cell per model call on a GPU too, so every cell is bit-identical whatever the "
                             "batch size (the CPU always works this way)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (on a busy machine 1 can be much faster than all cores)")
    parser.add_argument("--work-dir", default=None, help="where finished batches are kept (default: OUTPUT.work)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work directory after the bank is packed")
    parser.add_argument("--restart", action="store_true",
                        help="discard earlier work for this output and start over (also rebuilds an up-to-date bank)")
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="run the batches on a Ray cluster: 'auto' (this machine's GPUs) or a cluster address "
                             "(host:port or ray://host:port); needs pip install 'vjengine[ray]'")
    parser.add_argument("--ray-workers", type=int, default=None,
                        help="Ray workers (default: one per GPU in the cluster, else one per CPU)")
    parser.add_argument("--ray-shared-work", action="store_true",
                        help="with --ray: the work folder (--work-dir) is on storage every node can write (NFS, a "
                             "shared disk); workers write their shards there instead of sending the arrays back")
    parser.add_argument("--dry-run", action="store_true", help="validate the spec and print the plan; load no model")
    parser.add_argument("--codec", choices=("raw", "bc1", "bc7"), default=None,
                        help="store the frames GPU block-compressed (bc1: 6x smaller, bc7: 3x, sharper); "
                             "overrides the spec's codec key (default raw)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line at the end")
    parser.add_argument("--lyrics", default=None, metavar="LRC",
                        help="timed lyrics (.lrc or .csv time,line[,style,negative]): the prompt axis becomes the "
                             "lyric lines (axis `lyrics`); SPEC gives the model, size, steps and other axes")
    parser.add_argument("--style", default=None, help="with --lyrics: added to every line's prompt "
                                                      "(default: SPEC's prompt)")
    parser.add_argument("--cells-per-line", type=int, default=4, help="with --lyrics: cells from one line to the next")
    parser.add_argument("--write-spec", default=None, metavar="TOML", help="with --lyrics: save the spec it made")


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise SpecError(f"{flag} must be >= 1, got {value}")


def _up_to_date(output: Path, digest: str, codec: str = "raw") -> bool:
    """True if ``output`` is a complete bank whose manifest says it was made from this very spec."""
    from vjengine.bank import read_manifest
    from vjengine.errors import BankError

    from bank_builder.build import BUILD_FORMAT

    if not output.is_dir():
        return False
    try:
        manifest = read_manifest(output)
    except BankError:
        return False
    made_by = manifest.get("made_by") or {}
    return (made_by.get("spec_sha256") == digest and made_by.get("build_format") == BUILD_FORMAT
            and manifest.get("codec", "raw") == codec)


def run(args: argparse.Namespace) -> int:
    from bank_builder.plan import describe
    from bank_builder.spec import load_spec

    if args.lyrics:
        from bank_builder.lyrics import load_lyrics_spec, spec_toml

        spec, table = load_lyrics_spec(args.spec, args.lyrics, style=args.style, cells_per_line=args.cells_per_line)
        if args.write_spec:
            Path(args.write_spec).write_text(spec_toml(table), encoding="utf-8")
            print(f"wrote {args.write_spec}")
    else:
        spec = load_spec(args.spec)
    if args.codec is not None:
        import dataclasses

        spec = dataclasses.replace(spec, codec=args.codec)
    _positive(args.batch_size, "--batch-size")
    _positive(args.decode_batch_size, "--decode-batch-size")
    _positive(args.threads, "--threads")
    _positive(args.ray_workers, "--ray-workers")
    if (args.ray_workers or args.ray_shared_work) and not args.ray:
        raise SpecError("--ray-workers and --ray-shared-work need --ray auto or --ray ADDRESS")
    if args.ray:
        from bank_builder.ray_build import import_ray

        import_ray()  # before any work: say how to install the extra
    print(describe(spec))
    if args.dry_run:
        return 0
    output = Path(args.output)
    if not args.restart and _up_to_date(output, spec.digest(), spec.codec):
        print(f"{output} is already built from this spec (use --restart to build it again)")
        return 0
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        raise BuildExtraMissing(f"vj-bank build needs torch, diffusers and transformers: {BUILD_EXTRA_HINT} ({exc})") from None

    from bank_builder.build import BuildOptions, build_bank, default_work_dir
    from bank_builder.seams import format_table

    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(output)
    if args.restart and work_dir.exists():
        log.info("--restart: removing %s", work_dir)
        shutil.rmtree(work_dir)
    options = BuildOptions(device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                           decode_batch_size=args.decode_batch_size, compile_unet=args.compile,
                           threads=args.threads, work_dir=str(work_dir), keep_work=args.keep_work,
                           progress=not args.no_progress, exact=True if args.exact else None,
                           ray=args.ray, ray_workers=args.ray_workers, ray_shared_work=args.ray_shared_work)
    try:
        result = build_bank(spec, output, options, spec_text=spec_toml(table) if args.lyrics else None)
    except KeyboardInterrupt:
        kept = list(work_dir.glob("*/shards/*.safetensors")) if work_dir.exists() else []
        if kept:
            print(f"\ninterrupted: {len(kept)} finished batches are kept in {work_dir}; run the same command again "
                  "to resume where it stopped", file=sys.stderr)
        else:
            print("\ninterrupted before the first batch was finished; nothing was kept", file=sys.stderr)
        return 130
    print(f"wrote {result.path}: {result.keyframes} keyframes + {result.inbetweens} in-betweens "
          f"({result.made_now} made now) in {result.elapsed_s:.1f} s"
          + (f", {result.retries} batches halved after running out of memory" if result.retries else ""))
    t = result.timings_s
    split = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(t.items()) if v > 0)
    print(f"time split: {split}")
    print("seams (neighbour differences):")
    print(format_table(result.seams))
    print(f"seam report: {result.path / 'reports' / 'seams.png'}")
    for w in result.workers.get("workers", []):
        print(f"ray worker {w['worker']} on {w['node']}: {w['cells']} cells in {w['busy_s']:.1f} s busy, "
              f"{w['failures_retried']} failed batch(es) retried elsewhere{'; ' + w['error'] if 'error' in w else ''}")
    if args.json:
        print(json.dumps({"path": str(result.path), "keyframes": result.keyframes, "inbetweens": result.inbetweens,
                          "made_now": result.made_now, "batch_size": result.batch_size, "retries": result.retries,
                          "timings_s": t, "seams": result.seams["overall"],
                          **({"ray": result.workers} if result.workers else {})}))
    return 0
