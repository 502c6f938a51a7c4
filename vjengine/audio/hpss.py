"""Percussive/harmonic separation (median-filter HPSS) and the stem interface.

Median-filter HPSS (Fitzgerald 2010): in a magnitude spectrogram, sustained tones are horizontal
lines (a median along time keeps them), drum hits are vertical lines (a median along frequency keeps
them). Soft masks ``H^2 / (H^2 + P^2)`` split each cell between the two.

- :class:`StreamingHPSS` runs causally on the analyser's 40 mel-band powers, a few hops at a time
  (the time median looks back ``time_hops`` hops, ~110 ms): the live and render path, cheap enough for
  every hop (``benchmarks/musicvideo.py`` measures ``hpss_ms_per_audio_s``, target <= 3 ms). It gives
  ``drums`` and ``harmonic`` levels 0..1 (adaptive reference, like the analyser's bands) and the
  percussive share of the energy.
- :func:`hpss` separates a whole signal offline (STFT, ``scipy.ndimage.median_filter``, inverse
  STFT) into ``{"drums", "harmonic"}`` sample arrays.
- Stem separators share one interface, ``separate(samples, samplerate) -> {stem name: samples}``:
  :class:`HPSSSeparator` (no model) and :class:`DemucsSeparator` (the optional ``stems`` extra: the
  ``demucs`` package and weights the user downloads; without them a clear :class:`ConfigError`).
  :func:`stem_levels` runs the live analysis over every stem for per-stem features.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np

from vjengine.errors import ConfigError


class StreamingHPSS:
    """Causal median-filter HPSS over ``n_bins`` spectral bands; feed power columns ``[n_bins, m]``.

    Every ``every``-th hop (at fixed hop indices, so the result does not depend on how hops are
    batched) is one column of a short spectrogram; each new column is split by the median of the
    last ``time_cols`` columns (harmonic) and the median of its ``freq_bins`` neighbouring bands
    (percussive). The medians are ``np.partition`` over strided views, one call each per batch.
    """

    def __init__(self, n_bins: int, *, hop_s: float, every: int = 8, time_cols: int = 7, freq_bins: int = 11,
                 range_db: float = 30.0, attack_ms: float = 5.0, release_ms: float = 140.0) -> None:
        self.n_bins = int(n_bins)
        self.every = max(1, int(every))
        self.time_cols = int(time_cols) | 1
        self.freq_bins = int(freq_bins) | 1
        self.col_s = float(hop_s) * self.every
        self.range_db = range_db
        self._hops = 0
        # past columns (oldest first), then room for the new ones
        self._buf = np.zeros((self.time_cols - 1 + 4, self.n_bins), dtype=np.float32)
        self._views: dict[int, tuple] = {}
        self._k_att = math.exp(-self.col_s / (attack_ms * 1e-3))
        self._k_rel = math.exp(-self.col_s / (release_ms * 1e-3))
        self._ref = [-60.0, -60.0]
        self._env = [0.0, 0.0]
        self.drums = 0.0
        self.harmonic = 0.0
        self.percussive_share = 0.0
        self.last_masks: np.ndarray | None = None  # percussive mask of the last batch's columns [cols, bins]

    def process(self, power: np.ndarray, *, keep_masks: bool = False, first_hop: int | None = None,
                db: bool = False) -> None:
        """Fold in ``m`` new hops of band power (``[n_bins, m]``, linear, or dB with ``db=True``: only
        the columns on the grid are converted); ``first_hop``: the stream's index of the first hop
        (default: counted here)."""
        m = power.shape[1]
        if first_hop is not None:
            self._hops = first_hop
        first = (-self._hops) % self.every  # the batch's hops that fall on the column grid
        self._hops += m
        if first >= m:
            return
        sel = power[:, first::self.every]
        c = sel.shape[1]
        views = self._views.get(c) or self._make_views(c)
        new, win, pad_cols, fwin = views
        t, half = self.time_cols, self.freq_bins // 2
        if db:
            np.multiply(sel.T, 0.1, out=new)
            np.power(10.0, new, out=new)
        else:
            new[:] = sel.T
        pad_cols[:] = new
        harm = np.partition(win, t // 2, axis=2)[:, :, t // 2]
        perc = np.partition(fwin, half, axis=2)[:, :, half]
        h2 = harm * harm
        p2 = perc * perc
        mask_p = p2 / (h2 + p2 + 1e-30)
        ep = np.einsum("ij,ij->i", mask_p, new).tolist()
        tot = new.sum(axis=1).tolist()
        if keep_masks:
            self.last_masks = mask_p
        buf = self._buf
        buf[:t - 1] = buf[c:c + t - 1]  # the last t - 1 columns for the next batch
        self._levels([a - b for a, b in zip(tot, ep)], ep)

    def _make_views(self, c: int) -> tuple:
        """Strided views for a batch of ``c`` columns: the time windows over the history buffer and
        the frequency windows over a zero-padded copy (made once per ``c``)."""
        t, f, nb = self.time_cols, self.freq_bins, self.n_bins
        if self._buf.shape[0] < t - 1 + c:
            old = self._buf
            self._buf = np.zeros((t - 1 + c, nb), dtype=np.float32)
            self._buf[:t - 1] = old[:t - 1]
            self._views.clear()
        buf = self._buf
        s0, s1 = buf.strides
        win = np.lib.stride_tricks.as_strided(buf, shape=(c, nb, t), strides=(s0, s1, s0), writeable=False)
        pad = np.zeros((c, nb + f - 1), dtype=np.float32)
        p0, p1 = pad.strides
        fwin = np.lib.stride_tricks.as_strided(pad, shape=(c, nb, f), strides=(p0, p1, p1), writeable=False)
        views = (buf[t - 1:t - 1 + c], win, pad[:, f // 2:f // 2 + nb], fwin)
        self._views[c] = views
        return views

    def _levels(self, eh: list, ep: list) -> None:
        ka, kr, inv = self._k_att, self._k_rel, 1.0 / self.range_db
        fall = 1.5 * self.col_s
        for i, e in ((0, ep), (1, eh)):
            ref, env = self._ref[i], self._env[i]
            for v in e:
                d = 10.0 * math.log10(max(v, 0.0) + 1e-12)
                ref = d if d > ref else max(ref - fall, -60.0)
                x = min(1.0, max(0.0, 1.0 + (d - ref) * inv))
                k = ka if x > env else kr
                env = k * env + (1.0 - k) * x
            self._ref[i], self._env[i] = ref, env
        self.drums, self.harmonic = self._env
        sp, sh = sum(ep), sum(eh)
        self.percussive_share = sp / (sp + sh) if sp + sh > 1e-12 else 0.0


def hpss(samples: np.ndarray, samplerate: int, *, n_fft: int = 2048, time_s: float = 0.2,
         freq_hz: float = 300.0) -> dict[str, np.ndarray]:
    """Offline median-filter HPSS of a mono signal: ``{"drums": ..., "harmonic": ...}``, same length."""
    import scipy.ndimage  # noqa: PLC0415
    import scipy.signal  # noqa: PLC0415

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    hop = n_fft // 4
    _, _, z = scipy.signal.stft(x, samplerate, nperseg=n_fft, noverlap=n_fft - hop)
    mag = np.abs(z)
    t_w = max(3, int(round(time_s * samplerate / hop)) | 1)
    f_w = max(3, int(round(freq_hz * n_fft / samplerate)) | 1)
    harm = scipy.ndimage.median_filter(mag, size=(1, t_w), mode="reflect")
    perc = scipy.ndimage.median_filter(mag, size=(f_w, 1), mode="reflect")
    mask_h = harm ** 2 / (harm ** 2 + perc ** 2 + 1e-20)
    out = {}
    for name, mask in (("drums", 1.0 - mask_h), ("harmonic", mask_h)):
        _, y = scipy.signal.istft(z * mask, samplerate, nperseg=n_fft, noverlap=n_fft - hop)
        out[name] = y[:x.size].astype(np.float32)
        if out[name].size < x.size:
            out[name] = np.pad(out[name], (0, x.size - out[name].size))
    return out


class Separator(Protocol):
    """``separate(samples, samplerate) -> {stem name: mono float32 samples of the same length}``."""

    stems: tuple[str, ...]

    def separate(self, samples: np.ndarray, samplerate: int) -> dict[str, np.ndarray]: ...


class HPSSSeparator:
    """Two stems, ``drums`` and ``harmonic``, by median-filter HPSS (no model)."""

    stems = ("drums", "harmonic")

    def separate(self, samples: np.ndarray, samplerate: int) -> dict[str, np.ndarray]:
        return hpss(samples, samplerate)


class DemucsSeparator:
    """Four stems (``drums``, ``bass``, ``other``, ``vocals``) from a Demucs model (optional extra).

    ``weights`` is a model file the user downloaded (``.th``, as Demucs publishes them). Nothing is
    fetched: without the package or the file the constructor raises a :class:`ConfigError` saying what
    to install or download.
    """

    stems = ("drums", "bass", "other", "vocals")

    def __init__(self, weights: str | Path) -> None:
        self.weights = Path(weights)
        try:
            import demucs.pretrained  # noqa: F401, PLC0415
        except ImportError:
            raise ConfigError("stem model: the demucs package is not installed; `pip install 'vjengine[stems]'`, "
                              "then download a model file (for example htdemucs.th from the Demucs releases) and "
                              "pass --stems demucs:PATH (or use --stems hpss, which needs no model)") from None
        if not self.weights.is_file():
            raise ConfigError(f"{self.weights}: stem model weights not found; download a Demucs model file "
                              "(for example htdemucs.th from the Demucs releases) and pass its path "
                              "(or use --stems hpss, which needs no model)")

    def separate(self, samples: np.ndarray, samplerate: int) -> dict[str, np.ndarray]:  # pragma: no cover
        import torch  # noqa: PLC0415
        from demucs.apply import apply_model  # noqa: PLC0415
        from demucs.states import load_model  # noqa: PLC0415
        import scipy.signal  # noqa: PLC0415

        model = load_model(str(self.weights))
        model.eval()
        x = np.asarray(samples, dtype=np.float32)
        if samplerate != model.samplerate:
            x = scipy.signal.resample_poly(x, model.samplerate, samplerate).astype(np.float32)
        wav = torch.from_numpy(np.stack([x, x]))[None]
        with torch.no_grad():
            out = apply_model(model, wav)[0].mean(dim=1).numpy()
        stems = {}
        for name, y in zip(model.sources, out):
            if samplerate != model.samplerate:
                y = scipy.signal.resample_poly(y, samplerate, model.samplerate)
            y = y[:len(samples)]
            stems[name] = np.pad(y, (0, len(samples) - y.size)).astype(np.float32)
        return stems


def open_separator(text: str) -> Separator:
    """``"hpss"`` or ``"demucs:PATH"`` -> a separator; :class:`ConfigError` for anything else."""
    kind, _, arg = text.partition(":")
    if kind == "hpss" and not arg:
        return HPSSSeparator()
    if kind == "demucs":
        if not arg:
            raise ConfigError("--stems demucs needs the model file: --stems demucs:PATH")
        return DemucsSeparator(arg)
    raise ConfigError(f"--stems {text!r}: use hpss or demucs:PATH")


def stem_levels(stems: dict[str, np.ndarray], samplerate: int, times_s: np.ndarray) -> dict[str, np.ndarray]:
    """The live analysis' ``level`` (0..1) of every stem at ``times_s`` (per-stem features)."""
    from vjengine.audio.analyzer import AnalysisConfig, Analyzer  # noqa: PLC0415

    out = {}
    for name, y in stems.items():
        an = Analyzer(samplerate, AnalysisConfig())
        levels = np.zeros(len(times_s))
        fed = 0
        for i, t in enumerate(times_s):
            upto = min(y.size, int(round(t * samplerate)))
            if upto > fed:
                an.process(y[fed:upto])
                fed = upto
            levels[i] = an.level
        out[name] = levels
    return out
