"""The built-in demo: a procedural bank and a synthesized dance loop, made once into the user cache.

Neither needs a model, a sound card or the network, so `vj demo` works on a fresh laptop.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vjengine.bank.format import Axis, BankWriter, open_bank
from vjengine.errors import BankError

log = logging.getLogger(__name__)

DEMO_BANK_NAME = "demo-bank-v1"
DEMO_AUDIO_NAME = "demo-loop-124bpm-v1.wav"
DEMO_BPM = 124.0
# The preset `vj demo` starts on: the first thing a new user sees must move with the beat (on the demo
# loop the picture changes about 7x more into a beat than between beats; tests/test_app.py measures it).
DEMO_PRESET = "techno-kick-morph"

# The demo grid: palette turns all the way round (cyclic); warp and detail are the reactive axes.
PALETTE_STEPS = 8
WARP_STEPS = 8
DETAIL_STEPS = 8


def cache_dir() -> Path:
    """``$VJ_CACHE_DIR``, else ``$XDG_CACHE_HOME/vjengine``, else ``~/.cache/vjengine``."""
    if os.environ.get("VJ_CACHE_DIR"):
        base = Path(os.environ["VJ_CACHE_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vjengine"
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextmanager
def _cache_lock(name: str):
    # Two processes starting at once (a test run, a second `vj demo`) must not build the same file twice.
    with open(cache_dir() / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def demo_frame(palette: float, warp: float, detail: float, size: int = 256) -> np.ndarray:
    """One demo frame, uint8 [size, size, 3]: a domain-warped interference field through a cosine
    palette. Every parameter changes the image smoothly, so neighbouring grid cells blend cleanly.

    palette: 0..1 (cyclic, a turn of the palette); warp: 0..1; detail: 0..1.
    """
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(lin, lin)
    freq = 2.0 + 4.0 * detail
    amount = 1.6 * warp
    # Domain warp: displace the plane by a slow field before sampling the pattern.
    wx = x + amount * np.sin(1.7 * freq * y + 1.3) * 0.35
    wy = y + amount * np.cos(1.3 * freq * x - 0.7) * 0.35
    r = np.sqrt(wx * wx + wy * wy)
    field = (
        np.sin(freq * wx + 2.0 * np.sin(0.5 * freq * wy))
        + np.sin(freq * r * 1.5 - 3.0 * warp)
        + 0.5 * np.cos(freq * (wx - wy) * 0.7)
    )
    t = 0.5 + 0.2 * field  # roughly 0..1
    phase = 2.0 * np.pi * palette
    rgb = np.stack(
        [0.5 + 0.5 * np.cos(2 * np.pi * (1.0 * t + 0.00) + phase),
         0.5 + 0.5 * np.cos(2 * np.pi * (1.0 * t + 0.33) + phase),
         0.5 + 0.5 * np.cos(2 * np.pi * (1.0 * t + 0.67) + phase)],
        axis=-1,
    )
    vignette = np.clip(1.25 - 0.55 * (x * x + y * y), 0.0, 1.0)[..., None]
    glow = 0.55 + 0.45 * (0.5 + 0.5 * np.cos(np.pi * field))[..., None]
    return np.clip(rgb * vignette * glow * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_demo_bank(path: str | os.PathLike[str], *, size: int = 256) -> Path:
    """Write the procedural demo bank (palette x warp x detail) to ``path``."""
    axes = (
        Axis("palette", tuple(round(i / PALETTE_STEPS, 4) for i in range(PALETTE_STEPS)), cyclic=True),
        Axis("warp", tuple(round(i / (WARP_STEPS - 1), 4) for i in range(WARP_STEPS))),
        Axis("detail", tuple(round(i / (DETAIL_STEPS - 1), 4) for i in range(DETAIL_STEPS))),
    )
    made_by = {"tool": "vjengine.demo", "kind": "procedural", "size": size}
    with BankWriter(path, axes, size, size, 3, made_by=made_by) as writer:
        i = 0
        for p in axes[0].values:
            for w in axes[1].values:
                for d in axes[2].values:
                    writer.frames[i] = demo_frame(float(p), float(w), float(d), size)
                    i += 1
        return writer.commit()


def demo_bank_path() -> Path:
    """The demo bank in the user cache, made on first use (a few seconds)."""
    path = cache_dir() / DEMO_BANK_NAME
    with _cache_lock(DEMO_BANK_NAME):
        try:
            open_bank(path)
            return path
        except BankError:
            pass
        log.info("making the demo bank in %s (once)", path)
        return make_demo_bank(path)


def resolve_bank_path(text: str) -> Path:
    """A bank directory as given on a command line, where ``demo`` names the built-in demo bank."""
    path = Path(text)
    if text == "demo" and not path.exists():
        return demo_bank_path()
    return path


def demo_audio_path() -> Path:
    """The demo loop (124 BPM kick, hats, bass) as a WAV in the user cache, made on first use."""
    path = cache_dir() / DEMO_AUDIO_NAME
    with _cache_lock(DEMO_AUDIO_NAME):
        if path.is_file() and path.stat().st_size > 44:
            return path
        import soundfile as sf

        from vjengine.audio.synth import dance_loop

        samples, _beats = dance_loop(bpm=DEMO_BPM, seconds=32 * 60.0 / DEMO_BPM * 4, sr=48000, seed=1)
        tmp = path.with_suffix(".tmp.wav")
        sf.write(tmp, samples, 48000, subtype="PCM_16")
        os.replace(tmp, path)
        return path
