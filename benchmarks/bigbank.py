"""Benchmark a real-size tesseract: a procedural 100 x 100 bank of 512x512 frames (7.9 GB raw).

Makes the banks once into the cache (``$VJ_CACHE_DIR`` or ``/tmp/vj-bench-cache``): raw and BC1 at
full size (10,000 frames), BC7 at full size only with ``--bc7-full`` (etcpak's BC7 encoder runs at
~5-10 frames/s per core: over 20 minutes for 10,000 frames), otherwise its figures come from a
sample of the same frames. Then in one run:

- compression: ``ratio_bc1``, ``ratio_bc7`` (raw bytes / stored bytes), ``psnr_bc1_db``,
  ``psnr_bc7_db`` (decoded against raw, over a sample of frames), encode frames/s per codec;
- render: time per 1920x1080 frame, K=4 (2 axes) and K=16 (4 axes), compressed vs raw, on banks that
  fit in memory (``render_ratio_bc1``, ``render_ratio_bc7``: the worse of K=4 and K=16) and the
  upload path each codec took on this driver;
- live: ``vj live`` headless at 1280x720 for ``--seconds`` (60) with the demo audio on the BC1 bank
  with ``--gpu-budget-mb 1024``, once with the orbit preset and once with kick-morph (jumps):
  ``fps``, ``dropped_pct``, ``low_tier_pct`` (frames in which any tap came from the low tier; for
  orbit after the first second), ``miss_to_sharp_ms_p99``, ``resident_mb_max``, ``first_frame_s``;
- load: ``load_vs_raw_read``: time to the first frame / time to read the manifest, checksums and low
  tier from disk (page cache dropped first where we may).

Prints a table, then one JSON line. Timings on a shared machine are noisy.

    python benchmarks/bigbank.py [--grid 100] [--seconds 60] [--bc7-full]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIDE = 512


def procedural_frame(u: float, v: float, side: int = SIDE) -> np.ndarray:
    """A smooth image that changes smoothly along both grid axes (u, v in 0..1; v is cyclic)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    a = 2 * np.pi * v
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
    w1 = np.sin(2 * np.pi * (3 + 2 * u) * (x * np.cos(a) + y * np.sin(a)) + 4 * u)
    w2 = np.cos(2 * np.pi * (2 + u) * r * 3 - a)
    w3 = np.sin(2 * np.pi * (x * (1 + 3 * u) - y * 2) + np.sin(a) * 2)
    img = np.stack([0.5 + 0.35 * w1 + 0.15 * w3, 0.5 + 0.3 * w2 + 0.2 * w1 * w3, 0.5 + 0.4 * w3 * np.cos(a + u)], -1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def cache_root() -> Path:
    base = Path(os.environ.get("VJ_CACHE_DIR") or Path(tempfile.gettempdir()) / "vj-bench-cache")
    base.mkdir(parents=True, exist_ok=True)
    return base


def axes_for(grid: int):
    from vjengine.bank import Axis

    return (Axis("u", tuple(round(i / (grid - 1), 4) for i in range(grid))),
            Axis("v", tuple(round(i / grid, 4) for i in range(grid)), cyclic=True))


def uv(index: int, grid: int) -> tuple[float, float]:
    i, j = divmod(index, grid)
    return i / (grid - 1), j / grid


def make_big_banks(grid: int, bc7_full: bool) -> dict[str, Path]:
    """raw and bc1 (and bc7 with bc7_full) banks of grid x grid frames, made once, in one pass."""
    from tqdm import tqdm

    from vjengine.bank import BankWriter, open_bank
    from vjengine.errors import BankError

    root = cache_root()
    codecs_wanted = ["raw", "bc1"] + (["bc7"] if bc7_full else [])
    paths = {c: root / f"bigbank-{grid}x{grid}-{SIDE}-{c}" for c in codecs_wanted}
    todo = []
    for c, p in paths.items():
        try:
            open_bank(p)
        except BankError:
            todo.append(c)
    if not todo:
        return paths
    n = grid * grid
    writers = {c: BankWriter(paths[c], axes_for(grid), SIDE, SIDE, 3, codec=c, progress=True,
                             made_by={"tool": "benchmarks/bigbank.py", "grid": grid}) for c in todo}
    try:
        with ThreadPoolExecutor(2) as pool:
            for start in tqdm(range(0, n, 16), desc=f"making {', '.join(todo)} {grid}x{grid}", unit="x16 frames"):
                idx = list(range(start, min(n, start + 16)))
                frames = list(pool.map(lambda i: procedural_frame(*uv(i, grid)), idx))
                for c, w in writers.items():
                    if c == "raw":
                        w.frames[idx[0]: idx[-1] + 1] = np.stack(frames)
                    else:
                        from vjengine.bank import codecs

                        blocks = list(pool.map(lambda f, c=c: codecs.encode(f, c), frames))
                        w.blocks[idx[0]: idx[-1] + 1] = np.stack(blocks)
        for w in writers.values():
            w.commit()
    finally:
        for w in writers.values():
            if not w.committed:
                w.abort()
    return paths


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--make-only":
    g = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    print(make_big_banks(g, "--bc7-full" in sys.argv))
    sys.exit(0)
