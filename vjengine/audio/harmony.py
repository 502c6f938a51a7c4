"""Key and chord estimation from the analysis chroma, by template matching (no model, no download).

Both run on the 12-bin chroma the analyser already computes (C = 0):

- **Chord**: the chroma averaged over ``chord_window_s`` (about a beat) matched (cosine) against 24
  triad templates built from harmonic tones (each note with its first partials folded onto pitch
  classes), so the fifth and third that real and synthetic tones put above every note do not pull
  the answer. A new chord replaces the current one only when it scores ``switch_margin`` better
  (hysteresis); ``chord_change`` pulses on that frame. Music that matches no triad well holds the
  last chord with confidence 0; only silence gives "no chord" (-1).
- **Key**: what the key hears is mostly the notes of the recognised chords (3/4) and a little of the
  raw chroma (1/4), averaged over the last few seconds (an exponential window, ``key_window_s``) and
  correlated with the 24 Krumhansl-Kessler key profiles (12 major, 12 minor). The analyser's chroma
  smears low notes (its FFT resolves ~20 Hz, a semitone below ~350 Hz): raw chroma took C minor for C
  major half the time on synthetic pads; the chords, matched robustly, name the notes cleanly.
  Confidence is the margin of the best correlation over the runner-up, scaled to 0..1.
- **Hue**: the chord's place on the circle of fifths (a minor chord sits with its relative major, so
  C and A minor share a colour), followed by a circular one-pole filter (``hue_smooth_s``) so the
  colour turns the short way round the wheel.

:class:`HarmonyTracker` is the causal, per-frame tracker (live, render, OSC out; never raises on
odd input); :func:`analyze_chroma` runs it over a chroma sequence offline (``vj analyze``, tests,
the benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# pitch classes of the first partials above a note's fundamental (octaves, fifth, third, ...), with
# the amplitude a plain harmonic tone gives them (1/k)
_PARTIALS = ((0, 1.0), (0, 1 / 4), (7, 1 / 9), (0, 1 / 16), (4, 1 / 25), (7, 1 / 36))


def _key_profiles() -> np.ndarray:
    """``[24, 12]`` zero-mean unit profiles: rows 0..11 major keys on C..B, 12..23 minor keys."""
    rows = [np.roll(p, k) for p in (_KK_MAJOR, _KK_MINOR) for k in range(12)]
    m = np.array(rows, dtype=np.float64)
    m -= m.mean(axis=1, keepdims=True)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _chord_templates() -> np.ndarray:
    """``[24, 12]`` unit-norm triad templates from harmonic tones: 0..11 major, 12..23 minor."""
    rows = []
    for third in (4, 3):
        for root in range(12):
            t = np.zeros(12)
            for interval in (0, third, 7):
                for offset, amp in _PARTIALS:
                    t[(root + interval + offset) % 12] += amp
            rows.append(t)
    m = np.array(rows, dtype=np.float64)
    m -= m.mean(axis=1, keepdims=True)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


KEY_PROFILES = _key_profiles()
CHORD_TEMPLATES = _chord_templates()
# position of each pitch class on the circle of fifths (C 0, G 1, D 2, ... F 11)
FIFTHS = np.array([(7 * pc) % 12 for pc in range(12)])
_FIFTHS_POS = np.argsort(FIFTHS)  # pitch class -> step on the circle: _FIFTHS_POS[7] == 1


def key_name(index: int) -> str:
    """``"C major"`` .. ``"B minor"`` for a key index 0..23 (-1: ``"none"``)."""
    if index < 0:
        return "none"
    return f"{PITCH_NAMES[index % 12]} {MODES[index // 12]}"


def chord_name(index: int) -> str:
    """``"C"``, ``"Am"`` ... for a chord index 0..23 (-1: ``"N"``, no chord)."""
    if index < 0:
        return "N"
    return PITCH_NAMES[index % 12] + ("" if index < 12 else "m")


def fifths_hue(root: int, minor: bool) -> float:
    """0..1 position of a chord or key on the circle of fifths; minor sits with its relative major."""
    major_root = (root + 3) % 12 if minor else root % 12
    return float(_FIFTHS_POS[major_root]) / 12.0


_TRIAD_SHARE = 0.75  # of what the key hears: the recognised chord's notes; the rest, the raw chroma
_TRIADS = np.zeros((24, 12))
for _i in range(24):
    _TRIADS[_i, [(_i + iv) % 12 for iv in (0, 3 if _i >= 12 else 4, 7)]] = 1.0 / 3.0
_HUE_ANGLE = [2.0 * math.pi * fifths_hue(i % 12, i >= 12) for i in range(24)]


def _zscore_corr(chroma: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    c = chroma - chroma.mean()
    n = float(np.linalg.norm(c))
    if n < 1e-9:
        return np.zeros(profiles.shape[0])
    return profiles @ (c / n)


@dataclass(frozen=True)
class HarmonyState:
    """What the tracker knows at one frame (see the module docstring)."""

    key: int = -1                 # 0..23 (major C..B, then minor C..B); -1 before enough music
    key_confidence: float = 0.0   # 0..1
    chord: int = -1               # 0..23 like ``key``; -1 no chord (silence, noise)
    chord_confidence: float = 0.0
    chord_change: bool = False    # the chord changed on this frame
    hue: float = 0.0              # 0..1 circle-of-fifths colour (smoothed)

    @property
    def key_root(self) -> int:
        return self.key % 12 if self.key >= 0 else 0

    @property
    def minor(self) -> bool:
        return self.key >= 12

    @property
    def chord_root(self) -> int:
        return self.chord % 12 if self.chord >= 0 else 0


class HarmonyTracker:
    """Causal key and chord tracker; call :meth:`update` once per frame with that frame's chroma."""

    def __init__(self, *, key_window_s: float = 6.0, chord_window_s: float = 0.35, switch_margin: float = 0.06,
                 min_chord_score: float = 0.45, hue_smooth_s: float = 0.5) -> None:
        self.key_window_s = key_window_s
        self.chord_window_s = chord_window_s
        self.switch_margin = switch_margin
        self.min_chord_score = min_chord_score
        self.hue_smooth_s = hue_smooth_s
        self.reset()

    def reset(self) -> None:
        self._key_acc = np.zeros(12)
        self._key_weight = 0.0
        self._chord_acc = np.zeros(12)
        self._hue_vec = (0.0, 0.0)
        self.state = HarmonyState()

    def update(self, chroma: Sequence[float], dt_s: float) -> HarmonyState:
        """Fold in one frame's chroma (12 values, any scale; all zero in silence) ``dt_s`` after the last.

        Tens of microseconds: a handful of numpy calls on 12-vectors; the rest is plain floats."""
        try:
            c = np.asarray(chroma, dtype=np.float64).reshape(12)
            total = float(c.sum())
        except (TypeError, ValueError):
            return self.state
        if not math.isfinite(total) or dt_s <= 0 or not math.isfinite(dt_s) or float(c.min()) < 0.0:
            return self.state
        sounding = total > 1e-9
        dt_s = min(dt_s, 1.0)
        kc = math.exp(-dt_s / self.chord_window_s)
        self._chord_acc *= kc
        if sounding:  # each frame of music counts alike, whatever its level
            c = c * (1.0 / total)
            self._chord_acc += (1.0 - kc) * c
        chord_acc = self._chord_acc
        sc = float(chord_acc.sum())
        nc = math.sqrt(max(float(chord_acc @ chord_acc) - sc * sc / 12.0, 0.0))  # norm after centring
        chord_scores = (CHORD_TEMPLATES @ chord_acc).tolist()  # templates are zero-mean: centred dot products
        prev = self.state
        chord, chord_conf = prev.chord, prev.chord_confidence
        best = max(range(24), key=chord_scores.__getitem__)
        top = chord_scores[best] / nc if nc > 1e-12 else 0.0
        if sc < 0.3:  # silence (or nearly): no chord
            chord, chord_conf = -1, 0.0
        elif top < self.min_chord_score:  # nothing triad-like: hold the last chord, unsure
            chord_conf = 0.0
        else:
            current = chord_scores[prev.chord] / nc if prev.chord >= 0 else -1.0
            if prev.chord < 0 or (best != prev.chord and top > current + self.switch_margin):
                chord = best
            second = max(v for i, v in enumerate(chord_scores) if i != best) / nc
            chord_conf = min(1.0, max(0.0, (top - second) * 4.0)) if chord == best else 0.0
        key, key_conf = prev.key, prev.key_confidence
        if sounding:  # the key hears the chords it recognised (and a little of the raw chroma); silence
            kk = math.exp(-dt_s / self.key_window_s)  # neither moves the key nor forgets it
            heard = _TRIADS[chord] * _TRIAD_SHARE + c * (1.0 - _TRIAD_SHARE) if chord >= 0 else c
            self._key_acc *= kk
            self._key_acc += (1.0 - kk) * heard
            self._key_weight = kk * self._key_weight + (1.0 - kk)
            acc = self._key_acc
            sk = float(acc.sum())
            nk = math.sqrt(max(float(acc @ acc) - sk * sk / 12.0, 0.0))
            if self._key_weight > 0.25 and nk > 1e-12:  # about a quarter of the window heard
                key_scores = (KEY_PROFILES @ acc).tolist()
                key = max(range(24), key=key_scores.__getitem__)
                second = max(v for i, v in enumerate(key_scores) if i != key)
                key_conf = min(1.0, max(0.0, (key_scores[key] - second) / nk * 5.0))
        change = chord >= 0 and chord != prev.chord
        # hue: the chord's (else the key's) place on the circle of fifths, filtered on the circle
        hue = prev.hue
        target = chord if chord >= 0 else key
        if target >= 0:
            a = _HUE_ANGLE[target]
            kh = math.exp(-dt_s / max(self.hue_smooth_s, 1e-6))
            x = kh * self._hue_vec[0] + (1.0 - kh) * math.cos(a)
            y = kh * self._hue_vec[1] + (1.0 - kh) * math.sin(a)
            self._hue_vec = (x, y)
            if x * x + y * y > 1e-12:
                hue = (math.atan2(y, x) / (2.0 * math.pi)) % 1.0
        self.state = HarmonyState(key, key_conf, chord, chord_conf, change, hue)
        return self.state


def analyze_chroma(chroma: np.ndarray, times_s: np.ndarray, **kwargs) -> dict[str, np.ndarray]:
    """Run :class:`HarmonyTracker` over ``chroma`` ``[n, 12]`` at ``times_s`` ``[n]``.

    Returns arrays ``key``, ``key_confidence``, ``chord``, ``chord_confidence``, ``chord_change``, ``hue``.
    """
    tr = HarmonyTracker(**kwargs)
    n = len(times_s)
    out = {k: np.zeros(n) for k in ("key", "key_confidence", "chord", "chord_confidence", "chord_change", "hue")}
    last = float(times_s[0]) - 1.0 / 60.0 if n else 0.0
    for i in range(n):
        t = float(times_s[i])
        s = tr.update(chroma[i], max(t - last, 1e-6))
        last = t
        out["key"][i], out["key_confidence"][i] = s.key, s.key_confidence
        out["chord"][i], out["chord_confidence"][i] = s.chord, s.chord_confidence
        out["chord_change"][i], out["hue"][i] = float(s.chord_change), s.hue
    return out
