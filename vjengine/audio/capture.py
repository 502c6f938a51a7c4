"""Line-in capture: a sounddevice InputStream whose callback only copies into a ring buffer.

:class:`CaptureSource` opens a device chosen by name substring or index, mixes the chosen channels
to mono in the callback (no allocation), counts overflows, and runs a small supervisor thread that
notices a vanished or failed device, says so, and reopens it (by the same name) every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from vjengine.audio.ring import RingBuffer
from vjengine.errors import DeviceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputDevice:
    """One PortAudio input device."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate_hz: float
    is_default: bool = False


def _sd():
    import sounddevice

    return sounddevice


def refresh_devices() -> None:
    """Re-scan devices (PortAudio only enumerates them when it initialises)."""
    sd = _sd()
    try:
        sd._terminate()
    finally:
        sd._initialize()


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel."""
    sd = _sd()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except Exception as exc:  # PortAudio missing or broken
        log.warning("cannot query audio devices: %s", exc)
        return []
    out = []
    for i, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            out.append(InputDevice(i, d["name"], hostapis[d["hostapi"]]["name"], int(d["max_input_channels"]),
                                   float(d["default_samplerate"]), i == default_in))
    return out


def describe_devices(devices: list[InputDevice]) -> str:
    if not devices:
        return "no audio input devices found"
    return "audio input devices:\n" + "\n".join(
        f"  [{d.index}] {d.name} ({d.hostapi}, {d.channels} ch, {d.default_samplerate_hz:g} Hz)"
        + (" default" if d.is_default else "") for d in devices)


def describe_everything() -> str:
    """What PortAudio sees when there is no input: host APIs and every device (outputs too)."""
    sd = _sd()
    try:
        hostapis = sd.query_hostapis()
        devices = sd.query_devices()
    except Exception as exc:
        return f"PortAudio cannot list devices: {exc}"
    apis = ", ".join(f"{h['name']} ({len(h['devices'])} devices)" for h in hostapis) or "none"
    lines = [f"host APIs: {apis}"]
    for i, d in enumerate(devices):
        lines.append(f"  [{i}] {d['name']} ({hostapis[d['hostapi']]['name']}, {d['max_input_channels']} in, "
                     f"{d['max_output_channels']} out)")
    if not devices:
        lines.append("  no devices at all (no sound card, or no permission to open one)")
    return "\n".join(lines)


def find_input_device(device: str | int | None, devices: list[InputDevice] | None = None) -> InputDevice:
    """Resolve ``device`` (index, digit string, case-insensitive name substring, or None = default).

    Raises :class:`DeviceError` naming the request and listing what exists.
    """
    devices = list_input_devices() if devices is None else devices
    if not devices:
        raise DeviceError(f"no audio input device for --audio-device {device!r}: {describe_devices(devices)}")
    if device is None or device == "":
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        idx = int(device)
        for d in devices:
            if d.index == idx:
                return d
        raise DeviceError(f"--audio-device {device!r}: no input device with index {idx}; {describe_devices(devices)}")
    want = str(device).lower()
    exact = [d for d in devices if d.name.lower() == want]
    if exact:
        return exact[0]
    matches = [d for d in devices if want in d.name.lower()]
    if not matches:
        raise DeviceError(f"--audio-device {device!r}: no input device name contains it; {describe_devices(devices)}")
    if len(matches) > 1:
        log.info("--audio-device %r matches %d devices; using [%d] %s", device, len(matches), matches[0].index,
                 matches[0].name)
    return matches[0]


class CaptureSource:
    """Live input from a PortAudio device (see module docstring).

    ``channels``: 1-based adjacent input channels to mix to mono, e.g. ``(1, 2)`` (default: all of
    the device's channels, up to 2), or a single channel ``(2,)``. ``samplerate`` in Hz,
    ``blocksize`` in frames per callback (256 = 5.3 ms at 48 kHz), ``retry_s`` seconds between
    reopen attempts after the device is lost; ``stall_s`` without a callback (after
    ``startup_grace_s`` for a fresh stream) counts as lost.
    """

    kind = "capture"

    def __init__(self, device: str | int | None = None, *, channels: tuple[int, ...] | None = None,
                 samplerate: int = 48000, blocksize: int = 256, latency: str | float = "low",
                 retry_s: float = 3.0, ring_s: float = 4.0, stall_s: float = 1.0,
                 startup_grace_s: float = 2.0) -> None:
        if samplerate <= 0:
            raise DeviceError(f"--samplerate must be positive, got {samplerate}")
        if blocksize <= 0:
            raise DeviceError(f"--blocksize must be positive, got {blocksize}")
        if channels is not None:
            channels = tuple(int(c) for c in channels)
            if not channels or min(channels) < 1 or list(channels) != list(range(channels[0], channels[-1] + 1)):
                raise DeviceError(f"--channels must be adjacent 1-based channel numbers like 1,2 or 3, got {channels}")
        self.device_spec = device
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize)
        self.latency = latency
        self.retry_s = retry_s
        self.stall_s = stall_s
        self.startup_grace_s = startup_grace_s
        self._opened_at = time.monotonic()
        self._channels_req = channels
        self.ring = RingBuffer(int(ring_s * self.samplerate))
        self.input_overflows = 0
        self.device_name = "?"
        self._stream = None
        self._first_ch = 0
        self._n_ch = 1
        self._last_cb = time.monotonic()
        self._last_arrival: float | None = None
        self._ok = False
        self._state = "starting"
        self._status_key: tuple = ()
        self._status = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open(self._resolve())  # errors here are the user's: a clear DeviceError
        self._thread = threading.Thread(target=self._supervise, name="vj-audio-supervisor", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- stream management
    def _resolve(self) -> InputDevice:
        return find_input_device(self.device_spec)

    def _open(self, dev: InputDevice) -> None:
        sd = _sd()
        if self._channels_req is None:
            self._first_ch, self._n_ch = 0, min(2, dev.channels)
        else:
            if self._channels_req[-1] > dev.channels:
                raise DeviceError(f"--channels {self._channels_req}: device {dev.name!r} has only {dev.channels}")
            self._first_ch, self._n_ch = self._channels_req[0] - 1, len(self._channels_req)
        open_channels = self._first_ch + self._n_ch
        try:
            stream = sd.InputStream(device=dev.index, channels=open_channels, samplerate=self.samplerate,
                                    blocksize=self.blocksize, dtype="float32", latency=self.latency,
                                    callback=self._callback)
            stream.start()
        except Exception as exc:
            raise DeviceError(f"cannot open audio input [{dev.index}] {dev.name!r} at {self.samplerate} Hz: {exc}") \
                from exc
        self.device_name = dev.name
        self._opened_at = self._last_cb = time.monotonic()
        with self._lock:
            self._stream = stream
            self._ok = True
            self._state = "running"
        log.info("audio input: [%d] %s (%s), %d Hz, block %d, channels %d..%d mixed", dev.index, dev.name,
                 dev.hostapi, self.samplerate, self.blocksize, self._first_ch + 1, open_channels)

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio thread: copy and count, nothing else
        if status.input_overflow:
            self.input_overflows += 1
        self.ring.write_mix(indata, self._first_ch, self._n_ch)
        self._last_cb = time.monotonic()
        self._last_arrival = time.perf_counter()

    def _close_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception as exc:
                log.debug("closing the lost stream: %s", exc)

    def _supervise(self) -> None:
        next_retry = 0.0
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if self._ok:
                stream = self._stream
                # a fresh stream may take a moment before its first callback
                stalled = now - max(self._last_cb, self._opened_at + self.startup_grace_s) > self.stall_s
                dead = stream is None or not stream.active
                if stalled or dead:
                    reason = "stopped" if dead else f"no audio for {now - self._last_cb:.1f} s"
                    log.warning("audio input %r lost (%s); retrying every %g s", self.device_name, reason,
                                self.retry_s)
                    self._ok = False
                    self._state = "device lost, retrying"
                    self._close_stream()
                    next_retry = now + self.retry_s
            elif now >= next_retry:
                next_retry = now + self.retry_s
                try:
                    refresh_devices()
                    self._open(self._resolve())
                    log.info("audio input %r is back", self.device_name)
                except Exception as exc:
                    self._state = "device lost, retrying"
                    log.debug("audio input retry failed: %s", exc)

    # -------------------------------------------------------------- source interface
    @property
    def host_api(self) -> str | None:
        """The host API the input stream runs on (None while there is none)."""
        from vjengine.audio.sources import stream_host_api  # noqa: PLC0415

        return stream_host_api(self._stream)

    @property
    def ok(self) -> bool:
        """True while the device delivers audio."""
        return self._ok

    @property
    def last_arrival_s(self) -> float | None:
        """``time.perf_counter()`` when the newest block arrived (None before the first)."""
        return self._last_arrival

    @property
    def overruns(self) -> int:
        """Device overflows plus samples the render thread lost by falling behind the ring."""
        return self.input_overflows + self.ring.overruns

    @property
    def status(self) -> str:
        key = (self._ok, self._state, self.device_name, self.overruns)
        if key != self._status_key:  # built only when it changes (read every frame)
            self._status_key = key
            if not self._ok:
                self._status = f"{self.device_name}: {self._state}"
            else:
                self._status = f"{self.device_name} {self.samplerate / 1000:g} kHz, {self.overruns} overruns"
        return self._status

    def read(self) -> np.ndarray:
        """Samples captured since the previous read (mono float32)."""
        return self.ring.read()

    def close(self) -> None:
        self._stop.set()
        self._close_stream()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        self._ok = False
        self._state = "closed"
