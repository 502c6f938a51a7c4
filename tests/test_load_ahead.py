"""Loading the next bank ahead: a bank cue due within a few seconds (or a pending quantised switch)
makes the frame loop upload the next streamed bank's frames around the current coordinate, so the
switch lands on full-resolution frames, not the low tier. Real GL, real BC1 banks, the real loop."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from _show_banks import song
from vjengine.bank import Axis, open_bank, write_bank
from vjengine.render.residency import ResidentFrames
from vjengine.show.cues import CueRunner, parse_cue_csv

FPS = 30


def _bank(path, n=64, seed=0):
    rng = np.random.default_rng(seed)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (n, 1, 1, 3)), 32, 1), 32, 2).astype(np.uint8)
    write_bank(path, (Axis("x", tuple(range(n))),), frames, codec="bc1")
    return path


def test_upcoming_banks_are_the_bank_cues_within_the_horizon_soonest_first():
    cues = CueRunner(parse_cue_csv("at,kind,target,value\n5,bank,,far\n2,bank,,near\n2.5,preset,,x\n", "cues.csv"))
    assert cues.upcoming_banks(0.0, horizon_s=1.0) == []
    assert cues.upcoming_banks(0.0) == ["near"]           # within the default 4 s
    assert cues.upcoming_banks(1.5) == ["near", "far"]
    cues.due(2.0)                                         # fired cues are not upcoming
    assert cues.upcoming_banks(2.1) == ["far"]
    bars = CueRunner(parse_cue_csv("at,kind,target,value\nbar 9,bank,,b9\n", "cues.csv"))
    frame = argparse.Namespace(beat_count=24, beat_in_bar=0, bar_phase=0.0, beats_per_bar=4)  # in bar 7
    assert bars.upcoming_banks(0.0, frame) == ["b9"]
    frame.beat_count = 12  # bar 4: five bars to go
    assert bars.upcoming_banks(0.0, frame) == []


def test_prefetch_at_fills_the_blend_and_the_ring_around_it_within_the_budget(ctx, tmp_path):
    bank = open_bank(_bank(tmp_path / "b", n=64))
    frame_bytes = 32 * 32 * 4  # decoded on the CPU at upload on llvmpipe (RGBA8)
    res = ResidentFrames(ctx, bank, gpu_budget_mb=(12 * frame_bytes + bank.count * bank.low[0].nbytes * 4) / (1 << 20),
                         sync_budget_ms=0)
    coord = 40 / 63  # between cells 40 and 41
    res.prefetch_at([coord])
    assert all(res.slot_of[i] < 0 for i in range(39, 43))  # asking loads nothing by itself
    from _osc_helpers import wait_until

    def loaded():  # live, the reads run on the bank's reader thread: frames arrive over the next ticks
        res.tick(0.05)
        return all(res.slot_of[i] >= 0 for i in (39, 40, 41, 42))

    assert wait_until(loaded, 10.0), "the blend and its ring were not loaded"
    assert res.resident_bytes <= res.budget_bytes
    where = res.layers_for([40, 41])
    assert not any(id(a) in res.low_ids for a, _ in where) and res.last_low_taps == 0
    res.release()


@pytest.mark.slow
def test_a_cued_switch_to_a_streamed_bank_lands_on_full_resolution_frames(ctx, tmp_path):
    from vjengine.clock import FixedStepClock
    from vjengine.control.commands import CommandQueue
    from vjengine.frameloop import FrameLoop
    from vjengine.offline import PushAudio, read_song
    from vjengine.presenters import HeadlessPresenter
    from vjengine.render.compositor import Compositor
    from vjengine.show.setup import build_setup
    from vjengine.show.state import ShowState

    a, b = _bank(tmp_path / "a", seed=1), _bank(tmp_path / "b", seed=2)
    cues = tmp_path / "cues.csv"
    cues.write_text("at,kind,target,value\n0,crossfade,,0\n6,bank,,b\n")
    preset = tmp_path / "still.toml"
    preset.write_text('name = "still"\n[[layer]]\nmode = "manual"\naxes = [0]\nvalue = 0.7\n')
    args = argparse.Namespace(preset=[str(preset)], crossfade=None, quantize="none", cues=str(cues))
    setup = build_setup([str(a), str(b)], args)
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize)
    samples, sr = read_song(song(tmp_path / "song.wav", seconds=8.0))
    compositor = Compositor(ctx, output_size=(32, 32))
    budget = (8 * 32 * 32 * 4 + 64 * 8 * 8 * 4) / (1 << 20)  # 8 of 64 frames: the bank cannot all fit
    banks = [ResidentFrames(ctx, x, gpu_budget_mb=budget, sync_budget_ms=0) for x in setup.banks]
    for x in banks:
        x.load_low_tier()
    loop = FrameLoop(clock=FixedStepClock(FPS), queue=CommandQueue(), show=show, audio=PushAudio(samples, sr),
                     compositor=compositor, banks=banks, presenter=HeadlessPresenter((32, 32), FPS, pace=False),
                     cues=setup.cues, reload_presets=False)
    drawn = []
    loop.output_hooks.append(lambda comp, state: drawn.append((state.bank, banks[state.bank].last_low_taps)))
    try:
        for _ in range(int(1.0 * FPS)):  # the cue is 5 s away: beyond the horizon
            loop.step()
        at_start = [i for i in range(64) if banks[1].slot_of[i] >= 0]
        for _ in range(int(6.0 * FPS)):
            loop.step()
    finally:
        compositor.release()
        for x in banks:
            x.release()
    cell = round(0.7 * 63)
    assert cell not in at_start and cell + 1 not in at_start, "b's frames were resident before the cue came near"
    first_on_b = next(k for k, (bank, _) in enumerate(drawn) if bank == 1)
    assert drawn[first_on_b][1] == 0, "the switch drew b's low tier: its frames were not loaded ahead"


@pytest.mark.parametrize("steer", [True, False])
def test_a_saw_wrap_is_loaded_ahead_along_the_mappings_heading(ctx, tmp_path, monkeypatch, steer):
    """A saw LFO sweeps a streamed bank and wraps every 4 beats: a jump of the whole axis in one frame.
    The frame loop tells the bank where the mapper is heading, so the wrap lands on full-resolution
    frames; without that (velocity alone) the wrap is a miss drawn from the low tier."""
    from _osc_helpers import wait_until
    from vjengine import frameloop
    from vjengine.clock import FixedStepClock
    from vjengine.control.commands import CommandQueue
    from vjengine.frameloop import FrameLoop
    from vjengine.offline import PushAudio, read_song
    from vjengine.presenters import HeadlessPresenter
    from vjengine.render.compositor import Compositor
    from vjengine.show.setup import build_setup
    from vjengine.show.state import ShowState

    if not steer:
        monkeypatch.setattr(frameloop, "HEADING_EVERY", 10**9)
    path = _bank(tmp_path / "a", seed=1)
    preset = tmp_path / "saw.toml"
    preset.write_text('name = "saw"\n[[layer]]\nmode = "lfo"\naxes = [0]\nwave = "saw"\nbeats = 4\n'
                      'center = 0.5\ndepth = 0.5\n')
    setup = build_setup([str(path)], argparse.Namespace(preset=[str(preset)], crossfade=None, quantize="none",
                                                        cues=None))
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize)
    samples, sr = read_song(song(tmp_path / "song.wav", seconds=8.0))
    compositor = Compositor(ctx, output_size=(32, 32))
    budget = (24 * 32 * 32 * 4 + 64 * 8 * 8 * 4) / (1 << 20)  # 24 of 64 frames: the sweep cannot all stay
    bank = ResidentFrames(ctx, setup.banks[0], gpu_budget_mb=budget, sync_budget_ms=0)
    bank.load_low_tier()
    loop = FrameLoop(clock=FixedStepClock(FPS), queue=CommandQueue(), show=show, audio=PushAudio(samples, sr),
                     compositor=compositor, banks=[bank], presenter=HeadlessPresenter((32, 32), FPS, pace=False),
                     reload_presets=False)
    drawn = []  # per frame: the saw's position, and whether any tap came from the low tier
    loop.output_hooks.append(lambda comp, state: drawn.append((state.coord[0], bank.last_low_taps > 0)))
    try:
        for _ in range(int(7.0 * FPS)):
            loop.step()
            # a frame's worth of time for the bank's reader: what was asked for is read before the next frame
            assert wait_until(lambda: bank.tick(0.01) or not bank.reader_busy, 10.0)
    finally:
        compositor.release()
        bank.release()
    wraps = [k for k in range(1, len(drawn)) if drawn[k][0] < drawn[k - 1][0] - 0.5]
    late = [k for k in wraps if k > 2 * FPS]  # the clock is locked by then
    assert late, "the saw never wrapped"
    low_at_wraps = [k for k in late if any(low for _, low in drawn[k:k + 3])]
    if steer:
        assert not low_at_wraps, f"wraps at frames {low_at_wraps} of {late} were drawn from the low tier"
    else:
        assert low_at_wraps, "velocity alone saw the jump coming: the test cannot tell the heading's worth"
