"""`vj-bank build BASE --lyrics song.lrc`: a spec whose prompt axis is the lyric lines plus a style."""

from __future__ import annotations

from pathlib import Path

import pytest

from vjengine.cli import bank_main, main


def _base(folder: Path) -> Path:
    (folder / "model").mkdir(exist_ok=True)
    p = folder / "base.toml"
    p.write_text('model = "model"\nsteps = 1\nguidance = 0.0\nsize = [64, 64]\nseed = 5\n'
                 'prompt = "ink drawing"\nnegative_prompt = "text"\n'
                 '[[axes]]\nkind = "prompt"\nprompts = ["a", "b"]\ncount = 3\n'
                 '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 4\ncyclic = true\n')
    return p


def test_lyrics_make_the_prompt_axis(tmp_path, capsys):
    from bank_builder.lyrics import load_lyrics_spec
    from bank_builder.spec import load_spec

    base = _base(tmp_path)
    lrc = tmp_path / "song.csv"
    lrc.write_text("time,line,style,negative\n1.0,city lights,,\n2.5,falling rain,watercolour,blurry\n"
                   "4.0,city lights,,\n5.0,a quiet sea,,\n")
    spec, _ = load_lyrics_spec(base, lrc, cells_per_line=3)
    axis = spec.axes[0]
    assert axis.name == "lyrics" and axis.kind == "prompt" and not axis.cyclic
    assert axis.prompts == ("city lights, ink drawing", "falling rain, watercolour", "a quiet sea, ink drawing")
    assert axis.count == 7 and [axis.position(i) for i in (0, 3, 6)] == [0.0, 1.0, 2.0]
    assert [a.kind for a in spec.axes] == ["prompt", "seed"]
    assert spec.negative_prompt == "text, blurry"
    out = tmp_path / "lyrics.toml"
    assert bank_main(["build", str(base), "--lyrics", str(lrc), "--cells-per-line", "3", "--style", "neon",
                      "--write-spec", str(out), "--dry-run", "-o", str(tmp_path / "bank")]) == 0
    again = load_spec(out)  # the written spec stands alone
    assert again.axes[0].prompts[0] == "city lights, neon" and again.axes[0].count == 7


@pytest.mark.parametrize("text,msg", [
    ("[00:01.00]only one line\n[00:02.00]only one line\n", "two or more distinct lines"),
    ("[00:02.00]a\n[00:01.00]b\n", "line 2: time"),
])
def test_bad_lyrics_for_a_bank_exit_2(tmp_path, capsys, text, msg):
    base = _base(tmp_path)
    lrc = tmp_path / "song.lrc"
    lrc.write_text(text)
    assert bank_main(["build", str(base), "--lyrics", str(lrc), "--dry-run", "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert str(lrc) in err and msg in err


def test_render_lyrics_needs_the_axis(tmp_path, capsys):
    from _show_banks import smooth_bank, song

    lrc = tmp_path / "s.lrc"
    lrc.write_text("[00:00.50]a\n[00:01.00]b\n")
    bank = smooth_bank(tmp_path / "bank", sizes=(3,))
    rc = main(["render", str(song(tmp_path / "s.wav", seconds=1.0)), "--bank", str(bank), "--lyrics", str(lrc),
               "-o", str(tmp_path / "o.mp4"), "--no-progress"])
    assert rc == 2 and "has no axis 'lyrics'" in capsys.readouterr().err


def test_transcription_without_weights_says_how(tmp_path, capsys):
    from _show_banks import song

    wav = song(tmp_path / "s.wav", seconds=0.5)
    assert main(["lyrics", str(wav), "--model", str(tmp_path / "whisper-small"), "-o", str(tmp_path / "s.lrc")]) == 2
    err = capsys.readouterr().err
    assert "whisper-small" in err and "download a Whisper model" in err
    assert not (tmp_path / "s.lrc").exists()
    (tmp_path / "weights").mkdir()
    try:
        import faster_whisper  # noqa: F401
    except ModuleNotFoundError:
        try:
            import whisper  # noqa: F401
        except ModuleNotFoundError:
            assert main(["lyrics", str(wav), "--model", str(tmp_path / "weights")]) == 2
            assert "pip install 'vjengine[transcribe]'" in capsys.readouterr().err
