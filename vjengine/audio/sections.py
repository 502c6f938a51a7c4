"""Song sections offline: boundaries and repeat labels (A, B, C ...) from self-similarity.

1. Per analysis hop: log-mel band energies (timbre) and chroma (harmony), from the same
   :class:`~vjengine.audio.features.SpectralFrontEnd` the live analysis uses.
2. Averaged per beat (the analysis' beat times; a 0.5 s grid where it found no steady beat), each
   dimension standardised; timbre and harmony weigh alike.
3. A cosine self-similarity matrix over beats; Foote's checkerboard novelty along its diagonal
   (kernel ``kernel_beats`` each side, Gaussian taper, normalised over the cells inside the song); boundaries are novelty peaks at least
   ``min_section_beats`` apart and above both ``mean + threshold * std`` and ``relative`` x the
   highest peak, placed on their beat.
   The repetition structure adds its own novelty (:func:`structure_novelty`), so a boundary between
   two repeats of a section, or between a unique and a repeated one, counts too.
4. Labels: each section's beats averaged into one vector; a section takes the label of the most
   similar earlier label group if its cosine similarity reaches ``same_label``, else a new letter.

``find_sections(samples, samplerate, beat_times)`` returns ``[Section(start_s, end_s, label), ...]``
covering the song. `vj analyze` writes them to ``sections.txt`` and plots them; cue sheets name them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjengine.errors import ConfigError


@dataclass(frozen=True)
class Section:
    start_s: float
    end_s: float
    label: str


def hop_features(samples: np.ndarray, samplerate: int, *, hop_s: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(times ``[n]``, features ``[n, 40 + 12]``: log-mel dB and max-normalised chroma) every ``hop_s``."""
    from vjengine.audio.features import SpectralFrontEnd, hop_size_for  # noqa: PLC0415

    hop = hop_size_for(samplerate, hop_s)
    n_fft = 2048 if samplerate > 32000 else 1024
    fe = SpectralFrontEnd(samplerate=samplerate, n_fft=n_fft, max_hops=64)
    x = np.concatenate([np.zeros(n_fft - hop, np.float32), np.asarray(samples, np.float32)])
    if not np.isfinite(x.sum(dtype=np.float64)) or x.max() > 64.0 or x.min() < -64.0:  # a broken file
        # as the live analysis does: NaN/inf are silence, absurd values clamped (else they poison every feature)
        np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(x, -64.0, 64.0, out=x)
    if x.size < n_fft:
        return np.zeros(0), np.zeros((0, fe.n_mels + 12))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    rows = []
    for i in range(0, len(frames), 64):
        f = fe.compute(frames[i:i + 64])
        chroma = f.chroma.T
        chroma = chroma / np.maximum(chroma.max(axis=1, keepdims=True), 1e-12)
        rows.append(np.concatenate([f.onset_db[:fe.n_mels].T, chroma], axis=1))
    feats = np.concatenate(rows)
    times = (np.arange(len(feats)) + 1) * hop / samplerate
    return times, feats


def beat_sync(times: np.ndarray, feats: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean of ``feats`` between consecutive ``grid`` times -> ``[len(grid) - 1, d]``."""
    idx = np.searchsorted(times, grid)
    out = np.zeros((len(grid) - 1, feats.shape[1]))
    for i in range(len(grid) - 1):
        a, b = idx[i], max(idx[i + 1], idx[i] + 1)
        out[i] = feats[a:b].mean(axis=0) if a < len(feats) else feats[-1]
    return out


def fill_beats(beats: np.ndarray, duration: float) -> np.ndarray:
    """A steady beat grid: the tracked beats, with beats interpolated into gaps (a stretch where the
    tracker held half tempo or lost the beat) and extended at the ends, at the median beat period."""
    period = float(np.median(np.diff(beats)))
    out = [beats[0] - k * period for k in range(int(beats[0] / period), 0, -1)]
    for a, b in zip(beats[:-1], beats[1:]):
        n = max(1, int(round((b - a) / period)))
        out.extend(a + (b - a) * np.arange(n) / n)
    t = beats[-1]
    while t < duration:
        out.append(t)
        t += period
    return np.array([v for v in out if 0.0 <= v < duration])


def _standardise(f: np.ndarray, n_mels: int) -> np.ndarray:
    z = (f - f.mean(axis=0)) / (f.std(axis=0) + 1e-6)
    z[:, :n_mels] /= np.sqrt(n_mels)  # timbre and harmony weigh alike
    z[:, n_mels:] /= np.sqrt(f.shape[1] - n_mels)
    return z


def _cosine(z: np.ndarray) -> np.ndarray:
    n = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-9)
    return n @ n.T


def novelty(ssm: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty with a Gaussian-tapered checkerboard kernel slid along the diagonal, as the
    weighted mean similarity within the two diagonal blocks minus that across them, over the cells
    inside the song only (near the ends a plain kernel would half-fall outside and find a change there)."""
    k = np.arange(-half, half) + 0.5
    g = np.exp(-0.5 * (k / (0.5 * half)) ** 2)
    w = np.outer(g, g)
    same = (np.sign(k)[:, None] * np.sign(k)[None, :]) > 0
    n = len(ssm)
    padded = np.pad(ssm, half)
    valid = np.pad(np.ones_like(ssm), half)
    nov = np.zeros(n)
    for i in range(n):
        s = padded[i:i + 2 * half, i:i + 2 * half]
        v = valid[i:i + 2 * half, i:i + 2 * half] * w
        ws, wx = (v * same).sum(), (v * ~same).sum()
        if ws > 0 and wx > 0.05 * ws:
            nov[i] = (s * v * same).sum() / ws - (s * v * ~same).sum() / wx
    return np.maximum(nov, 0.0)


REPEAT_WEIGHT = 0.5  # the repetition novelty's say against the checkerboard's (tuned on synthetic forms)


def structure_novelty(ssm: np.ndarray, half: int, *, neighbours: float = 0.08, min_lag: int = 16) -> np.ndarray:
    """Repetition novelty (Serra et al.'s structure features): each beat's nearest neighbours (the top
    ``neighbours`` share, mutual) as a time-lag recurrence, smoothed along time; the change between the
    lag profiles before and after each beat. It sees boundaries that the checkerboard cannot: between
    two repeats of one section (A A) and where a unique section meets a repeated one. Lags under
    ``min_lag`` beats (a chord cycle repeating inside a section) are left out."""
    n = len(ssm)
    k = max(2, int(round(neighbours * n)))
    masked = ssm.copy()
    for d in range(-2, 3):  # a beat's own neighbourhood is not a repeat
        idx = np.arange(max(0, -d), min(n, n - d))
        masked[idx, idx + d] = -np.inf
    top = np.argsort(masked, axis=1)[:, -k:]
    r = np.zeros((n, n))
    np.put_along_axis(r, top, 1.0, axis=1)
    r = r * r.T  # mutual neighbours only
    lag = np.zeros((n, n))
    cols = np.arange(n)
    for i in range(n):
        lag[i] = r[i, (i + cols) % n]
    # repeats closer than a section (a chord cycle inside one section) are not form
    lag[:, :min_lag] = 0.0
    lag[:, n - min_lag + 1:] = 0.0
    g = np.exp(-0.5 * (np.arange(-half, half + 1) / (0.5 * half)) ** 2)
    out = np.zeros(n)
    for i in range(n):  # Gaussian-weighted mean lag profile before vs after beat i
        a = lag[max(0, i - half):i]
        b = lag[i:min(n, i + half)]
        if len(a) < 2 or len(b) < 2:
            continue
        wa = g[half - len(a):half][:, None]
        wb = g[half:half + len(b)][:, None]
        out[i] = np.linalg.norm((a * wa).sum(0) / wa.sum() - (b * wb).sum(0) / wb.sum())
    return out


def find_sections(samples: np.ndarray, samplerate: int, beat_times: list[float] | np.ndarray | None = None, *,
                  kernel_beats: int = 16, min_section_beats: int = 16, threshold: float = 0.5, relative: float = 0.4,
                  same_label: float = 0.6) -> list[Section]:
    """Sections of the song (see the module docstring); one section when nothing changes."""
    duration = len(samples) / samplerate
    times, feats = hop_features(samples, samplerate)
    beats = np.asarray(beat_times if beat_times is not None else [], dtype=np.float64)
    beats = fill_beats(beats, duration) if len(beats) >= 8 else np.arange(0.0, duration, 0.5)
    grid = np.concatenate([[0.0] if beats[0] > 0.05 else [], beats, [duration]])
    grid = grid[np.concatenate([[True], np.diff(grid) > 1e-3])]
    if len(grid) < 4 or len(feats) == 0:
        return [Section(0.0, duration, "A")]
    f = beat_sync(times, feats, grid)
    z = _standardise(f, feats.shape[1] - 12)
    ssm = _cosine(z)
    half = max(2, min(kernel_beats, len(f) // 4))
    nov = novelty(ssm, half)
    rep = structure_novelty(ssm, half, min_lag=min_section_beats)
    if nov.max() > 0 and rep.max() > 0:  # timbre/harmony change and repetition change, equal say
        nov = nov / nov.max() + REPEAT_WEIGHT * rep / rep.max()
    cut = max(nov.mean() + threshold * nov.std(), relative * float(nov.max()))
    order = np.argsort(nov)[::-1]
    picked: list[int] = []
    for i in order:
        if nov[i] <= cut or i < min_section_beats // 2 or len(f) - i < min_section_beats // 2:
            continue
        if nov[i] < nov[max(0, i - 1):i + 2].max():  # a peak, not its shoulder
            continue
        if all(abs(i - j) >= min_section_beats for j in picked):
            picked.append(int(i))
    picked.sort()
    edges = [0, *picked, len(f)]
    # labels from each section's mean vector
    means = np.array([z[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])
    sim = _cosine(means)
    labels: list[int] = []
    for i in range(len(means)):
        best, best_sim = -1, same_label
        for j in range(i):
            if sim[i, j] >= best_sim:
                best, best_sim = labels[j], sim[i, j]
        labels.append(best if best >= 0 else (max(labels) + 1 if labels else 0))
    letters = string.ascii_uppercase
    return [Section(float(grid[a]) if a else 0.0, float(grid[b]) if b < len(grid) - 1 else duration,
                    letters[lab % 26] + ("" if lab < 26 else str(lab // 26)))
            for a, b, lab in zip(edges[:-1], edges[1:], labels)]


def write_sections(path: Path, sections: list[Section]) -> None:
    """``start_s<TAB>end_s<TAB>label`` per line (Audacity's label-track format)."""
    path.write_text("".join(f"{s.start_s:.3f}\t{s.end_s:.3f}\t{s.label}\n" for s in sections))


def read_sections(path: str | Path) -> list[Section]:
    """Read a ``sections.txt`` (as written by `vj analyze`, or edited by hand / in Audacity)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 3:
            raise ConfigError(f"{path}: line {n}: want start_s, end_s and a label, got {line!r}")
        try:
            a, b = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigError(f"{path}: line {n}: start and end must be seconds, got {line!r}") from None
        if not (0 <= a < b):
            raise ConfigError(f"{path}: line {n}: need 0 <= start < end, got {a:g}, {b:g}")
        if out and a < out[-1].start_s:
            raise ConfigError(f"{path}: line {n}: sections must be in time order")
        out.append(Section(a, b, parts[2].strip()))
    return out
