"""A learned beat and downbeat activation: BeatNet's causal CRNN, run in numpy.

BeatNet (Heydari, Cwitkowitz and Duan, ISMIR 2021; weights CC BY 4.0, see NOTICE) maps each 20 ms
frame of a log-filtered spectrogram and its positive difference to the probabilities of a beat, a
downbeat and neither. Its network is causal (a unidirectional LSTM), so it runs live: the weights
are plain float32 arrays in ``models/beatnet_crnn.npz`` (converted once from the published PyTorch
state dict by ``scripts/convert_beatnet.py``), read without pickle; torch is never imported.

The input features are BeatNet's (madmom's processors at 22050 Hz): frames of 64 ms (1411 samples)
every 20 ms centred on the frame time, a Hann window, the magnitude of the first 705 FFT bins,
24-per-octave triangular filters from 30 Hz (normalised to unit area), ``log10(1 + x)``, and the
positive difference to the previous frame: 136 + 136 values. At another sample rate the frame and
FFT are the same length in seconds, so bin k is the same frequency; magnitudes are scaled by the
length ratio, and bins above 11025 Hz are ignored as they were absent from the training audio.

One departure, for live input: a quiet input is raised toward the level the network learned from
(see ``_PEAK_RELEASE``); ``normalise=False`` gives BeatNet's features exactly (checked against
BeatNet's own madmom + torch pipeline at 22050 Hz: equal to 6e-7). A frame's centre is half a window
(32 ms) before its last sample: :class:`BeatActivation` returns each frame's probabilities when its
last sample arrives, and says how far behind that is (``delay_s``).

Cost, per 20 ms frame at 48 kHz on the 2-core VM (unprofiled): features 22 us (of which the 3072-point
rfft 10.7 and the filterbank matmul 3.8), conv and first linear layer 7 us, LSTM step 25 us (two
float32 ``[x, h, 1] @ (301, 600)`` matmuls of 7.4 us each, which read 0.7 MB of weights apiece, and
about 16 small ufunc calls); about 3 ms per audio second with the streaming glue, on top of the
flux path, which keeps running (onsets, kicks, bands and the metrical level need it). Measured and
not taken: a sparse filterbank (-0.5 us), pocketfft's private ``r2c`` (-2.4 us), one OpenBLAS
thread (no change in the live figure).
"""

from __future__ import annotations

import functools
import math
import zipfile
from importlib import resources
from typing import NamedTuple

import numpy as np
import scipy.fft

from vjengine.errors import ConfigError

MODEL_FILE = "beatnet_crnn.npz"
REF_SR = 22050
REF_FRAME = 1411            # int(0.064 * 22050): the window BeatNet was trained with
REF_BINS = REF_FRAME >> 1   # madmom keeps fft_size // 2 bins (no Nyquist bin)
FPS = 50.0                  # a frame every 20 ms
# The network learned from records at their released level, and its log(1 + magnitude) features
# depend on the level: a line-in 20 dB down reads as another piece of music. A quiet input is raised
# so that its loudest recent peak reaches -6 dBFS, by at most +30 dB; an input already that loud is
# left as it is. The peak starts at that level (no boost until the input proves quiet), attacks at
# once and is released by 0.5 dB a second: the gain follows the input's overall level (a booth
# output turned down) over tens of seconds, and leaves the music's own dynamics (a quiet intro, a
# breakdown) mostly as the network knows them.
_PEAK_RELEASE = 10.0 ** (-0.5 / 20.0 / FPS)
_PEAK_TARGET = 10.0 ** (-6.0 / 20.0)
_INV_LN10 = 1.0 / math.log(10.0)
_PEAK_FLOOR = _PEAK_TARGET * 10.0 ** (-30.0 / 20.0)
_N_LAYERS = 2
N_FEATURES = 272            # 136 log-filtered bands and their positive difference


def log_filterbank(n_bins: int = REF_BINS, sr: int = REF_SR, bands_per_octave: int = 24, fmin: float = 30.0,
                   fmax: float = 17000.0, fref: float = 440.0) -> np.ndarray:
    """madmom's ``LogarithmicFilterbank`` (unique bins, overlapping triangles of unit area) as an
    ``(n_bins, n_bands)`` matrix, for bins labelled as madmom labels them (``fftfreq(2 * n_bins)``)."""
    bin_freqs = np.fft.fftfreq(2 * n_bins, 1.0 / sr)[:n_bins]
    left = math.floor(math.log2(fmin / fref) * bands_per_octave)
    right = math.ceil(math.log2(fmax / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(left, right) / bands_per_octave)
    freqs = freqs[np.searchsorted(freqs, fmin):]
    freqs = freqs[:np.searchsorted(freqs, fmax, "right")]
    idx = np.clip(np.searchsorted(bin_freqs, freqs), 1, n_bins - 1)
    idx = idx - (freqs - bin_freqs[idx - 1] < bin_freqs[idx] - freqs)  # nearest bin
    bins = np.unique(idx)
    fb = np.zeros((n_bins, len(bins) - 2), dtype=np.float64)
    for b in range(len(bins) - 2):
        start, centre, stop = (int(v) for v in bins[b:b + 3])
        if stop - start < 2:
            centre, stop = start, start + 1
        tri = np.concatenate([np.linspace(0.0, 1.0, centre - start, endpoint=False),
                              np.linspace(1.0, 0.0, stop - centre, endpoint=False)])
        fb[start:stop, b] = tri / tri.sum()
    return fb.astype(np.float32)


# BeatNet's BDA(272, 150, 2) state dict: tensor name -> shape
WEIGHT_SHAPES = {
    "conv1.weight": (2, 1, 10), "conv1.bias": (2,), "linear0.weight": (150, 262), "linear0.bias": (150,),
    **{f"lstm.{kind}_l{i}": (600, 150) for i in range(_N_LAYERS) for kind in ("weight_ih", "weight_hh")},
    **{f"lstm.{kind}_l{i}": (600,) for i in range(_N_LAYERS) for kind in ("bias_ih", "bias_hh")},
    "linear.weight": (3, 150), "linear.bias": (3,),
}


def load_weights(path=None) -> dict[str, np.ndarray]:
    """The CRNN's arrays (``conv1_weight``, ``lstm_weight_ih_l0``, ...: the state dict's names with
    '_' for '.') from the shipped .npz, or ``path``; a missing, broken or pickled file is a
    :class:`~vjengine.errors.ConfigError` naming it."""
    if path is None:
        with resources.as_file(resources.files("vjengine.audio").joinpath("models", MODEL_FILE)) as p:
            return load_weights(p)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "source"}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: cannot read the learned beat tracker's weights ({exc}); reinstall vjengine "
                          "or use --beat-tracker dsp") from None
    for name, shape in WEIGHT_SHAPES.items():
        got = arrays.get(name.replace(".", "_"))
        if got is None or got.shape != shape:
            raise ConfigError(f"{path}: {name.replace('.', '_')} is {'missing' if got is None else got.shape}, "
                              f"expected shape {shape}; reinstall vjengine or use --beat-tracker dsp")
    return arrays


class _Network(NamedTuple):
    """The CRNN's weights rearranged for :class:`CRNN` (read-only: instances share them)."""

    kern: np.ndarray        # (10, 2) conv kernels, one per column
    pool_floor: np.ndarray  # (262,) -conv bias per pooled value (the ReLU less the bias)
    lin0_w: np.ndarray      # (262, 150)
    lin0_b: np.ndarray      # (150,) with the conv bias folded in
    lstm_w: tuple           # per layer (301, 600): [input, h, 1] -> gates, sigmoid gates halved
    out_w: np.ndarray       # (150, 3)
    out_b: tuple            # 3 floats


def _prepare(w: dict[str, np.ndarray]) -> _Network:
    kern = np.ascontiguousarray(w["conv1_weight"][:, 0, :].T, dtype=np.float32)  # (10, 2)
    n_pool = (N_FEATURES - kern.shape[0] + 1) // 2
    pool_bias = np.repeat(w["conv1_bias"].astype(np.float64), n_pool)
    lin0_w = w["linear0_weight"].T.astype(np.float64)                 # (262, 150)
    hs = w["lstm_weight_hh_l0"].shape[1]
    gate_scale = np.full(4 * hs, 0.5, dtype=np.float32)              # torch's gate order: i, f, g, o
    gate_scale[2 * hs:3 * hs] = 1.0
    lstm_w = tuple((np.concatenate([w[f"lstm_weight_ih_l{i}"], w[f"lstm_weight_hh_l{i}"],
                                    (w[f"lstm_bias_ih_l{i}"] + w[f"lstm_bias_hh_l{i}"])[:, None]], axis=1).T
                    * gate_scale).astype(np.float32) for i in range(_N_LAYERS))
    net = _Network(kern=kern, pool_floor=(-pool_bias).astype(np.float32), lin0_w=lin0_w.astype(np.float32),
                   lin0_b=(w["linear0_bias"] + pool_bias @ lin0_w).astype(np.float32), lstm_w=lstm_w,
                   out_w=w["linear_weight"].T.astype(np.float32),
                   out_b=tuple(w["linear_bias"].astype(np.float32).tolist()))
    for a in (net.kern, net.pool_floor, net.lin0_w, net.lin0_b, net.out_w, *net.lstm_w):
        a.flags.writeable = False
    return net


@functools.cache
def _default_network() -> _Network:
    """The shipped weights, read and rearranged once per process (~25 ms: an analyser rebuilt after a
    device change, or one per clip in a batch run, does not pay it again)."""
    return _prepare(load_weights())


@functools.cache
def _default_filterbank() -> np.ndarray:
    fb = log_filterbank()
    fb.flags.writeable = False
    return fb


class CRNN:
    """BeatNet's BDA network, one frame at a time (its LSTM state carried between calls).

    Rearranged for few numpy calls per frame, same arithmetic: the convolution is a strided view of
    the frame's sliding windows times the two kernels; the conv bias moves past the pooling and the
    ReLU (``relu(p + b) = max(p, -b) + b``) into the first linear layer's bias; each LSTM layer is
    one matmul on ``[x, h, 1]`` into a single tanh, its sigmoid gates scaled by 1/2 beforehand
    (``sigmoid(z) = (tanh(z / 2) + 1) / 2``) and its biases the last weight row. Every buffer and
    view is made once and each layer writes its output straight into the next one's input: a frame
    costs about 25 numpy calls, which (not the arithmetic) are most of its time.
    """

    def __init__(self, weights: dict[str, np.ndarray] | None = None) -> None:
        p = _prepare(weights) if weights else _default_network()
        self.kern, self.lin0_w, self.lin0_b, self._pool_floor = p.kern, p.lin0_w, p.lin0_b, p.pool_floor
        self.lstm_w, self.out_w, self._out_b = p.lstm_w, p.out_w, p.out_b
        k, self.n_ch = self.kern.shape
        self.n_conv = N_FEATURES - k + 1                                  # 263
        self.n_pool = self.n_conv // 2                                    # 131 (max-pool 2, floor)
        # one frame's features, and a strided view of its sliding windows made once (no copy per frame)
        self._feat = np.zeros(N_FEATURES, dtype=np.float32)
        self.input = self._feat  # where a frame's features may be written in place (then ``embed()``)
        self._windows = np.lib.stride_tricks.as_strided(self._feat, shape=(self.n_conv, k), strides=(4, 4),
                                                        writeable=False)
        self._conv = np.empty((self.n_conv, self.n_ch), dtype=np.float32)
        self._pairs = self._conv[:2 * self.n_pool].reshape(self.n_pool, 2, self.n_ch)
        self._pooled = np.empty(self.n_ch * self.n_pool, dtype=np.float32)  # channel-major, as torch flattens
        self._pooled_t = self._pooled.reshape(self.n_ch, self.n_pool).T     # (131, 2) view of it
        self.hidden = hs = self.out_w.shape[0]
        self._z = np.empty(4 * hs, dtype=np.float32)                     # one layer's gates (tanh'd)
        self._s = np.empty(4 * hs, dtype=np.float32)                     # ... as sigmoids
        self._ig = np.empty(hs, dtype=np.float32)                        # input gate x candidate
        self.reset()

    def reset(self) -> None:
        hs = self.hidden
        # per layer: [input, h, 1] (the 1 multiplies the bias row of the weights), and the cell state
        self.xh = [np.zeros(2 * hs + 1, dtype=np.float32) for _ in range(_N_LAYERS)]
        for xh in self.xh:
            xh[-1] = 1.0
        self.c = [np.zeros(hs, dtype=np.float32) for _ in range(_N_LAYERS)]
        z, s = self._z, self._s
        self._layers = [(xh, w, c, s[:hs], s[hs:2 * hs], z[2 * hs:3 * hs], s[3 * hs:], xh[hs:2 * hs],
                         self.xh[i + 1][:hs] if i + 1 < _N_LAYERS else None)
                        for i, (xh, w, c) in enumerate(zip(self.xh, self.lstm_w, self.c))]
        self._x0 = self.xh[0][:hs]

    def embed(self, feat: np.ndarray | None = None) -> np.ndarray:
        """Conv, ReLU, max-pool and the first linear layer for one ``(272,)`` frame (None: the one
        already written into ``input``); the result is written into the LSTM's input and returned."""
        if feat is not None:
            self._feat[:] = feat
        np.matmul(self._windows, self.kern, out=self._conv)              # (263, 2)
        np.maximum(self._pairs[:, 0], self._pairs[:, 1], out=self._pooled_t)  # max-pool 2
        np.maximum(self._pooled, self._pool_floor, out=self._pooled)      # relu, less the bias
        x = self._x0
        np.matmul(self._pooled, self.lin0_w, out=x)
        x += self.lin0_b
        return x

    def step(self, x: np.ndarray | None = None) -> tuple[float, float, float]:
        """One frame's embedding (None or ``embed()``'s result: already in place) through the LSTM
        layers; returns the (beat, downbeat, neither) probabilities."""
        if x is not None and x is not self._x0:
            self._x0[:] = x
        z, s, ig = self._z, self._s, self._ig
        for xh, w, c, si, sf, g, so, h, nxt in self._layers:  # h: the layer's output, in its own input
            np.matmul(xh, w, out=z)
            np.tanh(z, out=z)
            np.multiply(z, 0.5, out=s)
            s += 0.5                                     # i, f, -, o as sigmoids
            c *= sf
            np.multiply(si, g, out=ig)
            c += ig
            np.tanh(c, out=h)
            h *= so
            if nxt is not None:
                nxt[:] = h
        a = (h @ self.out_w).tolist()  # the 3-way softmax in floats: numpy calls cost more than the work
        b0, b1, b2 = self._out_b
        a0, a1, a2 = a[0] + b0, a[1] + b1, a[2] + b2
        top = max(a0, a1, a2)
        e0, e1, e2 = math.exp(a0 - top), math.exp(a1 - top), math.exp(a2 - top)
        total = e0 + e1 + e2
        return e0 / total, e1 / total, e2 / total

    def run(self, feats: np.ndarray) -> np.ndarray:
        """``(T, 272)`` features -> ``(T, 3)`` probabilities, continuing the state."""
        feats = np.asarray(feats, dtype=np.float32)
        out = np.zeros((len(feats), 3), np.float32)
        for t, f in enumerate(feats):
            out[t] = self.step(self.embed(f))
        return out


class BeatActivation:
    """Streaming BeatNet features and activations for one mono stream at ``samplerate``.

    ``push(samples)`` takes any number of samples and returns ``(end_samples, probs)``: for every
    frame completed by them, the stream position (in samples) of its last sample and its
    ``(beat, downbeat, neither)`` probabilities. Frames sit at fixed sample positions, so results do
    not depend on the blocking. ``delay_s`` is how far a frame's centre (its time) lies before its
    last sample.
    """

    def __init__(self, samplerate: int, weights: dict[str, np.ndarray] | None = None, *,
                 normalise: bool = True) -> None:
        self.samplerate = sr = int(samplerate)
        if sr < REF_SR:  # the network's upper bands (to 11025 Hz) would be missing
            raise ConfigError(f"--beat-tracker learned needs a sample rate of at least {REF_SR} Hz, got {sr} "
                              "(use --beat-tracker dsp)")
        self.normalise = normalise
        # 64 ms; off 22050 Hz an even length (96 kHz: 6144, not the prime 6143, which FFTs slowly)
        self.frame = REF_FRAME if sr == REF_SR else 2 * int(round(REF_FRAME * sr / REF_SR / 2))
        self.hop_exact = sr / FPS
        self.half = self.frame // 2 if sr == REF_SR else int(round(self.frame / 2))
        self.delay_s = (self.frame - self.half) / sr
        self.window = np.hanning(self.frame).astype(np.float32)
        self.scale = REF_FRAME / self.frame  # magnitude of a sinusoid or of noise per Hz: same as at 22050
        self.fb = _default_filterbank()
        self.net = CRNN(weights)
        self._windowed = np.empty(self.frame, dtype=np.float32)
        self._mag = np.empty(REF_BINS, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self.net.reset()
        self._buf = np.zeros(self.frame, dtype=np.float32)  # the last `frame` samples (zeros before the start)
        self._n = 0            # samples received
        self._f = 0            # next frame index
        self._next_end = self._frame_end(0)  # stream position where the next frame ends
        self._prev: np.ndarray | None = None
        self._peak = _PEAK_TARGET

    def _frame_end(self, f: int) -> int:
        """Stream position one past the last sample of frame ``f`` (centred at f * hop)."""
        return int(round(f * self.hop_exact)) - self.half + self.frame

    def push(self, samples: np.ndarray) -> tuple[list[int], np.ndarray]:
        return self._push(samples, run=True)

    def push_features(self, samples: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Like :meth:`push`, but returns each completed frame's ``(272,)`` input features."""
        return self._push(samples, run=False)

    def _push(self, samples: np.ndarray, *, run: bool) -> tuple[list[int], np.ndarray]:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n0 = self._n
        n1 = n0 + x.size
        ends = []
        while self._next_end <= n1:  # (a 256-sample device block completes a frame one time in four)
            ends.append(self._next_end)
            self._next_end = self._frame_end(self._f + len(ends))
        out = np.empty((len(ends), 3 if run else N_FEATURES), dtype=np.float32)
        if ends:
            hist = np.concatenate([self._buf, x])  # index i is stream position n0 - frame + i
            net = self.net
            for t, e in enumerate(ends):
                frame = hist[e - n0:e - n0 + self.frame]
                if run:  # features straight into the network's input (no copy, no array per frame)
                    self._features(frame, net.input)
                    net.embed()
                    out[t] = net.step()
                else:
                    self._features(frame, out[t])
            self._f += len(ends)
            self._buf = hist[-self.frame:].copy()
        elif x.size >= self.frame:
            self._buf = x[-self.frame:].copy()
        else:
            self._buf[:-x.size or None] = self._buf[x.size:]
            self._buf[self.frame - x.size:] = x
        self._n = n1
        return ends, out

    def _features(self, frame: np.ndarray, out: np.ndarray) -> None:
        gain = self.scale
        if self.normalise:  # a quiet input raised toward the level the network learned (see _PEAK_RELEASE)
            p = float(max(frame.max(), -frame.min()))
            self._peak = peak = max(p, self._peak * _PEAK_RELEASE, _PEAK_FLOOR)
            if peak < _PEAK_TARGET:
                gain *= _PEAK_TARGET / peak
        np.multiply(frame, self.window, out=self._windowed)
        np.abs(scipy.fft.rfft(self._windowed)[:REF_BINS], out=self._mag)
        nb = self.fb.shape[1]
        spec = out[:nb]
        np.matmul(self._mag, self.fb, out=spec)
        spec *= gain                                   # (g * |X|) @ fb = g * (|X| @ fb)
        np.log1p(spec, out=spec)
        spec *= _INV_LN10                              # log10(1 + x)
        diff = out[nb:]
        if self._prev is None:  # the first frame has no difference
            diff[:] = 0.0
            self._prev = np.empty(nb, dtype=np.float32)
        else:
            np.subtract(spec, self._prev, out=diff)
            np.maximum(diff, 0.0, out=diff)
        self._prev[:] = spec
