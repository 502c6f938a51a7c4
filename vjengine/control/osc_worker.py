"""The OSC server's worker process (``OscServer(worker="process")``).

Why: in CPython a receiving thread shares the GIL with the render thread. Under a flood (thousands of
datagrams a second) every ``recvmsg`` releases and re-takes the GIL, and the render thread, wanting it
back, can wait a whole switch interval (5 ms) each time; the thread itself starves while the render
thread runs Python, so datagrams pile up in the socket. Here a child process
(``python -m vjengine.control.osc_worker``, given the bound socket and two pipes as file descriptors:
no fork next to GL contexts and threads, no re-import of the caller's main module) owns the receiving loop: it reads, validates, counts and
coalesces exactly as the thread does (it *is* an :class:`OscServer` running :meth:`~OscServer.serve`,
overriding the loop's public hooks), and sends
batches of finished commands down a pipe: a lone message at once, a stream at most every
``BATCH_GAP_S`` (each batch wakes a thread in the render process, and each wake-up competes for its GIL).
In the render process one thread receives each batch (one short GIL hold per batch), puts the
commands on the queue, calls the observer and re-logs the child's rate-limited warnings.

``/vj/status`` is answered by the child itself, from the snapshot the render process last published:
a ``vj-osc-status`` thread there sends each new snapshot down the control pipe (as JSON, with bank
renames; the render thread never writes to a pipe). So a render process that cannot run Python for
a while (a long frame holding the GIL, the machine overloaded) leaves OSC answering, with a status at
most that old. The child hands its batches to a sender thread of its own, one in flight: while the
parent is not reading, commands accumulate (bounded; the oldest dropped and counted) and the
receiving loop, status replies included, goes on. Until the first snapshot arrives, the parent answers.

If the child dies, the parent logs it and falls back to receiving in a thread on the same socket.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from vjengine.control.commands import Command, CommandQueue
from vjengine.control.osc_server import WORKER_COUNTS, OscEvent, OscServer
from vjengine.logonce import LogOnce
from vjengine.shutdown import die_with_parent

log = logging.getLogger("vjengine.control.osc_server")

STOP_CHECK_EVERY = 256  # datagrams between stop checks while busy (the check is a syscall)
# Batches go to the render process at most this often while datagrams keep coming (a lone message
# goes at once): each batch wakes a thread there, and every wake-up competes for the GIL.
BATCH_GAP_S = 0.004
# How often the render process looks for a new status snapshot to send the child (s).
STATUS_PUSH_S = 0.05
# Commands (and observer events) the child holds while the parent is not reading; past it the oldest go.
MAX_HELD = 8192
# A worker that ended is replaced by a thread unless the show stops this long after (a group SIGTERM).
EXIT_GRACE_S = 2.0


def _jsonable(value: Any) -> Any:
    """A status snapshot as plain JSON types (mappings, sequences, numbers, strings)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    return _jsonable(item()) if callable(item) else str(value)


# --- the batch wire: tagged JSON, never pickle (the show process unpickles nothing) ----------------
#
# A batch is ("batch", commands, events, status requests, logs, stats). Commands and events are
# dataclasses whose values are what OSC arguments parse to; JSON keeps them exactly once tuples,
# bytes (blobs) and dicts are tagged: {"T": [...]}, {"B": "hex"}, {"D": [[k, v], ...]},
# {"C": [Command fields]}, {"E": [OscEvent fields]}. Every dict on the wire is one of these.

def _wire(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Command):
        return {"C": [value.kind, value.target, _wire(value.value), value.source, value.received_s,
                      value.apply_at_s]}
    if isinstance(value, OscEvent):
        return {"E": [value.time_s, _wire(value.sender), value.outcome, value.reason, value.detail,
                      value.address, _wire(value.args), _wire(value.commands)]}
    if isinstance(value, tuple):
        return {"T": [_wire(v) for v in value]}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"B": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {"D": [[_wire(k), _wire(v)] for k, v in value.items()]}
    item = getattr(value, "item", None)  # numpy scalars
    return _wire(item()) if callable(item) else str(value)


def _unwire_tag(d: dict) -> Any:
    if len(d) == 1:
        (tag, v), = d.items()
        if tag == "T":
            return tuple(v)
        if tag == "B":
            return bytes.fromhex(v)
        if tag == "D":
            return {(tuple(k) if isinstance(k, list) else k): x for k, x in v}
        if tag == "C":
            kind, target, value, source, received_s, apply_at_s = v
            return Command(kind, target, value, source=source, received_s=received_s, apply_at_s=apply_at_s)
        if tag == "E":
            time_s, sender, outcome, reason, detail, address, args, commands = v
            return OscEvent(time_s, sender, outcome, reason, detail, address, args, commands)
    raise ValueError(f"unknown tag in an OSC worker batch: {sorted(d)!r}")


def encode_batch(message: tuple) -> bytes:
    """A batch as bytes for the pipe (tagged JSON; NaN and inf pass as Python reads them back)."""
    return json.dumps(_wire(message), separators=(",", ":")).encode()


def decode_batch(data: bytes) -> tuple:
    """The batch :func:`encode_batch` wrote. Raises ValueError on anything else."""
    message = json.loads(data, object_hook=_unwire_tag)
    if not (isinstance(message, tuple) and len(message) == 6 and message[0] == "batch"):
        raise ValueError("not an OSC worker batch")
    return message


class _Sender:
    """The child's batches go to the parent from this thread: a pipe write that blocks (the parent
    not reading) never stops the receiving loop. One message in flight and one waiting, at most."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.broken = False
        self._box: tuple | None = None
        self._busy = False
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="osc-worker-send", daemon=True)
        self._thread.start()

    def ready(self) -> bool:
        """Whether a message would be taken now (none waiting)."""
        return self._box is None and not self.broken

    def offer(self, message: tuple) -> bool:
        with self._cv:
            if self._box is not None or self.broken:
                return False
            self._box = message
            self._cv.notify()
            return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._box is None and not self._closed:
                    self._cv.wait()
                if self._box is None:
                    return
                message, self._box = self._box, None
                self._busy = True
            try:
                self.conn.send_bytes(encode_batch(message))
            except (BrokenPipeError, OSError):
                self.broken = True  # the parent is gone
                return
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def flush(self, timeout_s: float = 2.0) -> None:
        """Wait (up to ``timeout_s``) until everything offered has been sent."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while (self._box is not None or self._busy) and not self.broken and time.monotonic() < deadline:
                self._cv.wait(0.05)

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is waiting (for up to ``timeout_s``), then stop the thread."""
        self.flush(timeout_s)
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class _BatchQueue(CommandQueue):
    """The child's stand-in for the render queue: collects commands for the next batch."""

    def __init__(self) -> None:
        super().__init__(maxsize=1)
        self.items: list[Command] = []

    def put(self, cmd: Command, **_: object) -> bool:
        self.items.append(cmd)
        return True


class _ForwardLog(logging.Handler):
    """Collects the child's log records (already rate-limited) for the parent to log."""

    def __init__(self, out: list[tuple[int, str]]) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append((record.levelno, record.getMessage()))


class _ChildServer(OscServer):
    """Runs in the worker process: the same receiving loop, with batched output to the parent."""

    def __init__(self, conn_out: Connection, conn_in: Connection, want_events: bool, answer_status: bool,
                 **config: Any) -> None:
        super().__init__(_BatchQueue(), coalesce_max_s=BATCH_GAP_S, **config)  # coalesce across a whole batch
        self._conn_out = conn_out
        self._conn_in = conn_in
        self._want_events = want_events
        self._events: list[OscEvent] = []
        self._status_requests: list[tuple[str, int]] = []
        self._status_state: dict[str, Any] | None = None  # the render process's last snapshot
        self._parent_counts: dict[str, int] = {}
        self.held_dropped = 0  # commands dropped while the parent was not reading
        self._sender = _Sender(conn_out)
        self._logs: list[tuple[int, str]] = []
        self._last_send_s = 0.0
        self._since_stop_check = 0
        self._stopping = False
        self._last_sent: tuple[int, int, int] | None = None
        if want_events:
            self.observer = self._events.append
        # In process mode, the parent answers /vj/status (it holds the provider): pretend we have one.
        if answer_status:
            self.status_provider = lambda: {}
        handler = _ForwardLog(self._logs)
        child_log = logging.getLogger("vjengine.control.osc_server")
        child_log.handlers[:] = [handler]
        child_log.setLevel(logging.INFO)
        child_log.propagate = False

    def answer_status(self, reply_to: tuple[str, int]) -> None:
        state = self._status_state
        if state is None:  # no snapshot yet: the parent answers
            if len(self._status_requests) < 64:
                self._status_requests.append(reply_to)
            return
        osc = self.stats.snapshot()
        osc.update(self._parent_counts)
        osc["queue_full"] = osc.get("queue_full", 0) + self.held_dropped
        self.send_status(reply_to, {**state, "osc": osc})

    def request_stop(self) -> None:
        """End serving after the datagram in hand (SIGTERM: systemd signals the show's whole group)."""
        self._stopping = True

    def stop_requested(self) -> bool:
        if self._stopping:
            return True
        self._since_stop_check += 1
        if self._since_stop_check >= STOP_CHECK_EVERY:
            self._since_stop_check = 0
            self._read_control()
        return self._stopping

    def on_idle(self) -> None:
        # Pending fader values stay pending (and keep coalescing) until a batch goes out.
        if time.perf_counter() - self._last_send_s >= BATCH_GAP_S:
            self.flush_pending()
            self.send_batch()
        self.refresh_kernel_drops()
        self._read_control()

    def _has_output(self) -> bool:
        return bool(self.has_pending or self.queue.items or self._events or self._status_requests)  # type: ignore[attr-defined]

    def wait_timeout_s(self) -> float:
        if self._has_output():
            if not self._sender.ready():  # the parent is behind: look again in a batch gap, not at once
                return BATCH_GAP_S
            return max(0.0, self._last_send_s + BATCH_GAP_S - time.perf_counter())
        return 0.1

    def wait_on(self) -> list[Any]:
        return [*super().wait_on(), self._conn_in]

    def serve(self, sock: socket.socket) -> None:
        self._read_control()  # names sent before we started come before any datagram
        super().serve(sock)

    def _read_control(self) -> None:
        """Messages from the parent, JSON lists: ["names", axes, fx], ["status", snapshot, counts] or
        ["stop"]; end of file = parent gone."""
        try:
            while self._conn_in.poll():
                message = json.loads(self._conn_in.recv_bytes())
                if message[0] == "names":
                    OscServer.set_names(self, message[1], message[2])
                elif message[0] == "status":
                    self._status_state, self._parent_counts = message[1], message[2]
                else:
                    self._stopping = True
        except (EOFError, OSError):
            self._stopping = True
        except ValueError:  # never from our parent; stop rather than guess
            self._stopping = True

    def after_datagram(self) -> None:
        if time.perf_counter() - self._last_send_s >= BATCH_GAP_S and self._has_output():
            self.flush_pending()
            self.send_batch()

    def send_batch(self) -> None:
        """Hand what was made since the last batch to the sender thread (nothing if nothing changed)."""
        queue: _BatchQueue = self.queue  # type: ignore[assignment]
        if not (queue.items or self._events or self._status_requests or self._logs or self._stats_changed()):
            return
        if self._sender.broken:
            self._stopping = True  # the parent is gone
            return
        if not self._sender.ready():  # the parent is behind: hold on (bounded) and keep receiving
            if len(queue.items) > MAX_HELD:
                extra = len(queue.items) - MAX_HELD
                del queue.items[:extra]
                self.held_dropped += extra
            if len(self._events) > MAX_HELD:
                del self._events[:len(self._events) - MAX_HELD]
            if len(self._logs) > 256:
                del self._logs[:len(self._logs) - 256]
            return
        message = ("batch", queue.items, self._events, self._status_requests, list(self._logs), self._stats_dict())
        queue.items, self._events, self._status_requests = [], [], []
        self._logs.clear()  # the handler keeps appending to this same list
        if self._want_events:
            self.observer = self._events.append
        self._last_send_s = time.perf_counter()
        self._sender.offer(message)

    def _stats_dict(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        self._last_sent = (snap["packets"], snap["kernel_dropped"], snap["messages"])
        return {k: snap[k] for k in (*WORKER_COUNTS, "kernel_dropped", "rejected")} | {"held_dropped": self.held_dropped}

    def _stats_changed(self) -> bool:
        stats = self.stats
        return (stats.packets, stats.kernel_dropped, stats.messages) != self._last_sent

    def finish(self) -> None:
        """The last batch, sent before the process ends (waits a bounded time for the parent)."""
        self._sender.flush()
        self.send_batch()
        self._sender.close()


def _child_main(config: dict[str, Any]) -> int:
    """Entry point of the worker process (``python -m vjengine.control.osc_worker CONFIG_JSON``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the show; it stops us through the pipe
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # so is a closed terminal
    parent = config.pop("parent_pid", None)
    die_with_parent(signal.SIGTERM)
    if parent is not None and os.getppid() != parent:
        return 0  # the show ended before we started: do not hold its port
    nice = config.pop("nice", 0)
    if nice:
        try:
            os.nice(nice)  # yield the CPU to the render process when both want it
        except OSError:
            pass
    sock = socket.socket(fileno=config.pop("sock_fd"))
    conn_out = Connection(config.pop("out_fd"), readable=False)
    conn_in = Connection(config.pop("ctl_fd"), writable=False)
    server = _ChildServer(conn_out, conn_in, **config)
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())  # a clean end: the last batch goes up
    sock.setblocking(False)
    try:
        server.serve(sock)
    finally:
        server.finish()
        conn_out.close()
    return 0


class WorkerHandle:
    """The parent's side: the child process and the thread that takes in its batches. ``on_exit(code)``
    is called on that thread if the child ends before :meth:`stop` (the server then receives itself)."""

    def __init__(self, server: OscServer, sock: socket.socket, on_exit: Callable[[int | None], None]) -> None:
        self.server = server
        self.on_exit = on_exit
        self._log = LogOnce(log, every_s=server.log_interval_s)
        out_r, out_w = os.pipe()  # child -> parent: batches
        ctl_r, ctl_w = os.pipe()  # parent -> child: names, stop
        config = {
            "sock_fd": sock.fileno(), "out_fd": out_w, "ctl_fd": ctl_r,
            "want_events": server.observer is not None,
            "answer_status": server.status_provider is not None,
            "host": server.host, "port": server.port,
            "allow": None if server.allow is None else [str(n) for n in server.allow],
            "max_packet_bytes": server.max_packet_bytes,
            "axis_names": None if server.space.axis_names is None else list(server.space.axis_names),
            "fx_params": None if server.space.fx_params is None else list(server.space.fx_params),
            "max_defer_s": server.max_defer_s, "coalesce": server.coalesce, "nice": server.worker_nice,
            "parent_pid": os.getpid(),
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # import vjengine as we did
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vjengine.control.osc_worker", json.dumps(config)],
                pass_fds=(sock.fileno(), out_w, ctl_r), env=env, stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(out_w)
            os.close(ctl_r)
        self._conn_in = Connection(out_r, writable=False)
        self._conn_ctl = Connection(ctl_w, readable=False)
        self._stopping = False
        self._stopped = threading.Event()
        self._enqueued = 0
        self._queue_full = 0
        self._ctl_lock = threading.Lock()  # one writer to the control pipe at a time
        self._names: list | None = None  # renames waiting for the control thread
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._receive, name=f"osc-batches:{server.port}", daemon=True)
        self._thread.start()
        self._ctl_thread = threading.Thread(target=self._control, name=f"vj-osc-status:{server.port}", daemon=True)
        self._ctl_thread.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def set_names(self, axis_names: Any, fx_params: Any) -> None:
        """New names for the child (any thread, never blocks: the control thread sends them)."""
        self._names = ["names", None if axis_names is None else list(axis_names),
                       None if fx_params is None else list(fx_params)]
        self._wake.set()

    def _send_ctl(self, message: list) -> bool:
        data = json.dumps(message).encode()  # NaN and inf pass (Python reads them back); status sends them as 0
        try:
            with self._ctl_lock:
                self._conn_ctl.send_bytes(data)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def _control(self) -> None:
        """Renames and status snapshots to the child; the child answers /vj/status with the newest."""
        provider = self.server.status_provider
        last: Any = None
        while not self._stopping:
            self._wake.wait(STATUS_PUSH_S)
            self._wake.clear()
            if self._stopping:
                return
            names, self._names = self._names, None
            if names is not None and not self._send_ctl(names):
                return
            if provider is None:
                continue
            try:
                snap = provider()
            except Exception as exc:  # a broken provider: the parent path reports it
                log.debug("OSC status provider failed: %s", exc)
                continue
            if snap is last:
                continue
            last = snap
            if not self._send_ctl(["status", _jsonable(snap),
                                   {"enqueued": self._enqueued, "queue_full": self._queue_full}]):
                return

    def _receive(self) -> None:
        while True:
            try:
                data = self._conn_in.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                self._take(decode_batch(data))
            except Exception:  # never let one batch stop the thread
                log.exception("OSC: unexpected error taking a batch from the worker")
        # a SIGTERM to the whole process group (systemd's stop) ends us a moment before the show stops
        # this handle: a stop within EXIT_GRACE_S is that, not a worker to replace
        if not self._stopped.wait(EXIT_GRACE_S):
            try:
                code = self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            self.on_exit(code)

    def _take(self, message: tuple) -> None:
        server = self.server
        _, commands, events, status_requests, logs, snap = message
        enqueued = queue_full = 0
        for cmd in commands:
            if server.queue.put(cmd, coalesce=server.coalesce):
                enqueued += 1
            else:
                queue_full += 1
        self._enqueued += enqueued  # only this thread counts them
        self._queue_full += queue_full
        server.stats.take_worker_counts(snap, self._enqueued, self._queue_full + snap.get("held_dropped", 0))
        if queue_full:
            self._log.warning("queue_full", "OSC: the command queue is full (is the render thread running?); "
                              "dropped %d command(s)", queue_full)
        for reply_to in status_requests:
            if server.status_provider is not None:
                server.answer_status(reply_to)
        for level, text in logs:
            log.log(level, "%s", text)
        if server.observer is not None:
            for event in events:
                server.notify(event)

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        self._ctl_thread.join(timeout=2.0)
        self._send_ctl(["stop"])
        with self._ctl_lock:
            self._conn_ctl.close()
        try:
            self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=2.0)
        self._thread.join(timeout=2.0)
        self._conn_in.close()


def start_worker(server: OscServer, sock: Any, on_exit: Callable[[int | None], None]) -> WorkerHandle:
    """Start the worker process for ``server`` on its bound ``sock``; ``on_exit(code)`` if it dies."""
    return WorkerHandle(server, sock, on_exit)


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
