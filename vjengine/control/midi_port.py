"""MIDI input ports: one chosen by a name substring, hot-plugged, read from python-rtmidi.

Needs the ``midi`` extra (``pip install 'vjengine[midi]'``: mido with the python-rtmidi backend),
imported only when a MIDI option is given. ``--midi-api`` picks rtmidi's API: ALSA (the default on
Linux) or JACK.

:class:`MidiPort`: one input port chosen by a name substring. Its thread rescans the port list every
``rescan_s`` and opens the port when it appears, closes it when it goes, and opens it again when it
comes back (a controller unplugged and plugged back in is rebound without a restart). It reads
python-rtmidi directly (polled, see the class) and parses with mido. With JACK the same loop runs in a
worker process (:mod:`vjengine.control.midi_worker`), so this module imports only what a port needs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

from vjengine.errors import ConfigError, DeviceError

log = logging.getLogger("vjengine.control.midi")  # one logger for everything MIDI

APIS = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK"}
INSTALL_HINT = "MIDI needs the midi extra: pip install 'vjengine[midi]' (mido, python-rtmidi)"
GONE_AFTER_SCANS = 2  # lists in a row without our open port before it counts as unplugged


def open_backend(api: str | None = None) -> Any:
    """mido's rtmidi backend for ``api`` ("alsa", "jack" or None: rtmidi's default)."""
    try:
        import mido  # noqa: PLC0415 - optional extra
        import rtmidi  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ConfigError(f"MIDI: {INSTALL_HINT} ({exc})") from None
    name = "mido.backends.rtmidi"
    if api:
        if api not in APIS:
            raise ConfigError(f"--midi-api {api!r}: must be one of {', '.join(APIS)}")
        name += "/" + APIS[api]
    try:
        return mido.Backend(name, load=True)
    except Exception as exc:  # noqa: BLE001
        raise DeviceError(f"MIDI: cannot load {name}: {exc}") from None


class RateLog:
    def __init__(self, interval_s: float = 5.0) -> None:
        self._last: dict[str, float] = {}
        self.interval_s = interval_s

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.interval_s:
            self._last[key] = now
            log.warning(msg, *args)


def _rtmidi_api(api: str | None) -> int:
    import rtmidi  # noqa: PLC0415

    if api is None:
        return rtmidi.API_UNSPECIFIED
    if api not in APIS:
        raise ConfigError(f"--midi-api {api!r}: must be one of {', '.join(APIS)}")
    return getattr(rtmidi, f"API_{APIS[api]}")


class PortBase:
    """What every MIDI input shares, here or in a worker process (:mod:`vjengine.control.midi_worker`):
    the checks (a name, the extra, the API), parsing a message and handing it on (:meth:`deliver`),
    and waiting for a change of port (:meth:`port_changed`, :meth:`wait_for`)."""

    def __init__(self, match: str, on_message: Callable[[Any, float], None], *, api: str | None, rescan_s: float,
                 label: str) -> None:
        if not match or not match.strip():
            raise ConfigError(f"{label}: the device name substring is empty")
        try:
            import mido  # noqa: PLC0415 - optional extra
            import rtmidi  # noqa: F401, PLC0415
        except ImportError as exc:
            raise ConfigError(f"{label}: {INSTALL_HINT} ({exc})") from None
        self.api = _rtmidi_api(api)  # checked here: a bad --midi-api is a ConfigError before any port
        self._parse = mido.Message.from_bytes
        self.match = match.strip()
        self.on_message = on_message
        self.rescan_s = rescan_s
        self.label = label
        self.messages = 0
        self.garbage = 0
        self._rate = RateLog()
        self._changed = threading.Condition()

    def deliver(self, data: Any, t: float) -> None:
        """One message's bytes, arrived at perf_counter time ``t``: parsed and handed to ``on_message``."""
        self.messages += 1
        try:
            msg = self._parse(data)
        except Exception:  # noqa: BLE001 - not MIDI: count it, drop it
            self.garbage += 1
            return
        try:
            self.on_message(msg, t)
        except Exception as exc:  # noqa: BLE001 - a handler error drops one message, never the thread
            self._rate.warning("handler", "%s: message %r dropped: %r", self.label, msg, exc)

    def port_changed(self) -> None:
        """The port opened, went or came back: wake :meth:`wait_for`."""
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float) -> bool:
        """Block (not on the render thread) until ``predicate(self)`` holds after a port change."""
        end = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, self.rescan_s))
        return True


class MidiPort(PortBase):
    """An input port matched by name substring, reopened whenever it reappears (module docstring).

    One thread owns the python-rtmidi input: it polls rtmidi's queue every ``poll_s`` and rescans the
    port list every ``rescan_s``. No Python callback is installed on purpose: with JACK, rtmidi calls
    a callback from JACK's graph thread, which then needs the GIL, while closing or opening a port
    holds the GIL and waits for that same graph thread: the two hang (seen with mido's backend,
    which always installs one). Polling costs at most ``poll_s`` of latency; arrival times are
    rebuilt from rtmidi's own per-message time deltas (taken on the MIDI thread as each message
    arrived), anchored to ``perf_counter``, so MIDI clock timing does not suffer from the polling.
    Each message is parsed by mido (``Message.from_bytes``); bytes that are not MIDI are counted.
    """

    def __init__(self, match: str, on_message: Callable[[Any, float], None], *, api: str | None = None,
                 rescan_s: float = 0.5, poll_s: float = 0.001, label: str = "MIDI in",
                 queue_size: int = 8192) -> None:
        super().__init__(match, on_message, api=api, rescan_s=rescan_s, label=label)
        import rtmidi  # noqa: PLC0415 - the extra, there (PortBase checked)

        self._rtmidi = rtmidi
        self.poll_s = poll_s
        self.queue_size = queue_size
        self.rt: Any = None
        self.port_name: str | None = None
        self.opens = 0  # how many times a port was opened (1 + rebinds)
        self.lost = 0
        self.scans = 0  # port lists asked for
        self._missing = 0  # lists in a row that lacked our open port
        self.exclude: set[str] = set()  # our own output ports (clock out) are never inputs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lister: Any = None
        self._cum = 0.0  # sum of rtmidi deltas since the port opened (s)
        self._anchor: float | None = None  # perf_counter time of cum = 0
        self._anchor_at = 0.0

    def exclude_port(self, name: str) -> None:
        """Never take ``name`` (one of our own outputs, e.g. MIDI clock out) as this input."""
        self.exclude.add(name)

    def find(self, names: Iterable[str]) -> str | None:
        m = self.match.lower()
        for name in names:
            if m in name.lower() and name not in self.exclude:
                return name
        return None

    def start(self) -> "MidiPort":
        self._thread = threading.Thread(target=self.run, name=f"midi-in-{self.match}", daemon=True)
        self._thread.start()
        return self

    # ---------------------------------------------------------------- the port thread
    def list_ports(self) -> list[str]:
        """rtmidi's input port names now (raises when they cannot be had: e.g. no JACK server)."""
        if self._lister is None:
            self._lister = self._rtmidi.MidiIn(self.api, name="vjengine-scan")
        return list(self._lister.get_ports())

    def _names(self) -> list[str] | None:
        """The port names, or None when the list cannot be had now."""
        try:
            names = self.list_ports()
        except Exception as exc:  # noqa: BLE001 - e.g. the JACK server is not running (yet)
            self._drop_lister()
            self._rate.warning("list", "%s: cannot list MIDI ports: %s", self.label, exc)
            return None
        if not names:  # the server may have restarted under this client: a fresh one next time
            self._drop_lister()
        return names

    def _drop_lister(self) -> None:
        lister, self._lister = self._lister, None
        if lister is not None:
            try:
                lister.delete()
            except Exception:  # noqa: BLE001
                pass

    def rescan(self) -> None:
        """Open the port if it appeared, close it if it went (the port thread calls this every rescan_s).

        A port counts as gone when ``GONE_AFTER_SCANS`` lists in a row lack it, and a list that could
        not be had changes nothing: on a loaded machine one JACK list lacked our open port, and
        closing and reopening it lost ten MIDI clocks (the receiving clock's bar slipped 0.42 beat)."""
        names = self._names()
        self.scans += 1
        if names is None:
            return
        if self.rt is not None:
            if self.port_name in names:
                self._missing = 0
                return
            self._missing += 1
            if self._missing < GONE_AFTER_SCANS:
                return
            self._missing = 0
            log.warning("%s: %s went away; waiting for it to come back", self.label, self.port_name)
            self.lost += 1
            self._close_port()
            self.port_changed()
        if self.rt is None:
            name = self.find(names)
            if name is not None:
                self._open(name)

    def _open(self, name: str) -> None:
        rt = None
        try:
            rt = self._rtmidi.MidiIn(self.api, name="vjengine", queue_size_limit=self.queue_size)
            ports = rt.get_ports()
            rt.open_port(ports.index(name))
            rt.ignore_types(sysex=False, timing=False, active_sense=True)
        except Exception as exc:  # noqa: BLE001
            if rt is not None:
                try:
                    rt.delete()
                except Exception:  # noqa: BLE001
                    pass
            self._rate.warning("open", "%s: cannot open %s: %s", self.label, name, exc)
            return
        self.rt = rt
        self.port_name = name
        self._cum = 0.0
        self._anchor = None
        self.opens += 1
        log.info("%s: %s %s", self.label, "rebound to" if self.opens > 1 else "listening on", name)
        self.port_changed()

    def _close_port(self) -> None:
        rt, self.rt = self.rt, None
        if rt is not None:
            try:
                rt.close_port()
                rt.delete()
            except Exception as exc:  # noqa: BLE001
                log.debug("closing %s: %s", self.port_name, exc)

    def poll(self) -> int:
        """Hand every queued message to ``on_message`` (the port thread calls this every poll_s)."""
        rt = self.rt
        if rt is None:
            return 0
        n = 0
        while True:
            try:
                item = rt.get_message()
            except Exception as exc:  # noqa: BLE001
                self._rate.warning("read", "%s: read failed: %s", self.label, exc)
                return n
            if item is None:
                return n
            data, delta = item
            now = time.perf_counter()
            self._cum += max(0.0, float(delta))
            # arrival = anchor + cum; the anchor is the earliest consistent with every message having
            # arrived before it was read, relaxed by 100 ppm so two clocks drifting apart cannot stick it
            bound = now - self._cum
            a = self._anchor
            if a is None or bound < a + 1e-4 * (now - self._anchor_at):
                self._anchor, self._anchor_at = bound, now
            elif a is not None:
                self._anchor = a + 1e-4 * (now - self._anchor_at)
                self._anchor_at = now
            n += 1
            self.deliver(data, self._anchor + self._cum)

    def run(self) -> None:
        """The port loop until :meth:`request_stop` (:meth:`start` runs it on a thread of its own)."""
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                next_scan = now + self.rescan_s
                try:
                    self.rescan()
                except Exception as exc:  # noqa: BLE001
                    self._rate.warning("rescan", "%s: rescan failed: %s", self.label, exc)
                if self.rt is None and self.opens == 0 and not getattr(self, "_warned", False):
                    self._warned = True
                    log.warning("%s: no port matching %r yet (have: %s); waiting for it", self.label, self.match,
                                ", ".join(self._names() or []) or "none")
            self.poll()
            self.after_poll()
            self._stop.wait(self.poll_s)
        self._close_port()
        self._drop_lister()

    def after_poll(self) -> None:
        """A hook for the MIDI worker process (:mod:`vjengine.control.midi_worker`): its batches and control."""

    def request_stop(self) -> None:
        """End the port loop after its current step (from any thread, or the loop itself)."""
        self._stop.set()

    # ---------------------------------------------------------------- other threads
    @property
    def connected(self) -> bool:
        return self.rt is not None

    def status_line(self) -> str:
        if self.rt is None:
            return f"{self.label} waiting for {self.match!r}"
        return f"{self.label} {self.port_name}" + (f", {self.garbage} bad bytes" if self.garbage else "")

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
