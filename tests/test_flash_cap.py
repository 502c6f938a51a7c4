"""The photosensitivity cap holds for a whole show, not per bank: a preset that asks for ~8 flashes a
second while a cue sheet switches banks on every beat, played live (the frame loop) and offline (`vj
render`). From the rendered frames, no two rising flashes are closer than 1 / strobe_max_hz."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from _show_banks import song
from vjengine.bank import Axis, write_bank

FPS = 60
BPM = 124.0
SECONDS = 6.0
MAX_HZ = 3.0
GREY = 90


@pytest.fixture(scope="module")
def show_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("flashcap")
    for name in ("grey-a", "grey-b"):  # the same flat grey: a switch alone changes no pixel
        frames = np.full((2, 16, 16, 3), GREY, dtype=np.uint8)
        write_bank(d / name, (Axis("x", (0, 1)),), frames)
    preset = d / "flashy.toml"  # a square wave on flash, four per beat: ~8 rises a second asked for
    preset.write_text('name = "flashy"\n[[layer]]\nmode = "manual"\naxes = [0]\n'
                      '[fx]\nflash = { mode = "lfo", wave = "square", beats = 0.25, center = 0.5, depth = 0.5 }\n')
    beat_s = 60.0 / BPM
    rows = ["at,kind,target,value", "0,crossfade,,0.05"]
    rows += [f"{k * beat_s:.4f},bank,,{'grey-b' if k % 2 == 0 else 'grey-a'}" for k in range(1, int(SECONDS / beat_s))]
    cues = d / "every-beat.csv"
    cues.write_text("\n".join(rows) + "\n")
    return {"a": d / "grey-a", "b": d / "grey-b", "preset": preset, "cues": cues,
            "song": song(d / "song.wav", seconds=SECONDS, bpm=BPM)}


def rising_flashes(brightness: np.ndarray) -> np.ndarray:
    """Frame numbers where the picture gets markedly whiter than the frame before."""
    return np.flatnonzero(np.diff(brightness) > 25.0) + 1


def assert_capped(brightness: np.ndarray, switches: int) -> None:
    rises = rising_flashes(np.asarray(brightness, dtype=float))
    assert switches >= 8, "the show did not switch banks on the beats"
    assert len(rises) >= 8, f"the preset did not flash ({len(rises)} rises)"
    gaps_s = np.diff(rises) / FPS
    assert gaps_s.min() >= 1.0 / MAX_HZ - 1e-6, f"two flashes {gaps_s.min():.3f} s apart (frames {rises})"


def test_flash_cap_holds_across_bank_switches_live(show_files):
    """The live frame loop (the code `vj live` runs), frames read back by an output hook."""
    from vjengine.clock import FixedStepClock
    from vjengine.control.commands import CommandQueue
    from vjengine.frameloop import FrameLoop
    from vjengine.offline import PushAudio, read_song
    from vjengine.presenters import HeadlessPresenter
    from vjengine.render.compositor import Compositor
    from vjengine.render.context import headless_context
    from vjengine.render.textures import BankTextures
    from vjengine.show.setup import build_setup
    from vjengine.show.state import ShowState

    args = argparse.Namespace(preset=[str(show_files["preset"])], crossfade=None, quantize="none",
                              cues=str(show_files["cues"]))
    setup = build_setup([str(show_files["a"]), str(show_files["b"])], args)
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize)
    samples, sr = read_song(show_files["song"])
    ctx = headless_context()
    compositor = Compositor(ctx, output_size=(32, 32))
    textures = [BankTextures(ctx, b, progress=False) for b in setup.banks]
    brightness, banks = [], []

    def measure(comp, state):
        brightness.append(float(comp.read_rgb().mean()))
        banks.append(state.bank)

    loop = FrameLoop(clock=FixedStepClock(FPS), queue=CommandQueue(), show=show, audio=PushAudio(samples, sr),
                     compositor=compositor, banks=textures, presenter=HeadlessPresenter((32, 32), FPS, pace=False),
                     cues=setup.cues, output_hooks=[measure], strobe_max_hz=MAX_HZ, reload_presets=False)
    try:
        for _ in range(int(SECONDS * FPS)):
            loop.step()
    finally:
        compositor.release()
        for t in textures:
            t.release()
        ctx.release()
    assert min(brightness) < GREY + 5  # between flashes the grey shows
    assert_capped(np.array(brightness), int(np.count_nonzero(np.diff(banks))))


def test_flash_cap_holds_across_bank_switches_offline(show_files, tmp_path):
    """`vj render` to an mp4 with the same show; the decoded video's frames are measured."""
    import imageio_ffmpeg

    from vjengine.cli import main

    out = tmp_path / "show.mp4"
    assert main(["render", str(show_files["song"]), "--bank", str(show_files["a"]), "--bank", str(show_files["b"]),
                 "--preset", str(show_files["preset"]), "--cues", str(show_files["cues"]), "--quantize", "none",
                 "-o", str(out), "--size", "32x32", "--fps", str(FPS), "--no-audio", "--no-progress",
                 "--strobe-max-hz", str(MAX_HZ)]) == 0
    reader = imageio_ffmpeg.read_frames(str(out), pix_fmt="gray", bits_per_pixel=8)
    next(reader)  # the metadata
    brightness = [float(np.frombuffer(f, np.uint8).mean()) for f in reader]
    assert len(brightness) >= SECONDS * FPS - 2
    beat_s = 60.0 / BPM
    assert_capped(np.array(brightness), int(SECONDS / beat_s) - 1)
