"""`vj render`: the mp4 has the expected frame count, duration, h264 video and the song's audio."""

from __future__ import annotations

import numpy as np
import pytest

from _show_banks import mp4_info, smooth_bank, song
from vjengine.cli import main


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("offline")
    return {
        "dir": d,
        "bank": smooth_bank(d / "bank-a", sizes=(3, 4)),
        "bank_b": smooth_bank(d / "bank-b", sizes=(5,), seed=1),
        "song": song(d / "song.wav", seconds=3.0),
    }


def test_render_song_frames_duration_and_audio(assets, tmp_path):
    out = tmp_path / "out.mp4"
    hashes = tmp_path / "h.txt"
    rc = main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "--preset", "techno-kick-morph",
               "-o", str(out), "--size", "160x96", "--fps", "30", "--no-progress", "--frame-hashes", str(hashes)])
    assert rc == 0
    info = mp4_info(out)
    assert info["frames"] == 90
    assert info["secs"] == pytest.approx(3.0, abs=1e-6)
    assert info["duration_s"] == pytest.approx(3.0, abs=0.05)
    video = [s for s in info["streams"] if "Video:" in s]
    audio = [s for s in info["streams"] if "Audio:" in s]
    assert video and "h264" in video[0] and "160x96" in video[0] and "30 fps" in video[0]
    assert audio and "aac" in audio[0] and "48000 Hz" in audio[0]
    lines = hashes.read_text().split()
    assert len(lines) == 90
    assert len(set(lines)) > 30  # the picture moves with the music


def test_render_is_deterministic_and_start_duration(assets, tmp_path):
    runs = []
    for k in range(2):
        out, hashes = tmp_path / f"o{k}.mp4", tmp_path / f"h{k}.txt"
        assert main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "-o", str(out),
                     "--size", "96x64", "--fps", "24", "--start", "0.5", "--duration", "1.5", "--no-progress",
                     "--frame-hashes", str(hashes)]) == 0
        runs.append(hashes.read_text())
        info = mp4_info(out)
        assert info["frames"] == 36
        assert any("Audio:" in s for s in info["streams"])
    assert runs[0] == runs[1]


def test_render_with_cues_and_two_banks_switches_bank(assets, tmp_path):
    cues = tmp_path / "cues.csv"
    cues.write_text("at,kind,target,value\n0,crossfade,,0.25\n1.0,bank,,bank-b\n")
    setlist = tmp_path / "set.toml"
    setlist.write_text(f'quantize = "none"\n[[bank]]\npath = "{assets["bank"]}"\n[[bank]]\npath = "{assets["bank_b"]}"\n')
    out, hashes = tmp_path / "o.mp4", tmp_path / "h.txt"
    assert main(["render", str(assets["song"]), "--bank", str(setlist), "--cues", str(cues), "-o", str(out),
                 "--size", "64x64", "--fps", "20", "--duration", "2", "--no-audio", "--no-progress",
                 "--frame-hashes", str(hashes)]) == 0
    info = mp4_info(out)
    assert info["frames"] == 40
    assert not any("Audio:" in s for s in info["streams"])


def test_render_errors_name_what_is_wrong(assets, tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "x.mp4")]) == 2
    assert "missing.wav" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[cue]]\nat = 1\nwhat = 2\n")
    assert main(["render", str(assets["song"]), "--bank", str(assets["bank"]), "--cues", str(bad),
                 "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "cue[0].what" in err
    assert main(["render", "-o", str(tmp_path / "x.mp4")]) == 2
    assert main(["render", str(assets["song"]), "--bank", str(tmp_path / "nobank"), "-o", str(tmp_path / "x.mp4")]) == 2


def test_render_demo_defaults(tmp_path, assets):
    out = tmp_path / "demo.mp4"
    assert main(["render", str(assets["song"]), "-o", str(out), "--size", "64x36", "--fps", "10",
                 "--duration", "0.5", "--no-progress"]) == 0
    assert mp4_info(out)["frames"] == 5


def test_push_audio_sees_exactly_the_samples_up_to_each_frame():
    from vjengine.offline import PushAudio

    sr = 48000
    samples = np.zeros(sr, dtype=np.float32)
    audio = PushAudio(samples, sr)
    audio.poll(0.25)
    assert audio.fed == sr // 4
    audio.poll(0.2)  # time never goes back
    assert audio.fed == sr // 4
    audio.poll(5.0)
    assert audio.fed == sr


def test_video_is_upright_and_matches_the_render(assets, tmp_path):
    """A bank white on top and black below: the decoded video is too (GL rows are bottom-up)."""
    import imageio_ffmpeg

    from vjengine.bank import Axis, write_bank

    frames = np.zeros((2, 32, 48, 3), dtype=np.uint8)
    frames[:, :16] = 255
    frames[:, :16, :24, 1:] = 0  # top-left red
    bank = write_bank(tmp_path / "updown", (Axis("x", (0, 1)),), frames)
    out = tmp_path / "u.mp4"
    assert main(["render", str(assets["song"]), "--bank", str(bank), "--preset", "manual", "-o", str(out),
                 "--size", "96x64", "--fps", "10", "--duration", "0.3", "--no-progress", "--no-audio"]) == 0
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    img = np.frombuffer(next(reader), np.uint8).reshape(meta["size"][1], meta["size"][0], 3).astype(int)
    assert img[4:28, 52:92].mean() > 200 and img[36:].mean() < 40
    assert img[4:28, 4:44, 0].mean() > 200 and img[4:28, 4:44, 1].mean() < 60  # red stays on the left
