"""``vj monitors``: list the connected monitors, with the index ``--monitor N`` takes."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per monitor")


def run(args: argparse.Namespace) -> int:
    from vjengine.render.window import list_monitors

    monitors = list_monitors()
    if args.json:
        for m in monitors:
            print(json.dumps(m))
        return 0
    if not monitors:
        print("no monitors found")
        return 0
    print(f"{'#':>2}  {'name':<24} {'mode':<18} {'position':<12} {'size mm':<10}")
    for m in monitors:
        mode = f"{m['width']}x{m['height']}@{m['refresh_hz']}Hz"
        pos = f"{m['x']},{m['y']}"
        mm = f"{m['width_mm']}x{m['height_mm']}"
        star = "  (primary)" if m["primary"] else ""
        print(f"{m['index']:>2}  {m['name'][:24]:<24} {mode:<18} {pos:<12} {mm:<10}{star}")
    print("use --monitor N with `vj live` for fullscreen on monitor N")
    return 0
