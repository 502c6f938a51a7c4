"""Small real banks and songs for the show tests (written with the real bank writer)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from vjengine.bank import Axis, write_bank


def smooth_bank(path: Path, sizes=(3, 4), size_px: int = 48, seed: int = 0, cyclic_first: bool = False) -> Path:
    """A bank whose frames change smoothly along every axis (gradients shifted per cell)."""
    rng = np.random.default_rng(seed)
    axes = tuple(Axis(f"a{d}", tuple(range(n)), cyclic=(d == 0 and cyclic_first)) for d, n in enumerate(sizes))
    count = int(np.prod(sizes))
    y, x = np.mgrid[0:size_px, 0:size_px] / size_px
    base = rng.random(3)
    frames = np.empty((count, size_px, size_px, 3), dtype=np.uint8)
    for i, cell in enumerate(np.ndindex(*sizes)):
        t = np.array(cell, dtype=float) / np.maximum(np.array(sizes) - 1, 1)
        r = 0.5 + 0.5 * np.sin(6.0 * x + 3.0 * t[0] + base[0] * 6)
        g = 0.5 + 0.5 * np.sin(5.0 * y + 3.0 * t[-1] + base[1] * 6)
        b = 0.5 + 0.5 * np.cos(4.0 * (x + y) + 2.0 * t.sum() + base[2] * 6)
        frames[i] = (np.stack([r, g, b], -1) * 255).astype(np.uint8)
    write_bank(path, axes, frames)
    return path


def song(path: Path, seconds: float = 3.0, bpm: float = 124.0, sr: int = 48000) -> Path:
    import soundfile as sf

    from vjengine.audio.synth import dance_loop

    samples, _ = dance_loop(bpm=bpm, seconds=seconds, sr=sr, seed=3)
    sf.write(path, samples, sr, subtype="PCM_16")
    return path


def mp4_info(path: Path) -> dict:
    """Frame count, duration and stream lines of an mp4 (imageio-ffmpeg; ffprobe is not needed)."""
    import imageio_ffmpeg

    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True).stderr
    streams = [line.strip() for line in out.splitlines() if "Stream #" in line]
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", out)
    container_s = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None
    return {"frames": frames, "secs": secs, "streams": streams, "duration_s": container_s}
