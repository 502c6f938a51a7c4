"""The OSC server: a UDP receiver that turns datagrams into :class:`~vjengine.control.commands.Command`.

It receives in a thread, or (``worker="process"``, what `vj live` uses) in a worker process whose
finished commands a thread here puts on the queue (see ``osc_worker``). Either way it never touches
render state and never waits on anything but its socket: each valid message becomes
one command per address it reaches, ``CommandQueue.put`` (non-blocking); a future bundle time tag
becomes ``apply_at_s`` and the render thread's ``drain`` holds it until due.

Coalescing: for absolute controls (:data:`COALESCE_KINDS`: a fader's latest value replaces the
previous one) the server keeps only the newest command per control while datagrams are queued up
in the socket, and enqueues them as soon as the socket is empty (or after at most
``COALESCE_MAX_S``). A quiet stream is enqueued at once, one by one; a flood from a fader running at
thousands of messages a second reaches the render thread as one command per control per read-out,
in order with everything else (any other command flushes the pending ones first). Everything refused is
counted by reason (:class:`OscStats`), logged at a limited rate, and reported to an optional observer
(``vj osc-monitor``, ``--osc-log``).

``/vj/status``: with a ``status_provider`` (a callable returning a thread-safe snapshot dict, called
on the server's thread) the server replies at once from its own socket; without one it enqueues a ``status``
command whose value is the reply ``(host, port)``, and the render thread answers by calling
:meth:`OscServer.send_status` (thread-safe) with its state.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
import select
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from vjengine.control.commands import COALESCE_KINDS, Command, CommandQueue
from vjengine.control.osc_space import (
    DEFAULT_HOST,
    DEFAULT_MAX_DEFER_S,
    DEFAULT_MAX_PACKET_BYTES,
    DEFAULT_PORT,
    IGNORED,
    MESSAGE_REASONS,
    AddressSpace,
    ArgError,
    coerce_args,
)
from vjengine.control.osc_wire import (
    IMMEDIATELY,
    PACKET_REASONS,
    OscDecodeError,
    OscMessage,
    decode_packet,
    encode_message,
    pack_bundles,
    timetag_to_perf_s,
)
from vjengine.errors import ConfigError
from vjengine.logonce import LogOnce
from vjengine.netaddr import is_loopback_host

log = logging.getLogger(__name__)

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux: per-socket count of datagrams the kernel dropped
# ~1000-2000 small datagrams: absorbs bursts, but an overloaded server drops (and counts) rather than
# sitting on seconds of stale control messages.
RECV_BUFFER_BYTES = 512 * 1024  # Linux doubles it for bookkeeping: ~1300 small datagrams
STATUS_BUNDLE_BYTES = 1024
COALESCE_MAX_S = 0.002
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag arithmetic costs microseconds per datagram
_UNPACK_ONE = {"f": struct.Struct(">f").unpack_from, "i": struct.Struct(">i").unpack_from}
DROPS_REFRESH_S = 0.25
# What the worker process counts (and the parent takes over wholesale, see OscStats.take_worker_counts)
WORKER_COUNTS = ("packets", "packets_ok", "messages", "accepted", "commands", "coalesced", "deferred",
                 "ignored", "clamped", "last_reject")


@dataclass(frozen=True)
class OscEvent:
    """What happened to one message (or one refused datagram), for monitors and logs."""

    time_s: float  # perf_counter
    sender: tuple[str, int]
    outcome: str  # "accepted", "ignored", "rejected"
    reason: str = ""  # a rejection reason, or "clamped" for an accepted, clamped value
    detail: str = ""
    address: str = ""
    args: tuple[Any, ...] = ()
    commands: tuple[Command, ...] = ()


@dataclass
class OscStats:
    """Counts since start; written by the OSC thread, read from anywhere via :meth:`snapshot`.

    The counts add up: ``packets == packets_ok + sum(packet-level rejections)``,
    ``messages == accepted + ignored + sum(message-level rejections)`` (``messages`` counts
    messages in valid packets), and ``commands == enqueued + coalesced + queue_full``.
    ``kernel_dropped`` is what the OS dropped before the server could read it.
    """

    packets: int = 0
    packets_ok: int = 0
    messages: int = 0
    accepted: int = 0  # messages that produced at least one command (or a status reply)
    commands: int = 0  # commands made (a wildcard message can make several)
    enqueued: int = 0  # commands put on the queue
    coalesced: int = 0  # superseded by a newer value for the same control before being enqueued
    queue_full: int = 0  # lost because the render thread's queue was full (it is not draining)
    deferred: int = 0  # commands carrying a future apply_at_s
    ignored: int = 0  # trigger releases (a 0 after a 1)
    clamped: int = 0  # accepted values that were clamped into range
    kernel_dropped: int = 0
    rejected: Counter = field(default_factory=Counter)
    last_reject: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # The writers' side (the receiving thread, or the worker's batch thread): each count under the lock.

    def count_kernel_dropped(self, dropped: int) -> None:
        """The OS's running count of datagrams it dropped for this socket (it only grows)."""
        with self._lock:
            self.kernel_dropped = max(self.kernel_dropped, dropped)

    def count_refused_packet(self, reason: str, detail: str) -> None:
        with self._lock:
            self.packets += 1
            self.rejected[reason] += 1
            self.last_reject = f"{reason}: {detail}"

    def count_packet_ok(self) -> None:
        with self._lock:
            self.packets += 1
            self.packets_ok += 1

    def count_message(self, commands: int, *, answered: bool, deferred: bool, clamped: bool, ignored: bool,
                      reason: str, detail: str) -> None:
        """One message of a valid packet: accepted (it made ``commands`` commands or was ``answered``),
        ignored (a trigger release), or refused for ``reason``."""
        with self._lock:
            self.messages += 1
            if commands or answered:
                self.accepted += 1
                self.commands += commands
                if deferred:
                    self.deferred += commands
                if clamped:
                    self.clamped += 1
            elif ignored and not reason:
                self.ignored += 1
            else:
                self.rejected[reason] += 1
                self.last_reject = f"{reason}: {detail}"

    def count_coalesced(self) -> None:
        with self._lock:
            self.coalesced += 1

    def count_put(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.enqueued += 1
            else:
                self.queue_full += 1

    def take_worker_counts(self, counts: Mapping[str, Any], enqueued: int, queue_full: int) -> None:
        """Replace the receiving counts with the worker process's (``counts``: the fields of
        :meth:`snapshot` it keeps, plus ``rejected``); ``enqueued`` and ``queue_full`` are counted here,
        where its commands meet the queue."""
        with self._lock:
            for key in WORKER_COUNTS:
                setattr(self, key, counts[key])
            self.kernel_dropped = max(self.kernel_dropped, counts["kernel_dropped"])
            self.rejected = Counter(counts["rejected"])
            self.enqueued = enqueued
            self.queue_full = queue_full

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "packets": self.packets, "packets_ok": self.packets_ok, "messages": self.messages,
                "accepted": self.accepted, "commands": self.commands, "enqueued": self.enqueued,
                "coalesced": self.coalesced, "queue_full": self.queue_full, "deferred": self.deferred,
                "ignored": self.ignored, "clamped": self.clamped, "kernel_dropped": self.kernel_dropped,
                "rejected": dict(self.rejected), "rejected_total": sum(self.rejected.values()),
                "last_reject": self.last_reject,
            }

    def hud_line(self) -> str:
        """One short line for the HUD, e.g. ``OSC 120 ok, 3 refused (unknown_address 2, truncated 1)``."""
        snap = self.snapshot()
        text = f"OSC {snap['accepted']} ok"
        if snap["rejected_total"]:
            top = sorted(snap["rejected"].items(), key=lambda kv: -kv[1])[:3]
            text += f", {snap['rejected_total']} refused (" + ", ".join(f"{k} {v}" for k, v in top) + ")"
        if snap["queue_full"]:
            text += f", {snap['queue_full']} lost to a full queue"
        if snap["kernel_dropped"]:
            text += f", {snap['kernel_dropped']} dropped by the OS"
        return text


def parse_allowlist(entries: Iterable[str] | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """Networks from addresses / CIDR strings; :class:`ConfigError` names a bad entry."""
    if entries is None:
        return None
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"OSC allowlist entry {entry!r} is not an IP address or network (e.g. 192.168.1.0/24)") from None
    return tuple(networks)


def _sender_allowed(host: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(f"{prefix}/{key}", sub, out)
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            _flatten(f"{prefix}/{i}", sub, out)
    elif isinstance(value, (bool, int, float)):
        number = float(value)
        out.append((prefix, number if math.isfinite(number) else 0.0))
    elif value is not None:
        out.append((prefix, str(value)))


def status_messages(state: Mapping[str, Any], prefix: str = "/vj/status") -> list[bytes]:
    """The reply to ``/vj/status``: bundles of one value per address (numbers as floats), then
    ``{prefix}/end`` carrying the number of values."""
    pairs: list[tuple[str, Any]] = []
    _flatten(prefix, state, pairs)
    encoded = [encode_message(addr.replace(" ", "_"), [value]) for addr, value in pairs]
    encoded.append(encode_message(f"{prefix}/end", [len(pairs)]))
    return pack_bundles(encoded, STATUS_BUNDLE_BYTES)


class OscServer:
    """Receive OSC on UDP and enqueue commands; see the module docstring.

    ``port=0`` binds a free port (read :attr:`port` after :meth:`start`). ``allow`` is a list of
    sender addresses or networks (None: anyone who can reach the socket). ``axis_names`` and
    ``fx_params`` (``"effect/param"``) name what exists; :meth:`set_names` updates them live.
    ``observer`` is called on the OSC thread with every :class:`OscEvent` (keep it quick).
    ``coalesce=False`` enqueues every command, however many (see the module docstring).
    ``worker="process"`` receives and validates in a child process (``osc_worker``), so a flood costs
    the render process's GIL almost nothing; a thread here only moves the finished commands onto the
    queue (and answers ``/vj/status``, calls the observer). The API and the counts are the same, but
    the observer must be given before :meth:`start` (the child only reports events if it is).
    ``worker_nice`` (e.g. 10) lowers the worker's CPU priority: on a saturated machine a flood then
    cannot slow the frames, but OSC lags and the OS drops datagrams instead (see benchmarks/osc.py).
    ``coalesce_max_s`` is how long a pending fader value may wait for newer ones while datagrams
    keep coming.

    The receiving loop (:meth:`serve`) asks a few public hooks what to do; the worker process's
    server (``osc_worker``) overrides them to batch its output for the parent: :meth:`stop_requested`,
    :meth:`wait_on`, :meth:`wait_timeout_s`, :meth:`on_idle`, :meth:`after_datagram` and
    :meth:`answer_status`.
    """

    def __init__(
        self,
        queue: CommandQueue,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        allow: list[str] | None = None,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
        axis_names: Iterable[str] | None = None,
        fx_params: Iterable[str] | None = None,
        status_provider: Callable[[], Mapping[str, Any]] | None = None,
        observer: Callable[[OscEvent], None] | None = None,
        max_defer_s: float = DEFAULT_MAX_DEFER_S,
        log_interval_s: float = 5.0,
        coalesce: bool = True,
        worker: str = "thread",
        worker_nice: int = 0,
        coalesce_max_s: float = COALESCE_MAX_S,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"OSC port must be 0..65535, got {port}")
        if max_packet_bytes < 16:
            raise ConfigError(f"OSC max packet size must be at least 16 bytes, got {max_packet_bytes}")
        self.queue = queue
        self.host = host
        self.port = port
        self.allow = parse_allowlist(allow)
        self.max_packet_bytes = int(max_packet_bytes)
        self.space = AddressSpace(axis_names, fx_params)
        self.status_provider = status_provider
        self.observer = observer
        self.max_defer_s = float(max_defer_s)
        if worker not in ("thread", "process"):
            raise ConfigError(f"OSC worker must be 'thread' or 'process', got {worker!r}")
        self.coalesce = coalesce
        self.worker = worker
        self.worker_nice = int(worker_nice)
        self._worker_handle: Any = None  # osc_worker.WorkerHandle in process mode
        self.stats = OscStats()
        self._pending: dict[tuple[str, str], Command] = {}
        self._pending_since_s = 0.0
        self._drops_checked_s = 0.0
        self.coalesce_max_s = float(coalesce_max_s)
        self.log_interval_s = float(log_interval_s)
        self._shapes: dict[bytes, tuple[str, str, Callable[[bytes, int], tuple]]] = {}
        self._log = LogOnce(log, every_s=log_interval_s)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "OscServer":
        """Bind and start receiving; :class:`ConfigError` if the address is unusable."""
        if self._thread is not None or self._worker_handle is not None:
            return self
        sock = self._bind_socket()
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stop.clear()
        if self.worker == "process":
            from vjengine.control.osc_worker import start_worker  # noqa: PLC0415

            try:
                self._worker_handle = start_worker(self, sock, on_exit=self._worker_exited)
            except OSError as exc:  # no way to start a process here: a thread still works
                log.warning("OSC worker process could not start (%s); receiving in a thread", exc)
                self.worker = "thread"
        if self._worker_handle is None:
            self._start_thread()
        if self.allow is None and not is_loopback_host(self.host):
            log.warning("OSC listens on %s:%d with no allowlist: anyone on the network can control the show "
                        "(give --osc-allow ADDRESS_OR_NETWORK to limit it); /vj/status replies go only to the "
                        "sender's own port", self.host, self.port)
        log.info("OSC listening on %s:%d%s%s", self.host, self.port,
                 f" (allow {', '.join(map(str, self.allow))})" if self.allow else "",
                 " in a worker process" if self.worker == "process" else "")
        return self

    def _bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            except OSError:
                pass  # not Linux: kernel drops stay uncounted
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = ("; another program (another vj?) listens there: pick another port with --osc-port, "
                        "or --osc-port 0 for any free one (the log says which)")
            raise ConfigError(f"cannot listen for OSC on {self.host}:{self.port}: {exc.strerror or exc}{hint}") from None
        sock.setblocking(False)  # the receiver waits in select() only when there is nothing to read
        return sock

    def _start_thread(self) -> None:
        sock = self._sock
        assert sock is not None
        self._thread = threading.Thread(target=self.serve, args=(sock,), name=f"osc-server:{self.port}", daemon=True)
        self._thread.start()

    def _worker_exited(self, code: int | None) -> None:
        """The worker process ended on its own (called on the batch thread): receive in a thread."""
        if self._stop.is_set():
            return
        log.error("OSC worker process exited (code %s); receiving in a thread from now on", code)
        self._worker_handle = None
        self.worker = "thread"
        self._start_thread()

    @property
    def receiving(self) -> bool:
        """Whether a receiver (the thread, or the worker process) is running."""
        thread, handle = self._thread, self._worker_handle
        if handle is not None:
            return handle.alive()
        return thread is not None and thread.is_alive()

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id (``worker="process"`` while it runs), else None."""
        handle = self._worker_handle
        return None if handle is None else handle.pid

    @property
    def local_address(self) -> tuple[str, int] | None:
        """The bound socket's (host, port) while started, else None."""
        sock = self._sock
        return None if sock is None else sock.getsockname()[:2]

    def stop(self) -> None:
        """Stop receiving (within ~0.1 s) and close the socket."""
        self._stop.set()
        if self._worker_handle is not None:
            self._worker_handle.stop()
            self._worker_handle = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "OscServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def set_names(self, axis_names: Iterable[str] | None = None, fx_params: Iterable[str] | None = None) -> None:
        """Swap in the names of a new bank / effect chain (thread-safe: one reference swap)."""
        self.space = AddressSpace(axis_names, fx_params)
        if self._worker_handle is not None:
            self._worker_handle.set_names(self.space.axis_names, self.space.fx_params)

    # ------------------------------------------------------------------ receiving

    def serve(self, sock: socket.socket) -> None:
        """Receive on ``sock`` (bound, non-blocking) in the calling thread until :meth:`stop_requested`.
        The thread runs this; so does the worker process, on the socket it inherited."""
        self._sock = sock
        self.port = sock.getsockname()[1]
        bufsize = self.max_packet_bytes + 1
        ancsize = socket.CMSG_SPACE(4)
        self._drops_checked_s = 0.0
        while not self.stop_requested():
            try:
                data, ancdata, flags, sender = sock.recvmsg(bufsize, ancsize)
            except BlockingIOError:
                self.on_idle()
                try:
                    select.select(self.wait_on(), [], [], self.wait_timeout_s())
                except (OSError, ValueError):
                    pass
                continue
            except OSError as exc:
                if self.stop_requested():
                    break
                self._log.warning("recv", "OSC receive error: %s", exc)
                time.sleep(0.01)
                continue
            try:
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(payload) >= 4:
                        self.stats.count_kernel_dropped(struct.unpack("=I", payload[:4])[0])
                self._handle(data, sender[:2], bool(flags & _MSG_TRUNC))
                self.after_datagram()
            except Exception:  # never let one datagram kill the receiver
                log.exception("OSC: unexpected error handling a datagram from %s", sender)
        self.on_idle()

    # The receiving loop's hooks (the worker process overrides them; see the class docstring).

    def stop_requested(self) -> bool:
        """Whether :meth:`serve` should return now (checked before every datagram)."""
        return self._stop.is_set()

    def wait_on(self) -> list[Any]:
        """What the idle receiver waits on (the worker process adds its control pipe)."""
        return [self._sock]

    def wait_timeout_s(self) -> float:
        """How long the idle receiver may sleep: wake every 0.1 s to check stop()."""
        return 0.1

    def on_idle(self) -> None:
        """The socket is empty: enqueue the newest value of each control; refresh the drop count."""
        self.flush_pending()
        self.refresh_kernel_drops()

    def after_datagram(self) -> None:
        """Called after each datagram is handled (the worker process batches its output here)."""

    @property
    def has_pending(self) -> bool:
        """Whether fader values wait to be enqueued (see coalescing)."""
        return bool(self._pending)

    def refresh_kernel_drops(self) -> None:
        """Update ``stats.kernel_dropped`` from the OS, at most every ``DROPS_REFRESH_S``."""
        now_s = time.monotonic()
        if now_s - self._drops_checked_s >= DROPS_REFRESH_S:
            self._read_kernel_drops()  # the cmsg count only moves with new datagrams
            self._drops_checked_s = now_s

    def _read_kernel_drops(self) -> None:
        """Read this socket's drop count from /proc/net/udp (Linux); a no-op elsewhere."""
        sock = self._sock
        if sock is None:
            return
        try:
            inode = str(os.fstat(sock.fileno()).st_ino)
            table = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
            with open(table, encoding="ascii") as fh:
                for line in fh:
                    fields = line.split()
                    if len(fields) > 12 and fields[9] == inode:
                        self.stats.count_kernel_dropped(int(fields[-1]))
                        return
        except (OSError, ValueError):
            return

    def handle_datagram(self, data: bytes, sender: tuple[str, int], *, truncated: bool = False) -> None:
        """Validate one datagram and enqueue its commands now (for callers other than the thread)."""
        self._handle(data, sender, truncated)
        self.flush_pending()

    def _handle(self, data: bytes, sender: tuple[str, int], truncated: bool) -> None:
        now_s = time.perf_counter()
        if self._pending and now_s - self._pending_since_s > self.coalesce_max_s:
            self.flush_pending()
        stats = self.stats
        reason = detail = ""
        messages: list[OscMessage] = []
        if self.allow is not None and not _sender_allowed(sender[0], self.allow):
            reason, detail = "not_allowed", f"sender {sender[0]} is not in the allowlist"
        elif truncated or len(data) > self.max_packet_bytes:
            reason, detail = "oversize", f"datagram over {self.max_packet_bytes} bytes"
        else:
            # Fast path for the common fader message (address, ",f" or ",i", 4 bytes): a prefix seen
            # before in a fully validated datagram of the same shape decodes identically.
            known = self._shapes.get(data[:-4]) if len(data) >= 12 else None
            if known is not None:
                address, tags, unpack = known
                messages = [OscMessage(address, tags, unpack(data, len(data) - 4), IMMEDIATELY)]
            else:
                try:
                    messages = decode_packet(data)
                except OscDecodeError as exc:
                    reason, detail = exc.reason, exc.detail
                else:
                    self._learn_shape(data, messages)
        if reason:
            stats.count_refused_packet(reason, detail)
            self._log.warning(reason, "OSC refused a datagram from %s:%d: %s: %s", sender[0], sender[1], reason, detail)
            if self.observer is not None:
                self.notify(OscEvent(now_s, sender, "rejected", reason, detail))
            return
        stats.count_packet_ok()
        # one clock reading per datagram: every message of a bundle falls due at the same instant,
        # so the render thread drains them together, in bundle order
        now_unix_s = None
        for message in messages:
            if now_unix_s is None and message.timetag > IMMEDIATELY:
                now_unix_s = time.time()
            self._handle_message(message, sender, now_s, now_unix_s)

    def _learn_shape(self, data: bytes, messages: list[OscMessage]) -> None:
        if len(messages) != 1 or data[:1] != b"/" or messages[0].typetags not in ("f", "i"):
            return
        if len(self._shapes) >= 1024:  # a flood of distinct addresses must not grow memory
            self._shapes.clear()
        msg = messages[0]
        self._shapes[data[:-4]] = (msg.address, msg.typetags, _UNPACK_ONE[msg.typetags])

    def _handle_message(self, message: OscMessage, sender: tuple[str, int], now_s: float,
                        now_unix_s: float | None) -> None:
        stats = self.stats
        address = message.address
        apply_at_s = None if message.timetag <= IMMEDIATELY else timetag_to_perf_s(
            message.timetag, now_unix_s=now_unix_s, now_perf_s=now_s)
        commands: list[Command] = []
        reason = detail = ""
        ignored = clamped = answered = False
        if apply_at_s is not None and apply_at_s - now_s > self.max_defer_s:
            reason = "too_far_future"
            detail = f"{address} is due in {apply_at_s - now_s:.1f} s (limit {self.max_defer_s:g} s)"
        else:
            routes = self.space.resolve(address)
            if not routes:
                reason, detail = "unknown_address", f"{address} matches no declared address"
            for route in routes:
                try:
                    value, was_clamped = coerce_args(route.spec, address, message.typetags, message.args)
                except ArgError as exc:
                    if not reason:
                        reason, detail = exc.reason, exc.detail
                    continue
                if value is IGNORED:
                    ignored = True
                    continue
                if route.spec.kind == "status":
                    reply_to = (sender[0], value or sender[1])
                    if reply_to[1] != sender[1] and not self._may_redirect(sender[0]):
                        # an unlisted remote sender could aim our ~1 KB reply at any port: answer the source
                        self._log.warning("status_redirect", "OSC /vj/status from %s:%d asked for a reply to port "
                                          "%d; replying to the sender's own port (use --osc-allow to trust it)",
                                          sender[0], sender[1], reply_to[1])
                        reply_to = sender
                    if self.status_provider is not None:
                        self.answer_status(reply_to)
                        answered = True
                    else:  # the render thread answers through send_status()
                        commands.append(Command("status", "", reply_to, "osc", now_s))
                    continue
                clamped = clamped or was_clamped
                commands.append(Command(route.spec.kind, route.target, value, "osc", now_s, apply_at_s))
        for cmd in commands:
            self._emit(cmd, now_s)
        accepted = bool(commands) or answered
        stats.count_message(len(commands), answered=answered, deferred=apply_at_s is not None, clamped=clamped,
                            ignored=ignored, reason=reason, detail=detail)
        if accepted:
            if self.observer is not None:
                self.notify(OscEvent(now_s, sender, "accepted", "clamped" if clamped else "", "", address,
                                      message.args, tuple(commands)))
        elif ignored and not reason:
            if self.observer is not None:
                self.notify(OscEvent(now_s, sender, "ignored", "", "trigger release", address, message.args))
        else:
            self._log.warning(reason, "OSC refused %s from %s:%d: %s: %s", address, sender[0], sender[1], reason, detail)
            if self.observer is not None:
                self.notify(OscEvent(now_s, sender, "rejected", reason, detail, address, message.args))

    def _emit(self, cmd: Command, now_s: float) -> None:
        """Enqueue a command, or hold it as the newest value of its control (see coalescing)."""
        if self.coalesce and cmd.apply_at_s is None and cmd.kind in COALESCE_KINDS:
            key = (cmd.kind, cmd.target)
            if not self._pending:
                self._pending_since_s = now_s
            elif self._pending.pop(key, None) is not None:
                self.stats.count_coalesced()
            self._pending[key] = cmd
            return
        self.flush_pending()  # keep order: what came before this command goes first
        self._put(cmd)

    def flush_pending(self) -> None:
        """Enqueue the newest value of each coalesced control now."""
        if not self._pending:
            return
        pending = list(self._pending.values())
        self._pending.clear()
        for cmd in pending:
            self._put(cmd)

    def _put(self, cmd: Command) -> None:
        ok = self.queue.put(cmd, coalesce=self.coalesce)
        self.stats.count_put(ok)
        if not ok and cmd.apply_at_s is not None:
            self._log.warning("defer_full", "OSC: too many commands timed for the future (or too far ahead); "
                              "dropped %s %s", cmd.kind, cmd.target)
        elif not ok:
            self._log.warning("queue_full", "OSC: the command queue is full (is the render thread running?); "
                              "dropped %s %s", cmd.kind, cmd.target)

    def _may_redirect(self, host: str) -> bool:
        """Whether a /vj/status reply may go to a port the sender names: senders on this machine, or
        senders an explicit allowlist admitted (the packet only got here if it did)."""
        if self.allow is not None:
            return True
        try:
            return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def answer_status(self, reply_to: tuple[str, int]) -> None:
        """Reply to a ``/vj/status`` request with the status provider's state and the OSC counts
        (the worker process overrides this to hand the request to the parent, which holds the provider)."""
        assert self.status_provider is not None
        try:
            state = dict(self.status_provider())
        except Exception as exc:  # a broken provider must not stop the server
            self._log.warning("status", "OSC status provider failed: %s", exc)
            state = {"error": str(exc)}
        state["osc"] = self.stats.snapshot()
        self.send_status(reply_to, state)

    def send_status(self, reply_to: tuple[str, int], state: Mapping[str, Any]) -> None:
        """Send ``state`` as the ``/vj/status`` reply (thread-safe, never blocks for long)."""
        sock = self._sock
        if sock is None:
            return
        for packet in status_messages(state):
            try:
                sock.sendto(packet, reply_to)
            except OSError as exc:
                self._log.warning("status_send", "OSC status reply to %s:%d failed: %s", reply_to[0], reply_to[1], exc)
                return

    def notify(self, event: OscEvent) -> None:
        """Pass ``event`` to the observer; an observer that raises is logged (rate-limited), never fatal."""
        observer = self.observer
        if observer is None:
            return
        try:
            observer(event)
        except Exception as exc:
            self._log.warning("observer", "OSC observer failed: %s", exc)


__all__ = ["OscServer", "OscStats", "OscEvent", "status_messages", "parse_allowlist",
           "PACKET_REASONS", "MESSAGE_REASONS"]
