"""The OSC server's worker process (``OscServer(worker="process")``).

Why: in CPython a receiving thread shares the GIL with the render thread. Under a flood (thousands of
datagrams a second) every ``recvmsg`` releases and re-takes the GIL, and the render thread, wanting it
back, can wait a whole switch interval (5 ms) each time; the thread itself starves while the render
thread runs Python, so datagrams pile up in the socket. Here a child process
(``python -m vjengine.control.osc_worker``, given the bound socket and two pipes as file descriptors:
no fork next to GL contexts and threads, no re-import of the caller's main module) owns the receiving loop: it reads, validates, counts and
coalesces exactly as the thread does (it *is* an :class:`OscServer` running ``_run``), and sends
batches of finished commands down a pipe: a lone message at once, a stream at most every
``BATCH_GAP_S`` (each batch wakes a thread in the render process, and each wake-up competes for its GIL).
In the render process one thread receives each batch (one short GIL hold per batch), puts the
commands on the queue, answers ``/vj/status`` (it owns the status provider and sends from the bound
socket, shared with the child), calls the observer and re-logs the child's rate-limited warnings.

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
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from vjengine.control.commands import Command, CommandQueue
from vjengine.control.osc_server import OscEvent, OscServer

log = logging.getLogger("vjengine.control.osc_server")

STATS_FIELDS = ("packets", "packets_ok", "messages", "accepted", "commands", "coalesced", "deferred",
                "ignored", "clamped", "kernel_dropped", "last_reject")
STOP_CHECK_EVERY = 256  # datagrams between stop checks while busy (the check is a syscall)
# Batches go to the render process at most this often while datagrams keep coming (a lone message
# goes at once): each batch wakes a thread there, and every wake-up competes for the GIL.
BATCH_GAP_S = 0.004


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
        super().__init__(_BatchQueue(), **config)
        self._conn_out = conn_out
        self._conn_in = conn_in
        self._want_events = want_events
        self._events: list[OscEvent] = []
        self._status_requests: list[tuple[str, int]] = []
        self._logs: list[tuple[int, str]] = []
        self._last_send_s = 0.0
        self._since_stop_check = 0
        self._stopping = False
        self._coalesce_max_s = BATCH_GAP_S  # coalesce across a whole batch
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

    def _answer_status(self, reply_to: tuple[str, int]) -> None:
        self._status_requests.append(reply_to)

    def _stop_requested(self) -> bool:
        if self._stopping:
            return True
        self._since_stop_check += 1
        if self._since_stop_check >= STOP_CHECK_EVERY:
            self._since_stop_check = 0
            self._read_control()
        return self._stopping

    def _idle(self) -> None:
        # Pending fader values stay pending (and keep coalescing) until a batch goes out.
        if time.perf_counter() - self._last_send_s >= BATCH_GAP_S:
            self._flush()
            self._send()
        self._refresh_drops_now_and_then()
        self._read_control()

    def _has_output(self) -> bool:
        return bool(self._pending or self.queue.items or self._events or self._status_requests)  # type: ignore[attr-defined]

    def _wait_timeout_s(self) -> float:
        if self._has_output():
            return max(0.0, self._last_send_s + BATCH_GAP_S - time.perf_counter())
        return 0.1

    def _wait_on(self) -> list[Any]:
        return [self._sock, self._conn_in]

    def _run(self) -> None:
        self._read_control()  # names sent before we started come before any datagram
        super()._run()

    def _read_control(self) -> None:
        """Messages from the parent: ("names", axes, fx) or ("stop",); end of file = parent gone."""
        try:
            while self._conn_in.poll():
                message = self._conn_in.recv()
                if message[0] == "names":
                    OscServer.set_names(self, message[1], message[2])
                else:
                    self._stopping = True
        except (EOFError, OSError):
            self._stopping = True

    def _after_datagram(self) -> None:
        if time.perf_counter() - self._last_send_s >= BATCH_GAP_S and self._has_output():
            self._flush()
            self._send()

    def _send(self) -> None:
        queue: _BatchQueue = self.queue  # type: ignore[assignment]
        if not (queue.items or self._events or self._status_requests or self._logs or self._stats_changed()):
            return
        message = ("batch", queue.items, self._events, self._status_requests, list(self._logs), self._stats_dict())
        queue.items, self._events, self._status_requests = [], [], []
        self._logs.clear()  # the handler keeps appending to this same list
        if self._want_events:
            self.observer = self._events.append
        self._last_send_s = time.perf_counter()
        try:
            self._conn_out.send(message)
        except (BrokenPipeError, OSError):
            self._stopping = True  # the parent is gone

    def _stats_dict(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        self._last_sent = (snap["packets"], snap["kernel_dropped"], snap["messages"])
        return {k: snap[k] for k in STATS_FIELDS} | {"rejected": snap["rejected"]}

    def _stats_changed(self) -> bool:
        stats = self.stats
        return (stats.packets, stats.kernel_dropped, stats.messages) != getattr(self, "_last_sent", None)


def _die_with_parent() -> None:
    """Linux: get SIGTERM the moment the show process dies (even of SIGKILL), so an orphaned worker
    never keeps the OSC port. Elsewhere the closed pipe stops us a little later."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _child_main(config: dict[str, Any]) -> int:
    """Entry point of the worker process (``python -m vjengine.control.osc_worker CONFIG_JSON``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the show; it stops us through the pipe
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # so is a closed terminal
    parent = config.pop("parent_pid", None)
    _die_with_parent()
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
    sock.setblocking(False)
    server._sock = sock
    server.port = sock.getsockname()[1]
    try:
        server._run()
    finally:
        server._send()
        conn_out.close()
    return 0


class WorkerHandle:
    """The parent's side: the child process and the thread that takes in its batches."""

    def __init__(self, server: OscServer, sock: socket.socket) -> None:
        self.server = server
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
        self._enqueued = 0
        self._queue_full = 0
        self._thread = threading.Thread(target=self._receive, name=f"osc-batches:{server.port}", daemon=True)
        self._thread.start()

    def set_names(self, axis_names: Any, fx_params: Any) -> None:
        try:
            self._conn_ctl.send(("names", None if axis_names is None else list(axis_names),
                                 None if fx_params is None else list(fx_params)))
        except (BrokenPipeError, OSError):
            pass
    def _receive(self) -> None:
        server = self.server
        while True:
            try:
                message = self._conn_in.recv()
            except (EOFError, OSError):
                break
            try:
                self._take(message)
            except Exception:  # never let one batch stop the thread
                log.exception("OSC: unexpected error taking a batch from the worker")
        if not self._stopping and not server._stop.is_set():
            try:
                code = self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            log.error("OSC worker process exited (code %s); receiving in a thread from now on", code)
            server._worker_handle = None
            server.worker = "thread"
            server._start_thread()

    def _take(self, message: tuple) -> None:
        server = self.server
        _, commands, events, status_requests, logs, snap = message
        enqueued = queue_full = 0
        for cmd in commands:
            if server.queue.put(cmd, coalesce=server.coalesce):
                enqueued += 1
            else:
                queue_full += 1
        stats = server.stats
        with stats._lock:
            self._enqueued += enqueued
            self._queue_full += queue_full
            for key in STATS_FIELDS:
                if key == "kernel_dropped":
                    stats.kernel_dropped = max(stats.kernel_dropped, snap[key])
                else:
                    setattr(stats, key, snap[key])
            stats.rejected = Counter(snap["rejected"])
            stats.enqueued = self._enqueued
            stats.queue_full = self._queue_full
        if queue_full:
            server._log.warning("queue_full", "OSC: the command queue is full (is the render thread running?); "
                                "dropped %d command(s)", queue_full)
        for reply_to in status_requests:
            if server.status_provider is not None:
                server._answer_status(reply_to)
        for level, text in logs:
            log.log(level, "%s", text)
        if server.observer is not None:
            for event in events:
                server._notify(event)

    def stop(self) -> None:
        self._stopping = True
        try:
            self._conn_ctl.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self._conn_ctl.close()
        try:
            self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=2.0)
        self._thread.join(timeout=2.0)
        self._conn_in.close()


def start_worker(server: OscServer, sock: Any) -> WorkerHandle:
    """Start the worker process for ``server`` on its bound ``sock``."""
    return WorkerHandle(server, sock)


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
