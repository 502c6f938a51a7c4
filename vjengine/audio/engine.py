"""`AudioEngine`: the façade the frame loop uses on the render thread.

Once per video frame, ``poll(now_s)`` drains the source, analyses every complete hop that arrived
(so beat timing does not depend on the frame rate) and returns an :class:`AudioFrame`. The same
:class:`~vjengine.audio.analyzer.Analyzer` runs for live capture, file playback and offline render
(``feed`` exactly the samples up to the next frame time, then ``poll``), so a replay or an offline
render reproduces the show's analysis.

``poll`` never raises: on an error it logs once and returns the last good frame. While the source
is lost it analyses silence for the elapsed render time, so features decay and the beat clock
free-runs; analysis resumes on the real input when the device returns.

Live, ``start_thread()`` moves the reading and analysis to a ``vj-audio`` thread that wakes every
``ANALYSIS_PERIOD_S``; ``poll`` then only takes the snapshot, and only if the analysis is not in the
middle of a batch (it never waits for it: the last frame is returned, and its events come with the
next). Taps, tempo and resync are handed to the thread. Offline render and replay stay in line.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np

from vjengine.audio.analyzer import AnalysisConfig, Analyzer
from vjengine.audio.capture import CaptureSource
from vjengine.audio.frame import AudioFrame
from vjengine.audio.sources import FileSource, PushSource, open_source
from vjengine.logonce import LogOnce

__all__ = ["AudioEngine", "CaptureSource", "FileSource", "PushSource", "open_source"]

log = logging.getLogger(__name__)

#: at most this much silence is synthesised per poll while the input is lost (s)
_MAX_FILL_S = 0.5
#: the beat clock is shown half a frame ahead (so a beat flags on its nearest frame), at most this (s)
_MAX_LOOKAHEAD_S = 0.025
#: the analysis thread reads and analyses new audio this often (s): about one hop
ANALYSIS_PERIOD_S = 0.005


class AudioEngine:
    """Source + analysis + snapshot (see module docstring).

    ``latency_ms``: output latency compensation; beats and beat phase run this much early so they
    land when the projector shows them (0..500 ms).
    """

    def __init__(self, source, *, config: AnalysisConfig | None = None, latency_ms: float = 0.0) -> None:
        self.source = source
        self.analyzer = Analyzer(source.samplerate, config)
        self.latency_ms = latency_ms
        self._frame = AudioFrame.silent(source.status)
        self._last_now: float | None = None
        self._once = LogOnce(log)
        self._was_ok = True
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the analyzer's state: the thread analyses, poll snapshots
        self._stop = threading.Event()
        self._ops: collections.deque = collections.deque()  # tap / bpm / resync for the thread
        self._ok = True
        self._analysed_at: float | None = None
        self.skipped_snapshots = 0  # polls that found the analysis busy and returned the last frame

    @classmethod
    def offline(cls, samplerate: int, **kwargs) -> "AudioEngine":
        """An engine on a :class:`PushSource` (offline render, tests, replay)."""
        return cls(PushSource(samplerate), **kwargs)

    @property
    def samplerate(self) -> int:
        return self.source.samplerate

    @property
    def latency_ms(self) -> float:
        return self.analyzer.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 500.0:
            raise ValueError(f"latency_ms must be within 0..500, got {value}")
        self.analyzer.latency_ms = value

    @property
    def status(self) -> str:
        """One line for the HUD and the log."""
        try:
            return self.source.status
        except Exception as exc:  # a source must never break the HUD
            return f"audio status unavailable: {exc}"

    @property
    def frame(self) -> AudioFrame:
        """The last snapshot ``poll`` returned."""
        return self._frame

    @property
    def last_arrival_s(self) -> float | None:
        """``time.perf_counter()`` when the newest audio reached the source (None if it cannot say)."""
        return getattr(self.source, "last_arrival_s", None)

    def feed(self, samples: np.ndarray) -> None:
        """Push samples (only for a :class:`PushSource`: the offline renderer's fixed-step clock)."""
        if not isinstance(self.source, PushSource):
            raise TypeError(f"feed() needs a PushSource, this engine reads a {type(self.source).__name__}")
        self.source.feed(samples)

    def start_thread(self) -> None:
        """Read and analyse on a ``vj-audio`` thread from now on (live shows; see the module docstring)."""
        if self._thread is not None or isinstance(self.source, PushSource):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._analysis_loop, name="vj-audio", daemon=True)
        self._thread.start()

    def _analysis_loop(self) -> None:
        while not self._stop.wait(ANALYSIS_PERIOD_S):
            with self._lock:
                try:
                    while self._ops:
                        op, value = self._ops.popleft()
                        if op == "tap":
                            self.analyzer.tap(self.analyzer.time_s)
                        elif op == "bpm":
                            self.analyzer.set_bpm(value)
                        else:
                            self.analyzer.resync()
                    now = time.perf_counter()
                    self._ok = self._analyse(now, self._analysed_at)
                    self._analysed_at = now
                except Exception as exc:  # noqa: BLE001 - never ends the thread: log once, go on
                    self._once(type(exc).__name__ + str(exc)[:80], "audio analysis failed: %s", exc, exc=exc)

    def _analyse(self, now_s: float | None, last_s: float | None) -> bool:
        """Read the source and analyse what came (silence for the time passed while it is lost)."""
        samples = self.source.read()
        ok = bool(self.source.ok)
        if ok != self._was_ok:
            log.warning("audio input: %s", self.status)
            self._was_ok = ok
        if samples.size == 0 and not ok and now_s is not None and last_s is not None \
                and not getattr(self.source, "finished", False):
            # input lost: let the features decay and the clock free-run on silence
            gap_s = min(_MAX_FILL_S, max(0.0, now_s - last_s))
            samples = np.zeros(int(gap_s * self.samplerate), dtype=np.float32)
        if samples.size:
            self.analyzer.process(samples)
        return ok

    def poll(self, now_s: float | None = None) -> AudioFrame:
        """Analyse all new audio and return the snapshot (render thread, once per frame)."""
        if self._thread is not None:
            return self._poll_threaded(now_s)
        try:
            ok = self._analyse(now_s, self._last_now)
            lookahead_s = 0.0
            if now_s is not None and self._last_now is not None:
                lookahead_s = min(_MAX_LOOKAHEAD_S, max(0.0, 0.5 * (now_s - self._last_now)))
            self._frame = self.analyzer.snapshot(input_ok=ok, input_status=self.status, lookahead_s=lookahead_s)
        except Exception as exc:  # the frame loop never raises: log once, keep the last good frame
            self._once(type(exc).__name__ + str(exc)[:80], "audio analysis failed; keeping the last frame: %s",
                       exc, exc=exc)
        if now_s is not None:
            self._last_now = now_s
        return self._frame

    def _poll_threaded(self, now_s: float | None) -> AudioFrame:
        if self._lock.acquire(blocking=False):  # never wait for a batch in progress
            try:
                lookahead_s = 0.0
                if now_s is not None and self._last_now is not None:
                    lookahead_s = min(_MAX_LOOKAHEAD_S, max(0.0, 0.5 * (now_s - self._last_now)))
                self._frame = self.analyzer.snapshot(input_ok=self._ok, input_status=self.status,
                                                     lookahead_s=lookahead_s)
            except Exception as exc:  # noqa: BLE001 - the frame loop never raises
                self._once(type(exc).__name__ + str(exc)[:80], "audio analysis failed; keeping the last frame: %s",
                           exc, exc=exc)
            finally:
                self._lock.release()
        else:
            self.skipped_snapshots += 1
        if now_s is not None:
            self._last_now = now_s
        return self._frame

    def tap(self, now_s: float | None = None) -> None:
        """Tap tempo: call on each tap (two or more set the tempo; the last tap is a beat)."""
        if self._thread is not None:
            self._ops.append(("tap", None))
            return
        t = self.analyzer.time_s
        if now_s is not None and self._last_now is not None:
            t += max(0.0, now_s - self._last_now)
        self.analyzer.tap(t)

    def set_bpm(self, bpm: float | None) -> None:
        """Manual tempo in BPM, or ``None`` to go back to automatic tempo."""
        if self._thread is not None:
            self._ops.append(("bpm", bpm))
            return
        self.analyzer.set_bpm(bpm)

    def resync(self) -> None:
        """The nearest beat becomes the downbeat (beat 1 of the bar)."""
        if self._thread is not None:
            self._ops.append(("resync", None))
            return
        self.analyzer.resync()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self.source.close()
        except Exception as exc:
            log.debug("closing the audio source: %s", exc)

    def __enter__(self) -> "AudioEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
