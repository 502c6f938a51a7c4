"""BC1/BC7 banks drawn through the streaming frame source on a real GL context with real compressed
textures, against the numpy oracle on the decoded blocks; version 1 banks still play."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from _render_util import assert_no_gl_error
from test_render_blend import coordinates
from vjengine.bank import Axis, codecs, grid, open_bank, write_bank
from vjengine.bank.format import CHECKSUMS_FILE, LOW_FILE, MANIFEST
from vjengine.render.renderer import Renderer

CASES = [  # sizes, cyclic
    ((5,), (True,)),
    ((3, 4), (False, True)),
    ((2, 2, 3, 2), (True, False, True, False)),
]


def smooth_bank(path, sizes, cyclic, codec, side=16, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(sizes))
    y, x = np.mgrid[0:side, 0:side]
    frames = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        for c in range(3):
            a, b, ph = rng.uniform(0.5, 2, 2).tolist() + [rng.uniform(0, 6.28)]
            frames[i, ..., c] = (127.5 + 120 * np.sin(a * x / side * 3.1 + b * y / side * 3.1 + ph)).astype(np.uint8)
    axes = [Axis(f"axis{d}", tuple(range(s)), bool(cy)) for d, (s, cy) in enumerate(zip(sizes, cyclic))]
    return open_bank(write_bank(path, axes, frames, codec=codec))


@pytest.mark.parametrize("native", [True, None], ids=["as-is", "auto"])
@pytest.mark.parametrize("codec", ["bc1", "bc7"])
@pytest.mark.parametrize("sizes,cyclic", CASES, ids=lambda v: str(v))
def test_compressed_blend_matches_the_oracle_on_decoded_blocks(ctx, tmp_path, sizes, cyclic, codec, native):
    bank = smooth_bank(tmp_path / "b", sizes, cyclic, codec, seed=len(sizes))
    decoded = np.stack([codecs.decode(bank.blocks[i], codec, bank.width, bank.height, 3) for i in range(bank.count)])
    r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True, stream_budget_ms=0,
                 gpu_budget_mb=4, wait_full=True, native=native)
    try:
        # as-is: the real compressed texture sampled by the driver; auto on llvmpipe: decoded at upload
        software = "llvmpipe" in ctx.info["GL_RENDERER"]
        assert r.textures.path == ("native" if native or not software else "cpu")
        rng = np.random.default_rng(1)
        for coord in coordinates(sizes, cyclic, rng, count=10):
            r.render(coord)
            expected = grid.blend(decoded, coord, sizes, cyclic)
            # the driver's BC1 decode rounds the 1/3-2/3 colours its own way: within 2 levels of Pillow's
            worst = np.abs(r.read_image_rgb().astype(np.float64) - expected).max()
            assert worst <= 3.0, f"coord {np.round(coord, 4).tolist()}: off by {worst:.2f}/255"
        assert_no_gl_error(ctx)
    finally:
        r.release()


def test_version_1_bank_still_plays(ctx, tmp_path):
    bank = smooth_bank(tmp_path / "b", (3, 4), (False, True), "raw")
    path = bank.path
    m = json.loads((path / MANIFEST).read_text())
    for key in ("codec", "low", "checksums"):
        m.pop(key)
    m["version"], m["files"] = 1, {"frames": m["files"]["frames"], "latents": None}
    (path / MANIFEST).write_text(json.dumps(m))
    (path / LOW_FILE).unlink()
    (path / CHECKSUMS_FILE).unlink()
    bank = open_bank(path)
    frames = np.asarray(bank.frames)
    for kwargs in ({}, {"gpu_budget_mb": 1, "wait_full": True}):
        r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True, stream_budget_ms=0, **kwargs)
        try:
            for coord in ([0.2, 0.9], [1.0, 0.0], [0.5, 0.51]):
                r.render(coord)
                assert np.abs(r.read_image_rgb() - grid.blend(frames, coord, bank.sizes, bank.cyclic)).max() <= 1.0
        finally:
            r.release()


def test_low_tier_taps_draw_through_the_compositor(ctx, tmp_path):
    """A streaming source that stands in the low tier for frames not yet on the GPU: the compositor
    picks its LOW variant (sampling by uv), draws a soft version of the right picture, and once the
    frames are resident draws them sharp."""
    from vjengine.render.compositor import Compositor
    from vjengine.render.residency import ResidentFrames

    bank = smooth_bank(tmp_path / "b", (3, 4), (False, True), "bc1", side=32, seed=4)
    decoded = np.stack([codecs.decode(bank.blocks[i], "bc1", bank.width, bank.height, 3) for i in range(bank.count)])
    # a budget for 6 of the 12 frames (and the low tier): a bank that fits never draws its low tier
    res = ResidentFrames(ctx, bank, gpu_budget_mb=(6 * 512 + 12 * 32) / (1 << 20), sync_budget_ms=0, native=True)
    comp = Compositor(ctx, output_size=(32, 32), fit="stretch", raise_errors=True)
    try:
        comp.warm_up(res)
        res.load_low_tier()  # as after the first frames of a show (it streams in tick)
        coord = [0.4, 0.3]
        expected = grid.blend(decoded, coord, bank.sizes, bank.cyclic)
        comp.render(a=(res, coord))
        assert res.frames_low >= 1  # the first frame came from the low tier
        low = comp.read_image_rgb().astype(np.float64)
        assert np.abs(low.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 10.0  # the same colours, soft
        soft = np.abs(low - expected)
        # the misses are read on the bank's reader thread and uploaded in tick: draw until no tap is
        # low any more (a few frames; on a loaded machine the reads can take longer), then it is exact
        deadline = time.monotonic() + 60.0
        while res.last_low_taps and time.monotonic() < deadline:
            comp.render(a=(res, coord))
        assert not res.last_low_taps, "the missed frames never came up"
        comp.render(a=(res, coord))
        sharp = np.abs(comp.read_image_rgb().astype(np.float64) - expected)
        assert sharp.max() <= 3.0 < soft.max()
        assert_no_gl_error(ctx)
    finally:
        comp.release()
        res.release()


def _live(bank, tmp_path, *extra):
    import subprocess
    import sys

    from vjengine.show.statslog import load_stats

    stats = tmp_path / "stats.jsonl"
    proc = subprocess.run([sys.executable, "-m", "vjengine.cli", "live", str(bank), "--headless", "--duration", "1.5",
                           "--size", "64x36", "--no-osc", "--stats", str(stats), "--screenshot",
                           str(tmp_path / "last.png"), *extra], capture_output=True, text=True, timeout=300)
    return proc, (load_stats(stats) if stats.is_file() else None)


@pytest.mark.parametrize("damage", ["frame and latent", "checksum table"])
def test_live_survives_bit_flips(tmp_path, damage):
    from vjengine.bank.format import FRAMES_FILE, LATENTS_FILE

    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    lat = rng.standard_normal((4, 3)).astype(np.float16)
    path = write_bank(tmp_path / "b", (Axis("x", (0, 1)), Axis("y", (0, 1), cyclic=True)), frames, lat, codec="bc1")
    bank = open_bank(path)
    targets = {"frame and latent": [(FRAMES_FILE, bank.blocks.offset + bank.blocks[0].nbytes + 5),
                                    (LATENTS_FILE, bank.latents.offset + 2)],
               "checksum table": [(CHECKSUMS_FILE, bank.checksums["frames"].offset + 4)]}[damage]
    del bank
    for name, offset in targets:
        with open(path / name, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)[0]
            fh.seek(offset)
            fh.write(bytes([byte ^ 0x08]))
    proc, stats = _live(path, tmp_path, "--gpu-budget-mb", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert stats["frames"] > 3
    if damage == "checksum table":
        assert proc.stderr.count("the checksum table is damaged") == 1
    else:
        assert proc.stderr.count("frame 1 (cell x=0, y=1) fails its checksum") == 1
        assert stats["residency"][0]["bad_frames"] == 1
    assert "Traceback" not in proc.stderr


def test_live_refuses_a_budget_below_one_blend(tmp_path):
    bank = smooth_bank(tmp_path / "b", (3, 4), (False, True), "bc1", side=64)  # 4 frames of 2 KB: 8 KB
    proc, _ = _live(bank.path, tmp_path, "--gpu-budget-mb", "0.005")
    assert proc.returncode == 2
    assert "cannot hold one blend: it needs at least" in proc.stderr and "Traceback" not in proc.stderr
