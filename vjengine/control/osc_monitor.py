"""`vj osc-monitor`: print what arrives over OSC, what it would do, and what is refused and why.

The first thing to run when wiring up TouchDesigner or Resolume. It runs the same server as
`vj live` (same validation, same address space), but applies nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

from vjengine.control.commands import CommandQueue
from vjengine.control.osc_args import add_osc_arguments, format_event, server_from_args
from vjengine.control.osc_server import OscEvent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_osc_arguments(parser, out=False)
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--bank", default=None, metavar="BANK",
                       help="take the axis names from this bank (the one you will play; `demo`: the built-in one)")
    names.add_argument("--axes", default=None, metavar="NAMES",
                       help="comma-separated axis names (default: accept any name, but wildcards cannot "
                            "reach axes)")
    parser.add_argument("--fx", default=None, metavar="EFFECT/PARAM,...",
                        help="comma-separated effect parameters (default: the show's, as in vj live; "
                             "'any' accepts any)")
    parser.add_argument("--rejects-only", action="store_true", help="print only what is refused")
    parser.add_argument("--count", type=int, default=0, metavar="N",
                        help="exit after N events (default: run until Ctrl-C)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S",
                        help="exit after S seconds (default: run until Ctrl-C)")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def run(args: argparse.Namespace) -> int:
    queue = CommandQueue()
    events = 0
    done = threading.Event()
    lock = threading.Lock()

    def show(event: OscEvent) -> None:
        nonlocal events
        with lock:
            if not (args.rejects_only and event.outcome != "rejected"):
                stamp = time.strftime("%H:%M:%S")
                print(f"{stamp} {format_event(event)}", flush=True)
            events += 1
            if args.count and events >= args.count:
                done.set()

    axis_names = _names(args.axes)
    if args.bank is not None:
        from vjengine.bank import open_bank  # noqa: PLC0415
        from vjengine.demo import resolve_bank_path  # noqa: PLC0415

        axis_names = [axis.name for axis in open_bank(resolve_bank_path(args.bank)).axes]
    if args.fx is None:
        from vjengine.effects import osc_fx_names  # noqa: PLC0415

        fx_params = osc_fx_names()
    else:
        fx_params = None if args.fx.strip() == "any" else _names(args.fx)
    args.osc_log = False
    # Everything is printed below; the server's rate-limited warnings would only repeat it.
    logging.getLogger("vjengine.control.osc_server").setLevel(logging.ERROR)
    server = server_from_args(args, queue, axis_names=axis_names, fx_params=fx_params, observer=show)
    server.start()
    print(f"listening for OSC on {args.osc_host}:{server.port} (Ctrl-C to stop)", flush=True)
    if axis_names:
        print(f"axes: {', '.join(axis_names)}", flush=True)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while not done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            done.wait(0.25)
            queue.drain(float("inf"))  # nothing is applied here; keep the queue empty
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    snap = server.stats.snapshot()
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(snap["rejected"].items())) or "none"
    print(f"{snap['packets']} datagrams, {snap['messages']} messages: {snap['accepted']} accepted, "
          f"{snap['ignored']} ignored, refused: {rejected}", file=sys.stdout, flush=True)
    return 0
