"""Stateful, causal trackers fed once per analysis hop: onsets, tempo and the beat clock.

- :class:`OnsetTracker`: adaptive-threshold peak picking on an onset-strength value, firing on the
  rising edge (the least latency a causal detector can have) with a refractory period.
- :class:`TempoTracker`: autocorrelation of the last ``window_s`` seconds of onset strength, scored
  by a harmonic comb (lags L, 2L, 3L, 4L) times a log-Gaussian tempo prior, smoothed over time.
  The metrical level is then checked on the best grid: if every other pulse is weak in onset
  strength, or the kick detector fires on every other pulse only (off-beat hats make a 90 BPM
  groove look like 180 BPM), the tempo is halved.
- :class:`BeatClock`: a phase-locked oscillator. It predicts beats from its own phase and nudges
  that phase (by a bounded change of rate, never a jump) toward the beat grid that best explains
  the recent onsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft


@dataclass(frozen=True)
class TempoConfig:
    """Tempo estimation settings (one place; :class:`TempoTracker` takes it whole)."""

    min_bpm: float = 60.0
    max_bpm: float = 200.0
    prior_bpm: float = 125.0             # centre of the log-Gaussian tempo prior
    prior_octaves: float = 1.2           # its width (standard deviation, octaves)
    harmonic_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # comb weights at lags L, 2L, 3L, 4L
    comb_mean: bool = False              # comb score: mean over usable harmonics (else sum / count)
    update_s: float = 0.5                # one update per this much audio (the vote counts below are in these)
    locked_update_s: float = 0.0         # once the clock is locked, one update per this much (0: update_s)
    smoothing_s: float = 1.0             # time constant of the score smoothing
    recent_s: float = 4.0                # exponential recency weighting of the window (0: none)
    half_gain: float = 1.1               # halve when strong/mean pulse salience x prior(half)/prior(tempo) > this
    unhalve_gain: float = 0.95           # ... and go back when it falls below this
    level_smoothing_s: float = 2.0       # time constant of that evidence
    unhalve_votes: int = 6               # ... for this many updates in a row
    locked_keep: float = 0.6             # locked: another metrical level must beat the current by 1/this
    switch_votes: int = 4                # ... for this many updates in a row
    half_kick_check: float = 0.25        # ... or the kick-event ratio (kicks on every other pulse only)
    half_kick_min_share: float = 0.5     # ... with kicks on at least this share of the strong pulses
    half_kick_min_bpm: float = 70.0      # ... into a half tempo of at least this
    min_half_bpm: float = 54.0           # the level may be halved down to this, a little below min_bpm
                                         # (a 60 BPM groove's comb tempo of 119.9 must not flip back)
    half_votes_needed: int = 3           # consecutive updates before halving (no flips on transitions)


class OnsetTracker:
    """Causal onset picking on one onset-strength stream (one value per hop).

    An onset fires on the first hop where the value rises above ``mean + threshold * peak`` (the
    mean a short EMA, the peak a slowly decaying maximum), at most once per ``refractory_s``.
    """

    __slots__ = ("threshold", "_refractory_hops", "_mean_k", "_peak_k", "_min_peak", "mean", "peak", "_since",
                 "_above")

    def __init__(self, *, hop_s: float, threshold: float = 0.25, refractory_s: float = 0.05,
                 mean_s: float = 0.15, peak_release_s: float = 4.0, min_peak: float = 0.5) -> None:
        self.threshold = threshold
        self._refractory_hops = max(1, int(round(refractory_s / hop_s)))
        self._mean_k = math.exp(-hop_s / mean_s)
        self._peak_k = math.exp(-hop_s / peak_release_s)
        self._min_peak = min_peak
        self.mean = 0.0
        self.peak = min_peak
        self._since = 10**9
        self._above = False

    def update(self, value: float, enabled: bool = True) -> tuple[bool, float]:
        """Feed one hop; returns (onset fired, strength 0..1)."""
        peak = self.peak * self._peak_k  # plain comparisons: this runs per hop per detector
        if value > peak:
            peak = value
        if peak < self._min_peak:
            peak = self._min_peak
        self.peak = peak
        mean = self.mean
        threshold = mean + self.threshold * peak
        self.mean = mean + (1.0 - self._mean_k) * (value - mean)
        self._since += 1
        fired = False
        if value > threshold and enabled:
            if not self._above and self._since >= self._refractory_hops:
                fired = True
                self._since = 0
            self._above = True
        else:
            self._above = False
        strength = value / peak
        return fired, (strength if strength < 1.0 else 1.0)


def _interp(arr: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``arr`` at fractional indices ``pos`` (clipped to the array)."""
    pos = np.clip(pos, 0.0, arr.size - 1.000001)
    i = pos.astype(np.int64)
    f = pos - i
    return arr[i] * (1.0 - f) + arr[i + 1] * f


_LEVEL_RATIOS = (2.0, 0.5, 1.5, 1.0 / 1.5, 3.0, 1.0 / 3.0)


def octave_related(ratio: float) -> bool:
    """Whether two tempi are different metrical levels of one pulse (x2, x3, x3/2 and inverses, +-6%)."""
    return any(abs(ratio / r - 1.0) < 0.06 for r in _LEVEL_RATIOS)


class TempoTracker:
    """Causal tempo from the recent onset-strength history (see module docstring).

    ``update(history)`` takes the last ``window`` hops of onset strength (oldest first) and returns
    the smoothed best tempo in BPM and a confidence 0..1 (the normalised autocorrelation at that
    beat period).
    """

    def __init__(self, *, frame_rate_hz: float, config: TempoConfig | None = None) -> None:
        self.config = cfg = config or TempoConfig()
        self.frame_rate_hz = frame_rate_hz
        self.bpms = np.exp(np.linspace(np.log(cfg.min_bpm), np.log(cfg.max_bpm), 240))
        self.lags = 60.0 * frame_rate_hz / self.bpms  # hops per beat
        self.prior = np.exp(-0.5 * (np.log2(self.bpms / cfg.prior_bpm) / cfg.prior_octaves) ** 2)
        self._harmonics = np.arange(1, len(cfg.harmonic_weights) + 1, dtype=np.float64)
        self._hweights = np.asarray(cfg.harmonic_weights, dtype=np.float64)
        self._keep = math.exp(-cfg.update_s / cfg.smoothing_s)
        self._recency: dict[int, np.ndarray] = {}
        self._comb: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._unbias: dict[int, tuple[int, np.ndarray]] = {}
        self._half_votes = 0.0   # votes count updates of update_s: an update over dt adds dt / update_s
        self._switch_votes = 0.0
        self._halved = False   # showing half the comb's tempo (the dancer's level)
        self._raw = 0.0        # the comb's own tempo
        self.hold = False      # set while the beat clock is locked: no level change without strong evidence
        self.level_evidence = 0.0  # smoothed halve evidence (see _vote_level)
        self._ev_raw = 0.0
        self._ev_now = 0.0     # this update's halve evidence, before smoothing
        self._ev_k = 1.0 - math.exp(-cfg.update_s / cfg.level_smoothing_s)
        self._ev_step, self._vote = self._ev_k, 1.0  # this update's share (see update's dt)
        self.scores = np.zeros_like(self.bpms)
        self.bpm = cfg.prior_bpm
        self.confidence = 0.0
        self.grid_support = 0.0  # the ACF at one beat or two, whichever is higher (see update)
        self._acf: np.ndarray | None = None

    @property
    def level_pending(self) -> bool:
        """Halving is being voted on (the evidence says the dancer's level is half the comb's tempo,
        for too few updates yet): the level shown may still change."""
        return not self._halved and (self._half_votes > 0 or self._ev_now > self.config.half_gain)

    def forget(self) -> None:
        """Drop the smoothed comb scores and level votes (what a steady tone's ripple built up), so
        that the music that follows is judged afresh; the tempo shown stays."""
        self.scores[:] = 0.0
        self._raw = self._ev_raw = self._ev_now = self.level_evidence = 0.0
        self._half_votes = self._switch_votes = 0.0
        self._halved = False
        self.confidence = self.grid_support = 0.0

    def acf(self, history: np.ndarray) -> np.ndarray:
        """Unbiased, mean-removed autocorrelation normalised to 1 at lag 0."""
        n = history.size
        x = history - float(np.add.reduce(history)) / n
        unbias = self._unbias.get(n)
        if unbias is None:
            unbias = self._unbias[n] = (scipy.fft.next_fast_len(2 * n, True), 1.0 / (n - np.arange(n)))
        nfft, inv_count = unbias
        spec = scipy.fft.rfft(x, nfft)
        power = np.abs(spec)
        np.square(power, out=power)
        r = scipy.fft.irfft(power, nfft)[:n]
        r *= inv_count
        return r * (1.0 / r[0]) if r[0] > 1e-12 else np.zeros(n)

    def update(self, history: np.ndarray, kick_history: np.ndarray | None = None,
               dt: float | None = None, level_history: np.ndarray | None = None) -> tuple[float, float]:
        """One tempo update from the onset-strength window (oldest first); ``kick_history`` (same
        length: 1 where the kick detector fired, else 0) helps pick the metrical level, and so does
        ``level_history`` (same length) in place of ``history`` where given. ``dt``: the audio time
        this update stands for (default ``update_s``; smoothing and votes scale with it)."""
        cfg = self.config
        if dt is None or dt == cfg.update_s:
            keep, self._ev_step, self._vote = self._keep, self._ev_k, 1.0
        else:
            keep, self._vote = math.exp(-dt / cfg.smoothing_s), dt / cfg.update_s
            self._ev_step = 1.0 - math.exp(-dt / cfg.level_smoothing_s)
        if cfg.recent_s > 0:  # weight recent onsets more, so a new tempo takes over sooner
            w = self._recency.get(history.size)
            if w is None:
                w = self._recency[history.size] = np.exp(
                    -np.arange(history.size - 1, -1, -1) / (cfg.recent_s * self.frame_rate_hz))
            r = self.acf(history * w)
        else:
            r = self.acf(history)
        self._acf = r
        comb_w = self._comb.get(r.size)
        if comb_w is None:  # interpolation indices and weights depend only on the history length
            pos = self.lags[:, None] * self._harmonics[None, :]
            # mean over the harmonics the history can support (a lag up to half its length)
            valid = (pos <= 0.5 * r.size) * self._hweights
            denom = np.maximum(valid.sum(axis=1), 1e-9) if cfg.comb_mean else self._hweights.sum()
            pos = np.clip(pos, 0.0, r.size - 1.000001)
            i0 = pos.astype(np.int64)
            f = pos - i0
            w = valid / np.reshape(denom, (-1, 1))
            comb_w = self._comb[r.size] = (i0, (1.0 - f) * w, f * w)
        i0, w0, w1 = comb_w
        comb = (r[i0] * w0 + r[i0 + 1] * w1).sum(axis=1)
        new = np.clip(comb, 0.0, None) * self.prior
        self.scores = keep * self.scores + (1.0 - keep) * new
        raw = self._pick(self._raw)
        if self._raw > 0:  # the comb moved an octave: keep showing the same level
            if self._halved and abs(raw / self._raw - 0.5) < 0.06:
                self._halved = False
            elif not self._halved and abs(raw / self._raw - 2.0) < 0.12 and raw / 2.0 >= cfg.min_half_bpm:
                self._halved = True
        self._raw = raw
        self._vote_level(history if level_history is None else level_history, kick_history, raw)
        bpm = raw
        if self._halved and raw / 2.0 < self.bpms[0]:
            bpm = raw / 2.0
        elif self._halved:
            i = int(np.argmin(np.abs(self.bpms - raw / 2.0)))
            lo, hi = max(0, i - 2), min(self.bpms.size, i + 3)
            bpm = self._refine(lo + int(np.argmax(self.scores[lo:hi])))
        self.bpm = bpm
        period = 60.0 * self.frame_rate_hz / self.bpm
        self.confidence = self._acf_at(r, period)  # the ACF at the beat period
        # ... or at two beats: onsets on every other beat only still hold the grid
        self.grid_support = max(self.confidence, self._acf_at(r, 2.0 * period))
        return self.bpm, self.confidence

    @staticmethod
    def _acf_at(r: np.ndarray, lag: float) -> float:
        lag = min(lag, r.size - 1.000001)
        i = int(lag)
        return min(1.0, max(0.0, float(r[i] + (lag - i) * (r[i + 1] - r[i]))))

    def _pick(self, prev: float) -> float:
        """The best comb tempo; the one near ``prev`` is kept unless another is clearly better. Once
        locked (``hold``), another metrical level must win by a wide margin for several updates."""
        s = self.scores
        i = int(np.argmax(s))
        if prev <= 0:
            return self._refine(i)
        j = int(np.argmin(np.abs(self.bpms - prev)))
        lo, hi = max(0, j - 2), min(self.bpms.size, j + 3)
        j = lo + int(np.argmax(s[lo:hi]))
        if self.hold and octave_related(self.bpms[i] / self.bpms[j]):
            if s[j] >= self.config.locked_keep * s[i] or self._level_disagrees(self.bpms[i] / self.bpms[j]):
                self._switch_votes = 0.0
                return self._refine(j)
            self._switch_votes += self._vote
            if self._switch_votes < self.config.switch_votes:
                return self._refine(j)
        self._switch_votes = 0.0
        return self._refine(j if s[j] >= 0.85 * s[i] else i)

    def _level_disagrees(self, ratio: float) -> bool:
        """Locked, the comb prefers ``ratio`` times its tempo: a move to half the level shown (a
        flip the dancer sees) needs the pulse-salience vote to say halve too. A learned activation
        that fires on every other beat of a 180 BPM groove must not flip it to 90 while the flux
        still says every pulse is a beat."""
        return (not self._halved and abs(ratio - 0.5) < 0.03
                and self.level_evidence < self.config.half_gain)

    def _vote_level(self, history: np.ndarray, kick_history: np.ndarray | None, raw: float) -> None:
        """Is the comb's tempo ``raw`` twice the level a dancer would clap? Votes, both ways.

        Pulse salience on the grid of ``raw``: if every other pulse is weak, the half level's
        pulses stand out by ``gain`` = strong / mean; that, times how much more likely the half
        tempo is under the prior, says halve (for ``half_votes_needed`` updates in a row). Kicks on
        every other pulse only (a 90 BPM groove with off-beat hats reads as 180) vote the same way.
        """
        cfg = self.config
        half = raw / 2.0
        if half < cfg.min_half_bpm or cfg.half_gain <= 0:
            # no lower level to go to: votes cast for halving the comb's earlier, faster tempo are moot
            # (left standing, ``level_pending`` kept a 100 BPM loop from ever locking once its comb
            # had moved down from 200 on its own)
            self._halved = False
            self._ev_now = self._half_votes = 0.0
            return
        period = 60.0 * self.frame_rate_hz / raw
        even, odd, spread3 = grid_salience(history, period, frame_rate_hz=self.frame_rate_hz, triple=True)
        weak, strong = min(odd, even), max(odd, even)
        gain = 2.0 * strong / max(strong + weak, 1e-9)
        spread2 = 2.0 * (strong - weak) / max(strong + weak, 1e-9)
        if spread2 < 0.25 and spread3 > 3.0 * spread2:
            gain = 1.0  # the pulses group in threes, not twos (a fast triple metre): halving cuts across bars
        prior_ratio = self._prior_at(half) / self._prior_at(raw)
        evidence = self._ev_now = gain * prior_ratio
        if self._ev_raw <= 0 or abs(raw / self._ev_raw - 1.0) > 0.06:  # a new tempo: start from neutral
            self.level_evidence = 1.0
        # smoothed over a few updates: the first bars' evidence is noisy
        self.level_evidence += self._ev_step * (evidence - self.level_evidence)
        self._ev_raw = raw
        evidence = self.level_evidence
        halve = evidence > cfg.half_gain
        if not halve and kick_history is not None and cfg.half_kick_check > 0 and half >= cfg.half_kick_min_bpm \
                and evidence >= cfg.unhalve_gain:
            k_even, k_odd = grid_salience(kick_history, period, frame_rate_hz=self.frame_rate_hz,
                                          hit_threshold=0.45, tolerance_hops=3)
            k_weak, k_strong = min(k_even, k_odd), max(k_even, k_odd)
            halve = k_strong >= cfg.half_kick_min_share and k_weak <= cfg.half_kick_check * k_strong
        if not self._halved:
            self._half_votes = self._half_votes + self._vote if halve else 0.0
            if self._half_votes >= cfg.half_votes_needed:
                self._halved, self._half_votes = True, 0.0
        else:
            undo = not halve and evidence < cfg.unhalve_gain
            self._half_votes = self._half_votes + self._vote if undo else 0.0
            if self._half_votes >= cfg.unhalve_votes:
                self._halved, self._half_votes = False, 0.0

    def _prior_at(self, bpm: float) -> float:
        cfg = self.config
        return math.exp(-0.5 * (math.log2(bpm / cfg.prior_bpm) / cfg.prior_octaves) ** 2)

    def _refine(self, i: int) -> float:
        """Parabolic peak refinement on the log-tempo grid."""
        s = self.scores
        if 0 < i < s.size - 1:
            a, b, c = s[i - 1], s[i], s[i + 1]
            den = a - 2 * b + c
            off = 0.5 * (a - c) / den if den < 0 else 0.0
            # at most half a step: ``i`` may be the best of a window around the last tempo, not a true
            # peak, and on near-flat scores (a steady tone) the vertex lies anywhere (once: 8e15 BPM)
            off = min(0.5, max(-0.5, off))
            step = math.log(self.bpms[1] / self.bpms[0])
            return float(self.bpms[i] * math.exp(off * step))
        return float(self.bpms[i])


_GRID_CACHE: dict[tuple, tuple[np.ndarray, ...]] = {}


def beat_offset(history: np.ndarray, period_hops: float, *, weight_s: float, frame_rate_hz: float,
                max_beats: int = 12) -> tuple[float, float]:
    """Where the beat grid of ``period_hops`` sits in the recent onset strength.

    Returns ``(d, sharpness)``: the last grid beat lies ``d`` hops before the newest hop of
    ``history`` (0 <= d < period), and how strongly the best grid stands out (0..1).
    """
    n = history.size
    n_beats = int(min(max_beats, (n - 1) // period_hops))
    if n_beats < 1:
        return 0.0, 0.0
    key = (n, period_hops, n_beats, weight_s * frame_rate_hz)
    grid = _GRID_CACHE.get(key)
    if grid is None:  # the same grid is asked for several times between tempo changes
        d = np.arange(0.0, period_hops, 1.0)
        k = np.arange(n_beats, dtype=np.float64)
        w = np.exp(-k * period_hops / (weight_s * frame_rate_hz))
        pos = np.clip((n - 1) - d[:, None] - k[None, :] * period_hops, 0.0, n - 1.000001)
        i0 = pos.astype(np.int64)
        f = pos - i0
        grid = (d, i0, (1.0 - f) * w[None, :], f * w[None, :])
        if len(_GRID_CACHE) >= 16:
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = grid
    d, i0, w0, w1 = grid
    score = (history[i0] * w0 + history[i0 + 1] * w1).sum(axis=1)
    i = int(np.argmax(score))
    # circular parabolic refinement
    a, b, c = score[i - 1], score[i], score[(i + 1) % score.size]
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    mean = float(np.add.reduce(score)) / score.size  # (np.mean's Python wrapper costs more than the sum)
    sharp = float((b - mean) / (b + 1e-9)) if b > 0 else 0.0
    return float((d[i] + 0.5 * off) % period_hops), sharp


def grid_salience(history: np.ndarray, period_hops: float, *, frame_rate_hz: float,
                  span_s: float = 4.0, hit_threshold: float | None = None,
                  tolerance_hops: int = 2, triple: bool = False) -> tuple:
    """Mean onset strength on the even and on the odd pulses of the best-aligned grid of this period.

    With ``hit_threshold`` (for an event history, e.g. kicks as 1.0), the share of pulses whose
    value reaches it instead. Each pulse is read as the max over +-``tolerance_hops`` (small tempo
    and timing errors). The period is rounded to 1/8 hop so the grid cache hits.
    """
    period_hops = round(period_hops * 8.0) / 8.0
    d, _ = beat_offset(history, period_hops, weight_s=span_s, frame_rate_hz=frame_rate_hz)
    n_beats = int(min(span_s * frame_rate_hz / period_hops, (history.size - 1 - d) // period_hops))
    if n_beats < 2:
        return (1.0, 1.0, 0.0) if triple else (1.0, 1.0)
    k = np.arange(n_beats + 1, dtype=np.float64)
    offsets = np.arange(-tolerance_hops, tolerance_hops + 1)
    pos = (history.size - 1) - d - k[:, None] * period_hops + offsets[None, :]
    vals = _interp(history, pos).max(axis=1)
    if hit_threshold is not None:
        vals = (vals >= hit_threshold).astype(np.float64)
    even, odd = vals[0::2], vals[1::2]
    if triple:  # also the spread of the pulse means folded in threes, relative to their mean
        folds = [float(np.add.reduce(vals[i::3])) / vals[i::3].size for i in range(3)] if vals.size >= 6 else [1.0] * 3
        return (float(np.add.reduce(even)) / even.size, float(np.add.reduce(odd)) / odd.size,
                (max(folds) - min(folds)) / (sum(folds) / 3.0 + 1e-9))
    return float(np.add.reduce(even)) / even.size, float(np.add.reduce(odd)) / odd.size


class BeatClock:
    """Phase-locked beat oscillator (one ``advance`` per hop).

    ``phase`` counts beats (its integer part is the beat count). Corrections change the rate, never
    the value, by at most ``max_slew`` of the nominal rate, so the visual phase is continuous and
    monotonic. Beats fire (``advance`` returns the fractional hop at which the phase crossed an
    integer) only while ``locked``.
    """

    __slots__ = ("hop_s", "bpm", "phase", "gain", "max_slew", "fast_slew", "_slew_left", "_fast_hops")

    def __init__(self, *, hop_s: float, bpm: float = 120.0, gain: float = 0.5, max_slew: float = 0.2) -> None:
        self.hop_s = hop_s
        self.bpm = bpm
        self.phase = 0.0
        self.gain = gain
        self.max_slew = max_slew
        self.fast_slew = 0.6
        self._slew_left = 0.0
        self._fast_hops = 0

    @property
    def rate(self) -> float:
        """Nominal phase advance per hop (beats)."""
        return self.bpm / 60.0 * self.hop_s

    def correct(self, target_frac: float, *, gain: float | None = None, fast_s: float = 0.0) -> float:
        """Aim the phase at ``target_frac`` (0..1 within the beat); returns the error (beats)."""
        err = (target_frac - self.phase + 0.5) % 1.0 - 0.5
        self._slew_left = (self.gain if gain is None else gain) * err
        if fast_s > 0:
            self._fast_hops = int(fast_s / self.hop_s)
        return err

    def advance(self) -> float:
        """Advance one hop; returns how much nominal phase was added (for event interpolation)."""
        nominal = self.bpm * self.hop_s / 60.0
        if self._fast_hops > 0:
            self._fast_hops -= 1
            limit = nominal * self.fast_slew
        else:
            limit = nominal * self.max_slew
        step = self._slew_left
        if step > limit:
            step = limit
        elif step < -limit:
            step = -limit
        self._slew_left -= step
        self.phase += nominal + step
        return nominal + step


class BarTracker:
    """Metre (2, 3 or 4 beats a bar) and downbeat from per-beat evidence, with a confidence.

    Fed once per beat (``add_beat``) with the beat's index, its bass/kick onset strength and how
    much the harmony changed over it. Each evidence value is normalised by its running mean and
    folded into per-position averages for bars of 2, 3 and 4 (decaying over ``memory_bars``). A
    triple metre is chosen when folding in threes shows a clearer accent than in twos or fours
    (a period-3 accent averages out when folded by 2 or 4, and the reverse); otherwise 4 when the
    strongest position clearly beats the one two beats away, else 2. The downbeat is the strongest
    position; ``confidence`` (0..1) is how clearly it beats the runner-up, scaled down until a few
    bars are in.
    """

    METRES = (2, 3, 4)

    def __init__(self, *, memory_bars: float = 6.0, min_bars: float = 2.0, harmony_weight: float = 1.0,
                 metre_margin: float = 1.25, four_margin: float = 0.12, fixed_metre: int = 0,
                 learned_weight: float = 1.0) -> None:
        self.memory_bars = memory_bars
        self.learned_weight = learned_weight
        self.min_bars = min_bars
        self.harmony_weight = harmony_weight
        self.metre_margin = metre_margin
        self.four_margin = four_margin
        self.fixed_metre = fixed_metre
        self.reset()

    def reset(self) -> None:
        self._dsp = {m: [0.0] * m for m in self.METRES}      # bass/kick + harmony, per position
        self._lrn = {m: [0.0] * m for m in self.METRES}      # the learned downbeat activation, per position
        self._acc = self._dsp                                # what the decision reads (see _decide)
        self._seen = {m: [0] * m for m in self.METRES}
        self._mean_low = 0.0
        self._mean_harm = 0.0
        self._mean_learned = 0.0
        self.learned_trusted = False
        self.beats = 0
        self.metre = self.fixed_metre or 4
        self.downbeat = 0        # beat index residue (mod metre) of the downbeat
        self.confidence = 0.0

    def add_beat(self, index: int, low: float, harmony: float, learned: float | None = None) -> None:
        """One beat's evidence: its bass/kick onset peak, the harmonic change over it and, from the
        learned tracker, its downbeat activation (see :meth:`_trust_learned`)."""
        self.beats += 1
        k = 0.1 if self.beats > 4 else 1.0 / self.beats
        self._mean_low += k * (low - self._mean_low)
        self._mean_harm += k * (harmony - self._mean_harm)
        value = low / (self._mean_low + 1e-9) + self.harmony_weight * harmony / (self._mean_harm + 1e-9)
        if learned is not None:
            self._mean_learned += k * (learned - self._mean_learned)
            learned = learned / (self._mean_learned + 1e-9)
        for m in self.METRES:
            p = index % m
            seen = self._seen[m][p] = self._seen[m][p] + 1
            a = max(1.0 / seen, 1.0 / self.memory_bars)
            acc = self._dsp[m]
            acc[p] += a * (value - acc[p])
            if learned is not None:
                acc = self._lrn[m]
                acc[p] += a * (learned - acc[p])
        if learned is not None:
            self.learned_trusted = self._trust_learned()
            w = self.learned_weight if self.learned_trusted else 0.0
            self._acc = {m: [d + w * v for d, v in zip(self._dsp[m], self._lrn[m])] for m in self.METRES}
        self._decide()

    def _trust_learned(self) -> bool:
        """Whether the learned downbeat activation says where bar 1 is: trained mostly on 4/4, it
        spreads over the bar where it is unsure (a solo guitar in 3/4), and fires on one beat a bar,
        near 0 elsewhere, where it knows. Trusted when, folded in some metre m, one position holds at
        least half-way between an even spread (1/m) and all of it (1); otherwise only the bass and
        harmony cues decide."""
        for m in self.METRES:
            acc = self._lrn[m]
            total = sum(acc)
            if total > 1e-9 and max(acc) / total >= 0.5 * (1.0 + 1.0 / m):
                return True
        return False

    def _contrast(self, m: int) -> tuple[float, int, float]:
        acc = self._acc[m]
        best = max(range(m), key=acc.__getitem__)
        others = [v for i, v in enumerate(acc) if i != best]
        mean_all = sum(acc) / m
        contrast = (acc[best] - sum(others) / len(others)) / (mean_all + 1e-9)
        margin = (acc[best] - max(others)) / (acc[best] + 1e-9)
        return contrast, best, margin

    def _decide(self) -> None:
        if self.fixed_metre:
            metre = self.fixed_metre
        else:
            c2, c3, c4 = (self._contrast(m)[0] for m in self.METRES)
            duple = max(c2, c4)
            triple = c3 > self.metre_margin * duple if self.metre != 3 else c3 * self.metre_margin > duple
            if triple and self.beats >= 3 * self.min_bars:
                metre = 3
            else:
                acc4 = self._acc[4]
                best = max(range(4), key=acc4.__getitem__)
                split = (acc4[best] - acc4[(best + 2) % 4]) / (acc4[best] + 1e-9)
                margin = self.four_margin * (0.5 if self.metre == 4 else 1.0)  # hysteresis
                metre = 4 if split > margin else 2
        contrast, best, margin = self._contrast(metre)
        self.metre, self.downbeat = metre, best
        bars_in = min(self._seen[metre]) / self.min_bars
        self.confidence = max(0.0, min(1.0, 2.0 * margin * min(1.0, bars_in)))


class AttackDetector:
    """Where attacks begin, from each hop's per-band dB rise (``process``, any batch size).

    An attack is a hop where at least ``breadth`` of the bands rose by ``rise_db`` or more (a drum
    hit, a strum, a piano chord; a steady tone's ripple, in a band or two, is not one); it begins on
    the first hop of such a run. A *sharp* attack also rose, in as many bands, by ``over_typical``
    times that band's typical rise: its mean rise per hop while the gate is open (the analysis's
    level gate, with its hold), an exponential average (time constant ``typical_s``). Noise meets
    the plain rule by chance, many times a second (a band with few FFT bins moves by several dB from
    hop to hop), and almost never the sharp one: music rises from a band's quiet level between its
    notes, noise from its own restless one. The average starts at ``rise_db / 3`` (a sharp attack
    needs 2.5x ``rise_db`` until the input's own rises are in) and holds while the gate is closed:
    digital silence would pull it to 0, and the hiss after it would pass. (The gate's hold keeps the
    quiet hops right after a click in it: a click train's average is not its own clicks.)

    Per batch, the average moves in closed form (one product with powers of its decay); the average
    before a hop is worked out only for the hops of a plain run until one proves sharp. The result
    does not depend on the blocking.
    """

    def __init__(self, n_bands: int, *, hop_s: float, rise_db: float = 3.0, breadth: float = 0.1,
                 over_typical: float = 7.5, typical_s: float = 0.5) -> None:
        self.rise_db = rise_db
        self.over = over_typical
        self.min_bands = max(1, math.ceil(breadth * n_bands))
        self.keep = math.exp(-hop_s / typical_s)
        self.typical = np.full(n_bands, rise_db / 3.0)
        self.on = self.sharp_on = False
        self._steps: dict[int, tuple[float, np.ndarray]] = {}

    def _step(self, j: int) -> tuple[float, np.ndarray]:
        """(keep^j, the weights of j hops' rises): the average after j hops is typical * keep^j + rise @ w."""
        step = self._steps.get(j)
        if step is None:
            step = self._steps[j] = (self.keep ** j, ((1.0 - self.keep) * self.keep ** np.arange(j - 1, -1, -1.0))
                                     .astype(np.float32))
        return step

    def process(self, rise: np.ndarray, sound: list[bool]) -> tuple[list[int], list[int]]:
        """``rise``: ``[n_bands, m]`` dB rises (>= 0); ``sound``: per hop, whether the gate is open.
        Returns the offsets in the batch of the hops where an attack begins, and of those where it
        first proves sharp (a run of plain hops holds at most one sharp attack; a hop with the gate
        closed is never sharp, and leaves the average as it is)."""
        m = rise.shape[1]
        plain = (np.add.reduce(rise >= self.rise_db, axis=0) >= self.min_bands).tolist()
        if False in sound:  # quiet hops: their columns do not move the average
            at = [j for j, g in enumerate(sound) if g]
            rise_s = rise[:, at]
        else:
            rise_s, at = rise, range(m)
        begins, sharp = [], []
        on, found, over, need = self.on, self.sharp_on, self.over, self.min_bands
        k = 0  # sounding hops before hop j
        for j, b in enumerate(plain):
            if not b:
                on = found = False
            else:
                if not on:
                    begins.append(j)
                    on = True
                if not found and sound[j]:  # (rare: the hops of a plain run until one proves sharp)
                    while at[k] < j:
                        k += 1
                    decay, w = self._step(k)
                    typical = self.typical * decay + rise_s[:, :k] @ w  # the average before hop j
                    if int(np.add.reduce(rise[:, j] >= typical * over)) >= need:
                        sharp.append(j)
                        found = True
        self.on, self.sharp_on = on, found
        decay, w = self._step(rise_s.shape[1])
        self.typical *= decay
        self.typical += rise_s @ w
        return begins, sharp
