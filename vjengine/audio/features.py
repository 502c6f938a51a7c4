"""Pure spectral features: the matrices and functions the analyser applies to each hop.

Everything here is stateless numpy. :class:`SpectralFrontEnd` precomputes, for one sample rate,
the analysis window and the projection matrices (mel bands for onset strength, named log-spaced
bands, 12-bin chroma, the low bins for the kick detector), then turns a batch of frames into
per-hop feature arrays in a handful of vectorised calls.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.fft

#: The default named bands: (name, low_hz, high_hz), log-spaced from sub to air.
DEFAULT_BANDS: tuple[tuple[str, float, float], ...] = (
    ("sub", 20.0, 60.0),
    ("bass", 60.0, 250.0),
    ("low_mid", 250.0, 1000.0),
    ("mid", 1000.0, 2500.0),
    ("high_mid", 2500.0, 6000.0),
    ("high", 6000.0, 20000.0),
)

#: Low frequency range whose spectral flux drives the kick detector (Hz).
KICK_RANGE_HZ = (35.0, 160.0)


def hop_size_for(samplerate: int, hop_s: float = 0.005) -> int:
    """Analysis hop in samples: the power of two nearest ``hop_s`` seconds (256 at 44.1/48 kHz)."""
    return int(2 ** round(np.log2(samplerate * hop_s)))


def hz_to_mel(f_hz: np.ndarray | float) -> np.ndarray:
    """Slaney-free HTK mel scale (good enough for an onset envelope)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_matrix(*, samplerate: int, n_fft: int, n_mels: int = 40, fmin_hz: float = 30.0,
               fmax_hz: float = 10000.0) -> np.ndarray:
    """Triangular mel filters, shape ``[n_fft // 2 + 1, n_mels]``; every filter has at least one bin."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / samplerate)
    fmax_hz = min(fmax_hz, samplerate / 2.0)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    bin_hz = samplerate / n_fft
    m = np.zeros((freqs.size, n_mels), dtype=np.float64)
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        # widen filters narrower than a bin so low filters are never empty
        half = max(mid - lo, hi - mid, bin_hz)
        up = 1.0 - np.abs(freqs - mid) / half
        m[:, i] = np.clip(up, 0.0, None)
    m /= np.maximum(m.sum(axis=0, keepdims=True), 1e-12)
    return m.astype(np.float32)


def band_matrix(bands: tuple[tuple[str, float, float], ...], *, samplerate: int, n_fft: int) -> np.ndarray:
    """0/1 matrix ``[n_bins, n_bands]`` summing the power of the bins whose centre lies in each band.

    A band narrower than a bin gets the nearest bin, so every band always measures something.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / samplerate)
    m = np.zeros((freqs.size, len(bands)), dtype=np.float32)
    for j, (name, lo, hi) in enumerate(bands):
        if not 0 <= lo < hi:
            raise ValueError(f"band {name!r}: need 0 <= low_hz < high_hz, got {lo}..{hi}")
        sel = (freqs >= lo) & (freqs < min(hi, samplerate / 2.0))
        if not sel.any():
            sel[int(np.argmin(np.abs(freqs - np.sqrt(max(lo, 1.0) * hi))))] = True
        m[sel, j] = 1.0
    return m


def chroma_matrix(*, samplerate: int, n_fft: int, fmin_hz: float = 110.0, fmax_hz: float = 5000.0) -> np.ndarray:
    """Pitch-class weights ``[n_bins, 12]`` (column 0 = C), a Gaussian in semitones around each bin.

    Bins are weighted by how close their frequency lies to a pitch class (sigma 0.5 semitone).
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / samplerate)
    m = np.zeros((freqs.size, 12), dtype=np.float64)
    sel = (freqs >= fmin_hz) & (freqs <= min(fmax_hz, samplerate / 2.0))
    midi = 69.0 + 12.0 * np.log2(freqs[sel] / 440.0)
    pcs = np.arange(12)
    dist = (midi[:, None] - pcs[None, :] + 6.0) % 12.0 - 6.0  # semitones to nearest octave of pc
    m[sel] = np.exp(-0.5 * (dist / 0.5) ** 2)
    return m.astype(np.float32)


class HopFeatures(NamedTuple):
    """Features of one batch of ``m`` hops, feature-major (first axis = feature, second = hop).

    Views into the front end's work buffers: valid until its next :meth:`SpectralFrontEnd.compute`.
    """

    onset_db: np.ndarray     # [n_mels + n_kick, m] dB: mel band power | kick-bin power (soft floor)
    chroma: np.ndarray       # [12, m] pitch-class power (linear)
    band_cols: np.ndarray    # [n_bands + 2, m]: band power in dB | total power | centroid numerator (Hz * power)


class SpectralFrontEnd:
    """Window + FFT + projections for one sample rate; call :meth:`compute` on a batch of frames.

    Two matmuls project the power spectrum: the low bins (up to the highest mel / chroma / kick
    bin, ~10 kHz) onto ``n_mels`` mel bands, the kick bins (35-160 Hz, one each) and 12 chroma
    bins; all bins onto the named bands, total power and the centroid numerator (a short wide
    matrix: much less work than one matmul over every bin). The projections are stored
    feature-major and applied as ``P @ power.T``: for a few hops OpenBLAS runs that shape 2-3x
    faster than ``power @ P``.

    This runs once per video frame on a handful of hops, so the cost is the number of numpy calls
    and views, not the arithmetic: buffers and every view into them are made once per batch size,
    every step writes in place, and one log call covers all the dB rows.
    """

    def __init__(self, *, samplerate: int, n_fft: int, bands=DEFAULT_BANDS, n_mels: int = 40,
                 max_hops: int = 64, onset_floor_db: float = -100.0) -> None:
        self.samplerate = int(samplerate)
        self.n_fft = int(n_fft)
        self.band_names = tuple(b[0] for b in bands)
        # power normalisation folded into the window: a full-scale sine gives total power ~0.5
        window = np.hanning(self.n_fft)
        self.window = (window * np.sqrt(2.0) / np.sum(window)).astype(np.float32)
        self.freqs_hz = np.fft.rfftfreq(self.n_fft, 1.0 / self.samplerate).astype(np.float32)
        n_bins = self.freqs_hz.size
        mel = mel_matrix(samplerate=self.samplerate, n_fft=self.n_fft, n_mels=n_mels)
        bandm = band_matrix(tuple(bands), samplerate=self.samplerate, n_fft=self.n_fft)
        chroma = chroma_matrix(samplerate=self.samplerate, n_fft=self.n_fft)
        lo, hi = KICK_RANGE_HZ
        kb = np.nonzero((self.freqs_hz >= lo) & (self.freqs_hz <= hi))[0]
        if kb.size == 0:
            kb = np.array([1])
        kick = np.zeros((n_bins, kb.size), dtype=np.float32)
        kick[kb, np.arange(kb.size)] = 1.0
        ones = np.ones((n_bins, 1), dtype=np.float32)
        # one features buffer per batch, rows: chroma | mel | kick | bands | total | centroid numerator,
        # so the dB rows (mel, kick, bands) are one contiguous block. Power column 0 is a constant 1:
        # the projections' column 0 adds each row's floor (mel and kick at onset_floor_db, so tiny
        # differences in near-silent bands make no onset flux; bands and total at -120 dB, so every
        # log is finite) inside the matmul, instead of two more array passes.
        low = np.concatenate([chroma, mel, kick], axis=1)
        used = np.nonzero(np.abs(low).sum(axis=1) > 0)[0]
        self._n_low_bins = int(used[-1]) + 1 if used.size else 1
        onset_floor = 10.0 ** (onset_floor_db / 10.0)
        low_bias = np.concatenate([np.zeros(12), np.full(mel.shape[1] + kb.size, onset_floor)])
        all_bias = np.concatenate([np.full(bandm.shape[1] + 1, 1e-12), [0.0]])
        self._proj_low = np.ascontiguousarray(
            np.concatenate([low_bias[:, None], low[:self._n_low_bins].T], axis=1), dtype=np.float32)
        self._proj_all = np.ascontiguousarray(np.concatenate(
            [all_bias[:, None], np.concatenate([bandm, ones, self.freqs_hz[:, None]], axis=1).T], axis=1),
            dtype=np.float32)
        self.n_mels = mel.shape[1]
        self.n_kick = kb.size
        self.n_bands = bandm.shape[1]
        self.max_hops = int(max_hops)
        rows = -(-self.max_hops // 4) * 4
        self._windowed = np.zeros((rows, self.n_fft), dtype=np.float32)
        self._power = np.ones((rows, 1 + n_bins), dtype=np.float32)  # [1 | bin power]
        self._plans: dict[int, tuple] = {}

    def _plan(self, m: int) -> tuple:
        """The buffers and views for a batch of ``m`` hops."""
        # pocketfft runs 4 transforms at once in SIMD lanes: batches are padded to a multiple of 4
        # rows (4 padded transforms cost about half of 3 unpadded ones); pad rows are never read
        m_pad = -(-m // 4) * 4
        power = self._power[:m_pad]
        n_low = self._proj_low.shape[0]
        feats = np.empty((n_low + self._proj_all.shape[0], m_pad), dtype=np.float32)
        nmk = self.n_mels + self.n_kick
        plan = (self._windowed[:m], self._windowed[:m_pad], power[:, 1:], power[:, :1 + self._n_low_bins].T,
                power.T, feats[:n_low], feats[n_low:], feats[12:12 + nmk + self.n_bands],
                HopFeatures(feats[12:12 + nmk, :m], feats[:12, :m], feats[12 + nmk:, :m]))
        self._plans[m] = plan
        return plan

    def compute(self, frames: np.ndarray) -> HopFeatures:
        """``frames`` ``[m, n_fft]``, m <= max_hops (each ending at its hop's last sample; may be a
        strided view)."""
        plan = self._plans.get(frames.shape[0]) or self._plan(frames.shape[0])
        windowed, padded, power, power_low_t, power_t, low, allp, db_rows, out = plan
        np.multiply(frames, self.window, out=windowed)
        spec = scipy.fft.rfft(padded, axis=1)
        np.abs(spec, out=power)
        np.square(power, out=power)
        np.matmul(self._proj_low, power_low_t, out=low)
        np.matmul(self._proj_all, power_t, out=allp)
        np.log10(db_rows, out=db_rows)
        db_rows *= 10.0
        return out


def db(x: np.ndarray | float, floor_db: float = -120.0) -> np.ndarray:
    """Power ratio -> dB, floored."""
    return np.maximum(10.0 * np.log10(np.maximum(x, 1e-30)), floor_db)
