"""Test helpers: feed signals to the analysis the way the live engine does, and collect the results."""

from __future__ import annotations

import numpy as np

from vjengine.audio.analyzer import AnalysisConfig, Analyzer
from vjengine.audio.engine import AudioEngine


def analyse(samples: np.ndarray, sr: int, *, block: int = 256, config: AnalysisConfig | None = None,
            latency_ms: float = 0.0) -> Analyzer:
    """Feed ``samples`` in ``block``-sized pieces (like a device callback) to a recording Analyzer."""
    a = Analyzer(sr, config, record=True)
    a.latency_ms = latency_ms
    for i in range(0, samples.size, block):
        a.process(samples[i:i + block])
    return a


def frames_at_fps(samples: np.ndarray, sr: int, fps: float, *, latency_ms: float = 0.0) -> list:
    """Poll an offline AudioEngine once per video frame, feeding exactly the samples up to each frame."""
    engine = AudioEngine.offline(sr, latency_ms=latency_ms)
    out = []
    fed = 0
    n_frames = int(samples.size / sr * fps)
    for k in range(1, n_frames + 1):
        upto = min(samples.size, int(round(k / fps * sr)))
        engine.feed(samples[fed:upto])
        fed = upto
        out.append(engine.poll(k / fps))
    return out


def nearest_errors_s(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """For each estimated time, the signed distance to the nearest reference time."""
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    idx = np.clip(np.searchsorted(ref, est), 1, ref.size - 1)
    left, right = ref[idx - 1], ref[idx]
    return np.where(np.abs(est - left) < np.abs(est - right), est - left, est - right)
