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
