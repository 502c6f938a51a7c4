"""Reading named features from an :class:`~vjengine.audio.frame.AudioFrame`.

Presets name their inputs (``feature = "bass"``); this module is the one place that knows how those
names map onto the snapshot's fields, so a preset is validated against :data:`FEATURES` at load
time and the frame loop never meets an unknown name.

All continuous features are normalised 0..1 by the audio engine. Pulses (``kick``, ``onset``,
``beat``) are 1.0 on the frame where the event happened, else 0.0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# name -> help text. Band names follow the audio engine's default five bands.
BAND_NAMES: tuple[str, ...] = ("sub", "bass", "low_mid", "high_mid", "high")

FEATURES: dict[str, str] = {
    "rms": "loudness 0..1 (adaptive gain, gated)",
    "level": "alias of rms",
    "sub": "sub band energy 0..1",
    "bass": "bass band energy 0..1",
    "low_mid": "low-mid band energy 0..1",
    "high_mid": "high-mid band energy 0..1",
    "high": "high band energy 0..1",
    "centroid": "spectral centroid 0..1 (brightness)",
    "flux": "spectral-flux onset strength 0..1",
    "onset": "1 on a frame with an onset, else 0",
    "kick": "1 on a frame with a kick, else 0",
    "beat": "1 on a frame where a beat fell, else 0",
    "downbeat": "1 on a frame where a bar started, else 0",
    "beat_phase": "0..1 through the current beat",
    "bar_phase": "0..1 through the current bar",
    "one": "constant 1 (for fixed speeds)",
    **{f"chroma{i}": f"chroma bin {i} (C=0) 0..1" for i in range(12)},
}

TRIGGERS: tuple[str, ...] = ("kick", "onset", "beat", "downbeat")


def _get(frame: Any, *names: str, default: Any = 0.0) -> Any:
    for name in names:
        value = getattr(frame, name, None)
        if value is not None:
            return value
    return default


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def bands(frame: Any) -> np.ndarray:
    """The normalised band energies (float64, low to high)."""
    value = _get(frame, "bands", default=())
    arr = np.asarray(value, dtype=np.float64).ravel()
    return np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)


def spectrum(frame: Any) -> np.ndarray:
    """The finest spectrum the frame carries (its ``spectrum`` if any, else the bands)."""
    value = getattr(frame, "spectrum", None)
    if value is not None and len(value) > 0:
        arr = np.asarray(value, dtype=np.float64).ravel()
        return np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    return bands(frame)


def read_feature(frame: Any, name: str) -> float:
    """The value of feature ``name`` (one of :data:`FEATURES`) in ``frame``; never raises."""
    if name == "one":
        return 1.0
    if name in ("rms", "level"):
        return _finite(_get(frame, "rms"))
    if name in BAND_NAMES:
        b = bands(frame)
        names = tuple(getattr(frame, "band_names", None) or BAND_NAMES)
        if name in names:
            i = names.index(name)
            return float(b[i]) if i < len(b) else 0.0
        return 0.0
    if name.startswith("chroma"):
        c = _get(frame, "chroma", default=())
        i = int(name[6:])
        return _finite(c[i]) if i < len(c) else 0.0
    if name == "flux":
        return _finite(_get(frame, "flux", "onset_strength"))
    if name == "centroid":
        return _finite(_get(frame, "centroid"))
    if name in ("onset", "kick", "beat", "downbeat"):
        return 1.0 if bool(_get(frame, name, default=False)) else 0.0
    if name == "beat_phase":
        return _finite(_get(frame, "beat_phase"))
    if name == "bar_phase":
        return _finite(_get(frame, "bar_phase"))
    return _finite(getattr(frame, name, 0.0))


def beats_elapsed(frame: Any) -> float:
    """Beats since the beat clock started, continuous (beat count + phase)."""
    return _finite(_get(frame, "beat_count")) + _finite(_get(frame, "beat_phase"))


def beats_per_bar(frame: Any) -> int:
    n = int(_finite(_get(frame, "beats_per_bar", default=4)))
    return n if n > 0 else 4


def bars_elapsed(frame: Any) -> float:
    """Bars since the beat clock started, continuous."""
    return beats_elapsed(frame) / beats_per_bar(frame)
