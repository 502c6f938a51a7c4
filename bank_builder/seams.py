"""The seam report (pure numpy + matplotlib): how much neighbouring frames differ, per axis.

For every pair of cells that are neighbours on an axis (including the wrap-around pair of a
cyclic axis) it measures the mean absolute difference (MAD, in 0..255 pixel units, full
resolution, RGB) and the SSIM (grey, Gaussian window sigma 1.5, on a copy downsampled to at most
``ssim_side`` pixels). Small, even steps = no visible seams in the live blend. The report gives per
axis the distribution (median, p90, max, mean, and the coefficient of variation as evenness), the
worst seams, and a heat-map PNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SSIM_SIDE = 128
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _grey_small(frame: np.ndarray, side: int) -> np.ndarray:
    g = frame[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    f = max(1, int(np.ceil(max(g.shape) / side)))
    if f > 1:
        h, w = (g.shape[0] // f) * f, (g.shape[1] // f) * f
        g = g[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return np.rint(g).astype(np.uint8)  # kept for every frame: 16 kB each at 128 px


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey images (float, 0..255), Gaussian window sigma 1.5."""
    from scipy.ndimage import gaussian_filter

    mu_a, mu_b = gaussian_filter(a, 1.5), gaussian_filter(b, 1.5)
    var_a = gaussian_filter(a * a, 1.5) - mu_a ** 2
    var_b = gaussian_filter(b * b, 1.5) - mu_b ** 2
    cov = gaussian_filter(a * b, 1.5) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a ** 2 + mu_b ** 2 + _C1) * (var_a + var_b + _C2))
    return float(s.mean())


def seam_report(frames: np.ndarray, sizes: Sequence[int], cyclic: Sequence[bool], names: Sequence[str], *,
                ssim_side: int = SSIM_SIDE, worst: int = 8) -> dict[str, Any]:
    """Measure every neighbour pair of ``frames`` [N, H, W, C] (row-major over ``sizes``).

    Returns ``{"axes": [{"name", "pairs", "mad": nested list, "ssim": nested list, "stats", "worst"}]}``
    where ``mad``/``ssim`` have the grid's shape with axis d of length n-1 (n if cyclic): entry i on
    axis d is the seam between cell i and cell i+1.
    """
    sizes = tuple(int(s) for s in sizes)
    small_cache: dict[int, np.ndarray] = {}

    def small(i: int) -> np.ndarray:
        if i not in small_cache:
            small_cache[i] = _grey_small(np.asarray(frames[i]), ssim_side)
        return small_cache[i]

    axes_out = []
    for d, n in enumerate(sizes):
        pairs_n = n if cyclic[d] else n - 1
        shape = list(sizes)
        shape[d] = pairs_n
        mad = np.zeros(shape)
        ss = np.zeros(shape)
        for cell in np.ndindex(*shape):
            a = np.ravel_multi_index(cell, sizes)
            other = list(cell)
            other[d] = (cell[d] + 1) % n
            b = np.ravel_multi_index(tuple(other), sizes)
            fa = np.asarray(frames[a], dtype=np.float32)
            fb = np.asarray(frames[b], dtype=np.float32)
            mad[cell] = float(np.mean(np.abs(fa - fb)))
            ss[cell] = ssim(small(a).astype(np.float64), small(b).astype(np.float64))
        order = np.argsort(-mad.ravel(), kind="stable")[:worst]
        worst_list = []
        for flat in order:
            cell = np.unravel_index(int(flat), shape)
            other = list(cell)
            other[d] = (cell[d] + 1) % n
            worst_list.append({"from": [int(c) for c in cell], "to": [int(c) for c in other],
                               "mad": round(float(mad[cell]), 4), "ssim": round(float(ss[cell]), 4)})
        flat_mad = mad.ravel()
        mean = float(flat_mad.mean()) if flat_mad.size else 0.0
        stats = {
            "pairs": int(flat_mad.size),
            "mad_median": round(float(np.median(flat_mad)), 4) if flat_mad.size else 0.0,
            "mad_p90": round(float(np.percentile(flat_mad, 90)), 4) if flat_mad.size else 0.0,
            "mad_max": round(float(flat_mad.max()), 4) if flat_mad.size else 0.0,
            "mad_mean": round(mean, 4),
            "mad_cv": round(float(flat_mad.std() / mean), 4) if mean > 0 else 0.0,
            "ssim_median": round(float(np.median(ss)), 4) if ss.size else 1.0,
            "ssim_min": round(float(ss.min()), 4) if ss.size else 1.0,
        }
        axes_out.append({"name": names[d], "cyclic": bool(cyclic[d]), "stats": stats, "worst": worst_list,
                         "mad": np.round(mad, 4).tolist(), "ssim": np.round(ss, 4).tolist()})
    all_mad = np.concatenate([np.ravel(a["mad"]) for a in axes_out]) if axes_out else np.zeros(0)
    return {"metric": "MAD in 0..255 pixel units (full resolution RGB); SSIM grey, downsampled",
            "sizes": list(sizes), "axes": axes_out,
            "overall": {"mad_median": round(float(np.median(all_mad)), 4) if all_mad.size else 0.0,
                        "mad_max": round(float(all_mad.max()), 4) if all_mad.size else 0.0}}


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The small part of the report that goes into the manifest: stats and the 3 worst per axis."""
    return {"metric": report["metric"], "overall": report["overall"],
            "axes": [{"name": a["name"], **a["stats"], "worst": a["worst"][:3]} for a in report["axes"]]}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'axis':<16}{'pairs':>7}{'MAD med':>9}{'p90':>8}{'max':>8}{'cv':>7}{'SSIM med':>10}{'min':>7}"]
    for a in report["axes"]:
        s = a["stats"]
        lines.append(f"{a['name'][:15]:<16}{s['pairs']:>7}{s['mad_median']:>9.2f}{s['mad_p90']:>8.2f}"
                     f"{s['mad_max']:>8.2f}{s['mad_cv']:>7.2f}{s['ssim_median']:>10.3f}{s['ssim_min']:>7.3f}")
        if a["worst"]:
            w = a["worst"][0]
            lines.append(f"{'':<16}worst seam {w['from']} -> {w['to']}: MAD {w['mad']:.2f}, SSIM {w['ssim']:.3f}")
    return "\n".join(lines)


def _as_2d(mad: np.ndarray, d: int) -> np.ndarray:
    """A 2-D view for the heat map: axis d down the rows; the other axes (max over any beyond one)."""
    m = np.moveaxis(mad, d, 0)
    if m.ndim == 1:
        return m[:, None]
    if m.ndim > 2:
        m = m.reshape(m.shape[0], m.shape[1], -1).max(axis=2)
    return m


def write_seam_report(report: dict[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """Write ``seams.json`` and the heat map ``seams.png`` into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "seams.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    axes = report["axes"]
    fig, subplots = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 4.0), squeeze=False)
    vmax = max([float(np.max(a["mad"])) for a in axes if np.size(a["mad"])] + [1e-6])
    names = [a["name"] for a in axes]
    for d, (a, ax) in enumerate(zip(axes, subplots[0])):
        m = _as_2d(np.asarray(a["mad"], dtype=float), d)
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
        other = [n for i, n in enumerate(names) if i != d]
        ax.set_ylabel(f"seam {a['name']} i -> i+1")
        ax.set_xlabel(other[0] + (" (max over the rest)" if len(other) > 1 else "") if other else "")
        s = a["stats"]
        ax.set_title(f"{a['name']}: MAD median {s['mad_median']:.1f}, worst {s['mad_max']:.1f}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("neighbour differences (MAD, 0..255): dark = smooth", fontsize=10)
    fig.tight_layout()
    png_path = folder / "seams.png"
    fig.savefig(png_path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return json_path, png_path
