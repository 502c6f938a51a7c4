"""The img2img refine pass (`vj render --refine`) on the tiny random model: frame count, modes,
resume after SIGKILL, and spec errors (exit 2 naming file, line and key)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _builder_fixtures import cli_env, require_build_extra, tiny_model  # noqa: F401
from _show_banks import song
from vjengine.cli import main

VJ_CMD = "from vjengine.cli import main; import sys; sys.exit(main())"


def _spec(folder: Path, model: Path, extra: str = "", name: str = "refine.toml") -> Path:
    path = folder / name
    path.write_text(f'model = "{model}"\nprompt = "a neon cat"\nstrength = 0.5\nsteps = 4\nguidance = 1.0\n{extra}')
    return path


def _frames(path: Path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


@pytest.mark.parametrize("text,where", [
    ('model = "missing-folder/"\nprompt = "x"\n', "line 1: model: not found"),
    ('prompt = "x"\nmodel = "nobody/no-such-model"\n', "line 2: model: 'nobody/no-such-model' is not in"),
    ('model = "."\nprompt = "x"\nevery = "often"\n', "line 3: every"),
    ('model = "."\nprompt = "x"\nmode = "dream"\n', "line 3: mode"),
    ('model = "."\nprompt = "x"\n\nstrength = 3\n', "line 4: strength"),
    ('model = "."\nprompt = "x"\nsize = [30, 30]\n', "line 3: size"),
    ('model = "."\nprompt = "x"\nzooom = 1.1\n', "line 3: zooom: unknown key"),
])
def test_bad_refine_spec_exits_2_naming_file_line_key(tmp_path, capsys, text, where):
    spec = tmp_path / "r.toml"
    spec.write_text(text)
    wav = song(tmp_path / "s.wav", seconds=1.0)
    out = tmp_path / "o.mp4"
    assert main(["render", str(wav), "-o", str(out), "--refine", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and where in err, err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_spectrum_image_puts_a_tone_in_its_band():
    from bank_builder.refine import cq_spectrum, keyframes, load_refine_spec, spectrum_image  # noqa: F401

    sr = 22050
    t = np.arange(sr) / sr
    db = cq_spectrum(np.sin(2 * np.pi * 440.0 * t), sr, octaves=7)
    assert db.shape == (84, 64)
    assert int(np.argmax(db.mean(axis=1))) == 45  # A4: 4 octaves and 9 semitones above C1
    img = spectrum_image(np.sin(2 * np.pi * 440.0 * t), sr, 64, 48)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8


def test_keyframes_in_frames_and_beats():
    from bank_builder.refine import RefineSpec, keyframes

    s = RefineSpec(source="x", model="m", prompt="p", every_frames=4)
    assert keyframes(10, 10.0, s) == [0, 4, 8, 9]
    b = RefineSpec(source="x", model="m", prompt="p", every_beats=0.25)
    keys = keyframes(40, 20.0, b, [0.5 * i for i in range(5)])  # 120 BPM: a sixteenth every 0.125 s
    assert keys[:4] == [0, 2, 5, 8] and keys[-1] == 39


@pytest.fixture(scope="module")
def refine_assets(tmp_path_factory, tiny_model):
    require_build_extra()
    d = tmp_path_factory.mktemp("refine")
    return {"dir": d, "model": tiny_model, "song": song(d / "song.wav", seconds=2.0, sr=22050)}


def test_feedback_and_spectrum_modes_give_every_frame(refine_assets, tmp_path):
    d = refine_assets
    for mode, every in (("feedback", '"1 beat"'), ("spectrum", '"8 frames"')):
        spec = _spec(tmp_path, d["model"], f'mode = "{mode}"\nevery = {every}\nzoom = 1.2\n', f"{mode}.toml")
        out = tmp_path / f"{mode}.mp4"
        assert main(["render", str(d["song"]), "-o", str(out), "--size", "32x32", "--fps", "8", "--refine",
                     str(spec), "--no-progress"]) == 0
        assert _frames(out) == 16
        assert not (tmp_path / f"{mode}.mp4.refine-work").exists()


def test_refine_resumes_after_sigkill(refine_assets, tmp_path):
    d = refine_assets
    spec = _spec(tmp_path, d["model"], 'every = "4 frames"\n')
    out = tmp_path / "r.mp4"
    cmd = [sys.executable, "-c", VJ_CMD, "render", str(d["song"]), "-o", str(out), "--size", "32x32", "--fps", "8",
           "--refine", str(spec)]
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    work = tmp_path / "r.mp4.refine-work"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(work.glob("*/key-*.npz"))) >= 2:  # two keyframes done: kill mid-pass
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the pass ended before it could be killed: " + (proc.stderr.read() or "")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done_before = len(list(work.glob("*/key-*.npz")))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r"refined 16 frames \((\d+) keyframes, (\d+) made now", res.stderr)
    assert m, res.stderr[-2000:]
    assert int(m.group(1)) == 5 and int(m.group(2)) == 5 - done_before
    assert "ETA" in res.stderr or "<" in res.stderr  # tqdm's remaining-time estimate
    assert _frames(out) == 16
    assert not work.exists() and not list(tmp_path.glob(".*partial*"))


def test_refine_prompt_defaults_to_the_rendered_banks(tmp_path):
    from bank_builder.errors import SpecError
    from bank_builder.refine import load_refine_spec
    from vjengine.bank import Axis, write_bank

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    write_bank(tmp_path / "made", (Axis("a", (0, 1)),), frames, made_by={"spec": {"prompt": "a neon cat"}})
    write_bank(tmp_path / "bare", (Axis("a", (0, 1)),), frames)
    spec = tmp_path / "r.toml"
    spec.write_text('model = "."\nstrength = 0.2\n')
    assert load_refine_spec(spec, default_bank=tmp_path / "made").prompt == "a neon cat"
    with pytest.raises(SpecError, match="does not record the prompt"):
        load_refine_spec(spec, default_bank=tmp_path / "bare")
    with pytest.raises(SpecError, match="needs a prompt"):
        load_refine_spec(spec)
