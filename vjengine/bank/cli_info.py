"""`vj-bank info BANK`: the manifest and sizes of a bank."""

from __future__ import annotations

import argparse
import json

from vjengine.bank.format import open_bank
from vjengine.demo import resolve_bank_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", help="bank directory (demo: the built-in demo bank)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON only")


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.1f} MB"


def run(args: argparse.Namespace) -> int:
    bank = open_bank(resolve_bank_path(args.bank))
    if args.json:
        print(json.dumps(bank.manifest, indent=2))
        return 0
    print(f"bank      {bank.path}")
    print(f"format    {bank.manifest['format']} v{bank.manifest['version']}")
    stored = bank.count * bank.stored_frame_bytes
    codec = "uint8" if bank.codec == "raw" else f"{bank.codec} ({bank.frames.nbytes / max(1, stored):.0f}x smaller than raw)"
    print(f"frames    {bank.count} x {bank.width}x{bank.height}x{bank.channels} {codec} ({_mb(stored)})")
    if bank.low is not None:
        lw, lh = bank.low_size
        print(f"low tier  {lw}x{lh} bc1 ({_mb(bank.low.nbytes)})")
    if bank.checksums is not None:
        state = "damaged table" if bank.checksum_problem else "crc32 per " + ", ".join(sorted(bank.checksums))
        print(f"checksums {state}")
    if bank.latents is not None:
        shape = "x".join(str(s) for s in bank.latents.shape[1:])
        print(f"latents   {bank.count} x {shape} {bank.latents.dtype} ({_mb(bank.latents.nbytes)})")
    else:
        print("latents   none")
    for axis in bank.axes:
        values = ", ".join(str(v) for v in axis.values[:8]) + (", ..." if axis.size > 8 else "")
        print(f"axis      {axis.name}: {axis.size} values{' (cyclic)' if axis.cyclic else ''} [{values}]")
    made_by = bank.made_by
    if made_by:
        print("made by")
        for line in json.dumps(made_by, indent=2).splitlines()[1:-1]:
            print("  " + line)
    return 0
