"""The causal audio analysis: samples in, per-hop features, onsets, tempo and beats out.

One :class:`Analyzer` runs the same code for live capture, file playback, offline rendering and
`vj analyze`: it consumes samples in blocks of any size, analyses every complete hop (~5 ms) in
order, and keeps the state an :class:`~vjengine.audio.frame.AudioFrame` snapshot is built from.
Results do not depend on how the samples were blocked (updates happen at fixed hop indices).

Work per batch of hops is vectorised (one FFT and one projection matmul for all new hops); only
the small stateful trackers run per hop, in plain Python floats. A batch is the few hops that arrived
since the last video frame, so the cost is dominated by the number of numpy calls per batch: buffers
are preallocated and the views into them cached per batch size.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from vjengine.audio.features import DEFAULT_BANDS, SpectralFrontEnd, hop_size_for
from vjengine.audio.frame import AudioFrame
from vjengine.audio.musicfeatures import MusicFeatures
from vjengine.audio.trackers import (AttackDetector, BarTracker, BeatClock, OnsetTracker, TempoConfig, TempoTracker, octave_related,
                                     beat_offset)

log = logging.getLogger(__name__)

# hops analysed per vectorised batch: at 64, OpenBLAS splits the projection matmuls over threads
# that spin, doubling the CPU of `vj analyze` for no gain in wall time; 16 stays on one thread
_MAX_BATCH_HOPS = 16
_CHROMA_EVERY = 4     # chroma (colour, smoothed over ~150 ms) takes every 4th hop's spectrum
_BAR_LOOK_DSP = range(-3, 9)  # hops around a beat mark where its bass/kick flux peak is looked for
_EMPTY = np.zeros(0, dtype=np.float32)
_INV_LN_100 = 1.0 / math.log(100.0)  # centroid 100 Hz..10 kHz -> 0..1 on a log scale


@dataclass(frozen=True)
class AnalysisConfig:
    """Analysis settings (times in seconds or ms, levels in dB)."""

    hop_s: float = 0.005                 # analysis hop (rounded to a power of two of samples)
    fft_hops: int = 8                    # FFT window = fft_hops * hop (2048 at 44.1/48 kHz)
    bands: tuple[tuple[str, float, float], ...] = DEFAULT_BANDS
    gate_db: float = -70.0               # hop RMS (dBFS) below this for gate_hold_ms: everything dark
    gate_hold_ms: float = 400.0          # the gate stays open this long after the level falls below it
    range_db: float = 30.0               # dB below the adaptive reference that map onto 1..0
    ref_release_db_per_s: float = 1.5    # how fast the adaptive reference falls after loud parts
    band_floor_db: float = 15.0          # a band's reference never drops below overall ref - this
    level_attack_ms: float = 5.0
    level_release_ms: float = 180.0
    band_attack_ms: float = 5.0
    band_release_ms: float = 140.0
    chroma_smooth_ms: float = 150.0
    onset_threshold: float = 0.3         # fraction of the recent peak above the recent mean
    onset_refractory_ms: float = 60.0
    onset_release_ms: float = 200.0
    kick_threshold: float = 0.55
    kick_refractory_ms: float = 150.0
    kick_release_ms: float = 180.0
    tempo: TempoConfig = TempoConfig()   # tempo estimation (range, prior, comb, metrical level)
    kick_weight: float = 1.0             # low-band flux added to the beat-tracking onset strength
    tempo_window_s: float = 8.0          # onset history the tempo and phase estimates look at
    phase_update_hops: int = 32          # beat-grid fit every ~170 ms
    phase_weight_s: float = 1.0          # recency weighting of the beat-grid fit
    pll_gain: float = 0.5
    odf_delay_s: float = 0.012           # onset-strength peak lag behind the true onset (calibrated)
    lock_confidence: float = 0.12
    unlock_confidence: float = 0.02      # locked: unlock after 10 s with the grid support (TempoTracker) below this
    min_lock_s: float = 1.4              # sound needed before the clock may lock
    # locked, a tempo change of more than this fraction (a mix into another tempo, the first bars'
    # correction of a lock on too little sound) re-aims the phase with the fast slew, as a lock does
    retune_jump: float = 0.05
    # no lock while the tempo tracker is voting to halve (a 60-90 BPM groove reads at double for its
    # first bars): locking then would flash at double tempo for 1-2.5 s and flip an octave once locked
    lock_waits_for_level: bool = True
    # ... and attacks: at least attack_min_count sharp ones within the last attack_window_s, an attack
    # being a hop where attack_breadth of the mel bands rose by attack_rise_db or more, a sharp one
    # where they also rose by attack_over_typical times their typical rise (trackers.AttackDetector).
    # A steady tone, mains hum or a drumless pad ripples periodically in a band or two (partials
    # beating), which the autocorrelation takes for a beat; it has no attacks, so it never locks the
    # clock (nor, once locked, moves its tempo, phase or bar). Noise (hiss on a line-in: -70 dBFS
    # pink noise fired 33 beats in 20 s) has plain attacks by chance, but no sharp ones.
    attack_rise_db: float = 3.0
    attack_breadth: float = 0.1
    attack_over_typical: float = 7.5     # noise: 6 let some through, 7 none; the waltz held its grid
    attack_typical_s: float = 0.5        # 3 % of the time at 7-8 (through quiet bars), 13 % at 9, 34 % at 10
    attack_min_count: int = 3
    attack_window_s: float = 4.0
    attack_hold_s: float = 30.0          # locked, no attack for 2 beats: tempo, phase and bar are held, this long
    # onset and kick events fire only within this long after a sharp attack (0: always). The pickers
    # follow the onset strength's own level, so on hiss alone they fired 170-340 onsets and ~145
    # kicks a minute (on a -30 dBFS pad ~190 kicks): flashes on a line-in with nothing playing
    event_attack_window_s: float = 4.0
    silence_unlock_s: float = 4.0
    beats_per_bar: int = 4               # shown until the metre is known; fixed if auto_metre is off
    auto_metre: bool = True              # detect 3 or 4 beats a bar
    downbeat_confidence: float = 0.3     # bar flags claim a downbeat only at or above this confidence
    latency_ms: float = 0.0              # output latency compensation: beats fire this much early
    # "dsp": the beat-tracking onset strength is spectral flux; "learned": BeatNet's beat activation
    # (audio/learned.py), whose downbeat activation also feeds the bar tracker
    beat_tracker: str = "dsp"
    learned_delay_s: float = 0.035       # activation peak lag behind the beat (32 ms frame centre + hold)
    # learned: weight of the downbeat activation in the bar evidence, beside the bass/kick peak and the
    # harmonic change (weight 1 each); each cue is normalised by its own running mean
    learned_downbeat_weight: float = 1.0
    # learned: its activation peaks on beats, near 0 between (flux also peaks on hats, strums and
    # off-beats), so its autocorrelation settles sooner: until the clock locks, tempo updates twice as
    # often (the vote counts doubled, so they span the same time), it may lock after 1 s of sound, not
    # 1.4, and the comb averages only the harmonics the short early history holds. Locked, every 0.5 s
    # as before (the CPU). benchmarks/beat_loo.py checks the choice leave-one-out; the flux path keeps
    # ``tempo`` and ``min_lock_s``: locking it after 1 s put a 174 BPM loop at 3:2.
    learned_tempo: TempoConfig = TempoConfig(update_s=0.25, locked_update_s=0.5, half_votes_needed=6,
                                             unhalve_votes=12, switch_votes=8, comb_mean=True)
    learned_min_lock_s: float = 1.0


BEAT_TRACKERS = ("dsp", "learned")


def add_beat_tracker_argument(parser) -> None:
    """``--beat-tracker dsp|learned`` on a command that runs the analysis (live, demo, analyze, render)."""
    parser.add_argument("--beat-tracker", choices=BEAT_TRACKERS, default="dsp",
                        help="beat and downbeat tracking from spectral flux (dsp, the default) or from BeatNet's "
                             "learned activation run in numpy (learned: steadier on real music, ~2x the analysis CPU)")


class HopConstants(NamedTuple):
    """Per-hop loop constants, fixed at construction (the loop binds them to locals once per stretch)."""

    level_attack: float       # one-pole coefficients per hop: level, bands, onset/kick envelopes, chroma
    level_release: float
    band_attack: float
    band_release: float
    onset_decay: float
    kick_decay: float
    chroma_keep: float        # per chroma update (every _CHROMA_EVERY hops)
    window_hops: int          # onset-history ring length
    hop_s: float
    inv_hop: float            # 1 / hop samples: hop energy -> mean power
    gate_db: float
    ref_release_db: float     # adaptive reference fall per hop (dB)
    inv_range_db: float
    band_floor_db: float
    kick_weight: float
    silence_unlock_hops: float
    n_bands: int
    kick_gate_band: int       # the kick detector listens while band 0 or this band carries sound


def _coef(time_ms: float, hop_s: float) -> float:
    """One-pole smoothing coefficient for a time constant in ms at one step per hop."""
    return math.exp(-hop_s / max(time_ms * 1e-3, 1e-6))


class Analyzer:
    """Causal analysis for one mono stream at ``samplerate`` Hz; see the module docstring.

    ``record=True`` keeps every hop's features and every event time for `vj analyze` and tests.
    """

    def __init__(self, samplerate: int, config: AnalysisConfig | None = None, *, record: bool = False) -> None:
        self.config = cfg = config or AnalysisConfig()
        if cfg.beat_tracker not in BEAT_TRACKERS:
            raise ValueError(f"beat_tracker must be one of {', '.join(BEAT_TRACKERS)}, got {cfg.beat_tracker!r}")
        self.samplerate = int(samplerate)
        self.hop = hop_size_for(self.samplerate, cfg.hop_s)
        self.n_fft = self.hop * cfg.fft_hops
        self.hop_s = self.hop / self.samplerate
        self.frame_rate_hz = self.samplerate / self.hop
        # onset strength ignores changes below the gate (- 30 dB): near-silent bands flicker
        self.front = SpectralFrontEnd(samplerate=self.samplerate, n_fft=self.n_fft, bands=cfg.bands,
                                      max_hops=_MAX_BATCH_HOPS, onset_floor_db=cfg.gate_db - 30.0)
        self.band_names = self.front.band_names
        self.music = MusicFeatures(self.front.n_mels, hop_s=self.hop_s)  # harmony + drums/harmonic (HPSS)
        nm, nk = self.front.n_mels, self.front.n_kick
        self._flux_w = np.zeros((2, nm + nk), dtype=np.float32)  # row means: mel flux, kick flux
        self._flux_w[0, :nm] = 1.0 / nm
        self._flux_w[1, nm:] = 1.0 / nk
        nb = len(self.band_names)
        self.latency_ms = cfg.latency_ms

        self.n_hops = 0
        # the last n_fft samples analysed, then room for one batch of new hops
        self._sig = np.zeros(self.n_fft + _MAX_BATCH_HOPS * self.hop, dtype=np.float32)
        self._views: dict[int, tuple] = {}  # batch size -> views into _sig and _onset_cols
        self._pending = _EMPTY
        # floored onset dB, one column per hop: the two hops before the batch (flux lag 2), then the batch
        self._onset_cols = np.zeros((nm + nk, _MAX_BATCH_HOPS + 2), dtype=np.float32)
        self._onset_primed = False
        self._ref_db = cfg.gate_db
        self._band_ref = [cfg.gate_db - cfg.band_floor_db] * nb
        self._level = 0.0
        self._bands = [0.0] * nb
        self._chroma = [0.0] * 12
        self._chroma_shown: tuple = (None, (0.0,) * 12)  # (the chroma list it was made from, max-normalised)
        h = self.hop_s
        self._k_level = (_coef(cfg.level_attack_ms, h), _coef(cfg.level_release_ms, h))
        self._k_band = (_coef(cfg.band_attack_ms, h), _coef(cfg.band_release_ms, h))
        self._k_onset_env = _coef(cfg.onset_release_ms, h)
        self._k_kick_env = _coef(cfg.kick_release_ms, h)
        self._k_chroma = _coef(cfg.chroma_smooth_ms, h) ** _CHROMA_EVERY
        self.onsets = OnsetTracker(hop_s=h, threshold=cfg.onset_threshold, refractory_s=cfg.onset_refractory_ms * 1e-3)
        self.kicks = OnsetTracker(hop_s=h, threshold=cfg.kick_threshold, refractory_s=cfg.kick_refractory_ms * 1e-3,
                                  min_peak=1.0)
        is_learned = cfg.beat_tracker == "learned"
        self.tempo = TempoTracker(frame_rate_hz=self.frame_rate_hz,
                                  config=cfg.learned_tempo if is_learned else cfg.tempo)
        self._min_lock_s = cfg.learned_min_lock_s if is_learned else cfg.min_lock_s
        self.clock = BeatClock(hop_s=h, bpm=120.0, gain=cfg.pll_gain)
        self._win = int(round(cfg.tempo_window_s * self.frame_rate_hz))
        self._odf_buf = np.zeros(2 * self._win)
        self._kick_buf = np.zeros(2 * self._win)  # kick events (1.0 on the hop a kick fired), same ring
        self._low_buf = np.zeros(2 * self._win)   # low-band (bass/kick) flux, same ring
        # learned: the low ring holds the downbeat activation; the bass/kick flux goes here (a bar cue beside it)
        self._bass_buf: np.ndarray | None = None
        self._flux_buf: np.ndarray | None = None
        self.bars = BarTracker(fixed_metre=0 if cfg.auto_metre else cfg.beats_per_bar,
                               learned_weight=cfg.learned_downbeat_weight)
        self.learned = None
        self._act = (0.0, 0.0)  # the latest learned (beat or downbeat, downbeat) activation
        self._odf_delay_s = cfg.odf_delay_s
        self._bar_look = _BAR_LOOK_DSP  # hops around a beat mark where its bass/kick peak is looked for
        if cfg.beat_tracker == "learned":
            from vjengine.audio.learned import BeatActivation

            self.learned = BeatActivation(self.samplerate)
            self._bass_buf = np.zeros(2 * self._win)
            # ... and the spectral flux the dsp path tracks: the network's activation fires on the
            # off-beat hats of a slow groove too (it reads a 60 BPM groove at 120), where the flux
            # still shows which pulses carry the kick and snare; it judges the metrical level
            self._flux_buf = np.zeros(2 * self._win)
            self._odf_delay_s = cfg.learned_delay_s
            lag = int(round(cfg.learned_delay_s / self.hop_s))
            self._bar_look = range(lag - 3, lag + 6)
        self.beats_per_bar = cfg.beats_per_bar
        self._bar_manual = False  # resync set the downbeat: hold it until the clock unlocks
        self._marks: list[tuple[int, int, list]] = []  # (beat index, hop index, chroma) at each clock beat
        self._next_mark = 1.0
        self.downbeat_times: list[float] = []
        self._odf_i = 0
        # hops after a sanitised (non-finite) sample whose analysis windows still hold it: the FFT
        # frame and the flux lag, or the learned network's frame and its difference, whichever is longer
        window = max(self.n_fft, self.learned.frame + int(self.learned.hop_exact) if self.learned else 0)
        self._glitch_hops = -(-window // self.hop) + 3
        self._glitch_until = 0
        self._glitch_logged = False
        self.attacks = AttackDetector(nm, hop_s=h, rise_db=cfg.attack_rise_db, breadth=cfg.attack_breadth,
                                      over_typical=cfg.attack_over_typical, typical_s=cfg.attack_typical_s)
        self._attacks: deque[int] = deque(maxlen=64)  # hop index where each attack began (fit or hold)
        self._sharp_attacks: deque[int] = deque(maxlen=64)  # ... each sharp one (the lock's gate)
        self._still_hops = 0  # hops locked without attacks
        self._last_sharp = -(10 ** 9)  # hop index of the latest sharp attack the hop loop has passed
        self._event_hops = (cfg.event_attack_window_s * self.frame_rate_hz if cfg.event_attack_window_s > 0
                            else float("inf"))
        self._music_from: int | None = None  # hop where the attacks that let the clock lock began
        self._tempo_every = max(1, int(round(self.tempo.config.update_s * self.frame_rate_hz)))
        # locked: only every this many of those updates (fixed hop indices: blocking-independent)
        self._locked_stride = max(1, int(round(self.tempo.config.locked_update_s / self.tempo.config.update_s)))
        self._gate_hold_hops = max(1, int(round(cfg.gate_hold_ms * 1e-3 / h)))
        self._gate_left = 0
        self._gate_energy = self.hop * 10.0 ** (cfg.gate_db / 10.0)  # a hop's sum of squares at gate_db
        self._consts = HopConstants(
            *self._k_level, *self._k_band, self._k_onset_env, self._k_kick_env, self._k_chroma, self._win, h,
            1.0 / self.hop, cfg.gate_db, cfg.ref_release_db_per_s * h, 1.0 / cfg.range_db,
            cfg.band_floor_db, cfg.kick_weight, cfg.silence_unlock_s / h, nb, min(1, nb - 1))

        self.locked = False
        self.confidence = 0.0
        self.tempo_source = "auto"
        self._manual_bpm: float | None = None
        self._sound_hops = 0
        self._silent_hops = 0
        self._weak_hops = 0
        self._bar_offset = 0
        self._taps: list[float] = []
        self._last_out = 0.0
        self._shown_beat = 0  # the last beat index a snapshot has shown (frame-level beat flags)

        # per-snapshot state
        self._onset_env = 0.0
        self._kick_env = 0.0
        self._flags = {"onset": False, "kick": False}
        self._hops_since_snapshot = 0
        self._last = {"rms": 0.0, "rms_db": -120.0, "centroid_hz": 0.0, "strength": 0.0, "gate": False}

        self.record = record
        self.beat_times: list[float] = []
        self.onset_times: list[float] = []
        self.kick_times: list[float] = []
        self._rec: dict[str, list] = {k: [] for k in (
            "time_s", "rms_db", "level", "bands", "centroid", "onset_strength", "bpm", "beat_phase", "locked")}

    # ------------------------------------------------------------------ public controls
    @property
    def time_s(self) -> float:
        """Stream time of the end of the last analysed hop (s)."""
        return self.n_hops * self.hop_s

    @property
    def bpm(self) -> float:
        return self.clock.bpm

    @property
    def level(self) -> float:
        """The smoothed, gated loudness (0..1) after the last analysed hop (a snapshot's ``level``)."""
        return float(self._level)

    def set_bpm(self, bpm: float | None) -> None:
        """Fix the tempo (BPM, 20..400), or ``None`` to return to automatic tempo."""
        if bpm is None:
            self._manual_bpm = None
            self.tempo_source = "auto"
            return
        bpm = float(bpm)
        if not 20.0 <= bpm <= 400.0:
            raise ValueError(f"bpm must be within 20..400, got {bpm}")
        self._manual_bpm = bpm
        self.clock.bpm = bpm
        self.tempo_source = "manual"

    def tap(self, time_s: float | None = None) -> None:
        """A tap at stream time ``time_s`` (default: now). Two or more taps set the tempo and phase."""
        t = self.time_s if time_s is None else float(time_s)
        if self._taps and (t - self._taps[-1] > 2.0 or t <= self._taps[-1]):
            self._taps.clear()
        self._taps.append(t)
        self._taps = self._taps[-8:]
        if len(self._taps) >= 2:
            period = float(np.median(np.diff(self._taps)))
            self._manual_bpm = min(400.0, max(20.0, 60.0 / period))
            self.clock.bpm = self._manual_bpm
            self.tempo_source = "tap"
            # the last tap was a beat: aim the phase at it (a quick slew, no jump)
            since = (self.time_s - t) * self._manual_bpm / 60.0
            self.clock.correct(since % 1.0, gain=1.0, fast_s=0.5)

    def resync(self) -> None:
        """Make the nearest beat the downbeat (beat 1 of the bar); unlocked, also snap phase to it."""
        out = self._out_phase()
        nearest = round(out)
        if not self.locked and self.tempo_source == "auto":
            self.clock.phase += nearest - out  # user asked for it: the only deliberate jump
        self._bar_offset = int(nearest)
        self._bar_manual = True

    # ------------------------------------------------------------------ processing
    def process(self, samples: np.ndarray) -> int:
        """Analyse every complete hop in ``samples`` (mono float32, any length); returns hops done."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._pending.size:
            x = np.concatenate([self._pending, x])
        hop = self.hop
        m_total = x.size // hop
        for done in range(0, m_total, _MAX_BATCH_HOPS):
            m = min(_MAX_BATCH_HOPS, m_total - done)
            self._process_hops(x[done * hop:(done + m) * hop], m)
        rest = x[m_total * hop:]
        self._pending = rest.copy() if rest.size else _EMPTY
        return m_total

    def _views_for(self, m: int) -> tuple:
        """Views into the signal and onset buffers for a batch of ``m`` hops (made once per size)."""
        n_fft, hop = self.n_fft, self.hop
        sig, cols = self._sig, self._onset_cols
        # frame j ends at the last sample of hop j: a strided view, no copy
        frames = np.lib.stride_tricks.as_strided(sig[hop:], shape=(m, n_fft), strides=(hop * 4, 4),
                                                 writeable=False)
        views = (sig[n_fft:n_fft + m * hop], frames, sig[n_fft:n_fft + m * hop].reshape(m, hop),
                 sig[:n_fft], sig[m * hop:m * hop + n_fft],
                 cols[:, 2:2 + m], cols[:, :m], np.empty((cols.shape[0], m), dtype=np.float32),
                 cols[:, :2], cols[:, m:m + 2])
        self._views[m] = views
        return views

    def _process_hops(self, chunk: np.ndarray, m: int) -> None:
        new, frames, hops, history, history_next, cur, lag2, rise, cols_head, cols_next = \
            self._views.get(m) or self._views_for(m)
        new[:] = chunk
        energies = np.vecdot(hops, hops).tolist()  # hop sum of squares -> RMS (overflow: an absurd value)
        if not math.isfinite(sum(energies)):  # NaN / inf (or absurd values) from a broken driver
            last_bad = max(j for j, e in enumerate(energies) if not math.isfinite(e))
            if not self._glitch_logged:
                self._glitch_logged = True
                log.warning("audio: non-finite or absurd samples (a broken driver, interface or file?); they are "
                            "analysed as silence and give no beat or onset (said once)")
            np.nan_to_num(self._sig, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            np.clip(self._sig, -64.0, 64.0, out=self._sig)  # not a signal: keep it from poisoning the state
            energies = np.vecdot(hops, hops).tolist()
            # the sanitised stretch is a dropout (or a clamp) the music never played: every analysis
            # window that holds it would see an attack where it starts and ends
            self._glitch_until = self.n_hops + last_bad + 1 + self._glitch_hops
        feat = self.front.compute(frames)
        history[:] = history_next  # the window history for the next batch
        acts = self._learned_hops(new, m) if self.learned is not None else None  # sanitised samples
        glitch = min(m, self._glitch_until - self.n_hops)  # hops of this batch whose windows hold a glitch

        # onset strength: log-mel (and kick-bin) spectral flux, lag 2 hops
        cur[:] = feat.onset_db
        if not self._onset_primed:  # the first hop has no past: no flux
            cols_head[:] = cur[:, :1]
            self._onset_primed = True
        np.subtract(cur, lag2, out=rise)
        np.maximum(rise, 0.0, out=rise)
        if glitch > 0:  # no onset, attack or beat evidence from a glitch
            rise[:, :glitch] = 0.0
            if acts is not None:
                acts[:glitch] = [(0.0, 0.0)] * glitch
        fluxes = (self._flux_w @ rise).T.tolist()  # m x [mean mel rise, mean kick-bin rise]
        gates = self._gate_hops(energies)
        # glitch hops pass as gated: the detector holds its typical rise (zeroed rises would pull it
        # down, and the noise after the glitch would then read as sharp attacks)
        self._note_attacks(rise, gates if glitch <= 0 else [False] * glitch + gates[glitch:])
        cols_head[:] = cols_next
        band_rows = feat.band_cols.T.tolist()  # m x [band dB ..., total power, centroid numerator]

        first_hop = self.n_hops
        if glitch > 0:  # a negative flux tells the hop loop to hold the onset pickers
            fluxes[:glitch] = [(-1.0, -1.0)] * glitch
        if acts is not None:  # the learned activation stands in for the flux in the beat tracking
            fluxes = [(f[0], f[1], a[0], a[1]) for f, a in zip(fluxes, acts)]
        self._run_trackers(m, energies, band_rows, fluxes, feat.chroma, gates)
        self.music.process(first_hop, feat.onset_db, feat.chroma, gates)

        last = self._last
        nb = len(self._bands)
        e = energies[-1] / self.hop
        last["rms"] = math.sqrt(e)
        last["rms_db"] = 10.0 * math.log10(e) if e > 1e-12 else -120.0
        row = band_rows[-1]
        last["centroid_hz"] = row[nb + 1] / row[nb] if gates[-1] else 0.0
        last["gate"] = gates[-1]
        if self.record:
            e = np.maximum(np.array(energies) / self.hop, 1e-12)
            self._rec["rms_db"].append(10.0 * np.log10(e))
            br = np.array(band_rows)
            self._rec["centroid"].append(br[:, nb + 1] / br[:, nb] * np.array(gates, dtype=np.float64))

    def _learned_hops(self, chunk: np.ndarray, m: int) -> list[tuple[float, float]]:
        """Each hop's latest learned activation (beat or downbeat, downbeat): a frame's value holds from
        the hop its last sample arrives in, so the result does not depend on the blocking."""
        ends, probs = self.learned.push(chunk)
        out = []
        act = self._act
        first = self.n_hops * self.hop
        k = 0
        rows = probs.tolist()
        for j in range(m):
            end = first + (j + 1) * self.hop
            while k < len(ends) and ends[k] <= end:
                b, d, _ = rows[k]
                act = (b + d, d)
                k += 1
            out.append(act)
        self._act = act
        return out

    def _run_trackers(self, m: int, energies: list, band_rows: list, fluxes: list, chroma: np.ndarray,
                      gates: list) -> None:
        """The per-hop stateful part for a batch of ``m`` hops (``gates``: each hop's, see _gate_hops).

        Hops run in stretches that end where a tempo or beat-grid update is due (at fixed hop
        indices, so results do not depend on the blocking): the hop loop keeps its state in locals
        and the updates see it written back.
        """
        tempo_every, phase_every = self._tempo_every, self.config.phase_update_hops
        n = self.n_hops
        self._hops_since_snapshot += m
        if n % tempo_every + m < tempo_every and n % phase_every + m < phase_every:  # no update due
            self._run_hops(0, m, energies, band_rows, fluxes, chroma, gates)
            return
        j = 0
        while j < m:
            n = self.n_hops
            k = min(m, j + tempo_every - n % tempo_every, j + phase_every - n % phase_every)
            self._run_hops(j, k, energies, band_rows, fluxes, chroma, gates)
            if self.n_hops % tempo_every == 0:
                self._update_tempo()
            if self.n_hops % phase_every == 0:
                self._update_phase()
            j = k

    def _run_hops(self, j0: int, j1: int, energies: list, band_rows: list, fluxes: list,
                  chroma: np.ndarray, gates: list) -> None:
        """Hops ``j0..j1`` of the batch, in plain Python floats (cheaper than numpy on tiny vectors)."""
        (level_attack, level_release, band_attack, band_release, onset_decay, kick_decay, chroma_keep, win,
         hop_s, inv_hop, gate_db, ref_release_db, inv_range_db, band_floor_db, kick_weight,
         silence_unlock_hops, nb, kick_gate_band) = self._consts
        level, bands, band_ref = self._level, self._bands, self._band_ref
        ref = self._ref_db
        onset_env, kick_env, chroma_state = self._onset_env, self._kick_env, self._chroma
        sound, silent, odf_i, n, last_out = self._sound_hops, self._silent_hops, self._odf_i, self.n_hops, self._last_out
        any_onset = any_kick = False
        clock = self.clock
        advance = clock.advance
        locked = self.locked
        latency_beats_per_bpm = self.latency_ms * 1e-3 / 60.0
        onsets_update, kicks_update = self.onsets.update, self.kicks.update
        odf_buf, kick_buf, low_buf, bass_buf = self._odf_buf, self._kick_buf, self._low_buf, self._bass_buf
        flux_buf = self._flux_buf
        bass = 0.0
        next_mark, marks = self._next_mark, self._marks
        rec = self.record
        if rec:
            m = j1 - j0
            rec_t = np.empty(m); rec_level = np.empty(m); rec_bands = np.empty((m, nb)); rec_str = np.empty(m)
            rec_bpm = np.empty(m); rec_phase = np.empty(m); rec_locked = np.empty(m, bool)
        strength = self._last["strength"]
        # onset and kick events need music: a sharp attack at most event_hops before (this batch's are noted)
        event_hops = self._event_hops
        last_sharp = self._last_sharp
        sharp_attacks = self._sharp_attacks
        k = len(sharp_attacks)
        while k and sharp_attacks[k - 1] >= n:  # from the newest back: usually none or one ahead
            k -= 1
        ahead = [sharp_attacks[i] for i in range(k, len(sharp_attacks))]
        for j in range(j0, j1):
            if ahead and ahead[0] <= n:
                last_sharp = ahead.pop(0)
            e = energies[j] * inv_hop
            x_db = 10.0 * math.log10(e) if e > 1e-12 else -120.0
            g = gates[j]
            bdb = band_rows[j]
            if g:
                ref -= ref_release_db
                if x_db > ref:
                    ref = x_db
                if gate_db > ref:
                    ref = gate_db
                x = 1.0 + (x_db - ref) * inv_range_db  # <= 1 (ref >= x_db)
                if x < 0.0:
                    x = 0.0
                # each band: reference = max(band dB, last reference - release, overall ref - floor),
                # value = 1 + (dB - reference) / range_db, >= 0 (<= 1 since reference >= dB)
                fl = ref - band_floor_db
                for b in range(nb):
                    v = bdb[b]
                    r = band_ref[b] - ref_release_db
                    if v > r:
                        r = v
                    if fl > r:
                        r = fl
                    band_ref[b] = r
                    xb = 1.0 + (v - r) * inv_range_db
                    if xb < 0.0:
                        xb = 0.0
                    yb = bands[b]
                    bands[b] = xb + (band_attack if xb > yb else band_release) * (yb - xb)
                fj = fluxes[j]
                flux, kflux = fj[0], fj[1]
                if flux >= 0.0:  # events only near a sharp attack (off, the pickers still follow the level)
                    music = n - last_sharp <= event_hops
                    fired, strength = onsets_update(flux, music)
                    kfired, _ = kicks_update(kflux, music and max(bdb[0], bdb[kick_gate_band]) > ref - 30.0)
                else:  # a glitch's windows (see _process_hops): the pickers hold their state
                    fired = kfired = False
                    strength = flux = kflux = 0.0
                if len(fj) == 2:
                    odf = flux + kick_weight * kflux
                    low = kflux
                else:  # learned: beat activation for tempo and phase, downbeat activation for the bar
                    odf, low, bass = fj[2], fj[3], kflux
                    fx = flux + kick_weight * kflux
                sound += 1
                silent = 0
            else:
                x = 0.0
                for b in range(nb):
                    bands[b] *= band_release  # release toward 0
                fired, strength = onsets_update(0.0, False)
                kfired, _ = kicks_update(0.0, False)
                odf = low = bass = fx = 0.0
                silent += 1
                if silent > silence_unlock_hops:
                    sound = 0
            level = x + (level_attack if x > level else level_release) * (level - x)
            t_end = (n + 1) * hop_s
            if fired:
                onset_env = 1.0
                any_onset = True
                if rec:
                    self.onset_times.append(t_end - hop_s)
            else:
                onset_env *= onset_decay
            if kfired:
                kick_env = 1.0
                any_kick = True
                if rec:
                    self.kick_times.append(t_end - hop_s)
            else:
                kick_env *= kick_decay

            # onset history for tempo and phase (a doubled ring: the window is always contiguous)
            odf_buf[odf_i] = odf_buf[odf_i + win] = odf
            kick_buf[odf_i] = kick_buf[odf_i + win] = 1.0 if kfired else 0.0
            low_buf[odf_i] = low_buf[odf_i + win] = low
            if bass_buf is not None:
                bass_buf[odf_i] = bass_buf[odf_i + win] = bass
                flux_buf[odf_i] = flux_buf[odf_i + win] = fx
            odf_i = odf_i + 1 if odf_i + 1 < win else 0
            n += 1
            if n % _CHROMA_EVERY == 0:  # per-hop max-normalised pitch-class power, one-pole smoothed
                if g:
                    c = chroma[:, j].tolist()
                    s = (1.0 - chroma_keep) / max(max(c), 1e-12)
                    chroma_state = [chroma_keep * y + s * v for y, v in zip(chroma_state, c)]
                else:
                    chroma_state = [chroma_keep * y for y in chroma_state]
            # beat clock: advance one hop; a beat fires when the (latency-shifted) phase crosses an integer
            advance()
            p = clock.phase
            if p >= next_mark:  # the clock's beat: note where, and the harmony of the beat that ended
                next_mark = math.floor(p) + 1.0
                marks.append((int(next_mark) - 1, n - 1, chroma_state))
            out = p + latency_beats_per_bpm * clock.bpm
            if locked and int(out) > int(last_out) and rec:
                self._record_beat(last_out, out, t_end)
            last_out = out
            if rec:
                i = j - j0
                rec_t[i] = t_end; rec_level[i] = level; rec_bands[i] = bands; rec_str[i] = strength
                rec_bpm[i] = clock.bpm; rec_phase[i] = self._out_phase() % 1.0; rec_locked[i] = locked
        self._level, self._ref_db = level, ref
        self._onset_env, self._kick_env, self._chroma = onset_env, kick_env, chroma_state
        self._sound_hops, self._silent_hops, self._odf_i, self.n_hops, self._last_out = sound, silent, odf_i, n, last_out
        self._next_mark = next_mark
        self._last_sharp = last_sharp
        if any_onset:
            self._flags["onset"] = True
        if any_kick:
            self._flags["kick"] = True
        self._last["strength"] = strength
        if rec:
            r = self._rec
            r["time_s"].append(rec_t); r["level"].append(rec_level); r["bands"].append(rec_bands)
            r["onset_strength"].append(rec_str); r["bpm"].append(rec_bpm); r["beat_phase"].append(rec_phase)
            r["locked"].append(rec_locked)
        return gates

    def _history(self, buf: np.ndarray | None = None) -> np.ndarray:
        """The onset-strength window (or the same window of ``buf``), oldest first, ending at the newest hop."""
        n = min(self.n_hops, self._win)
        start = self._odf_i + self._win - n
        return (self._odf_buf if buf is None else buf)[start:self._odf_i + self._win]

    def _update_tempo(self) -> None:
        cfg = self.config
        sound_s = self._sound_hops * self.hop_s
        if self._manual_bpm is not None:
            self.clock.bpm = self._manual_bpm
            self.locked = True
            return
        stride = self._locked_stride if self.locked else 1
        if stride > 1 and (self.n_hops // self._tempo_every) % stride:
            return
        every = self._tempo_every * stride  # hops this update stands for
        hist = self._history()
        if sound_s < 0.5 or hist.size < 60.0 * self.frame_rate_hz / self.tempo.config.min_bpm:
            self.confidence *= 0.9
            if self._silent_hops * self.hop_s > cfg.silence_unlock_s:
                self.locked = False
            return
        if not self.locked and not self._attacked(cfg.attack_window_s, cfg.attack_min_count, sharp=True):
            self.confidence *= 0.9  # no attacks: nothing to lock to or learn from (see attack_rise_db)
            self.tempo.forget()
            self._music_from = None
            return
        if self._music_from is None:  # the music began at the first of the attacks that opened the gate
            since = self.n_hops - cfg.attack_window_s * self.frame_rate_hz
            self._music_from = min(h for h in self._sharp_attacks if h >= since)
        if self.locked and self._still():
            # the clock runs on at its tempo and phase through a drumless breakdown (a pad's ripple
            # would pull both off the grid), and stops only after attack_hold_s (the music ended over a hum)
            self.confidence *= 0.9
            self._still_hops += every
            if self._still_hops * self.hop_s > cfg.attack_hold_s:
                self.locked = False
                self._reset_bars()
                self.tempo.forget()
            return
        self._still_hops = 0
        self.tempo.hold = self.locked and self.tempo_source == "auto"
        # learned: the flux judges the metrical level (see _flux_buf)
        level = None if self._flux_buf is None else self._history(self._flux_buf)
        bpm, conf = self.tempo.update(hist, self._history(self._kick_buf), dt=stride * self.tempo.config.update_s,
                                      level_history=level)
        self.confidence = conf
        if self.clock.bpm > 0 and octave_related(bpm / self.clock.bpm):  # beats now count another level: bars start afresh
            self._reset_bars()
        retune = self.locked and self.clock.bpm > 0 and abs(bpm / self.clock.bpm - 1.0) > cfg.retune_jump
        self.clock.bpm = bpm
        if retune:  # the phase is re-aimed at the new grid at once, not over the next bars
            self._update_phase(fast=True)
        if not self.locked:
            # min_lock_s of music: the hum or hiss before it is sound, but no grid to lock to
            music_s = (self.n_hops - self._music_from) * self.hop_s
            if conf >= cfg.lock_confidence and min(sound_s, music_s) >= self._min_lock_s and \
                    not (cfg.lock_waits_for_level and self.tempo.level_pending):
                self.locked = True
                self._weak_hops = 0
                self._update_phase(fast=True)
        else:
            # weak: onsets on neither every beat nor every other one (a learned activation may fire
            # on alternate beats only of a fast groove: the grid still holds, the level is the flux's call)
            self._weak_hops = self._weak_hops + every if self.tempo.grid_support < cfg.unlock_confidence else 0
            if self._weak_hops * self.hop_s > 10.0 or self._silent_hops * self.hop_s > cfg.silence_unlock_s:
                self.locked = False
                self._reset_bars()
        if self.locked:
            self._update_bars()

    def _gate_hops(self, energies: list) -> list[bool]:
        """Each hop's gate: open while its sum of squares is above ``gate_db`` and ``gate_hold_ms`` after."""
        level, hold, left = self._gate_energy, self._gate_hold_hops, self._gate_left
        gates = []
        for e in energies:
            if e > level:
                left = hold
            elif left > 0:
                left -= 1
            gates.append(left > 0)
        self._gate_left = left
        return gates

    def _note_attacks(self, rise: np.ndarray, gates: list[bool]) -> None:
        """Record the hops of this batch where an attack (``attack_*``) begins, from its per-band dB
        rises (a hop with the gate closed is quiet)."""
        plain, sharp = self.attacks.process(rise[:self.front.n_mels], gates)
        n = self.n_hops
        if plain:
            self._attacks.extend([n + i for i in plain])
        if sharp:
            self._sharp_attacks.extend([n + i for i in sharp])

    def _attacked(self, window_s: float, count: int, sharp: bool = False) -> bool:
        """At least ``count`` attacks (``sharp`` ones) within the last ``window_s``? (The batch's later
        hops are noted already: they do not count, so that results do not depend on the blocking.)"""
        now = self.n_hops
        since = now - window_s * self.frame_rate_hz
        return sum(1 for h in (self._sharp_attacks if sharp else self._attacks) if since <= h < now) >= count

    def _still(self) -> bool:
        """No attack for two beats: the grid is held, not fitted."""
        return not self._attacked(120.0 / self.clock.bpm, 1, sharp=True)

    def _reset_bars(self) -> None:
        self.bars.reset()
        self._marks.clear()
        self._bar_manual = False

    def _update_bars(self) -> None:
        """Feed the bar tracker every beat whose next beat has passed (its harmony is then known)."""
        marks = self._marks
        if len(marks) < 2:
            return
        win, n = self._win, self.n_hops
        low, bass = self._low_buf, self._bass_buf
        for (k, h, c0), (k1, _, c1) in zip(marks, marks[1:]):
            if k1 != k + 1 or n - (h - 3) > win:  # a gap (resync) or too old for the ring
                continue
            peak = max(low[(h + d) % win] for d in self._bar_look)  # onset peaks trail the beat a little
            dot = sum(a * b for a, b in zip(c0, c1))
            norm = math.sqrt(sum(a * a for a in c0) * sum(b * b for b in c1))
            harmony = 1.0 - dot / norm if norm > 1e-12 else 0.0
            if bass is None:
                self.bars.add_beat(k, peak, harmony)
            else:  # learned: its downbeat activation beside the bass/kick peak and the harmonic change
                self.bars.add_beat(k, max(bass[(h + d) % win] for d in _BAR_LOOK_DSP), harmony, learned=peak)
        del marks[:-1]
        # the bar moves only to a confident downbeat (until then, and when confidence dips, the last one holds)
        if not self._bar_manual and self.bars.confidence >= self.config.downbeat_confidence:
            self.beats_per_bar = self.bars.metre
            self._bar_offset = self.bars.downbeat

    @property
    def downbeat_confident(self) -> bool:
        return self._bar_manual or self.bars.confidence >= self.config.downbeat_confidence

    def _update_phase(self, fast: bool = False) -> None:
        if self._sound_hops * self.hop_s < 1.0 or self._silent_hops > 0 or self._still():
            return
        # the period rounded to 1/8 hop, so the grid cached in beat_offset is reused while the tempo holds
        period_hops = round(60.0 * self.frame_rate_hz / self.clock.bpm * 8.0) / 8.0
        hist = self._history()
        d, sharp = beat_offset(hist, period_hops, weight_s=self.config.phase_weight_s,
                               frame_rate_hz=self.frame_rate_hz)
        if sharp <= 0.05:
            return
        since_beat = (d * self.hop_s + self._odf_delay_s) / (60.0 / self.clock.bpm)
        self.clock.correct(since_beat % 1.0, fast_s=1.0 if fast else 0.0)

    def _out_phase(self) -> float:
        return self.clock.phase + self.latency_ms * 1e-3 * self.clock.bpm / 60.0

    def _record_beat(self, prev: float, out: float, t_end: float) -> None:
        """A beat between the previous hop's phase ``prev`` and ``out``: record its time within the hop."""
        c = math.floor(out)
        frac = (c - prev) / (out - prev) if out > prev else 1.0
        t = t_end - self.hop_s + frac * self.hop_s
        self.beat_times.append(t)
        if (c - self._bar_offset) % self.beats_per_bar == 0 and self.downbeat_confident:
            self.downbeat_times.append(t)

    # ------------------------------------------------------------------ output
    def snapshot(self, *, input_ok: bool = True, input_status: str = "", lookahead_s: float = 0.0) -> AudioFrame:
        """Build the frame from the current state and clear the since-last-frame flags.

        ``lookahead_s`` (the engine passes half the frame interval) shows the beat clock that much
        ahead, so a beat is flagged on the frame nearest to it rather than always on the one after
        (frame quantisation then errs by +-half a frame, not 0..1 frame late). Hop-level beat times
        (``beat_times``) are not affected.
        """
        cfg = self.config
        bpm = self.clock.bpm
        out = self.clock.phase + (self.latency_ms * 1e-3 + max(0.0, lookahead_s)) * bpm / 60.0
        bpb = self.beats_per_bar
        beat_index = math.floor(out)
        frac = out - beat_index
        in_bar = (beat_index - self._bar_offset) % bpb
        beat_flag = self.locked and beat_index > self._shown_beat
        self._shown_beat = max(self._shown_beat, beat_index)
        c_hz = self._last["centroid_hz"]
        centroid = 0.0 if c_hz <= 0 else min(1.0, max(0.0, math.log(c_hz / 100.0) * _INV_LN_100))
        if self._chroma is not self._chroma_shown[0]:  # chroma changes every few hops, not every frame
            cmax = max(self._chroma)
            self._chroma_shown = (self._chroma, tuple([v / cmax for v in self._chroma]) if cmax > 1e-9 else (0.0,) * 12)
        chroma_n = self._chroma_shown[1]
        f = AudioFrame.from_fields({
            "time_s": self.time_s,
            "rms": self._last["rms"],
            "rms_db": self._last["rms_db"],
            "level": float(self._level),
            "bands": MappingProxyType(dict(zip(self.band_names, self._bands))),
            "band_names": self.band_names,
            "centroid": centroid,
            "centroid_hz": c_hz,
            "onset_strength": float(self._last["strength"]),
            "onset": self._flags["onset"],
            "onset_env": self._onset_env,
            "kick": self._flags["kick"],
            "kick_env": self._kick_env,
            "chroma": chroma_n,
            "bpm": float(bpm),
            "beat_phase": frac,
            "bar_phase": (in_bar + frac) / bpb,
            "beat_in_bar": int(in_bar),
            "beats_per_bar": bpb,
            "beat_count": int(beat_index),
            "beat": beat_flag,
            "bar": beat_flag and in_bar == 0 and self.downbeat_confident,
            "downbeat_confidence": 1.0 if self._bar_manual else float(self.bars.confidence),
            "beat_env": math.exp(-4.0 * frac) if self.locked else 0.0,
            "locked": self.locked,
            "confidence": float(min(1.0, self.confidence * 2.0)),
            "tempo_source": self.tempo_source,
            "input_ok": input_ok,
            "input_status": input_status,
            "gate_open": self._last["gate"],
            "hops": self._hops_since_snapshot,
            **self.music.fields(),
        })
        for k in self._flags:
            self._flags[k] = False
        self._hops_since_snapshot = 0
        return f

    def recorded(self) -> dict[str, np.ndarray]:
        """Per-hop arrays (``record=True``): time_s, rms_db, level, bands [n, n_bands], centroid (Hz),
        onset_strength, bpm, beat_phase, locked."""
        out = {}
        for k, parts in self._rec.items():
            if parts:
                out[k] = np.concatenate(parts)
            else:
                out[k] = np.zeros((0, len(self.band_names))) if k == "bands" else np.zeros(0)
        return out
