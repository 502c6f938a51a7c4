"""JACK MIDI in a process of its own: each input (``MidiWorkerPort``) and clock out
(``MidiClockOutWorker``); ``--midi-api jack`` uses them (``open_port``, ``start_clock_out``).

Why: python-rtmidi calls JACK holding Python's GIL (its ``.pyx`` releases it nowhere), and some of those
calls wait for the JACK server, which waits for every client in its graph. Measured with a real jackd:
with another client stopped (SIGSTOP: a hung DJ app), rtmidi's ``close_port`` never returned (300 s
tried), and with the GIL held every thread of the show froze, render thread included. The same wait
beside the show's own audio on JACK is a deadlock (the server waits for our audio callback, which waits
for the GIL). Here a child process (``python -m vjengine.control.midi_worker``, given two pipes as file
descriptors, like the OSC worker) owns the rtmidi port: it runs the very same :class:`MidiPort` loop
(rescan, reopen, arrival times rebuilt from rtmidi's deltas, anchored to ``perf_counter``, which is
the same system-wide monotonic clock in both processes) and sends the raw bytes and their times up a
pipe. The show process parses them with mido and calls ``on_message`` on a thread of its own, so
:class:`~vjengine.control.midi.MidiController` and the MIDI clock in see what they saw before.

A stalled JACK graph now freezes the worker only. It sends its state at least every ``rescan_s``;
silent for longer than ``STALE_S``, its status line says so. Stopping waits ``stop_timeout_s`` for
the worker to close its port, then kills it (the JACK server drops a dead client by itself). A worker
that dies during the show is started again after ``RESTART_S``.

Clock out's worker runs :class:`~vjengine.sync.midi_clock.MidiClockOut` on the show's beat clock: the
router's published ``(perf time, beat, bpm, playing)`` and bar grid are pushed to it whenever they
change, and it times every clock from them exactly as it would in the show process.

The wire is JSON (the show process unpickles nothing). Up: ``["m", [[hex, t], ...]]`` messages,
``["s", {state}]`` state (on every change and as a heartbeat), ``["l", level, text]`` log lines,
``["e", text]`` clock out's port did not open. Down: ``["x", name]`` (a port never to take),
``["p", clock or null, grid]`` (clock out) and ``["stop"]``.

A worker imports only :mod:`~vjengine.control.midi_port` (or MIDI clock's module), not the show: 0.3 s
to its first state, 22 MB resident. Measured (``benchmarks/sync.py``, JACK dummy server, loaded 2-core
machine): CC latency p50/p99 10.8/19.2 ms through the worker against 10.2/19.5 ms on a thread; MIDI
clock in phase error p99 1.35 ms against 1.33 ms.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

from vjengine.control.midi_port import MidiPort, PortBase
from vjengine.shutdown import die_with_parent

log = logging.getLogger("vjengine.control.midi")

STALE_S = 3.0  # the worker silent this long (it beats every rescan_s): the status line says so
RESTART_S = 2.0  # a worker that died is started again after this long
BATCH_MAX = 512  # messages per batch at most (a flood still reaches the show in pieces)
STATE_EVERY_S = 0.1  # clock out's counts go to the show at least this often
STDERR_REPEAT_S = 60.0  # the same line of a worker's stderr goes to the log at most this often


# ------------------------------------------------------------------------------------------ the child
class _ChildPort(MidiPort):
    """The worker's port: the same loop as in the show process; its messages go up the pipe raw."""

    def __init__(self, conn_out: Connection, conn_in: Connection, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("match"), lambda msg, t: None, **kwargs)
        self._out = conn_out
        self._in = conn_in
        self._batch: list[list] = []
        self._dirty = True
        self._beat_at = 0.0

    def deliver(self, data: Any, t: float) -> None:
        self._batch.append([bytes(data).hex(), t])
        if len(self._batch) >= BATCH_MAX:
            self._flush()

    def port_changed(self) -> None:
        self._dirty = True

    def send(self, message: list) -> None:
        try:
            self._out.send_bytes(json.dumps(message).encode())
        except (BrokenPipeError, OSError, ValueError):
            self.request_stop()  # the show process is gone

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self.send(["m", batch])

    def after_poll(self) -> None:
        self._flush()
        try:  # control first: a state sent after it tells the show its exclusions are in force
            while self._in.poll(0):
                msg = json.loads(self._in.recv_bytes())
                if msg[0] == "x":
                    self.exclude.add(str(msg[1]))
                elif msg[0] == "stop":
                    self.request_stop()
        except Exception:  # noqa: BLE001 - a closed or garbled control pipe: the show process is gone
            self.request_stop()
        now = time.monotonic()
        if self._dirty or now - self._beat_at >= self.rescan_s:
            self._dirty = False
            self._beat_at = now
            self.send(["s", {"port": self.port_name if self.rt is not None else None, "opens": self.opens,
                              "lost": self.lost}])

    def serve(self) -> None:
        self.run()
        self._flush()


class _ForwardLog(logging.Handler):
    """The worker's log lines, up the pipe to the show's log."""

    def __init__(self, send: Callable[[list], Any]) -> None:
        super().__init__(logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(["l", record.levelno, record.getMessage()])
        except Exception:  # noqa: BLE001 - a log line is never worth the worker
            pass


def _clock_out_main(config: dict[str, Any], conn_out: Connection, conn_in: Connection) -> int:
    """The clock-out worker: MidiClockOut on its port, fed the show's clock down the control pipe."""
    from vjengine.control.midi_port import open_backend  # noqa: PLC0415
    from vjengine.errors import VJError  # noqa: PLC0415
    from vjengine.sync.midi_clock import MidiClockOut, open_clock_out  # noqa: PLC0415

    lock = threading.Lock()  # the main thread's states and any thread's log lines share the pipe

    def send(message: list) -> bool:
        try:
            with lock:
                conn_out.send_bytes(json.dumps(message).encode())
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    logging.getLogger().handlers[:] = [_ForwardLog(send)]

    try:
        port = open_clock_out(config["target"], open_backend(config["api"]))
    except VJError as exc:
        send(["e", str(exc)])
        return 2
    shared: dict[str, Any] = {"snap": None, "grid": (0, 4)}
    out = MidiClockOut(port, lambda: shared["snap"], grid=lambda: shared["grid"]).start()
    name = getattr(port, "name", config["target"])

    def state() -> bool:
        return send(["s", {"port": name, "sent": out.sent, "relocations": out.relocations,
                           "last_position": out.last_position}])

    ending = threading.Event()  # SIGTERM: send the gear Stop, close the port, exit (as the input worker)
    signal.signal(signal.SIGTERM, lambda *_: ending.set())
    state()
    try:
        while not ending.is_set():
            if conn_in.poll(STATE_EVERY_S):
                msg = json.loads(conn_in.recv_bytes())
                if msg[0] == "p":
                    shared["grid"] = (int(msg[2][0]), int(msg[2][1]))
                    shared["snap"] = None if msg[1] is None else tuple(msg[1])
                elif msg[0] == "stop":
                    break
            if not state():
                break
    except Exception:  # noqa: BLE001 - a closed or garbled control pipe: the show process is gone
        pass
    out.stop()  # Stop to the gear if it was running, then the port closes (this may hang: we get killed)
    return 0


def _child_main(config: dict[str, Any]) -> int:
    """Entry point of a worker (``python -m vjengine.control.midi_worker CONFIG_JSON``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and a closed terminal are for the show
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parent = config.pop("parent_pid", None)
    die_with_parent(signal.SIGKILL)  # a worker stuck in rtmidi holds its GIL: only SIGKILL ends it
    if parent is not None and os.getppid() != parent:
        return 0
    conn_out = Connection(config.pop("out_fd"), readable=False)
    conn_in = Connection(config.pop("ctl_fd"), writable=False)
    mode = config.pop("mode")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    try:
        if mode == "clock_out":
            return _clock_out_main(config, conn_out, conn_in)
        exclude = config.pop("exclude", [])
        port = _ChildPort(conn_out, conn_in, **config)
        port.exclude.update(exclude)
        # SIGTERM (systemd stops a service by signalling its whole group): close the port, then exit.
        # Killed inside a JACK client, a worker can leave jackd unable to take new clients.
        signal.signal(signal.SIGTERM, lambda *_: port.request_stop())
        root.handlers[:] = [_ForwardLog(port.send)]
        port.serve()
        return 0
    finally:
        conn_out.close()


# ----------------------------------------------------------------------------------- the show's side
class _Worker:
    """A worker process of this module and our ends of its two pipes."""

    def __init__(self, config: dict[str, Any], label: str, stop_timeout_s: float) -> None:
        self.label = label
        self.stop_timeout_s = stop_timeout_s
        self.ctl_lock = threading.Lock()
        out_r, out_w = os.pipe()  # worker -> show
        ctl_r, ctl_w = os.pipe()  # show -> worker
        config = dict(config, out_fd=out_w, ctl_fd=ctl_r, parent_pid=os.getpid())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # import vjengine as we did
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "vjengine.control.midi_worker", json.dumps(config)],
                                            pass_fds=(out_w, ctl_r), env=env, stdin=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)
        except BaseException:
            for fd in (out_r, ctl_w):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(ctl_r)
        self.conn_in = Connection(out_r, writable=False)
        self.conn_ctl: Connection | None = Connection(ctl_w, readable=False)
        threading.Thread(target=self._relay_stderr, name=f"{label} worker stderr", daemon=True).start()

    def _relay_stderr(self) -> None:
        """The worker's stderr into the show's log, each distinct line at most once a minute: libjack
        prints five lines on every failed connect (every rescan while JACK is down), and a traceback
        must still be seen."""
        seen: dict[str, float] = {}
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            now = time.monotonic()
            if line and now - seen.get(line, -1e9) >= STDERR_REPEAT_S:
                if len(seen) > 1024:  # bounded, whatever the worker prints
                    seen.clear()
                seen[line] = now
                log.warning("%s worker: %s", self.label, line)
        self.process.stderr.close()

    def send(self, message: list) -> bool:
        with self.ctl_lock:
            if self.conn_ctl is None:
                return False
            try:
                self.conn_ctl.send_bytes(json.dumps(message).encode())
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def end(self) -> int | None:
        """Ask the worker to stop, wait ``stop_timeout_s``, then kill it (one stuck in a JACK call)."""
        self.send(["stop"])
        with self.ctl_lock:
            if self.conn_ctl is not None:
                self.conn_ctl.close()
                self.conn_ctl = None
        try:
            return self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s: the MIDI worker did not close its port within %.0f s (is a JACK client not "
                        "answering?); killed it", self.label, self.stop_timeout_s)
            self.process.kill()
            return self.process.wait()


class MidiWorkerPort(PortBase):
    """:class:`MidiPort`'s interface, with the port in a worker process (module docstring)."""

    def __init__(self, match: str, on_message: Callable[[Any, float], None], *, api: str | None = "jack",
                 rescan_s: float = 0.5, poll_s: float = 0.001, label: str = "MIDI in", queue_size: int = 8192,
                 stop_timeout_s: float = 2.0) -> None:
        super().__init__(match, on_message, api=api, rescan_s=rescan_s, label=label)  # the checks, here
        self.api_name = api
        self.poll_s = poll_s
        self.queue_size = queue_size
        self.stop_timeout_s = stop_timeout_s
        self.port_name: str | None = None
        self.opens = 0
        self.lost = 0
        self.restarts = 0
        self.states = 0  # state messages taken (one at least every rescan_s from a live worker)
        self.exclude: set[str] = set()
        self._heard_at = time.monotonic()
        self._stopping = threading.Event()
        self.worker: _Worker | None = None
        self._thread: threading.Thread | None = None

    @property
    def process(self) -> subprocess.Popen | None:
        return None if self.worker is None else self.worker.process

    def _spawn(self) -> None:
        self.worker = _Worker({"mode": "in", "match": self.match, "api": self.api_name, "rescan_s": self.rescan_s,
                               "poll_s": self.poll_s, "label": self.label, "queue_size": self.queue_size,
                               "exclude": sorted(self.exclude)}, self.label, self.stop_timeout_s)
        self._heard_at = time.monotonic()

    def start(self) -> "MidiWorkerPort":
        self._spawn()
        self._thread = threading.Thread(target=self._receive, name=f"midi-in-{self.match}", daemon=True)
        self._thread.start()
        return self

    def _receive(self) -> None:
        """The show's MIDI thread: takes the worker's batches; starts a new worker if this one died."""
        while not self._stopping.is_set():
            worker = self.worker
            try:
                while True:
                    self._take(json.loads(worker.conn_in.recv_bytes()))
            except (EOFError, OSError):
                pass
            except Exception:  # noqa: BLE001 - garbled bytes from our own worker: end it, start another
                log.exception("%s: unexpected data from the MIDI worker", self.label)
            if self._stopping.is_set():
                return
            code = worker.end()
            worker.conn_in.close()
            self.port_name = None
            self.port_changed()
            # a SIGTERM to the whole process group (systemd's stop) ends the worker a moment before the
            # show closes this port: a stop coming within RESTART_S is that, not a death to report
            if self._stopping.wait(RESTART_S):
                return
            log.warning("%s: the MIDI worker ended (exit %s); starting it again", self.label, code)
            try:
                self._spawn()
                self.restarts += 1
            except OSError as exc:
                log.warning("%s: cannot start the MIDI worker: %s", self.label, exc)
                return
            if self._stopping.is_set():  # stop() came while it started: it ends the one it saw, this one here
                self.worker.end()
                self.worker.conn_in.close()
                return

    def _take(self, msg: list) -> None:
        self._heard_at = time.monotonic()
        kind = msg[0]
        if kind == "m":
            for hexdata, t in msg[1]:
                self.deliver(bytes.fromhex(hexdata), float(t))
        elif kind == "s":
            state = msg[1]
            self.port_name, self.opens, self.lost = state["port"], int(state["opens"]), int(state["lost"])
            self.states += 1
            self.port_changed()
        elif kind == "l":
            log.log(int(msg[1]), "%s", msg[2])

    # ------------------------------------------------------------------ MidiPort's interface
    def exclude_port(self, name: str) -> None:
        self.exclude.add(name)
        if self.worker is not None:
            self.worker.send(["x", name])

    @property
    def connected(self) -> bool:
        return self.port_name is not None

    @property
    def silent_s(self) -> float:
        """How long since the worker was last heard from (it beats every rescan_s)."""
        return time.monotonic() - self._heard_at

    def status_line(self) -> str:
        silent = self.silent_s
        if silent > max(STALE_S, 4 * self.rescan_s) and not self._stopping.is_set():
            return f"{self.label} NOT ANSWERING for {silent:.0f} s (a JACK client stalled?)"
        if self.port_name is None:
            return f"{self.label} waiting for {self.match!r}"
        return f"{self.label} {self.port_name}" + (f", {self.garbage} bad bytes" if self.garbage else "")

    def stop(self) -> None:
        self._stopping.set()
        worker = self.worker
        if worker is not None:
            worker.end()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if worker is not None:
            worker.conn_in.close()


class MidiClockOutWorker:
    """MIDI clock out (:class:`~vjengine.sync.midi_clock.MidiClockOut`) running in a worker process.

    ``provider()`` and ``grid()`` are the router's ``published`` and ``bar_grid``; a thread here sends
    each new one to the worker (their times are perf_counter's, the same clock there), whose
    MidiClockOut sends the clocks from them exactly as it would here. :meth:`start` waits until the
    worker opened its port (``name`` is then the port's), or raises its DeviceError (exit 2).
    ``sent``, ``relocations`` and ``last_position`` are the worker's, at most ``STATE_EVERY_S`` old.
    """

    PUSH_S = 0.002  # how often the router's published clock is looked at (it changes once a frame)

    def __init__(self, target: str, api: str | None, provider: Callable[[], Any],
                 grid: Callable[[], tuple[int, int]] | None = None, *, open_timeout_s: float = 30.0,
                 stop_timeout_s: float = 2.0) -> None:
        self.target = target
        self.api_name = api
        self.provider = provider
        self.grid = grid or (lambda: (0, 4))
        self.open_timeout_s = open_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.label = "MIDI clock out"
        self.name = ""
        self.sent = 0
        self.relocations = 0
        self.last_position: int | None = None
        self.worker: _Worker | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "MidiClockOutWorker":
        from vjengine.errors import DeviceError  # noqa: PLC0415

        worker = self.worker = _Worker({"mode": "clock_out", "target": self.target, "api": self.api_name},
                                       self.label, self.stop_timeout_s)
        end = time.monotonic() + self.open_timeout_s
        first: list | None = None
        try:
            while first is None and worker.conn_in.poll(max(0.0, end - time.monotonic())):
                msg = json.loads(worker.conn_in.recv_bytes())
                if msg[0] in ("s", "e"):
                    first = msg
                else:
                    self._take(msg)  # a log line
        except (EOFError, OSError, ValueError):
            pass
        if first is None or first[0] == "e":
            self._stopping.set()
            timed_out = worker.process.poll() is None
            worker.end()
            worker.conn_in.close()
            if first is not None:
                raise DeviceError(first[1])
            raise DeviceError(f"--midi-clock-out {self.target!r}: " + (
                f"the MIDI worker did not open it within {self.open_timeout_s:.0f} s (is the JACK server answering?)"
                if timed_out else f"the MIDI worker ended (exit {worker.process.returncode})"))
        self._take(first)
        for target, name in ((self._push, "midi-clock-push"), (self._receive, "midi-clock-state")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _push(self) -> None:
        last: Any = None
        while not self._stopping.wait(self.PUSH_S):
            try:
                now = (self.provider(), tuple(self.grid()))
            except Exception as exc:  # noqa: BLE001 - a provider error skips one look
                log.debug("MIDI clock out: %s", exc)
                continue
            if now == last:
                continue
            last = now
            snap, grid = now
            if not self.worker.send(["p", None if snap is None else [float(v) for v in snap[:3]] + [bool(snap[3])],
                                     [int(grid[0]), int(grid[1])]]):
                return

    def _receive(self) -> None:
        try:
            while True:
                self._take(json.loads(self.worker.conn_in.recv_bytes()))
        except (EOFError, OSError, ValueError):
            pass
        if not self._stopping.wait(RESTART_S):  # (a group SIGTERM: the show stops within it, see MidiWorkerPort)
            log.warning("%s: the MIDI worker ended (exit %s): no more clock to %s", self.label,
                        self.worker.process.poll(), self.name or self.target)

    def _take(self, msg: list) -> None:
        if msg[0] == "s":
            st = msg[1]
            self.name = st.get("port", self.name)
            self.sent, self.relocations, self.last_position = st["sent"], st["relocations"], st["last_position"]
        elif msg[0] == "l":
            log.log(int(msg[1]), "%s", msg[2])

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            if t.name == "midi-clock-push":
                t.join(timeout=1.0)
        if self.worker is not None:
            self.worker.end()  # the worker sends Stop to the gear (if running) and closes the port
            for t in self._threads:
                t.join(timeout=2.0)
            self.worker.conn_in.close()


def open_port(match: str, on_message: Callable[[Any, float], None], *, api: str | None = None,
              label: str = "MIDI in", **kwargs: Any) -> Any:
    """A started input port: JACK's in a worker process (module docstring), others on a thread (and
    JACK's too where no worker process can be started: pass_fds is POSIX only)."""
    if api == "jack":
        try:
            return MidiWorkerPort(match, on_message, api=api, label=label, **kwargs).start()
        except (OSError, ValueError) as exc:
            log.warning("%s: no MIDI worker process here (%s); the port runs in the show process", label, exc)
    return MidiPort(match, on_message, api=api, label=label, **kwargs).start()


def start_clock_out(target: str, api: str | None, provider: Callable[[], Any],
                    grid: Callable[[], tuple[int, int]]) -> Any:
    """Started MIDI clock out to ``target``: JACK's in a worker process, others on a thread here.
    It has ``name`` (the port's), ``sent``, ``relocations``, ``last_position`` and ``stop()``."""
    if api == "jack":
        try:
            return MidiClockOutWorker(target, api, provider, grid).start()
        except (OSError, ValueError) as exc:
            log.warning("MIDI clock out: no MIDI worker process here (%s); clock out runs in the show process",
                        exc)
    from vjengine.control.midi_port import open_backend  # noqa: PLC0415
    from vjengine.sync.midi_clock import MidiClockOut, open_clock_out  # noqa: PLC0415

    port = open_clock_out(target, open_backend(api))
    out = MidiClockOut(port, provider, grid=grid).start()
    out.name = getattr(port, "name", target)
    return out


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
