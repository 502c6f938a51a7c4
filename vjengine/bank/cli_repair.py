"""`vj-bank repair BANK`: re-make only the frames, latents and low-tier frames that fail their checksum.

A bad low-tier frame is made again from its (good) full frame. A bad frame or latent needs its
source: the bank's build work folder (``BANK.work/``, kept with ``vj-bank build --keep-work``, or
``--work-dir``), whose checksummed shards hold every cell's frame and latent as the builder made them.
A shard is used only if the cells it shares with the bank that are good match the bank's checksums,
so a work folder of another build is never mixed in. The repaired bank replaces the old one
atomically (through :class:`BankWriter`); with nothing to repair, nothing is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vjengine.bank import codecs
from vjengine.bank.format import REPORTS_DIR, Bank, BankWriter, find_bad_frames, open_bank
from vjengine.demo import resolve_bank_path
from vjengine.errors import BankError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", help="bank directory")
    parser.add_argument("--work-dir", default=None, help="the build's work folder (default: BANK.work)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cells(bank: Bank, indices) -> str:
    return ", ".join(f"{i} ({', '.join(f'{a.name}={c}' for a, c in zip(bank.axes, bank.cell(i)))})"
                     for i in list(indices)[:8]) + (" ..." if len(indices) > 8 else "")


def _stored_form(bank: Bank, frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.uint8)
    return frame if bank.codec == "raw" else codecs.encode(frame, bank.codec)


def sources_from_work(bank: Bank, work: Path, wanted: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """``{index: (frame pixels, latent or None)}`` for the wanted cells found in ``work``'s shards."""
    from safetensors import safe_open

    from bank_builder.store import arrays_digest

    found: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    table = bank.checksums["frames"]
    for shard in sorted(work.glob("**/shards/*.safetensors")):
        try:
            with safe_open(str(shard), framework="numpy") as f:
                header = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
            if arrays_digest(arrays) != header.get("sha256"):
                continue
            cells = [int(c) for c in json.loads(header.get("meta", "{}")).get("cells", [])]
        except Exception:  # a damaged shard is no source
            continue
        frames = arrays.get("frames")
        if frames is None or len(cells) != len(frames) or frames.shape[1:] != (bank.height, bank.width, bank.channels):
            continue
        # the shard must be of this bank: its good cells must match the bank's checksums
        known = [k for k, i in enumerate(cells) if 0 <= i < bank.count and i not in wanted]
        if known and codecs.crc32(_stored_form(bank, frames[known[0]])) != int(table[cells[known[0]]]):
            continue
        latents = arrays.get("latents")
        for k, i in enumerate(cells):
            if i in wanted and i not in found:
                found[i] = (frames[k], None if latents is None else latents[k])
    return found


def repair_bank(path: Path, work_dir: Path | None = None, *, progress: bool = True) -> dict[str, list[int]]:
    """Repair ``path`` in place; returns what was bad (empty: nothing to do)."""
    bank = open_bank(path)
    if bank.checksums is None:
        raise BankError(f"{bank.path}: a version 1 bank has no checksums to repair against "
                        "(vj-bank compress --codec raw -o NEW makes a version 2 copy)")
    if bank.checksum_problem:
        raise BankError(f"{bank.checksum_problem}; rebuild the bank (or restore it from a copy)")
    bad = find_bad_frames(bank, progress=progress)
    if not bad:
        return {}
    bad_frames, bad_latents = set(bad.get("frames", [])), set(bad.get("latents", []))
    need = bad_frames | bad_latents
    work = Path(work_dir) if work_dir else bank.path.with_name(bank.path.name + ".work")
    found = sources_from_work(bank, work, need) if need and work.is_dir() else {}
    missing = sorted(need - set(found))
    if bad_latents and any(found[i][1] is None for i in bad_latents if i in found):
        missing = sorted(set(missing) | {i for i in bad_latents if i in found and found[i][1] is None})
    if missing:
        where = f"the work folder {work} does not hold them" if work.is_dir() else f"there is no work folder at {work}"
        raise BankError(f"{bank.path}: cannot repair frame(s) {_cells(bank, missing)}: {where}; "
                        "rebuild them with vj-bank build SPEC -o BANK --keep-work (it resumes from its work folder) "
                        "or restore the bank from a copy")
    latent_shape = None if bank.latents is None else bank.latents.shape[1:]
    latent_dtype = "float16" if bank.latents is None else bank.latents.dtype.name
    made_by = dict(bank.made_by)
    made_by.setdefault("repairs", []).append({k: v for k, v in bad.items()})
    with BankWriter(bank.path, bank.axes, bank.width, bank.height, bank.channels, latent_shape=latent_shape,
                    latent_dtype=latent_dtype, made_by=made_by, codec=bank.codec, progress=progress) as writer:
        dest = writer.frames if writer.blocks is None else writer.blocks
        step = 256
        for start in range(0, bank.count, step):
            dest[start:start + step] = bank.read_stored(start, min(step, bank.count - start))
        for i in bad_frames:
            writer.frames[i] = found[i][0]
        if bank.latents is not None:
            writer.latents[:] = bank.latents
            for i in bad_latents:
                writer.latents[i] = found[i][1]
        reports = bank.path / REPORTS_DIR
        if reports.is_dir():
            import shutil

            shutil.copytree(reports, writer.reports_dir, dirs_exist_ok=True)
        writer.commit()
    return bad


def run(args: argparse.Namespace) -> int:
    path = resolve_bank_path(args.bank)
    bad = repair_bank(path, Path(args.work_dir) if args.work_dir else None, progress=not args.no_progress)
    if not bad:
        print(f"ok  {path}: every frame matches its checksum; nothing to repair")
        return 0
    bank = open_bank(path)
    text = "; ".join(f"{len(v)} {k}: {_cells(bank, v)}" for k, v in bad.items())
    print(f"repaired  {path}: {text}")
    return 0
