"""`vj-bank preview BANK -o sheet.png [--path walk.mp4]`: look at a bank without torch."""

from __future__ import annotations

import argparse

from vjengine.errors import VJError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bank", help="bank directory")
    parser.add_argument("-o", "--output", default=None, help="contact sheet PNG to write (default BANK-sheet.png)")
    parser.add_argument("--axes", default=None,
                        help="one or two axis names for the rows and columns, comma separated (default: the first two)")
    parser.add_argument("--at", action="append", default=[], metavar="AXIS=INDEX",
                        help="hold another axis at this index (default: its middle); repeatable")
    parser.add_argument("--max-per-axis", type=int, default=12, help="most thumbnails per axis (spread evenly)")
    parser.add_argument("--thumb", type=int, default=128, help="thumbnail size in pixels (longer side)")
    parser.add_argument("--path", default=None, metavar="MP4", help="also render an mp4 walking the grid")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the --path video")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the --path video")


def _parse_at(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, index = item.partition("=")
        if not sep or not name:
            raise VJError(f"--at {item!r}: expected AXIS=INDEX")
        try:
            out[name] = int(index)
        except ValueError:
            raise VJError(f"--at {item!r}: the index must be an integer") from None
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bank_builder.preview import contact_sheet, walk_video
    from vjengine.bank import open_bank
    from vjengine.demo import resolve_bank_path

    bank = open_bank(resolve_bank_path(args.bank))
    if args.max_per_axis < 2 or args.thumb < 8:
        raise VJError("--max-per-axis must be >= 2 and --thumb >= 8")
    if args.seconds <= 0 or args.fps < 1:
        raise VJError("--seconds must be > 0 and --fps >= 1")
    show = [s.strip() for s in args.axes.split(",") if s.strip()] if args.axes else None
    if show is not None and not 1 <= len(show) <= 2:
        raise VJError(f"--axes {args.axes!r}: give one or two axis names")
    out = Path(args.output) if args.output else Path(str(bank.path).rstrip("/") + "-sheet.png")
    contact_sheet(bank, out, show=show, at=_parse_at(args.at), max_per_axis=args.max_per_axis, thumb_px=args.thumb)
    print(f"wrote {out}")
    if args.path:
        walk_video(bank, args.path, seconds=args.seconds, fps=args.fps)
        print(f"wrote {args.path}")
    return 0
