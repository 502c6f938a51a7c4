"""Synthetic test signals: music with exactly known beats (dance loop, click trains, grooves), and sound with none.

Used for the built-in demo audio (``vjengine.demo``), the tests and the benchmark.
"""

from __future__ import annotations

import numpy as np
import scipy.signal


def kick_sound(sr: int, *, length_s: float = 0.32) -> np.ndarray:
    """A dance kick: a sine sweeping 150 -> 48 Hz with a click on top and an exponential decay."""
    t = np.arange(int(length_s * sr)) / sr
    freq = 48.0 + 102.0 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    body = np.sin(phase) * np.exp(-t / 0.11)
    click = np.exp(-t / 0.002) * 0.35
    fade = np.minimum(1.0, (length_s - t) / 0.03)  # no click when the sample ends
    return ((body + click) * fade).astype(np.float32)


def hat_sound(sr: int, rng: np.random.Generator, *, length_s: float = 0.06, open_: bool = False) -> np.ndarray:
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
    kick_s = kick_sound(sr)
    hat_closed = hat_sound(sr, rng)
    hat_open = hat_sound(sr, rng, open_=True)
    tick = hat_sound(sr, rng, length_s=0.02) * 0.3
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
        sound = kick_sound(sr)
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


def _pad(sr: int, freqs: tuple[float, ...], length_s: float) -> np.ndarray:
    """A soft chord (sines with slow attack and release) for bar-level harmony."""
    n = int(length_s * sr)
    t = np.arange(n) / sr
    tone_ = sum(np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) for f in freqs)
    env = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (length_s - t) / 0.05) * np.exp(-t / 1.5)
    return (tone_ * env * 0.08).astype(np.float32)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.18 * sr)
    t = np.arange(n) / sr
    noise = scipy.signal.sosfilt(scipy.signal.butter(2, [1500.0 / (sr / 2), 0.9], btype="band", output="sos"),
                                 rng.standard_normal(n))
    body = np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.03)
    return ((0.5 * noise * np.exp(-t / 0.05) + 0.6 * body) * 0.5).astype(np.float32)


# chord roots (semitones over A) and qualities for a four-bar progression: Am F C G
_PROGRESSION = ((0, (0, 3, 7)), (8, (0, 4, 7)), (3, (0, 4, 7)), (10, (0, 4, 7)))


def groove(*, bpm: float = 124.0, seconds: float = 16.0, sr: int = 44100, beats_per_bar: int = 4,
           end_bpm: float | None = None, swing: float = 0.0, half_time: bool = False, seed: int = 0,
           drums: bool = True, start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A groove with a known beat and downbeat: kick, snare, hats, bass and a chord per bar.

    - 4/4: kick on every beat (``half_time``: kick on 1, snare on 3 only), snare on 2 and 4, hats on
      the off-beats (and on the beats when half-time); 3/4: a waltz (bass and kick on 1, chord stabs on 2 and 3, hats on the off-beats).
    - The bass plays the bar's root on the downbeat; the chord (Am F C G) changes every bar.
    - ``swing`` 0..1 delays the off-beats from 1/2 to 2/3 of the beat; ``end_bpm`` ramps the tempo
      linearly over the clip (a DJ's tempo ride); ``drums=False`` leaves bass and chords only.
    - ``start_s``: silence before the first beat.

    Returns ``(samples, beat_times_s, downbeat_times_s)``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float32)
    beats = []
    t = start_s
    while t < seconds:
        beats.append(t)
        cur = bpm if end_bpm is None else bpm + (end_bpm - bpm) * t / seconds
        t += 60.0 / cur
    beats = np.array(beats)
    kick_s, snare_s, hat_s = kick_sound(sr), _snare(sr, rng), hat_sound(sr, rng)
    for i, b in enumerate(beats):
        period = (beats[i + 1] if i + 1 < beats.size else b + 60.0 / bpm) - b
        pos = i % beats_per_bar
        bar = i // beats_per_bar
        start = int(round(b * sr))
        root, quality = _PROGRESSION[bar % len(_PROGRESSION)]
        if drums:
            if beats_per_bar == 3:
                if pos == 0:
                    _add(out, kick_s, start, 0.8)
            elif half_time:
                if pos == 0:
                    _add(out, kick_s, start, 0.9)
                elif pos == 2:
                    _add(out, snare_s, start, 0.9)
            else:
                _add(out, kick_s, start, 0.9)
                if pos in (1, 3):
                    _add(out, snare_s, start, 0.6)
            off = b + period * (0.5 + swing / 6.0)
            _add(out, hat_s, int(round(off * sr)), 0.8)
            if half_time:  # the hats keep the full-tempo pulse
                _add(out, hat_s, start, 0.8)
        if pos == 0:
            _add(out, _bass_note(sr, 55.0 * 2 ** (root / 12.0), 0.9 * period), start, 1.2)
            freqs = tuple(220.0 * 2 ** ((root + q) / 12.0) for q in quality)
            if beats_per_bar != 3:
                _add(out, _pad(sr, freqs, beats_per_bar * period), start)
        elif beats_per_bar == 3:
            freqs = tuple(220.0 * 2 ** ((root + q) / 12.0) for q in quality)
            _add(out, _pad(sr, freqs, 0.6 * period), start, 1.5)
    peak = float(np.max(np.abs(out))) or 1.0
    out *= 0.9 / peak
    return out.astype(np.float32), beats, beats[::beats_per_bar]


STEADY_KINDS = ("hum", "tone", "pad", "noise")


def steady(kind: str, *, seconds: float = 20.0, sr: int = 44100, dbfs: float = -20.0, seed: int = 0) -> np.ndarray:
    """Sound with no beat in it, at ``dbfs`` RMS: ``hum`` (50 Hz mains and two harmonics, a ground
    loop), ``tone`` (a 440 Hz test tone), ``pad`` (an A major chord swelling every 10 s, its partials
    beating) or ``noise`` (pink). What a line-in carries before the set starts, or in a drumless intro."""
    t = np.arange(int(round(seconds * sr))) / sr
    if kind == "hum":
        x = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t) + 0.3 * np.sin(2 * np.pi * 250 * t)
    elif kind == "tone":
        x = tone(440.0, seconds=seconds, sr=sr, amplitude=1.0)
    elif kind == "pad":
        swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.1 * t)
        x = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0)) * swell
    elif kind == "noise":
        spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(t.size))
        x = np.fft.irfft(spec / np.sqrt(np.maximum(np.fft.rfftfreq(t.size, 1.0 / sr), 20.0)), t.size)
    else:
        raise ValueError(f"kind must be one of {', '.join(STEADY_KINDS)}, got {kind!r}")
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (dbfs / 20)).astype(np.float32)
