"""Reading named features from an :class:`~vjengine.audio.frame.AudioFrame`.

Presets name their inputs (``feature = "bass"``); this module is the one place that knows how those
names map onto the snapshot's fields, so a preset is validated against :data:`FEATURES` at load
time and the frame loop never meets an unknown name.

Continuous features are 0..1 (the audio engine's adaptive gain and gate). Pulses (``kick``,
``onset``, ``beat``, ``downbeat``, ``chord_change``) are 1.0 on the frame where the event happened, else 0.0; the
``*_env`` features are their decaying envelopes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BAND_NAMES: tuple[str, ...] = ("sub", "bass", "low_mid", "mid", "high_mid", "high")

FEATURES: dict[str, str] = {
    "rms": "loudness 0..1 (the frame's `level`: adaptive gain, gate, envelope)",
    "level": "alias of rms",
    **{b: f"{b} band energy 0..1" for b in BAND_NAMES},
    "centroid": "spectral centroid 0..1 (brightness, log 100 Hz..10 kHz)",
    "flux": "spectral-flux onset strength 0..1",
    "onset": "1 on a frame with an onset, else 0",
    "kick": "1 on a frame with a kick, else 0",
    "beat": "1 on a frame where a beat fell (clock locked), else 0",
    "downbeat": "1 on a frame where a bar started, else 0",
    "onset_env": "onset envelope 0..1 (1 at an onset, then decays)",
    "kick_env": "kick envelope 0..1",
    "beat_env": "beat envelope 0..1 (1 at the beat, decays over the beat)",
    "beat_phase": "0..1 through the current beat",
    "bar_phase": "0..1 through the current bar",
    "confidence": "beat clock confidence 0..1",
    "one": "constant 1 (for fixed speeds)",
    **{f"chroma{i}": f"chroma bin {i} (C=0) 0..1" for i in range(12)},
    "key": "the key's tonic 0..1 (pitch class / 12, C = 0)",
    "mode": "1 in a major key, 0 in a minor key",
    "key_confidence": "how clearly the key stands out 0..1",
    "chord_root": "the chord's root 0..1 (pitch class / 12, C = 0)",
    "chord_minor": "1 on a minor chord, 0 on a major one",
    "chord_confidence": "how clearly the chord stands out 0..1",
    "chord_change": "1 on a frame where the chord changed, else 0",
    "harmony_hue": "the chord on the circle of fifths 0..1 (minor with its relative major): a colour wheel",
    "drums": "percussive level 0..1 (HPSS)",
    "harmonic": "harmonic (sustained) level 0..1 (HPSS)",
    **{f"stem_{n}": f"level 0..1 of the {n} stem (live: HPSS drums/harmonic; `vj render --stems`: the "
                    "separated stems)" for n in ("drums", "harmonic", "bass", "vocals", "other")},
}

TRIGGERS: tuple[str, ...] = ("kick", "onset", "beat", "downbeat", "chord_change")

_FIELDS = {
    "rms": "level", "level": "level", "centroid": "centroid", "flux": "onset_strength",
    "onset_env": "onset_env", "kick_env": "kick_env", "beat_env": "beat_env",
    "beat_phase": "beat_phase", "bar_phase": "bar_phase", "confidence": "confidence",
    "key_confidence": "key_confidence", "chord_confidence": "chord_confidence", "harmony_hue": "harmony_hue",
    "drums": "drums", "harmonic": "harmonic",
}
_PULSES = {"onset": "onset", "kick": "kick", "beat": "beat", "downbeat": "bar", "chord_change": "chord_change"}


def _pitch(value: Any) -> int:
    """A key or chord index (0..23; -1 none) -> its root 0..11, or -1."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        return -1
    return v % 12 if 0 <= v < 24 else -1


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def bands(frame: Any) -> np.ndarray:
    """The band energies, low to high (float64)."""
    b = getattr(frame, "bands", None) or {}
    names = getattr(frame, "band_names", None) or tuple(b)
    return np.array([_finite(b.get(n, 0.0)) for n in names], dtype=np.float64)


def read_feature(frame: Any, name: str) -> float:
    """The value of feature ``name`` (one of :data:`FEATURES`) in ``frame``; never raises."""
    if name == "one":
        return 1.0
    attr = _FIELDS.get(name)
    if attr is not None:
        return _finite(getattr(frame, attr, 0.0))
    pulse = _PULSES.get(name)
    if pulse is not None:
        return 1.0 if getattr(frame, pulse, False) else 0.0
    if name in ("key", "mode", "chord_root", "chord_minor"):
        idx = getattr(frame, "chord" if name.startswith("chord") else "key", -1)
        root = _pitch(idx)
        if root < 0:
            return 0.0
        if name in ("key", "chord_root"):
            return root / 12.0
        minor = int(idx) >= 12
        return float(not minor) if name == "mode" else float(minor)
    if name.startswith("stem_"):
        stems = getattr(frame, "stems", None) or {}
        return _finite(stems.get(name[5:], 0.0))
    if name.startswith("chroma"):
        c = getattr(frame, "chroma", ()) or ()
        i = int(name[6:])
        return _finite(c[i]) if i < len(c) else 0.0
    b = getattr(frame, "bands", None)
    if b is not None and name in b:
        return _finite(b[name])
    return _finite(getattr(frame, name, 0.0))


def beats_elapsed(frame: Any) -> float:
    """Beats since the beat clock started, continuous (beat count + phase)."""
    return _finite(getattr(frame, "beat_count", 0)) + _finite(getattr(frame, "beat_phase", 0.0))


def beats_per_bar(frame: Any) -> int:
    n = int(_finite(getattr(frame, "beats_per_bar", 4)))
    return n if n > 0 else 4


def bars_elapsed(frame: Any) -> float:
    """Bars since the beat clock started, continuous (bar count + bar phase)."""
    n = beats_per_bar(frame)
    beat_count = int(_finite(getattr(frame, "beat_count", 0)))
    in_bar = int(_finite(getattr(frame, "beat_in_bar", beat_count % n)))
    bar_index = (beat_count - in_bar) // n
    return bar_index + _finite(getattr(frame, "bar_phase", 0.0))


class FrameAhead:
    """``frame`` as it would read ``beats`` beats later with the audio unchanged: the beat clock
    (``beat_count``, ``beat_phase``, ``beat_in_bar``, ``bar_phase``) advanced, pulses off, every other
    field the frame's own. For looking ahead (:meth:`~vjengine.mapping.mapper.Mapper.predict`)."""

    def __init__(self, frame: Any, beats: float) -> None:
        self._frame = frame
        n = beats_per_bar(frame)
        total = beats_elapsed(frame) + max(0.0, _finite(beats))
        count = int(math.floor(total))
        old_count = int(_finite(getattr(frame, "beat_count", 0)))
        in_bar = (int(_finite(getattr(frame, "beat_in_bar", old_count % n))) + count - old_count) % n
        self.beat_count = count
        self.beat_phase = total - count
        self.beat_in_bar = in_bar
        self.bar_phase = (in_bar + self.beat_phase) / n
        self.beat = self.bar = self.onset = self.kick = self.chord_change = False

    def __getattr__(self, name: str) -> Any:  # everything not advanced: the frame's own
        return getattr(self._frame, name)
