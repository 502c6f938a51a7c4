"""Tempo and hands in `vj live` / `vj demo`: the options, and the parts they start.

:func:`add_sync_arguments` declares ``--clock``, ``--link``, ``--link-quantum``, ``--link-start-stop``,
``--midi-in``, ``--midi-map``, ``--midi-api``, ``--midi-clock-in``, ``--midi-clock-out``.
:class:`SyncParts` opens what they ask for (a mapping file that does not load is a ConfigError naming
file and key, exit 2, before any window opens), wraps the audio engine in the
:class:`~vjengine.sync.clock_source.ClockRouter`, registers the ``clock_source`` and ``midi_learn``
command handlers on the show, publishes the current values for soft takeover, gives the HUD its lines,
and closes everything in order. Everything is optional: with none of the options the router only
watches the audio clock (and ``/vj/clock/source tap`` still works).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from vjengine.errors import ConfigError
from vjengine.sync.clock_source import SOURCES, ClockRouter

log = logging.getLogger(__name__)

VALUES_EVERY = 6  # frames between publishing the current values (soft takeover)


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("tempo and MIDI")
    g.add_argument("--clock", choices=SOURCES, default=None,
                   help="what drives the beat clock at start (default: link with --link follow, midi with "
                        "--midi-clock-in, else audio); switch live with /vj/clock/source")
    g.add_argument("--link", choices=("off", "follow", "lead"), default="off",
                   help="Ableton Link: follow the session's tempo and phase, or lead it with the detected "
                        "tempo (needs the link extra)")
    g.add_argument("--link-quantum", type=float, default=4.0, metavar="BEATS",
                   help="Link quantum: beats per bar shared with the peers (default 4)")
    g.add_argument("--link-start-stop", action="store_true",
                   help="honour Link's start/stop: no beats while the session is stopped")
    g.add_argument("--midi-in", default=None, metavar="DEVICE",
                   help="MIDI controller input: a port name substring (rebound when replugged)")
    g.add_argument("--midi-map", default=None, metavar="TOML",
                   help="MIDI mapping file (see docs/midi.md); MIDI learn writes to it")
    g.add_argument("--midi-api", choices=("alsa", "jack"), default=None,
                   help="rtmidi API for MIDI ports (default: rtmidi's, ALSA on Linux); JACK ports run in a worker "
                        "process each, so a stalled JACK client never freezes the picture")
    g.add_argument("--midi-clock-in", default=None, metavar="DEVICE",
                   help="take MIDI clock from this port (name substring; may be the --midi-in port)")
    g.add_argument("--midi-clock-out", default=None, metavar="DEVICE",
                   help="send MIDI clock from the beat clock to this port (name substring, or virtual:NAME)")


class SyncParts:
    """What the tempo and MIDI options started (see module docstring)."""

    def __init__(self, args: argparse.Namespace, queue: Any) -> None:
        self.args = args
        self.queue = queue
        self.link: Any = None
        self.controller: Any = None
        self.ports: list[Any] = []
        self.clock_in: Any = None
        self.clock_out: Any = None
        self.router: ClockRouter | None = None
        self.frames = 0
        self._learn_cycle: list[str] = []
        midi_map = None
        map_path = getattr(args, "midi_map", None)
        if map_path:
            from pathlib import Path  # noqa: PLC0415

            from vjengine.control.midi_map import MidiMap, load_map  # noqa: PLC0415

            midi_map = load_map(map_path) if Path(map_path).exists() else MidiMap(path=Path(map_path))
        self.midi_map = midi_map
        self.midi_device = getattr(args, "midi_in", None) or (midi_map.device if midi_map else None)
        if map_path and not self.midi_device:
            raise ConfigError(f"--midi-map {map_path}: no MIDI input: give --midi-in DEVICE or device = \"...\" "
                              "in the map")
        mode = getattr(args, "link", "off") or "off"
        clock = getattr(args, "clock", None)
        if clock == "link" and mode == "off":
            raise ConfigError("--clock link: needs --link follow (or lead)")
        if clock == "midi" and not getattr(args, "midi_clock_in", None):
            raise ConfigError("--clock midi: needs --midi-clock-in DEVICE")
        if mode != "off":
            from vjengine.sync.link import import_link  # noqa: PLC0415

            import_link()  # a missing extra is an error now, before any window opens
        if self.midi_device or getattr(args, "midi_clock_in", None) or getattr(args, "midi_clock_out", None):
            from vjengine.control.midi_port import open_backend  # noqa: PLC0415

            open_backend(getattr(args, "midi_api", None))

    # ------------------------------------------------------------------ start
    def wrap(self, audio: Any) -> ClockRouter:
        """Start Link and MIDI, and return the router the frame loop polls instead of ``audio``."""
        args = self.args
        mode = getattr(args, "link", "off") or "off"
        if mode != "off":
            from vjengine.sync.link import LinkSession  # noqa: PLC0415

            self.link = LinkSession(mode=mode, quantum=args.link_quantum, start_stop=args.link_start_stop)
        clock_dev = getattr(args, "midi_clock_in", None)
        if clock_dev:
            from vjengine.sync.midi_clock import MidiClockIn  # noqa: PLC0415

            self.clock_in = MidiClockIn()
        if self.midi_device:
            from vjengine.control.midi import MidiController  # noqa: PLC0415
            from vjengine.control.midi_map import MidiMap  # noqa: PLC0415

            self.controller = MidiController(self.midi_map or MidiMap(), self.queue,
                                             map_path=getattr(args, "midi_map", None))
        self._open_ports(clock_dev)
        source = getattr(args, "clock", None) or (
            "link" if mode == "follow" else "midi" if clock_dev else "audio")
        # lead: the session is a source too (switchable to follow it later), the router proposes to it
        self.router = ClockRouter(audio, link=self.link, midi=self.clock_in,
                                  lead=self.link if mode == "lead" else None)
        self.router.set_source(source)
        out = getattr(args, "midi_clock_out", None)
        if out:
            from vjengine.control.midi_worker import start_clock_out  # noqa: PLC0415

            router = self.router
            self.clock_out = start_clock_out(out, getattr(args, "midi_api", None), lambda: router.published,
                                             lambda: router.bar_grid)
            for p in self.ports:
                p.exclude_port(self.clock_out.name)
            log.info("MIDI clock out: %s", self.clock_out.name)
        return self.router

    def _open_ports(self, clock_dev: str | None) -> None:
        from vjengine.control.midi_worker import open_port  # noqa: PLC0415

        api = getattr(self.args, "midi_api", None)
        ctl, clk = self.controller, self.clock_in
        if self.midi_device and clock_dev and clock_dev.lower() == self.midi_device.lower():
            ctl.clock_listener = clk.handle  # one port carries both
            self.ports.append(open_port(self.midi_device, ctl.handle, api=api))
            return
        if self.midi_device:
            self.ports.append(open_port(self.midi_device, ctl.handle, api=api))
        if clock_dev:
            self.ports.append(open_port(clock_dev, clk.handle, api=api, label="MIDI clock in"))

    def register(self, show: Any) -> None:
        """The show's handlers for ``clock_source`` and ``midi_learn`` commands."""
        handlers = getattr(show, "handlers", None)
        if handlers is None:
            return
        handlers["clock_source"] = lambda cmd: self.router.set_source(cmd.value) if self.router else None
        handlers["midi_learn"] = self._learn_command

    def _learn_command(self, cmd: Any) -> None:
        ctl = self.controller
        if ctl is None:
            log.warning("MIDI learn: no MIDI input (start with --midi-in DEVICE)")
            return
        if cmd.value is None:  # the L key: the next address worth binding (Shift+L: the previous), then off
            cycle = self._learn_cycle
            if not cycle:
                return
            step = -1 if cmd.target == "prev" else 1
            if ctl.armed in cycle:
                i = cycle.index(ctl.armed) + step
            else:
                i = 0 if step > 0 else len(cycle) - 1
            ctl.arm(cycle[i] if 0 <= i < len(cycle) else None)
        else:
            ctl.arm(str(cmd.value))

    def learn_line(self) -> str:
        """What MIDI learn is doing, for the operator view ("" when there is no MIDI input)."""
        ctl = self.controller
        if ctl is None:
            return ""
        if ctl.armed:
            return f"MIDI LEARN {ctl.armed}: move a control (L next, Shift+L previous)"
        if ctl.save_error:
            return f"MIDI learn NOT SAVED: {ctl.save_error}"
        if ctl.learned:
            return f"MIDI learned {ctl.learned[-1].describe()} (L: learn another)"
        return "MIDI learn: L arms an address"

    def status(self) -> dict[str, Any]:
        """The beat clock's source, MIDI clock in's counts and MIDI learn's state, for /vj/status and the
        operator page."""
        out: dict[str, Any] = {}
        if self.router is not None:
            out["clock"] = self.router.active
            out["clock_sources"] = self.router.available()
        clk = self.clock_in
        if clk is not None:  # is the clock coming in (the operator's first question)
            out["midi_clock"] = {"ticks": clk.ticks, "starts": clk.starts, "stops": clk.stops, "lost": clk.lost,
                                 "bpm": round(clk.bpm, 3)}
        if self.ports:  # each MIDI input's line, as on the HUD ("NOT ANSWERING" when its worker stalled)
            out["midi_ports"] = [p.status_line() for p in self.ports]
        ctl = self.controller
        if ctl is not None:
            from vjengine.control.midi import DEFAULT_LEARN_FILE  # noqa: PLC0415

            out["midi_learn"] = {"armed": ctl.armed or "", "addresses": list(self._learn_cycle),
                                 "learned": [b.describe() for b in ctl.learned[-4:]], "saves": ctl.saves,
                                 "map": str(ctl.map_path or DEFAULT_LEARN_FILE), "error": ctl.save_error or ""}
        return out

    # ------------------------------------------------------------------ per frame (render thread)
    def after_frame(self, show: Any, frame: Any) -> None:
        self.frames += 1
        ctl = self.controller
        if ctl is None or self.frames % VALUES_EVERY:
            return
        from vjengine.control.midi import show_values  # noqa: PLC0415
        from vjengine.effects import osc_fx_names  # noqa: PLC0415

        ctl.publish_values(show_values(show, frame, ctl.addresses))
        self._learn_cycle = ([f"/vj/axis/{a.name}" for a in show.axes]
                             + ["/vj/intensity", "/vj/blackout", "/vj/tap", "/vj/resync", "/vj/crossfade"]
                             + [f"/vj/fx/{n}" for n in osc_fx_names()])

    def hud_lines(self) -> list[str]:
        lines = []
        if self.router is not None:
            lines.append(self.router.hud_line())
        for p in self.ports:
            lines.append(p.status_line())
        if self.controller is not None:
            lines.append(self.controller.hud_line())
        return lines

    def close(self) -> None:
        for part in [self.clock_out, *self.ports]:
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # noqa: BLE001
                    log.debug("stopping %s: %s", part, exc)
        if self.link is not None:
            self.link.close()
