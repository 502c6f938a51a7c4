"""benchmarks/analysis.py reads held-out annotated recordings (``--clips DIR``) in the formats the
beat-tracking datasets ship, and leaves out, with the file named, what it cannot read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_analysis", REPO / "benchmarks" / "analysis.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _clicks(path: Path, sr: int, beats: np.ndarray, fmt: str | None = None) -> None:
    x = np.zeros(int((beats[-1] + 1.0) * sr), dtype=np.float32)
    for b in beats:
        i = int(b * sr)
        x[i:i + 64] = 0.5
    soundfile.write(str(path), x, sr, format=fmt)


def test_annotation_tables_in_dataset_formats(bench, tmp_path):
    beats = np.arange(8) * 0.5 + 0.25
    cases = {
        "tabs.beats": "".join(f"{b}\t{i % 4 + 1}\n" for i, b in enumerate(beats)),
        "comma.csv": "time,beat\n" + "".join(f"{b},{i // 3 + 1}.{i % 3 + 1}\n" for i, b in enumerate(beats)),
        "semi.beats.txt": "# tapped\n" + "".join(f"{b};{i % 2 + 1}.0\n" for i, b in enumerate(beats)),
        "times.txt": "".join(f"{b}\n" for b in beats),
    }
    got = {}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        got[name] = bench._read_table(tmp_path / name)
    for name, (b, _) in got.items():
        np.testing.assert_allclose(b, beats, err_msg=name)
    np.testing.assert_allclose(got["tabs.beats"][1], beats[::4])
    np.testing.assert_allclose(got["comma.csv"][1], beats[::3])   # bar.beat labels: x.1 is bar 1
    np.testing.assert_allclose(got["semi.beats.txt"][1], beats[::2])
    assert got["times.txt"][1] is None
    (tmp_path / "bad.beats").write_text("0.5 1\n1.0 2\nabc 3\n")
    with pytest.raises(ValueError, match=r"bad\.beats:3: 'abc'"):
        bench._read_table(tmp_path / "bad.beats")


def test_held_out_recordings_are_found_and_bad_ones_named(bench, tmp_path):
    beats = np.arange(10) * 0.6 + 0.3
    deep = tmp_path / "set" / "part"
    deep.mkdir(parents=True)
    _clicks(deep / "gtzan.wav", 22050, beats)
    (deep / "gtzan.beats").write_text("".join(f"{b:.3f} {i % 4 + 1}\n" for i, b in enumerate(beats)))
    _clicks(tmp_path / "candombe.flac", 44100, beats)
    (tmp_path / "candombe.csv").write_text("".join(f"{b:.3f},{i // 4 + 1}.{i % 4 + 1}\n" for i, b in enumerate(beats)))
    (tmp_path / "candombe.downbeats").write_text(f"{beats[0]}\n{beats[4]}\n")  # overrides the table's
    _clicks(tmp_path / "plain.ogg", 44100, beats, "OGG")
    (tmp_path / "plain.txt").write_text("".join(f"{b}\n" for b in beats))
    _clicks(tmp_path / "unannotated.wav", 44100, beats)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really audio")
    (tmp_path / "broken.beats").write_text("".join(f"{b}\n" for b in beats))
    _clicks(tmp_path / "few.wav", 44100, beats)
    (tmp_path / "few.beats").write_text("0.3\n0.9\n")
    skipped: list[str] = []
    clips = {c.name: c for c in bench.load_clips((tmp_path,), skipped, synthetic=False)}
    assert {"gtzan", "candombe", "plain"} <= set(clips) and not {"unannotated", "broken", "few"} & set(clips)
    assert clips["gtzan"].sr == 22050 and clips["gtzan"].real
    np.testing.assert_allclose(clips["gtzan"].downbeats, beats[::4], atol=1e-3)
    np.testing.assert_allclose(clips["candombe"].downbeats, beats[[0, 4]])
    assert clips["plain"].downbeats is None and clips["plain"].beats.size == 10
    assert len(skipped) == 2
    assert any("broken.wav" in s for s in skipped) and any("few.wav" in s and "2 annotated beats" in s for s in skipped)
    # and a clip that is read is scored: the tracker's clicks are the annotation
    s = bench.score(clips["plain"], beats, None)
    assert s["f"] == pytest.approx(1.0) and not s["octave_error"]
