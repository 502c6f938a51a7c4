"""Streaming residency on a real GL context with real compressed textures: a bank larger than its GPU
budget plays with every tap full resolution or the same frame's low tier, within the budget; bad
frames are survived; the upload path per codec and driver; bad budgets and codecs exit 2."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from vjengine.bank import Axis, codecs, open_bank, write_bank
from vjengine.bank.format import FRAMES_FILE
from vjengine.errors import DeviceError
from vjengine.render.residency import ResidentFrames, upload_path

SIDE = 64


def _frames(n, side=SIDE):
    """Each frame a distinct flat colour pattern, so every frame (and its low tier) is told apart."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (n, 1, 1, 3))
    y, x = np.mgrid[0:side, 0:side]
    ramp = ((x + y) * 40 // (2 * side))[None, :, :, None]
    return np.clip(base + ramp, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def big_bank(tmp_path_factory):
    """2,000 frames on a 40 x 50 grid (the second axis cyclic), BC1."""
    path = tmp_path_factory.mktemp("res") / "big"
    frames = _frames(2000)
    write_bank(path, (Axis("a", tuple(range(40))), Axis("b", tuple(range(50)), cyclic=True)), frames, codec="bc1")
    return open_bank(path), frames


def test_upload_path_per_codec_and_driver():
    s3tc, bptc = "GL_EXT_texture_compression_s3tc", "GL_ARB_texture_compression_bptc"
    assert upload_path("raw", [], "llvmpipe (LLVM 15)") == "raw"
    # llvmpipe decodes blocks in software per texel fetch (BPTC ~200x, S3TC 2x at 16 taps): decode at upload
    assert upload_path("bc1", [s3tc, bptc], "llvmpipe (LLVM 15)") == "cpu"
    assert upload_path("bc7", [s3tc, bptc], "llvmpipe (LLVM 15)") == "cpu"
    assert upload_path("bc1", [s3tc, bptc], "llvmpipe (LLVM 15)", native=True) == "native"
    assert upload_path("bc1", [s3tc, bptc], "AMD Radeon Graphics (radeonsi, renoir, LLVM 15)") == "native"
    assert upload_path("bc7", [s3tc, bptc], "NVIDIA GeForce RTX 3050 Laptop GPU/PCIe/SSE2") == "native"
    with pytest.raises(DeviceError, match=r"mybank: this GPU \(Mali-G52\) cannot sample bc7 textures .*"
                                          r"vj-bank compress mybank --codec bc1 -o OUT \(or --codec raw\)"):
        upload_path("bc7", ["GL_KHR_texture_compression_astc_ldr"], "Mali-G52", bank="mybank")


def _taps_for(coord, sizes, cyclic):
    from vjengine.bank import grid

    idx, w = grid.neighbours(coord, sizes, cyclic)
    return sorted({int(i) for i, wt in zip(idx, w) if wt > 0} or {int(idx[0])})


def test_a_budget_of_5_percent_plays_every_region_full_res_or_low_tier(ctx, big_bank):
    bank, frames = big_bank
    frame_bytes = (SIDE // 4) ** 2 * 8
    low_bytes = bank.count * bank.low[0].nbytes
    budget = (100 * frame_bytes + low_bytes) / (1 << 20)  # 100 of 2,000 frames: 5 %
    res = ResidentFrames(ctx, bank, gpu_budget_mb=budget, sync_budget_ms=0, native=True)  # as if the disk were slow
    assert res.status()["low_tier_ready"] == 0.0  # opening read no frame data: the low tier streams in tick
    res.load_low_tier()
    assert res.path == "native" and res.slots == 100
    full = {i: codecs.decode(bank.blocks[i], "bc1", SIDE, SIDE, 3) for i in range(bank.count)}
    lw, lh = bank.low_size
    low = {i: codecs.decode(bank.low[i], "bc1", lw, lh, 3) for i in range(bank.count)}
    # a path through every region: rows of the grid, back and forth, wrapping the cyclic axis
    path = [(r / 39, (r * 7 + t) / 50 % 1.0) for r in range(0, 40, 3) for t in np.linspace(0, 10, 12)]
    low_seen = full_seen = asked = 0
    for step, coord in enumerate(path):
        taps = _taps_for(coord, bank.sizes, bank.cyclic)
        where = res.layers_for(taps)
        assert res.resident_bytes <= res.budget_bytes
        if step % 18 == 9:  # here give the bank's reader thread time: the taps come in full (bounded wait)
            deadline = time.monotonic() + 10.0
            while any(res.slot_of[i] < 0 for i in taps) and time.monotonic() < deadline:
                res.tick(0.004)
            where = res.layers_for(taps)
            asked += 1
        if step % 9 == 0:  # read back what each tap samples: that frame, full or low, nothing else
            for i, (array, layer) in zip(taps, where):
                got = array.read(layer)[..., :3].astype(int)
                if id(array) in res.low_ids:
                    assert got.shape[:2] == (lh, lw)
                    assert np.abs(got - low[i]).max() <= 2, f"tap {i} at {coord} is not its own low tier"
                    low_seen += 1
                else:
                    assert np.abs(got - full[i]).max() <= 2, f"tap {i} at {coord} is not its own frame"
                    full_seen += 1
        res.tick(0.004)
    assert low_seen and full_seen
    assert res.resident == res.slots and res.uploads > res.slots  # the LRU cycled
    assert res.miss_to_sharp_ms and max(res.miss_to_sharp_ms) < 5000
    line = res.hud_line()
    import re

    assert re.fullmatch(r"frames 100/2000 resident · bc1 on GPU · low tier \d+%( \(now \d+ taps?\))?", line), line
    assert f"{100 * res.low_tier_share:.0f}%" in line
    st = res.status()
    assert st["resident_mb_max"] * (1 << 20) <= res.budget_bytes and st["path"] == "native"
    assert len(st["low_frames"]) == len(path) + asked and set(st["low_frames"]) == {"0", "1"}
    res.release()


def test_wait_full_never_draws_the_low_tier(ctx, big_bank):
    bank, _ = big_bank
    res = ResidentFrames(ctx, bank, gpu_budget_mb=0.5, wait_full=True, native=True)
    for coord in [(0.0, 0.0), (0.5, 0.99), (1.0, 0.5), (0.25, 0.1)]:
        where = res.layers_for(_taps_for(coord, bank.sizes, bank.cyclic))
        assert not any(id(a) in res.low_ids for a, _ in where)
    assert res.low_tier_share == 0.0
    res.release()


def test_prefetch_follows_the_heading(ctx, big_bank):
    bank, _ = big_bank
    now = [0.0]  # the heading's clock, stepped one frame at a time (a loaded machine's stalls do not count)
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, prefetch_s=0.5, native=True, clock=lambda: now[0])
    # move along the cyclic axis at a steady pace, with time to prefetch each frame
    for k in range(30):
        res.layers_for(_taps_for((0.5, k / 200), bank.sizes, bank.cyclic))
        res.tick(0.01)
        now[0] += 0.012  # a frame interval (the tick's 10 ms and a little): the heading is cells per second
    ahead = [bank.index((19, c)) for c in range(8, 12)] + [bank.index((20, c)) for c in range(8, 12)]
    # the bank's reader thread reads what the prefetch asked for; each tick uploads what it has read
    deadline = time.monotonic() + 60.0
    while not all(res.slot_of[i] >= 0 for i in ahead) and time.monotonic() < deadline:
        res.tick(0.01)
        time.sleep(0.002)  # polling the condition (the reads done), bounded by the deadline
    assert all(res.slot_of[i] >= 0 for i in ahead), "frames ahead of the heading were not prefetched"
    res.release()


def _until_resident(res, frames):
    deadline = time.monotonic() + 60.0
    while not all(res.slot_of[i] >= 0 for i in frames) and time.monotonic() < deadline:
        res.tick(0.01)
        time.sleep(0.002)  # polling the condition (the reads done), bounded by the deadline
    return all(res.slot_of[i] >= 0 for i in frames)


def test_a_jump_on_the_mappings_heading_is_loaded_before_it_is_drawn(ctx, big_bank):
    bank, _ = big_bank
    now = [0.0]
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, native=True, clock=lambda: now[0])
    res.load_low_tier()
    here, there = (0.9, 0.3), (0.05, 0.3)  # a saw LFO about to wrap: 31 cells in one frame
    res.layers_for(_taps_for(here, bank.sizes, bank.cyclic))
    res.set_heading([(0.92, 0.3), (0.95, 0.3), there])
    jump = _taps_for(there, bank.sizes, bank.cyclic)
    assert _until_resident(res, jump), "the jump's frames on the heading were not loaded ahead"
    where = res.layers_for(jump)
    assert not any(id(a) in res.low_ids for a, _ in where), "the jump was drawn from the low tier"
    # without a heading the same jump is a miss: velocity cannot see it coming
    res2 = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, native=True, sync_budget_ms=0, clock=lambda: now[0])
    res2.load_low_tier()
    res2.layers_for(_taps_for(here, bank.sizes, bank.cyclic))
    assert not any(res2.slot_of[i] >= 0 for i in jump)
    res.release()
    res2.release()


def test_a_heading_across_two_cell_edges_at_once_loads_either_way_round(ctx, big_bank):
    """Between two points of the heading the blend crosses a cell edge on both axes; the prediction
    cannot know which it crosses first, so the cells of both orders are loaded."""
    bank, _ = big_bank
    now = [0.0]
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, native=True, clock=lambda: now[0])
    res.load_low_tier()
    res.layers_for(_taps_for((0.5, 0.518), bank.sizes, bank.cyclic))  # cells 19-20 x 25-26
    res.set_heading([(0.5, 0.518), (0.52, 0.526)])  # to cells 20-21 x 26-27
    either = [bank.index((21, 25)), bank.index((19, 27))]  # axis 0 crossed first / axis 1 crossed first
    assert _until_resident(res, either), "the cells of one crossing order were not loaded"
    res.release()


def test_the_frames_just_before_a_jump_on_the_heading_are_loaded_too(ctx, big_bank):
    """A saw climbs one cell per heading point, then wraps between two points: the frames it draws
    after the last point before the wrap (up to one step on) are loaded, not only where it lands."""
    bank, _ = big_bank
    now = [0.0]
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, native=True, clock=lambda: now[0])
    res.load_low_tier()
    res.layers_for(_taps_for((0.875, 0.3), bank.sizes, bank.cyclic))
    res.set_heading([(0.9, 0.3), (0.925, 0.3), (0.05, 0.3)])  # ~1 cell a point, then 34 cells back
    before = _taps_for((0.95, 0.3), bank.sizes, bank.cyclic)  # drawn between the last point and the wrap
    assert not set(before) <= set(_taps_for((0.925, 0.3), bank.sizes, bank.cyclic))
    assert _until_resident(res, before), "the frames just before the jump were not loaded ahead"
    assert _until_resident(res, _taps_for((0.05, 0.3), bank.sizes, bank.cyclic)), "nor where it lands"
    res.release()


def test_a_stale_heading_gives_way_to_the_velocity_and_a_jump_resets_it(ctx, big_bank):
    bank, _ = big_bank
    now = [0.0]
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1.0, native=True, clock=lambda: now[0])
    res.set_heading([(0.05, 0.9)])
    far = _taps_for((0.05, 0.9), bank.sizes, bank.cyclic)
    now[0] += 1.0  # long past HEADING_FRESH_S
    res.layers_for(_taps_for((0.5, 0.5), bank.sizes, bank.cyclic))
    res.tick(0.0)
    assert not set(far) & set(res._prefetch), "a stale heading still steered prefetch"
    for k in range(5):  # a steady heading, then a jump across the grid
        res.layers_for(_taps_for((0.5, 0.5 + k / 100), bank.sizes, bank.cyclic))
        now[0] += 0.016
    assert np.any(res._velocity != 0)
    res.layers_for(_taps_for((0.0, 0.1), bank.sizes, bank.cyclic))
    assert not np.any(res._velocity)  # the jump is not taken for a speed of thousands of cells a second
    res.release()


def test_budget_too_small_for_one_blend_names_the_minimum(ctx, big_bank):
    bank, _ = big_bank
    with pytest.raises(DeviceError, match=r"--gpu-budget-mb 0.1 cannot hold one blend: it needs at least "
                                          r"0.25 MB \(4 frames of 0.002 MB plus the low tier's 0.24 MB\)"):
        ResidentFrames(ctx, bank, gpu_budget_mb=0.1, native=True)


def test_bc7_on_llvmpipe_decodes_on_the_cpu(ctx, tmp_path):
    frames = _frames(6, 32)
    bank = open_bank(write_bank(tmp_path / "b7", (Axis("x", tuple(range(6))),), frames, codec="bc7"))
    res = ResidentFrames(ctx, bank, gpu_budget_mb=16, wait_full=True)
    if "llvmpipe" not in ctx.info["GL_RENDERER"]:
        pytest.skip("the CPU path is for software renderers")
    assert res.path == "cpu"
    (array, layer), = res.layers_for([4])
    np.testing.assert_array_equal(array.read(layer)[..., :3], codecs.decode(bank.blocks[4], "bc7", 32, 32, 3))
    res.release()


def test_a_bad_frame_is_logged_once_and_drawn_as_a_neighbour(ctx, tmp_path, caplog):
    frames = _frames(12, 32)
    path = write_bank(tmp_path / "b", (Axis("a", (0, 1, 2)), Axis("b", (0, 1, 2, 3))), frames, codec="bc1")
    bank = open_bank(path)
    offset = bank.blocks.offset + 5 * bank.blocks[0].nbytes + 3
    del bank
    with open(path / FRAMES_FILE, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff\xff")
    bank = open_bank(path)
    res = ResidentFrames(ctx, bank, gpu_budget_mb=1, wait_full=True, native=True)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            (array, layer), = res.layers_for([5])
    assert sum("frame 5 (cell a=1, b=1) fails its checksum" in r.message for r in caplog.records) == 1
    got = array.read(layer)[..., :3].astype(int)
    # one of the frames one cell away: (0, 1), (2, 1), (1, 0), (1, 2)
    errors = {j: np.abs(got - codecs.decode(bank.blocks[j], "bc1", 32, 32, 3)).max() for j in (1, 9, 4, 6)}
    assert min(errors.values()) <= 2, errors
    res.release()
