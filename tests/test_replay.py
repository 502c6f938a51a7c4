"""Record and replay: a recorded show renders again with hash-identical frames."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from _show_banks import mp4_info, smooth_bank, song
from vjengine.cli import main
from vjengine.control.commands import Command, CommandQueue
from vjengine.show.record import SetLog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class JitterClock:
    """A clock with uneven frame times (like a real show), reproducible from a seed."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.now_s = 0.0

    def tick(self) -> float:
        dt = float(1 / 60 + self.rng.normal(0, 0.002))
        self.now_s += dt
        return dt


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    return {"a": smooth_bank(d / "bank-a", sizes=(3, 4)), "b": smooth_bank(d / "bank-b", sizes=(4, 2, 2), seed=2),
            "song": song(d / "song.wav", seconds=4.0)}


def test_recorded_loop_replays_hash_identical(assets, tmp_path):
    """The frame loop with jittery frame times, commands from 'keys' and 'OSC' mid-show, a bank switch
    on the bar and a preset hot-reload; then `vj render --replay`: every frame hash matches."""
    from vjengine.frameloop import FrameHashes, FrameLoop
    from vjengine.offline import PushAudio, read_song
    from vjengine.presenters import HeadlessPresenter
    from vjengine.render.compositor import Compositor
    from vjengine.render.context import headless_context
    from vjengine.render.textures import BankTextures
    from vjengine.show.setup import build_setup, record_header
    from vjengine.show.record import Recorder
    from vjengine.show.state import ShowState

    preset = tmp_path / "mine.toml"
    preset.write_text('name = "mine"\n[[layer]]\nmode = "kick_morph"\naxes = [0, 1]\n'
                      '[fx]\nfeedback = 0.5\nflash = { mode = "direct", feature = "beat", attack_ms = 0, release_ms = 100 }\n')

    import argparse

    more = tmp_path / "more"  # a watched preset folder: a preset saved there mid-show joins the show
    more.mkdir()
    args = argparse.Namespace(preset=[str(preset)], preset_dir=[str(more)], crossfade=0.5, quantize="bar", cues=None)
    setup = build_setup([str(assets["a"]), str(assets["b"])], args)
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize)
    samples, sr = read_song(assets["song"])
    size = (80, 48)
    ctx = headless_context()
    compositor = Compositor(ctx, output_size=size, fit="fill")
    textures = [BankTextures(ctx, b, progress=False) for b in setup.banks]
    log_path, live_hashes = tmp_path / "set.jsonl", tmp_path / "live.txt"
    rec = Recorder(log_path, record_header(setup, show, size, "fill", {"file": str(assets["song"])}, 3.0))
    queue = CommandQueue()
    with open(live_hashes, "w") as hashes:
        loop = FrameLoop(clock=JitterClock(), queue=queue, show=show, audio=PushAudio(samples, sr),
                         compositor=compositor, banks=textures, presenter=HeadlessPresenter(size, 60, pace=False),
                         recorder=rec, output_hooks=[FrameHashes(hashes)])
        loop.check_presets_next_frame()
        for n in range(200):
            if n == 20:
                queue.put(Command("axis", "a1", 0.8, source="osc"))
                queue.put(Command("fx", "hue.rotate", 0.25, source="osc"))
            if n == 40:
                queue.put(Command("bank", "", "bank-b", source="key"))
            if n == 60:
                preset.write_text(preset.read_text().replace("feedback = 0.5", "feedback = 0.2"))
                os.utime(preset, ns=(0, 10**18))
                loop.check_presets_next_frame()
            if n == 90:
                queue.put(Command("preset", "", "chill-orbit", source="key"))
            if n == 100:
                (more / "late.toml").write_text('name = "late"\n[[layer]]\nmode = "lfo"\naxes = [0, 1]\n')
                loop.check_presets_next_frame()
            if n == 110:
                queue.put(Command("preset", "", "late", source="osc"))
            if n == 120:
                queue.put(Command("blackout", "", True, source="key"))
            if n == 125:
                queue.put(Command("blackout", "", False, source="key"))
            loop.step()
    rec.close()
    compositor.release()
    for t in textures:
        t.release()
    ctx.release()

    log = SetLog(log_path)
    frames = list(log.frames())
    assert len(frames) == 200
    assert any(f.reloads for f in frames), "the preset edit was recorded"
    assert {f.output["bank"] for f in frames} == {0, 1}
    kinds = [c.kind for f in frames for c in f.commands]
    assert kinds == ["axis", "fx", "bank", "preset", "preset", "blackout", "blackout"]
    assert frames[95].output is not None and show.current_preset.name == "late"
    assert sum(len(f.reloads) for f in frames) == 2, "the edit and the new file were recorded"

    out, replay_hashes = tmp_path / "set.mp4", tmp_path / "replay.txt"
    assert main(["render", "--replay", str(log_path), "-o", str(out), "--fps", "60", "--no-progress",
                 "--frame-hashes", str(replay_hashes)]) == 0
    live_lines = live_hashes.read_text().split()
    assert len(live_lines) == 200
    assert replay_hashes.read_text().split() == live_lines
    info = mp4_info(out)
    assert info["frames"] == 200
    assert any("Audio:" in s for s in info["streams"])


def test_live_run_from_a_file_source_replays_identically(assets, tmp_path):
    """`vj live --headless --audio-file SONG --record` (real clock, real-time file source), then
    `vj render --replay`: identical frame hashes."""
    log_path, live_hashes = tmp_path / "set.jsonl", tmp_path / "live.txt"
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "vjengine.cli", "live", str(assets["a"]), str(assets["b"]), "--headless",
           "--audio-file", str(assets["song"]), "--duration", "2.5", "--size", "64x40", "--fps", "30",
           "--record", str(log_path), "--frame-hashes", str(live_hashes), "--no-osc",
           "--preset", "techno-kick-morph", "--screenshot", str(tmp_path / "last.png")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "last.png").is_file()
    live_lines = live_hashes.read_text().split()
    assert len(live_lines) > 30
    replay_hashes = tmp_path / "replay.txt"
    assert main(["render", "--replay", str(log_path), "-o", str(tmp_path / "set.mp4"), "--no-progress",
                 "--frame-hashes", str(replay_hashes)]) == 0
    assert replay_hashes.read_text().split() == live_lines
    frames = list(SetLog(log_path).frames())
    assert sum(f.audio.hops for f in frames) > 0  # audio really flowed from the file source
    # the sound the show analysed is recorded beside the log and muxed into the replay
    import soundfile

    wav = soundfile.info(str(log_path.with_suffix(".wav")))
    show_s = sum(f.dt_s for f in frames)
    assert wav.duration == pytest.approx(show_s, abs=0.25)
    info = mp4_info(tmp_path / "set.mp4")
    assert info["frames"] == len(live_lines)
    assert any("Audio:" in s for s in info["streams"])
    assert info["duration_s"] == pytest.approx(show_s, abs=0.3)  # default fps: the recorded rate
