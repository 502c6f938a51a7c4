"""Lyrics, section cues and the `vj render` music-video options (excerpt, preview, no partial output)."""

from __future__ import annotations

import numpy as np
import pytest

from _show_banks import mp4_info, song
from vjengine.audio.sections import Section
from vjengine.bank import Axis, write_bank
from vjengine.cli import main
from vjengine.errors import ConfigError
from vjengine.show.cues import CueRunner, load_cues, resolve_sections
from vjengine.show.lyrics import load_lyrics, lyric_positions

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("mv")
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    for i, c in enumerate(COLOURS.values()):
        frames[i] = c
    write_bank(d / "lyricbank", (Axis("lyrics", ("one", "two", "three")),), frames)
    (d / "still.toml").write_text('name = "still"\nglide_ms = 0\n[[layer]]\nmode = "manual"\naxes = [0]\n')
    return {"dir": d, "bank": d / "lyricbank", "preset": d / "still.toml", "song": song(d / "song.wav", seconds=3.0)}


def _frames(path, size):
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)
    return [np.frombuffer(f, np.uint8).reshape(size[1], size[0], 3) for f in gen]


def _colour(frame) -> str:
    mean = frame.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda k: np.abs(mean - COLOURS[k]).sum())


def test_lrc_drives_prompts_at_the_right_frames(assets, tmp_path):
    lrc = tmp_path / "song.lrc"
    lrc.write_text("[ar:test]\n[00:00.40]one\n[00:01.20]two\n[00:02.00]three\n[00:02.60]one\n")
    out = tmp_path / "lyrics.mp4"
    assert main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "--preset", str(assets["preset"]),
                 "--lyrics", str(lrc), "-o", str(out), "--size", "64x64", "--fps", "10", "--no-progress"]) == 0
    seq = [_colour(f) for f in _frames(out, (64, 64))]
    assert len(seq) == 30
    # each line takes over on the first frame at or after its time (frame n shows (n + 1) / fps s)
    switches = [i for i in range(1, len(seq)) if seq[i] != seq[i - 1]]
    assert [(i, seq[i]) for i in switches if i >= 4] == [(11, "green"), (19, "blue"), (25, "red")]
    assert seq[3:11] == ["red"] * 8


def test_lrc_excerpt_keeps_song_time(assets, tmp_path):
    lrc = tmp_path / "song.lrc"
    lrc.write_text("[00:00.40]one\n[00:01.20]two\n[00:02.00]three\n")
    out = tmp_path / "excerpt.mp4"
    assert main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "--preset", str(assets["preset"]),
                 "--lyrics", str(lrc), "-o", str(out), "--size", "64x64", "--fps", "10", "--start", "1.0",
                 "--end", "2.5", "--no-progress", "--preview"]) == 0
    seq = [_colour(f) for f in _frames(out, (64, 64))]
    # frame n shows song time 1.0 + (n + 1) / 10: the line sung before the excerpt shows first
    assert seq == ["red"] + ["green"] * 8 + ["blue"] * 6
    info = mp4_info(out)
    assert any("Audio:" in s for s in info["streams"])
    prev = mp4_info(tmp_path / "excerpt.preview.mp4")
    assert any("Video:" in s and "64x64" in s for s in prev["streams"])
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("text,suffix,where", [
    ("[00:01.00]a\n[00:00.50]b\n", ".lrc", "line 2"),        # unsorted
    ("[00:01.00]a\n[00:01.00]b\n", ".lrc", "line 2"),        # overlapping
    ("[00:01.00]a\n[0x:01.00]b\n", ".lrc", "line 2"),        # bad time stamp
    ("[00:75.00]a\n", ".lrc", "line 1"),                     # seconds out of range
    ("time,line\n1.0,a\nsoon,b\n", ".csv", "line 3: time"),  # bad time
    ("time,line\n2.0,a\n1.0,b\n", ".csv", "line 3: time"),   # unsorted
    ("1.0,a,neon\n1.0,b\n", ".csv", "line 2: time"),         # overlapping
])
def test_bad_lyric_files_name_file_and_line(tmp_path, text, suffix, where):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_lyrics(path)
    assert str(path) in str(exc.value) and where in str(exc.value)


def test_csv_lyrics_with_style_and_positions(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("time,line,style,negative\n0:01.5,hello,neon,blurry\n3,world,,\n4.5,hello,neon,\n")
    lines = load_lyrics(path)
    assert [ln.time_s for ln in lines] == [1.5, 3.0, 4.5]
    assert lines[0].style == "neon" and lines[0].negative == "blurry"
    assert lyric_positions(lines) == [(1.5, 0.0), (3.0, 1.0), (4.5, 0.0)]


def test_cue_sheet_names_sections(tmp_path):
    sheet = tmp_path / "cues.toml"
    sheet.write_text('[[cue]]\nsection = "B"\npreset = 3\n[[cue]]\nsection = "A:2"\nbank = "neon"\n')
    cues = load_cues(sheet)
    secs = [Section(0, 16, "A"), Section(16, 32, "B"), Section(32, 48, "A"), Section(48, 64, "B")]
    timed = resolve_sections(cues, secs)
    assert sorted((c.at_s, c.commands[0].kind) for c in timed) == [(16, "preset"), (32, "bank"), (48, "preset")]
    runner = CueRunner(timed)
    assert [c.kind for c in runner.due(20.0)] == ["preset"]
    (tmp_path / "sections.txt").write_text("0\t16\tA\n16\t64\tB\n")
    sheet.write_text('sections = "sections.txt"\n[[cue]]\nsection = "C"\npreset = 3\n')
    with pytest.raises(ConfigError, match=r"cues.toml: cue\[0\]: unknown section 'C' \(the song has: A, B\)"):
        load_cues(sheet)


def test_render_unknown_section_exits_2_and_writes_nothing(assets, tmp_path, capsys):
    sheet = tmp_path / "cues.toml"
    (tmp_path / "sections.txt").write_text("0\t1.5\tA\n1.5\t3\tB\n")
    sheet.write_text('sections = "sections.txt"\n[[cue]]\nsection = "chorus"\npreset = 2\n')
    out = tmp_path / "x.mp4"
    rc = main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "--cues", str(sheet), "-o", str(out),
               "--size", "64x64", "--fps", "10", "--no-progress"])
    assert rc == 2
    assert "cue[0]" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_failed_render_leaves_no_partial_video(assets, tmp_path, monkeypatch):
    import vjengine.offline as offline

    calls = {"n": 0}
    real_step = offline.FrameLoop.step

    def step_then_fail(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise ConfigError("disk full (simulated)")
        return real_step(self)

    monkeypatch.setattr(offline.FrameLoop, "step", step_then_fail)
    out = tmp_path / "y.mp4"
    rc = main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "-o", str(out), "--size", "64x64",
               "--fps", "10", "--no-progress"])
    assert rc == 2 and calls["n"] == 5
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_end_and_duration_conflict(assets, tmp_path):
    base = ["render", str(assets["song"]), "-o", str(tmp_path / "z.mp4"), "--no-progress"]
    assert main([*base, "--start", "2", "--end", "1"]) == 2
    assert main([*base, "--duration", "1", "--end", "2"]) == 2


def test_offline_stems_give_per_stem_features(assets, tmp_path, capsys):
    from vjengine.audio.hpss import HPSSSeparator
    from vjengine.audio.songsynth import kick_and_pad
    from vjengine.mapping.features import read_feature
    from vjengine.offline import PushAudio

    sr = 22050
    kick, pad = kick_and_pad(seconds=4.0, sr=sr)
    stems = HPSSSeparator().separate(kick + pad, sr)
    audio = PushAudio(kick + pad, sr, stems)
    frames = [audio.poll(i / 30) for i in range(1, 120)]
    assert set(frames[-1].stems) == {"drums", "harmonic"}
    drums = np.array([read_feature(f, "stem_drums") for f in frames[30:]])
    harm = np.array([read_feature(f, "stem_harmonic") for f in frames[30:]])
    assert drums.max() - drums.min() > 2 * (harm.max() - harm.min())  # the drums stem pulses, the pad holds
    out = tmp_path / "stems.mp4"
    assert main(["render", str(assets["song"]), "--stems", "hpss", "-o", str(out), "--size", "64x64", "--fps", "10",
                 "--duration", "1", "--no-progress"]) == 0 and out.is_file()
    assert main(["render", str(assets["song"]), "--stems", f"demucs:{tmp_path / 'none.th'}", "-o",
                 str(tmp_path / "d.mp4"), "--no-progress"]) == 2
    assert "demucs" in capsys.readouterr().err and not (tmp_path / "d.mp4").exists()


def test_live_section_cues_need_a_sections_file(tmp_path):
    from vjengine.show.cues import require_resolved

    sheet = tmp_path / "cues.toml"
    sheet.write_text('[[cue]]\nsection = "B"\npreset = 3\n')
    with pytest.raises(ConfigError, match=r"cue\[0\]: section 'B': live, the sheet must name"):
        require_resolved(load_cues(sheet))
    (tmp_path / "s.txt").write_text("0\t8\tA\n8\t16\tB\n")
    sheet.write_text('sections = "s.txt"\n[[cue]]\nsection = "B"\npreset = 3\n')
    require_resolved(load_cues(sheet))
