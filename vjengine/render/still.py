"""``vj still BANK --coord 0.3,0.7 -o frame.png``: render one frame of a bank headless to a PNG.

Uses the same renderer as ``vj live`` (EGL, no display needed), so a still shows exactly what the
projector would show at that coordinate with those effects.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from vjengine.config import parse_size
from vjengine.demo import resolve_bank_path
from vjengine.errors import VJError

log = logging.getLogger(__name__)

MIRROR_NAMES = {"off": 0, "horizontal": 1, "vertical": 2, "both": 3}


def parse_coord(text: str | None, bank) -> list[float]:
    """One value in 0..1 per bank axis, comma separated; missing -> 0.5 on every axis."""
    names = [a.name for a in bank.axes]
    if text is None:
        return [0.5] * len(names)
    parts = [p for p in text.replace(" ", "").split(",") if p != ""]
    if len(parts) != len(names):
        raise VJError(f"--coord {text!r} has {len(parts)} values but bank {bank.path} has "
                      f"{len(names)} axes ({', '.join(names)})")
    out = []
    for name, part in zip(names, parts):
        try:
            value = float(part)
        except ValueError:
            raise VJError(f"--coord value {part!r} for axis {name!r} is not a number") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise VJError(f"--coord value {part!r} for axis {name!r} must be between 0 and 1")
        out.append(value)
    return out


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Save uint8 [H, W, 3] as a PNG."""
    from PIL import Image  # pillow comes with matplotlib, already a dependency

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(path, format="PNG")
    except OSError as exc:
        raise VJError(f"cannot write {path}: {exc}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", help="bank directory, or 'demo' for the built-in demo bank")
    parser.add_argument("--coord", help="grid coordinate, one value 0..1 per axis, e.g. 0.3,0.7 (default: centre)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--size", help="output WIDTHxHEIGHT (default: the bank's frame size)")
    parser.add_argument("--fit", choices=("fit", "fill", "stretch"), default="fit",
                        help="how the frame meets another aspect ratio (default: fit)")
    parser.add_argument("--filter", choices=("linear", "cubic"), default="linear",
                        help="scaling filter to --size: linear (fast) or cubic (Catmull-Rom, sharper)")
    fx = parser.add_argument_group("effects")
    fx.add_argument("--intensity", type=float, default=1.0, help="output gain 0..1")
    fx.add_argument("--flash", type=float, default=0.0, help="mix toward white 0..1")
    fx.add_argument("--zoom", type=float, default=1.0, help="magnification about the centre (>= 1)")
    fx.add_argument("--hue", type=float, default=0.0, help="hue rotation in degrees")
    fx.add_argument("--mirror", choices=tuple(MIRROR_NAMES), default="off")
    fx.add_argument("--kaleidoscope", type=int, default=0, help="number of mirrored wedges (0 = off)")
    fx.add_argument("--kaleidoscope-deg", type=float, default=0.0, help="rotation of the wedges, degrees")
    parser.add_argument("--memory-budget-mb", type=float, default=1024.0,
                        help="largest single texture array, MB (the bank is split beyond it)")


def render_still(bank, coord, *, size=None, fit="fit", fx=None, memory_budget_mb=1024.0,
                 scale_filter="linear") -> np.ndarray:
    """Render one frame headless; returns uint8 [H, W, 3]."""
    from vjengine.render.context import headless_context
    from vjengine.render.renderer import Renderer

    ctx = headless_context()
    try:
        # Streaming with no budget: only the 2**D frames this coordinate blends are uploaded.
        renderer = Renderer(ctx, bank, output_size=size, fit=fit, memory_budget_mb=memory_budget_mb,
                            progress=False, raise_errors=True, upload="stream", stream_budget_ms=0,
                            scale_filter=scale_filter)
        renderer.render(coord, fx)
        rgb = renderer.read_rgb()
        renderer.release()
        return rgb
    finally:
        ctx.release()


def run(args: argparse.Namespace) -> int:
    from vjengine.bank import open_bank
    from vjengine.effects import MAX_KALEIDOSCOPE_SEGMENTS, Effects

    start = time.perf_counter()
    bank = open_bank(resolve_bank_path(args.bank))
    coord = parse_coord(args.coord, bank)
    size = parse_size(args.size) if args.size else None
    for name in ("intensity", "flash"):
        value = getattr(args, name)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise VJError(f"--{name} must be between 0 and 1, got {value}")
    if not (math.isfinite(args.zoom) and 1.0 <= args.zoom <= 16.0):
        raise VJError(f"--zoom must be between 1 and 16, got {args.zoom}")
    if not 0 <= args.kaleidoscope <= MAX_KALEIDOSCOPE_SEGMENTS:
        raise VJError(f"--kaleidoscope must be 0..{MAX_KALEIDOSCOPE_SEGMENTS}, got {args.kaleidoscope}")
    if args.output.suffix.lower() != ".png":
        raise VJError(f"-o {args.output}: only PNG output is supported (use a .png name)")
    fx = Effects(intensity=args.intensity, flash=args.flash, zoom=args.zoom, hue_deg=args.hue,
                 mirror=MIRROR_NAMES[args.mirror], kaleidoscope=args.kaleidoscope,
                 kaleidoscope_deg=args.kaleidoscope_deg)
    rgb = render_still(bank, coord, size=size, fit=args.fit, fx=fx, memory_budget_mb=args.memory_budget_mb,
                       scale_filter=args.filter)
    write_png(args.output, rgb)
    log.info("wrote %s (%dx%d) in %.2f s", args.output, rgb.shape[1], rgb.shape[0], time.perf_counter() - start)
    return 0
