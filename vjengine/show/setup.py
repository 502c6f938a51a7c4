"""A show's set-up from the command line or a setlist: banks opened, presets loaded, cues read.

``build_setup(bank_args, args) -> ShowSetup`` is shared by `vj live`, `vj demo` and `vj render`;
``record_header`` is what a set log (``--record``) starts with.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vjengine.demo import resolve_bank_path
from vjengine.errors import ConfigError
from vjengine.mapping.preset import PresetLibrary, load_preset, resolve_preset_ref, shipped_preset_paths
from vjengine.show.cues import CueRunner, load_cues
from vjengine.show.setlist import is_setlist, load_setlist, unique_names
from vjengine.show.state import BankEntry, ShowState


@dataclass
class ShowSetup:
    banks: list[Any]  # opened Bank objects
    entries: list[BankEntry]
    library: PresetLibrary
    preset_index: int
    crossfade_s: float
    quantize: str
    cues: CueRunner | None
    cue_path: Path | None = None


def load_library(preset_refs: list[str] | None, extra: list[Path] = (),
                 preset_dirs: list[str] | None = None) -> tuple[PresetLibrary, int]:
    """The shipped presets, the given ones, then the watched folders' (see ``PresetLibrary.watch_dir``);
    returns the library and the starting index."""
    paths = list(shipped_preset_paths())
    start_path: Path | None = None
    for ref in preset_refs or []:
        p = resolve_preset_ref(ref)
        if start_path is None:
            start_path = p
        if all(p.resolve() != q.resolve() for q in paths):
            paths.append(p)
    for p in extra:
        if all(Path(p).resolve() != q.resolve() for q in paths):
            paths.append(Path(p))
    if not paths:
        raise ConfigError("no presets: the shipped presets folder is empty and no --preset was given")
    lib = PresetLibrary()
    for p in paths:
        lib.add(load_preset(p))
    for folder in preset_dirs or []:
        lib.watch_dir(folder)
    start = 0
    if start_path is not None:
        for i, pr in enumerate(lib.presets):
            if pr.path is not None and pr.path.resolve() == start_path.resolve():
                start = i
    return lib, start


def build_setup(bank_args: list[str], args: argparse.Namespace) -> ShowSetup:
    from vjengine.bank import open_bank  # noqa: PLC0415

    crossfade_s, quantize, cue_path = 2.0, "bar", None
    extra_presets: list[Path] = []
    if len(bank_args) == 1 and is_setlist(bank_args[0]):
        sl = load_setlist(bank_args[0])
        paths = [b.path for b in sl.banks]
        names = [b.name for b in sl.banks]
        bank_presets = [b.preset for b in sl.banks]
        crossfade_s, quantize, cue_path = sl.crossfade_s, sl.quantize, sl.cues
        extra_presets = list(sl.presets)
    else:
        paths = [resolve_bank_path(b) for b in bank_args]
        names = unique_names(paths)
        bank_presets = [None] * len(paths)
    banks = [open_bank(p) for p in paths]
    library, start = load_library(getattr(args, "preset", None), extra_presets, getattr(args, "preset_dir", None))
    for name, ref in zip(names, bank_presets):
        if ref is not None and library.find(ref) is None:
            try:
                library.add_file(resolve_preset_ref(ref))
            except ConfigError as exc:
                raise ConfigError(f"setlist bank {name!r}: preset {ref!r}: {exc}") from None
    if not getattr(args, "preset", None) and bank_presets[0] is not None:
        start = library.find(bank_presets[0]) or 0
    entries = [BankEntry.from_bank(b, n, pr) for b, n, pr in zip(banks, names, bank_presets)]
    if getattr(args, "crossfade", None) is not None:
        crossfade_s = float(args.crossfade)
    if getattr(args, "quantize", None):
        quantize = args.quantize
    if getattr(args, "cues", None):
        cue_path = Path(args.cues)
    cues = CueRunner(load_cues(cue_path)) if cue_path else None
    return ShowSetup(banks, entries, library, start, crossfade_s, quantize, cues, cue_path)


def record_header(setup: ShowSetup, show: ShowState, size: tuple[int, int], fit: str, audio: dict[str, Any],
                  strobe_max_hz: float) -> dict[str, Any]:
    presets = []
    for p in setup.library.presets:
        text = p.path.read_text(encoding="utf-8") if p.path and p.path.is_file() else None
        presets.append({"key": p.key, "name": p.name, "path": str(p.path) if p.path else None, "text": text})
    return {
        "banks": [{"name": e.name, "path": str(Path(e.path).resolve()) if e.path else None, "preset": e.preset}
                  for e in setup.entries],
        "presets": presets,
        "preset_index": show.preset_index,
        "bank_index": show.bank_index,
        "crossfade_s": show.crossfade_s,
        "quantize": show.quantize,
        "size": list(size),
        "fit": fit,
        "strobe_max_hz": strobe_max_hz,
        "audio": audio,
    }
