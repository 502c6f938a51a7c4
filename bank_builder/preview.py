"""Previews of a bank without torch: a labelled contact sheet PNG and an mp4 walking the grid.

Runs on a gig laptop with only vjengine installed (numpy, matplotlib, imageio-ffmpeg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vjengine.bank import Bank
from vjengine.bank.grid import blend
from vjengine.errors import VJError


def _pick(n: int, most: int) -> list[int]:
    """Up to ``most`` indices spread evenly over 0..n-1, always including both ends."""
    if n <= most:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (most - 1))) for i in range(most)})


def _label(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)[:14]


def sheet_layout(bank: Bank, *, show: Sequence[str] | None = None, at: dict[str, int] | None = None,
                 max_per_axis: int = 12) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Which cells the sheet shows: (row axis, column axis or -1, row indices, column indices, base cell)."""
    names = [a.name for a in bank.axes]
    if show:
        for n in show:
            if n not in names:
                raise VJError(f"--axes: {bank.path} has no axis {n!r} (axes: {', '.join(names)})")
        shown = [names.index(n) for n in show]
    else:
        shown = list(range(min(2, len(names))))
    if len(shown) == 1 and len(names) == 1:
        row_axis, col_axis = -1, shown[0]
    elif len(shown) == 1:
        row_axis, col_axis = shown[0], -1
    else:
        row_axis, col_axis = shown[0], shown[1]
    base = [a.size // 2 for a in bank.axes]
    for name, index in (at or {}).items():
        if name not in names:
            raise VJError(f"--at: {bank.path} has no axis {name!r} (axes: {', '.join(names)})")
        size = bank.axes[names.index(name)].size
        if not 0 <= index < size:
            raise VJError(f"--at {name}={index}: axis {name!r} has indices 0..{size - 1}")
        base[names.index(name)] = index
    rows = _pick(bank.sizes[row_axis], max_per_axis) if row_axis >= 0 else [0]
    cols = _pick(bank.sizes[col_axis], max_per_axis) if col_axis >= 0 else [0]
    return [row_axis], [col_axis], rows, cols, base


def contact_sheet(bank: Bank, out_png: str | Path, *, show: Sequence[str] | None = None,
                  at: dict[str, int] | None = None, max_per_axis: int = 12, thumb_px: int = 128) -> Path:
    """Write a labelled contact sheet: rows and columns are two axes, axis values on the edges.

    Other axes are held at ``at`` (default: their middle index), which the title states.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (row_axis,), (col_axis,), rows, cols, base = sheet_layout(bank, show=show, at=at, max_per_axis=max_per_axis)
    scale = thumb_px / max(bank.width, bank.height)
    tw, th = max(1, round(bank.width * scale)), max(1, round(bank.height * scale))
    gap = 2  # a dark line between thumbnails
    tw, th = tw + gap, th + gap
    mosaic = np.full((len(rows) * th, len(cols) * tw, 3), 24, dtype=np.uint8)
    for r, ri in enumerate(rows):
        for c, ci in enumerate(cols):
            cell = list(base)
            if row_axis >= 0:
                cell[row_axis] = ri
            if col_axis >= 0:
                cell[col_axis] = ci
            frame = np.asarray(bank.frames[bank.index(cell)])[..., :3]
            mosaic[r * th:(r + 1) * th - gap, c * tw:(c + 1) * tw - gap] = _resize_nearest(frame, th - gap, tw - gap)
    dpi = 100
    fig = plt.figure(figsize=(mosaic.shape[1] / dpi + 1.6, mosaic.shape[0] / dpi + 1.3), dpi=dpi)
    ax = fig.add_axes([1.1 / (mosaic.shape[1] / dpi + 1.6), 0.4 / (mosaic.shape[0] / dpi + 1.3),
                       mosaic.shape[1] / dpi / (mosaic.shape[1] / dpi + 1.6),
                       mosaic.shape[0] / dpi / (mosaic.shape[0] / dpi + 1.3)])
    ax.imshow(mosaic, interpolation="nearest")
    axes = bank.axes
    if col_axis >= 0:
        ax.set_xticks([(c + 0.5) * tw - 0.5 - gap / 2 for c in range(len(cols))],
                      [_label(axes[col_axis].values[i]) for i in cols], fontsize=7, rotation=45 if len(cols) > 6 else 0)
        ax.xaxis.set_ticks_position("top")
        ax.xaxis.set_label_position("top")
        ax.set_xlabel(f"{axes[col_axis].name}{' (cyclic)' if axes[col_axis].cyclic else ''}", fontsize=9)
    else:
        ax.set_xticks([])
    if row_axis >= 0:
        ax.set_yticks([(r + 0.5) * th - 0.5 - gap / 2 for r in range(len(rows))],
                      [_label(axes[row_axis].values[i]) for i in rows], fontsize=7)
        ax.set_ylabel(f"{axes[row_axis].name}{' (cyclic)' if axes[row_axis].cyclic else ''}", fontsize=9)
    else:
        ax.set_yticks([])
    held = [f"{a.name}={_label(a.values[base[d]])}" for d, a in enumerate(axes) if d not in (row_axis, col_axis)]
    title = f"{bank.name}: {bank.count} frames {bank.width}x{bank.height}"
    if held:
        title += "  (held: " + ", ".join(held) + ")"
    fig.text(0.01, 0.01, title, fontsize=8)
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return out_png


def _resize_nearest(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * frame.shape[0] / h).astype(int)
    xs = (np.arange(w) * frame.shape[1] / w).astype(int)
    return frame[ys][:, xs]


def walk_coordinates(bank: Bank, frames_n: int) -> np.ndarray:
    """A smooth closed walk through the grid, [frames_n, D] coordinates in 0..1.

    Axis d runs a cosine (triangle-like, back and forth) with its own number of cycles, so a 2-D
    bank gets a Lissajous figure that visits the corners; a cyclic axis turns round once instead.
    """
    t = np.arange(frames_n) / max(1, frames_n)
    coords = np.zeros((frames_n, len(bank.axes)))
    for d, axis in enumerate(bank.axes):
        cycles = d + 1
        if axis.cyclic:
            coords[:, d] = (t * cycles) % 1.0
        else:
            coords[:, d] = 0.5 - 0.5 * np.cos(2 * math.pi * cycles * t + d * math.pi / 2)
    return coords


def walk_video(bank: Bank, out_mp4: str | Path, *, seconds: float = 8.0, fps: int = 30) -> Path:
    """Render an mp4 of the n-linear blend (as the live engine draws it) along :func:`walk_coordinates`."""
    import imageio_ffmpeg

    n = max(2, int(round(seconds * fps)))
    coords = walk_coordinates(bank, n)
    w, h = bank.width - bank.width % 2, bank.height - bank.height % 2  # yuv420p needs even sizes
    out_mp4 = Path(out_mp4)
    writer = imageio_ffmpeg.write_frames(str(out_mp4), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                         pix_fmt_out="yuv420p", macro_block_size=1)
    writer.send(None)
    try:
        for c in coords:
            img = blend(bank.frames, c, bank.sizes, bank.cyclic)[:h, :w, :3]
            writer.send(np.ascontiguousarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)))
    finally:
        writer.close()
    return out_mp4
