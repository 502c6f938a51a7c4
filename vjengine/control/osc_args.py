"""The OSC command-line options, in one place for `vj live`, `vj demo` and `vj osc-monitor`.

The show calls :func:`add_osc_arguments` in its ``add_arguments`` and then :func:`server_from_args` /
:func:`out_from_args`; the options and their defaults are documented in ``docs/osc.md``. In outline::

    server = server_from_args(args, queue, axis_names=[a.name for a in bank.axes],
                              fx_params=osc_fx_names(), status_provider=show.status).start()
    osc_out = out_from_args(args)                       # None without --osc-out
    ...                                                 # each frame, on the render thread:
    for cmd in queue.drain(now_s): show.apply(cmd, frame)
    if osc_out: osc_out.publish(out_values(frame, coord=state.coord, axis_names=names,
                                           preset_name=..., preset_index=...), now_s)
    hud_lines.append(server.stats.hud_line())
    ...                                                 # on a bank switch: server.set_names(new_axis_names, fx)
    server.stop(); osc_out and osc_out.close()          # at exit
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterable, Mapping

from vjengine.control.commands import CommandQueue
from vjengine.control.osc_out import OscOut, parse_feature_map, parse_target
from vjengine.control.osc_server import OscEvent, OscServer
from vjengine.control.osc_space import DEFAULT_HOST, DEFAULT_MAX_PACKET_BYTES, DEFAULT_PORT


def add_osc_arguments(parser: argparse.ArgumentParser, *, out: bool = True) -> None:
    """Add ``--osc-*`` options (input always; output when ``out``)."""
    group = parser.add_argument_group("OSC control (see docs/osc.md)")
    group.add_argument("--osc-host", default=DEFAULT_HOST, metavar="ADDR",
                       help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                            "0.0.0.0 to accept other machines)")
    group.add_argument("--osc-port", type=int, default=DEFAULT_PORT, metavar="PORT",
                       help=f"UDP port to listen on (default {DEFAULT_PORT}; 0 picks a free port)")
    group.add_argument("--osc-allow", action="append", default=None, metavar="ADDR[/BITS]",
                       help="only accept senders from this address or network (repeatable)")
    group.add_argument("--osc-max-packet", type=int, default=DEFAULT_MAX_PACKET_BYTES, metavar="BYTES",
                       help=f"drop datagrams larger than this (default {DEFAULT_MAX_PACKET_BYTES})")
    if not out:
        return
    group.add_argument("--osc-log", action="store_true",
                       help="print every OSC message received and every rejection with its reason")
    group.add_argument("--osc-worker", choices=("process", "thread"), default="process",
                       help="receive OSC in a worker process (default: a flood cannot slow the frame loop "
                            "through Python's GIL) or in a thread")
    group.add_argument("--osc-out", action="append", default=None, metavar="HOST:PORT",
                       help="send features, beat, coordinates and preset here (repeatable)")
    group.add_argument("--osc-out-rate", type=float, default=60.0, metavar="HZ",
                       help="OSC out sends per second (default 60)")
    group.add_argument("--osc-out-no-bundle", action="store_true",
                       help="send one datagram per message instead of bundles")
    group.add_argument("--osc-resolume", action="store_true",
                       help="also send the tempo to Resolume's /composition/tempocontroller/tempo")
    group.add_argument("--osc-map", action="append", default=None, metavar="FEATURE=ADDRESS",
                       help="also send an output to an address, e.g. "
                            "vj/audio/bass=/composition/layers/1/video/opacity (repeatable)")


def format_event(event: OscEvent) -> str:
    """One line for a monitor or log: who sent what, and what became of it."""
    sender = f"{event.sender[0]}:{event.sender[1]}"
    args = " ".join(repr(a) if isinstance(a, str) else str(a) for a in event.args)
    if event.outcome == "accepted":
        done = ", ".join(
            f"{c.kind}{' ' + c.target if c.target else ''}"
            f"{'' if c.value is None else ' = ' + repr(c.value)}"
            f"{f' at +{(c.apply_at_s - c.received_s) * 1000:.0f} ms' if c.apply_at_s is not None else ''}"
            for c in event.commands
        ) or "status reply sent"
        note = " (clamped)" if event.reason == "clamped" else ""
        return f"{sender:<21} ok       {event.address} {args} -> {done}{note}"
    if event.outcome == "ignored":
        return f"{sender:<21} ignored  {event.address} {args} ({event.detail})"
    what = f"{event.address} {args} " if event.address else ""
    return f"{sender:<21} REFUSED  {what}[{event.reason}] {event.detail}"


def server_from_args(
    args: argparse.Namespace,
    queue: CommandQueue,
    *,
    axis_names: Iterable[str] | None = None,
    fx_params: Iterable[str] | None = None,
    status_provider: Callable[[], Mapping[str, Any]] | None = None,
    observer: Callable[[OscEvent], None] | None = None,
) -> OscServer:
    """An (unstarted) :class:`OscServer` from the ``--osc-*`` options. With ``--osc-log`` and no
    observer, events are printed."""
    if observer is None and getattr(args, "osc_log", False):
        observer = lambda event: print(format_event(event), flush=True)  # noqa: E731
    return OscServer(
        queue,
        host=args.osc_host,
        port=args.osc_port,
        allow=args.osc_allow,
        max_packet_bytes=args.osc_max_packet,
        axis_names=axis_names,
        fx_params=fx_params,
        status_provider=status_provider,
        observer=observer,
        worker=getattr(args, "osc_worker", "thread"),
    )


def out_from_args(args: argparse.Namespace) -> OscOut | None:
    """An :class:`OscOut` from ``--osc-out`` & co., or None when no target was given."""
    if not args.osc_out:
        return None
    return OscOut(
        [parse_target(t) for t in args.osc_out],
        rate_hz=args.osc_out_rate,
        resolume=args.osc_resolume,
        feature_map=parse_feature_map(args.osc_map or ()),
        bundle=not args.osc_out_no_bundle,
    )
