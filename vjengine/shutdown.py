"""Ending a show cleanly on SIGTERM, SIGHUP and SIGINT alike.

systemd and docker stop a service with SIGTERM, a closed terminal sends SIGHUP, Ctrl-C SIGINT. All
three end `vj live` the same way: the frame being drawn finishes, the loop stops, and the normal
shutdown runs (the set log's end marker, the last second of the log and the frame hashes flushed,
the last frame saved, the OSC worker stopped, the audio device closed). A second signal while that
runs interrupts it (KeyboardInterrupt), for a show that will not stop.

A stop must end the process even when something is stuck in C where a second signal cannot
reach. Measured: with ``--midi-api jack`` and another JACK client stopped (SIGSTOP), closing our
MIDI port never returns, and python-rtmidi calls it holding the GIL, so every thread of the process
froze. :func:`arm_stop_deadline` starts faulthandler's watchdog (a C thread, needing no GIL): if it
is not cancelled within the deadline, every thread's stack goes to stderr and the process exits
with code 1. ``GracefulStop(deadline_s=...)`` arms it at the first signal (a frame loop stuck in C);
``app.run_show`` arms it again before closing the show, however the show ended, and cancels it once
the show is closed. With JACK, MIDI inputs now live in a worker process
(:mod:`vjengine.control.midi_worker`) that is killed when it will not close; the deadline stays for
anything else stuck in C (MIDI clock out still opens its port in the show process).

    with GracefulStop(on_stop=lambda name: setattr(loop, "quit", True)) as stop:
        while not stop.requested and loop.step():
            ...

Handlers can only be installed from the main thread; elsewhere it does nothing (and says so once).
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None), signal.SIGINT)
                if s is not None)


def arm_stop_deadline(seconds: float) -> None:
    """The process has ``seconds`` to end or to call :func:`cancel_stop_deadline`; then every thread's
    stack is written to stderr and it exits with code 1. Arming again restarts the count."""
    try:
        faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    except (AttributeError, ValueError, OSError, RuntimeError) as exc:  # no stderr to write to
        log.warning("no watchdog on the stop (%s): a stuck close will need SIGKILL", exc)


def cancel_stop_deadline() -> None:
    faulthandler.cancel_dump_traceback_later()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """A worker process (OSC, MIDI) gets ``sig`` the moment the show process dies, even of SIGKILL
    (Linux's PR_SET_PDEATHSIG), so an orphan never keeps a port. Elsewhere its closed pipe stops it later."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class GracefulStop:
    def __init__(self, on_stop: Callable[[str], None] | None = None,
                 signals: tuple[signal.Signals, ...] = SIGNALS, deadline_s: float | None = None) -> None:
        self.on_stop = on_stop
        self.signals = signals
        self.deadline_s = deadline_s  # None: no watchdog (a caller that lives on after the stop)
        self.requested: str | None = None  # the name of the first signal received
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            raise KeyboardInterrupt(f"{name} while stopping")
        self.requested = name
        log.info("%s: ending the show (the frame in progress finishes, then everything is closed)", name)
        if self.deadline_s is not None:
            arm_stop_deadline(self.deadline_s)
        if self.on_stop is not None:
            self.on_stop(name)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not the main thread: signal handlers left as they are")
            return self
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError):
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous)
            except (OSError, ValueError):
                pass
        self._previous.clear()
