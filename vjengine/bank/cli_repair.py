"""`vj-bank repair BANK`: re-make only the frames, latents and low-tier frames that fail their checksum.

A bad low-tier frame is made again from its (good) full frame. A bad frame or latent needs its
source: the bank's build work folder (``BANK.work/``, kept with ``vj-bank build --keep-work``, or
``--work-dir``), whose checksummed shards hold every cell's frame and latent as the builder made them.
A shard is used only if the cells it shares with the bank that are good match the bank's checksums,
so a work folder of another build is never mixed in.

Without a work folder, a bad frame whose latent is good is decoded again from that latent, with the
decoder of the spec the manifest records (``made_by.spec``, checked against its digest): this needs
the build extra and the model (local, or in the hub cache). A frame decoded from a stored float16
latent is close to, not always byte-identical with, the frame the build made (the build decoded the
float32 latent); the note says which. The repaired bank replaces the old one atomically (through
:class:`BankWriter`); with nothing to repair, nothing is written.
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
    parser.add_argument("--no-decode", action="store_true",
                        help="never decode latents again (use only the work folder's shards)")
    parser.add_argument("--device", default="auto", help="where latents are decoded again: auto, cpu, cuda, mps")


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


def frames_from_latents(bank: Bank, indices: list[int], *, device: str = "auto") -> dict[int, np.ndarray]:
    """``{index: frame}`` decoded again from the bank's own (good) latents, by the decoder of the spec
    the bank was built with. Raises :class:`BankError` (exit 2) saying what is missing."""
    made_by = bank.made_by or {}
    if not made_by.get("spec"):
        raise BankError(f"{bank.path}: the manifest does not record the spec the bank was built with "
                        "(made_by.spec), so its latents cannot be decoded again")
    from bank_builder import BUILD_EXTRA_HINT
    from bank_builder.spec import spec_from_json

    spec = spec_from_json(made_by["spec"], source=f"{bank.path / 'manifest.json'}", digest=made_by.get("spec_sha256"))
    try:
        from bank_builder.pipeline import Generator
    except ModuleNotFoundError as exc:
        raise BankError(f"{bank.path}: decoding latents again needs the build extra ({exc.name} is missing): "
                        f"{BUILD_EXTRA_HINT}") from None
    dtype = str((made_by.get("build") or {}).get("dtype") or "auto")
    gen = Generator(spec, device=device, dtype=dtype)
    latents = np.stack([np.asarray(bank.latents[i], dtype=np.float32) for i in indices])
    frames = gen.decode(latents)
    if frames.shape[1:] != (bank.height, bank.width, bank.channels):
        raise BankError(f"{bank.path}: the spec's decoder makes {frames.shape[2]}x{frames.shape[1]} frames, the bank "
                        f"holds {bank.width}x{bank.height}: the manifest's spec is not this bank's")
    return dict(zip(indices, frames))


def repair_bank(path: Path, work_dir: Path | None = None, *, progress: bool = True, decode: bool = True,
                device: str = "auto", report: dict | None = None) -> dict[str, list[int]]:
    """Repair ``path`` in place; returns what was bad (empty: nothing to do). ``report`` (a dict), when
    given, gets ``decoded`` (frames decoded again from latents) and ``exact`` (of those, the ones whose
    bytes match the checksum the build wrote)."""
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
    decodable = sorted(i for i in bad_frames - set(found) - bad_latents) if bank.latents is not None else []
    decoded: dict[int, np.ndarray] = {}
    can_decode = decode and bool((bank.made_by or {}).get("spec"))
    if decodable and can_decode:
        decoded = frames_from_latents(bank, decodable, device=device)
        found.update((i, (f, None)) for i, f in decoded.items())
    missing = sorted(need - set(found))
    if bad_latents and any(found[i][1] is None for i in bad_latents if i in found):
        missing = sorted(set(missing) | {i for i in bad_latents if i in found and found[i][1] is None})
    if missing:
        where = f"the work folder {work} does not hold them" if work.is_dir() else f"there is no work folder at {work}"
        if bank.latents is None:
            latent = "; the bank keeps no latents to decode them from"
        elif set(missing) & bad_latents:
            latent = "; their latents are bad too"
        elif not decode:
            latent = "; --no-decode was given"
        else:
            latent = "; the manifest records no spec (made_by.spec) to decode their latents with"
        raise BankError(f"{bank.path}: cannot repair frame(s) {_cells(bank, missing)}: {where}{latent}; "
                        "rebuild them with vj-bank build SPEC -o BANK --keep-work (it resumes from its work folder) "
                        "or restore the bank from a copy")
    if report is not None:
        table = bank.checksums["frames"]
        report["decoded"] = sorted(decoded)
        report["exact"] = sorted(i for i, f in decoded.items() if codecs.crc32(_stored_form(bank, f)) == int(table[i]))
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
    report: dict = {}
    bad = repair_bank(path, Path(args.work_dir) if args.work_dir else None, progress=not args.no_progress,
                      decode=not args.no_decode, device=args.device, report=report)
    if not bad:
        print(f"ok  {path}: every frame matches its checksum; nothing to repair")
        return 0
    bank = open_bank(path)
    text = "; ".join(f"{len(v)} {k}: {_cells(bank, v)}" for k, v in bad.items())
    print(f"repaired  {path}: {text}")
    if report.get("decoded"):
        near = sorted(set(report["decoded"]) - set(report["exact"]))
        print(f"  {len(report['decoded'])} frame(s) decoded again from their latents"
              + (f"; {len(near)} differ slightly from the frame the build made (decoded from the stored "
                 f"{bank.latents.dtype} latent): {_cells(bank, near)}" if near else ", byte-identical to the build's"))
    return 0
