"""Synthetic test signals with exactly known beats: a 4/4 dance loop, click and kick trains, tones.

Used for the built-in demo audio (``vjengine.demo``), the tests and the benchmark.
"""

from __future__ import annotations

import numpy as np
import scipy.signal


def _kick(sr: int, *, length_s: float = 0.32) -> np.ndarray:
    """A dance kick: a sine sweeping 150 -> 48 Hz with a click on top and an exponential decay."""
    t = np.arange(int(length_s * sr)) / sr
    freq = 48.0 + 102.0 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    body = np.sin(phase) * np.exp(-t / 0.11)
    click = np.exp(-t / 0.002) * 0.35
    fade = np.minimum(1.0, (length_s - t) / 0.03)  # no click when the sample ends
    return ((body + click) * fade).astype(np.float32)


def _hat(sr: int, rng: np.random.Generator, *, length_s: float = 0.06, open_: bool = False) -> np.ndarray:
    n = int((0.16 if open_ else length_s) * sr)
    noise = rng.standard_normal(n)
    sos = scipy.signal.butter(4, 7000.0 / (sr / 2), btype="high", output="sos")
    noise = scipy.signal.sosfilt(sos, noise)
    t = np.arange(n) / sr
    return (noise * np.exp(-t / (0.05 if open_ else 0.012)) * 0.22).astype(np.float32)


def _bass_note(sr: int, freq_hz: float, length_s: float) -> np.ndarray:
    """A filtered saw with a short attack and release, for the bassline."""
    n = int(length_s * sr)
    t = np.arange(n) / sr
    saw = 2.0 * ((t * freq_hz) % 1.0) - 1.0
    sos = scipy.signal.butter(2, min(0.45, 600.0 / (sr / 2)), output="sos")
    tone = scipy.signal.sosfilt(sos, saw) + 0.6 * np.sin(2 * np.pi * freq_hz * t)
    env = np.minimum(1.0, t / 0.004) * np.minimum(1.0, (length_s - t) / 0.02) * np.exp(-t / 0.25)
    return (tone * env * 0.35).astype(np.float32)


def _add(out: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    if start >= out.size:
        return
    end = min(out.size, start + sound.size)
    out[start:end] += gain * sound[: end - start]


def dance_loop(*, bpm: float = 124.0, seconds: float = 16.0, sr: int = 48000, seed: int = 0,
               kick=True, hats=True, bass=True) -> tuple[np.ndarray, np.ndarray]:
    """A 4/4 house loop: kick on every beat, off-beat hats (plus quiet 16th ticks), an A-minor bassline.

    Returns ``(samples, beat_times_s)``: mono float32 in -1..1 (peak 0.9) and the exact time in seconds
    of every beat (the sample where each kick starts, kicks or not), first beat at 0.
    """
    if not 20.0 <= bpm <= 400.0:
        raise ValueError(f"bpm must be within 20..400, got {bpm}")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float32)
    beat_s = 60.0 / bpm
    n_beats = int(np.floor(seconds / beat_s - 1e-9)) + 1
    beat_samples = np.round(np.arange(n_beats) * beat_s * sr).astype(np.int64)
    beat_samples = beat_samples[beat_samples < n]
    kick_s = _kick(sr)
    hat_closed = _hat(sr, rng)
    hat_open = _hat(sr, rng, open_=True)
    tick = _hat(sr, rng, length_s=0.02) * 0.3
    # bassline (semitones over A1 = 55 Hz), one note per off-beat 8th, a bar-long pattern
    pattern = [0, 0, 3, 0, 7, 0, 5, 3]
    for i, b in enumerate(beat_samples):
        if kick:
            _add(out, kick_s, int(b), 0.9)
        if hats:
            off = int(round(b + 0.5 * beat_s * sr))
            _add(out, hat_open if i % 4 == 3 else hat_closed, off)
            for q in (0.25, 0.75):
                _add(out, tick, int(round(b + q * beat_s * sr)))
        if bass:
            note = pattern[(2 * i + 1) % len(pattern)]
            freq = 55.0 * 2 ** (note / 12.0)
            _add(out, _bass_note(sr, freq, 0.45 * beat_s), int(round(b + 0.5 * beat_s * sr)))
    peak = float(np.max(np.abs(out))) or 1.0
    out *= 0.9 / peak
    return out.astype(np.float32), beat_samples / float(sr)


def click_train(*, bpm: float, seconds: float, sr: int = 48000, kind: str = "click",
                offset_s: float = 0.0, amplitude: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Clicks (``kind="click"``: 2 ms decaying 1 kHz bursts) or kicks (``"kick"``) at ``bpm``.

    Returns ``(samples, beat_times_s)``; the first beat is at ``offset_s``.
    """
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float32)
    if kind == "click":
        t = np.arange(int(0.02 * sr)) / sr
        sound = (np.sin(2 * np.pi * 1000.0 * t) * np.exp(-t / 0.002)).astype(np.float32)
    elif kind == "kick":
        sound = _kick(sr)
    else:
        raise ValueError(f"kind must be 'click' or 'kick', got {kind!r}")
    sound = sound / np.max(np.abs(sound))
    beats = np.arange(offset_s, seconds, 60.0 / bpm)
    starts = np.round(beats * sr).astype(np.int64)
    for s in starts:
        _add(out, sound, int(s), amplitude)
    return out, starts / float(sr)


def tone(freq_hz: float, *, seconds: float, sr: int = 48000, amplitude: float = 0.5) -> np.ndarray:
    """A sine at ``freq_hz`` with 5 ms fades (mono float32)."""
    t = np.arange(int(round(seconds * sr))) / sr
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
    return (amplitude * np.sin(2 * np.pi * freq_hz * t) * fade).astype(np.float32)
