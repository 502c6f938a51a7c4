"""Audio sources besides live capture: a file played in real time, and a push source for offline
rendering. All sources offer the same small interface the :class:`~vjengine.audio.engine.AudioEngine`
uses: ``samplerate``, ``read() -> mono float32``, ``ok``, ``status``, ``close()``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vjengine.audio.ring import RingBuffer
from vjengine.errors import DeviceError, VJError

log = logging.getLogger(__name__)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC/OGG file as mono float32 (channels averaged) and its sample rate in Hz."""
    import soundfile

    p = Path(path)
    if not p.is_file():
        raise VJError(f"audio file {str(p)!r} does not exist")
    try:
        data, sr = soundfile.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:
        raise VJError(f"cannot read audio file {str(p)!r}: {exc}") from exc
    if data.shape[0] == 0:
        raise VJError(f"audio file {str(p)!r} has no samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


class FileSource:
    """A WAV/FLAC file with the capture interface.

    ``realtime=True``: samples become available as wall-clock time passes (like a device);
    ``realtime=False``: each ``read()`` returns the next ``chunk_s`` seconds at once (analysis as fast
    as possible). ``monitor=True`` plays the file to the default output; the analysis then reads
    exactly the samples the output callback played, each once the output's latency has passed (when
    it is heard), so the picture follows what the room hears. ``loop=True`` starts over at the end.
    """

    kind = "file"

    def __init__(self, path: str | Path, *, realtime: bool = True, monitor: bool = False, loop: bool = False,
                 chunk_s: float = 1.0, blocksize: int = 256) -> None:
        self.path = Path(path)
        self.samples, self.samplerate = load_audio(self.path)
        self.realtime = realtime
        self.loop = loop
        self.monitor = monitor
        self._chunk = max(1, int(chunk_s * self.samplerate))
        self._pos = 0          # next sample to deliver (absolute; wraps when looping)
        self._delivered = 0    # total samples delivered
        self._t0: float | None = None
        self._finished = False
        self._stream = None
        self._ring: RingBuffer | None = None
        self.output_latency_s = 0.0  # monitor: from the callback's samples to the speaker
        self._status_for = ""
        self._status = ""
        if monitor:
            self._start_monitor(blocksize)

    def _start_monitor(self, blocksize: int) -> None:
        import sounddevice as sd

        self._ring = RingBuffer(4 * self.samplerate)
        self._play_pos = 0
        self._play_lock = threading.Lock()

        def callback(outdata, frames, time_info, status):
            block = self._take(frames)
            outdata[: block.size, 0] = block
            outdata[block.size:, 0] = 0.0
            if outdata.shape[1] > 1:
                outdata[:, 1:] = outdata[:, :1]
            self._ring.write(block)

        try:
            self._stream = sd.OutputStream(samplerate=self.samplerate, channels=2, blocksize=blocksize,
                                           dtype="float32", callback=callback, latency="low")
            self.output_latency_s = max(0.0, float(self._stream.latency))
            self._stream.start()
        except Exception as exc:
            raise DeviceError(f"cannot open an audio output to monitor {str(self.path)!r}: {exc}") from exc

    @property
    def host_api(self) -> str | None:
        """The host API the monitor plays through (None when not playing)."""
        return stream_host_api(self._stream)

    def _take(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the file (fewer at the end when not looping)."""
        total = self.samples.size
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        if not self.loop:
            out = self.samples[self._pos:self._pos + n]
            self._pos += out.size
            if self._pos >= total:
                self._finished = True
            return out
        idx = (self._pos + np.arange(n)) % total
        self._pos = (self._pos + n) % total
        return self.samples[idx]

    @property
    def ok(self) -> bool:
        return not self._finished

    @property
    def last_arrival_s(self) -> float | None:
        """``time.perf_counter()`` when the newest delivered sample became due (real-time mode)."""
        if self._t0 is None or not self._delivered:
            return None
        return self._t0 + self._delivered / self.samplerate

    @property
    def delivered(self) -> int:
        """Samples handed to the analysis so far."""
        return self._delivered

    @property
    def played(self) -> int:
        """Samples sent to the output so far (``monitor``; 0 otherwise)."""
        return 0 if self._ring is None else self._ring.written

    @property
    def finished(self) -> bool:
        """True once a non-looping file has been delivered completely."""
        return self._finished

    @property
    def status(self) -> str:
        state = "ended" if self._finished else (
            f"playing to the output ({self.output_latency_s * 1000:.0f} ms)" if self.monitor else "playing")
        if self._status_for != state:  # built only when it changes (read every frame)
            self._status_for = state
            self._status = f"file {self.path.name} {self.samplerate / 1000:g} kHz, {state}"
        return self._status

    def read(self) -> np.ndarray:
        if self._ring is not None:  # what the output played, once it is heard
            out = self._ring.read(upto=self._ring.written - round(self.output_latency_s * self.samplerate))
        elif not self.realtime:
            out = self._take(self._chunk)
        else:
            now = time.perf_counter()
            if self._t0 is None:
                self._t0 = now
            due = int((now - self._t0) * self.samplerate) - self._delivered
            out = self._take(max(0, due)) if due > 0 else np.zeros(0, dtype=np.float32)
        self._delivered += out.size
        return out

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception as exc:
                log.debug("closing the monitor stream: %s", exc)
            self._stream = None


class PushSource:
    """Samples pushed by the caller (offline render, tests, replay): ``feed(samples)`` then poll."""

    kind = "push"

    def __init__(self, samplerate: int) -> None:
        if samplerate <= 0:
            raise ValueError(f"samplerate must be positive, got {samplerate}")
        self.samplerate = int(samplerate)
        self._parts: list[np.ndarray] = []
        self.fed = 0
        self._status = f"offline {self.samplerate / 1000:g} kHz"

    def feed(self, samples: np.ndarray) -> None:
        """Queue mono samples (a ``[n]`` array, or ``[n, ch]`` which is averaged to mono)."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        self._parts.append(x.reshape(-1))
        self.fed += x.size

    @property
    def ok(self) -> bool:
        return True

    @property
    def status(self) -> str:
        return self._status

    def read(self) -> np.ndarray:
        if not self._parts:
            return np.zeros(0, dtype=np.float32)
        out = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
        self._parts = []
        return out

    def close(self) -> None:
        self._parts = []


def stream_host_api(stream: Any) -> str | None:
    """The PortAudio host API a sounddevice stream runs on ("JACK Audio Connection Kit", "ALSA", ...);
    None without a stream or when it cannot be told."""
    if stream is None:
        return None
    try:
        import sounddevice as sd

        dev = stream.device
        if isinstance(dev, (tuple, list)):
            dev = dev[-1]
        return str(sd.query_hostapis(sd.query_devices(dev)["hostapi"])["name"])
    except Exception:  # noqa: BLE001 - only informative
        return None


def has_output_device() -> bool:
    """Whether PortAudio has a default output (speakers, headphones) to play a file to."""
    try:
        import sounddevice as sd

        return bool(sd.query_devices(kind="output"))
    except Exception:  # noqa: BLE001 - no PortAudio, no device: nothing to play to
        return False


def open_source(device: str | int | None = None, file: str | Path | None = None, *,
                demo_audio: str | Path | None = None, samplerate: int = 48000, blocksize: int = 256,
                channels: tuple[int, ...] | None = None, monitor: bool = False, loop: bool = False):
    """The source a show asks for: ``file`` if given, else the capture ``device``.

    With no input device at all (and no specific device requested), logs what exists and falls
    back to ``demo_audio`` (looped; monitored if ``monitor``). A named device that does not exist
    is the user's mistake: :class:`DeviceError` listing the devices.
    """
    from vjengine.audio.capture import CaptureSource, describe_devices, describe_everything, list_input_devices

    if file is not None:
        return FileSource(file, realtime=True, monitor=monitor, loop=loop, blocksize=blocksize)
    devices = list_input_devices()
    if not devices and device in (None, ""):
        msg = describe_devices(devices) + "; " + describe_everything()
        if demo_audio is None:
            raise DeviceError(f"{msg}; plug in an audio interface or pass --audio-file")
        log.warning("%s; playing the demo audio %s instead (use --audio-device or --audio-file)", msg, demo_audio)
        return FileSource(demo_audio, realtime=True, monitor=monitor, loop=True, blocksize=blocksize)
    if not devices:
        raise DeviceError(f"--audio-device {device!r}: {describe_devices(devices)}")
    return CaptureSource(device, channels=channels, samplerate=samplerate, blocksize=blocksize)
