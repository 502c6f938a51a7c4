"""Synthetic songs with known harmony and form, for the harmony, section and HPSS tests and benchmark.

- :func:`chord_progression`: sustained harmonic-tone triads (a pad) plus a bass note on each root,
  one chord per ``beats_per_chord`` beats; returns the samples and the chord of every bar.
- :func:`form_song`: sections (``"ABAB"``) that differ in chords, pad timbre and drum pattern, each
  ``bars`` bars long; returns the samples and the boundary times.
- :func:`kick_and_pad`: a four-on-the-floor kick and a sustained pad as separate stems (HPSS checks).
"""

from __future__ import annotations

import numpy as np

from vjengine.audio.synth import hat_sound, kick_sound

# note names -> pitch class, for readable progressions ("Am", "F#", "Bb")
_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_chord(name: str) -> tuple[int, bool]:
    """``"Am"`` -> (9, True); ``"F#"`` -> (6, False); ``"Bb"`` -> (10, False)."""
    root = _PC[name[0].upper()]
    rest = name[1:]
    if rest.startswith("#"):
        root, rest = root + 1, rest[1:]
    elif rest.startswith("b"):
        root, rest = root - 1, rest[1:]
    return root % 12, rest == "m"


def chord_index(name: str) -> int:
    """0..11 major, 12..23 minor (the indices of :mod:`vjengine.audio.harmony`)."""
    root, minor = parse_chord(name)
    return root + (12 if minor else 0)


def _tone(freq: float, n: int, sr: int, partials: int, bright: float) -> np.ndarray:
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k in range(1, partials + 1):
        if freq * k > sr / 2.2:
            break
        out += np.sin(2 * np.pi * freq * k * t) * bright ** (k - 1) / k
    return out


def _pad_chord(root: int, minor: bool, n: int, sr: int, *, octave: int = 4, partials: int = 4,
               bright: float = 0.7) -> np.ndarray:
    base = 440.0 * 2 ** ((root - 9) / 12 + (octave - 4))
    out = np.zeros(n)
    for interval in (0, 3 if minor else 4, 7):
        out += _tone(base * 2 ** (interval / 12), n, sr, partials, bright)
    out += 0.8 * _tone(base / 2, n, sr, 3, 0.5)  # bass on the root, an octave down
    fade = int(0.02 * sr)
    env = np.ones(n)
    env[:fade] = np.linspace(0, 1, fade)
    env[-fade:] = np.linspace(1, 0, fade)
    return out * env


def chord_progression(chords: list[str], *, bpm: float = 120.0, beats_per_chord: int = 4, repeats: int = 1,
                      sr: int = 44100, kick: bool = False) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """The chords (names like ``"C"``, ``"Am"``) as a pad, optionally with a kick on every beat.

    Returns (mono float32 samples at ``sr``, ``[(start_s, end_s, chord_index), ...]``).
    """
    beat_s = 60.0 / bpm
    seg = int(round(beats_per_chord * beat_s * sr))
    seq = list(chords) * repeats
    out = np.zeros(seg * len(seq))
    truth = []
    for i, name in enumerate(seq):
        root, minor = parse_chord(name)
        out[i * seg:(i + 1) * seg] += _pad_chord(root, minor, seg, sr) * 0.08
        truth.append((i * seg / sr, (i + 1) * seg / sr, chord_index(name)))
    if kick:
        k = kick_sound(sr)
        step = int(round(beat_s * sr))
        for s in range(0, out.size, step):
            e = min(out.size, s + k.size)
            out[s:e] += 0.6 * k[:e - s]
    return out.astype(np.float32), truth


_SECTIONS = {
    # chords, pad octave, partials, brightness, kicks per bar, hats per bar
    "A": (["C", "G", "Am", "F"], 4, 3, 0.5, 4, 0),
    "B": (["Dm", "Bb", "Gm", "A"], 5, 6, 0.9, 2, 8),
    "C": (["E", "C#m", "B", "A"], 3, 4, 0.7, 4, 4),
}


def form_song(form: str = "ABAB", *, bars: int = 8, bpm: float = 120.0, sr: int = 22050,
              seed: int = 0) -> tuple[np.ndarray, list[float], list[str]]:
    """A song of sections (letters of ``form``, from A, B, C), ``bars`` 4/4 bars each, a chord per bar.

    Returns (samples, boundary times in seconds between sections, the form as labels).
    """
    rng = np.random.default_rng(seed)
    beat = int(round(60.0 / bpm * sr))
    bar = 4 * beat
    kick = kick_sound(sr)
    hat = hat_sound(sr, rng)
    out = np.zeros(bar * bars * len(form))
    bounds = []
    for s, letter in enumerate(form):
        chords, octave, partials, bright, kicks, hats = _SECTIONS[letter]
        s0 = s * bars * bar
        if s:
            bounds.append(s0 / sr)
        for b in range(bars):
            b0 = s0 + b * bar
            root, minor = parse_chord(chords[b % len(chords)])
            out[b0:b0 + bar] += 0.06 * _pad_chord(root, minor, bar, sr, octave=octave, partials=partials,
                                                   bright=bright)
            for j in range(kicks):
                p = b0 + j * (bar // kicks)
                e = min(out.size, p + kick.size)
                out[p:e] += 0.5 * kick[:e - p]
            for j in range(hats):
                p = b0 + j * (bar // hats) + bar // (2 * hats)
                e = min(out.size, p + hat.size)
                out[p:e] += hat[:e - p]
    return out.astype(np.float32), bounds, list(form)


def kick_and_pad(*, seconds: float = 8.0, bpm: float = 120.0, sr: int = 44100) -> tuple[np.ndarray, np.ndarray]:
    """(kick stem, pad stem): a kick on every beat and a sustained C major pad, same length."""
    n = int(seconds * sr)
    pad = (_pad_chord(0, False, n, sr) * 0.08).astype(np.float32)
    kick = np.zeros(n, dtype=np.float32)
    k = kick_sound(sr)
    step = int(round(60.0 / bpm * sr))
    for s in range(0, n, step):
        e = min(n, s + k.size)
        kick[s:e] += 0.6 * k[:e - s]
    return kick, pad
