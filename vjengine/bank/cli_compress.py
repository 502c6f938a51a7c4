"""`vj-bank compress BANK --codec bc1|bc7 -o OUT`: a copy of a bank with GPU block-compressed frames.

The frames are encoded with etcpak (BC1: 4 bits per pixel, BC7: 8), the latents and reports are
copied, and the new bank is written through :class:`BankWriter`: atomically, so an interrupted run
leaves nothing at OUT (and an older bank there untouched). Each source frame is checked against its
checksum as it is read; a damaged source stops the run with the frame named (exit 2).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from vjengine.bank import codecs
from vjengine.bank.format import ENCODE_THREADS, REPORTS_DIR, BankWriter, open_bank
from vjengine.demo import resolve_bank_path
from vjengine.errors import BankError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", help="bank directory to convert (demo: the built-in demo bank)")
    parser.add_argument("--codec", required=True, choices=codecs.CODECS,
                        help="bc1 (4 bits/pixel, RGB), bc7 (8 bits/pixel, better quality, RGBA) or raw")
    parser.add_argument("-o", "--output", required=True, help="the new bank directory (written atomically)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def compress_bank(src: Path, out: Path, codec: str, *, progress: bool = True) -> Path:
    bank = open_bank(src)
    if bank.checksum_problem:
        raise BankError(bank.checksum_problem)
    if Path(out).resolve() == bank.path.resolve():
        raise BankError(f"{out}: the output must be a new directory, not the bank being converted")
    made_by = dict(bank.made_by)
    made_by["converted"] = {"from": str(bank.path), "from_codec": bank.codec, "codec": codec,
                            "tool": "vj-bank compress", "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    latent_shape = None if bank.latents is None else bank.latents.shape[1:]
    latent_dtype = "float16" if bank.latents is None else bank.latents.dtype.name
    with BankWriter(out, bank.axes, bank.width, bank.height, bank.channels, latent_shape=latent_shape,
                    latent_dtype=latent_dtype, made_by=made_by, codec=codec, progress=progress) as writer:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=bank.count, unit="frame", desc=f"{codec} {bank.name}", leave=False)
        chunk = 4 * ENCODE_THREADS  # frames encoded together, one per core
        for start in range(0, bank.count, chunk):
            pixels = []
            for i in range(start, min(bank.count, start + chunk)):
                stored = np.asarray(bank.stored(i))
                if not bank.frame_ok(i, stored):
                    cell = ", ".join(f"{a.name}={c}" for a, c in zip(bank.axes, bank.cell(i)))
                    raise BankError(f"{bank.path}: frame {i} (cell {cell}) does not match its checksum; "
                                    "repair or rebuild the bank before converting it")
                pixels.append(stored if bank.blocks is None else codecs.decode(stored, bank.codec, bank.width,
                                                                               bank.height, bank.channels))
            writer.frames[start:start + len(pixels)] = np.stack(pixels)
            if bar is not None:
                bar.update(len(pixels))
        if bar is not None:
            bar.close()
        if bank.latents is not None:
            writer.latents[:] = bank.latents
        reports = bank.path / REPORTS_DIR
        if reports.is_dir():
            shutil.copytree(reports, writer.reports_dir, dirs_exist_ok=True)
        return writer.commit()


def run(args: argparse.Namespace) -> int:
    src = resolve_bank_path(args.bank)
    t0 = time.perf_counter()
    out = compress_bank(src, Path(args.output), args.codec, progress=not args.no_progress)
    bank = open_bank(out)
    src_bytes = open_bank(src).frames.nbytes
    stored = bank.count * bank.stored_frame_bytes
    print(f"ok  {bank!r}: {stored / 1e6:,.1f} MB of frames ({src_bytes / max(1, stored):.1f}x smaller than raw) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
