"""`vj analyze`, `vj devices`, the file and push sources and open_source's fallback."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile

from vjengine.audio.capture import InputDevice, find_input_device
from vjengine.audio.engine import AudioEngine, FileSource, PushSource, open_source
from vjengine.audio.synth import dance_loop
from vjengine.cli import main
from vjengine.errors import DeviceError, VJError


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("song") / "loop 128.flac"
    x, beats = dance_loop(bpm=128.0, seconds=10.0, sr=44100, seed=4)
    soundfile.write(path, np.stack([x, x], axis=1), 44100)  # stereo: the analysis mixes to mono
    return path, beats


def test_vj_analyze_writes_features_beats_onsets_and_plot(song, tmp_path, capsys):
    path, beats = song
    out = tmp_path / "out"
    assert main(["analyze", str(path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "128." in printed and "BPM" in printed
    for name in ("features.csv", "beats.txt", "onsets.txt", "kicks.txt", "summary.json", "analysis.png"):
        assert (out / name).stat().st_size > 0, name
    est = np.loadtxt(out / "beats.txt", ndmin=1)
    late = est[est > 4.0]
    assert late.size >= 10
    err = late[:, None] - beats[None, :]
    assert np.all(np.min(np.abs(err), axis=1) < 0.012)
    header = (out / "features.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["time_s", "rms_db", "level"] and "bass" in header and "bpm" in header
    table = np.loadtxt(out / "features.csv", delimiter=",", skiprows=1)
    assert table.shape[0] == pytest.approx(10.0 * 44100 / 256, abs=2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tempo_bpm"] == pytest.approx(128.0, rel=0.02)
    onsets = np.loadtxt(out / "onsets.txt", ndmin=1)
    assert onsets.size >= 20 and np.all(np.diff(onsets) > 0)
    assert summary["beats_per_bar"] in (2, 3, 4)
    downbeats = np.array([float(v) for v in (out / "downbeats.txt").read_text().split()])  # may be none:
    # this loop has no bar accent
    assert downbeats.size == summary["downbeats"] and np.all(np.isin(np.round(downbeats, 4), np.round(est, 4)))


def test_verbose_goes_anywhere_and_keeps_library_chatter_out(song, tmp_path):
    """`vj analyze -v ...` and `vj -v analyze ...` both log debug lines, and matplotlib's font search
    (hundreds of lines) stays out of them."""
    import subprocess
    import sys

    path, _ = song
    for argv in (["-v", "analyze", str(path), "-o", str(tmp_path / "a")],
                 ["analyze", str(path), "-o", str(tmp_path / "b"), "-v"]):
        proc = subprocess.run([sys.executable, "-m", "vjengine.cli", *argv], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stderr.splitlines()
        assert any(" D vjengine.cli: vj " in ln and " analyze " in ln for ln in lines), proc.stderr[-2000:]
        assert not any("matplotlib" in ln or "findfont" in ln for ln in lines), proc.stderr[-2000:]


def test_vj_analyze_names_a_bad_file(tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    assert main(["analyze", str(missing)]) == 2
    assert "nope.wav" in capsys.readouterr().err
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    assert main(["analyze", str(junk), "--no-plot"]) == 2
    assert "junk.wav" in capsys.readouterr().err


def test_vj_devices_runs_without_a_sound_card(capsys):
    assert main(["devices"]) == 0
    assert main(["devices", "--json"]) == 0
    capsys.readouterr()


DEVICES = [InputDevice(0, "HDA Intel PCH: ALC3246 Analog", "ALSA", 2, 44100.0, True),
           InputDevice(3, "USB Audio CODEC: Audio (hw:2,0)", "ALSA", 2, 48000.0),
           InputDevice(5, "pulse", "ALSA", 32, 44100.0)]


def test_device_lookup_by_name_index_and_default():
    assert find_input_device("usb", DEVICES).index == 3
    assert find_input_device("3", DEVICES).index == 3
    assert find_input_device(5, DEVICES).name == "pulse"
    assert find_input_device(None, DEVICES).index == 0
    with pytest.raises(DeviceError, match=r"(?s)'Focusrite'.*USB Audio CODEC"):
        find_input_device("Focusrite", DEVICES)
    with pytest.raises(DeviceError, match="index 9"):
        find_input_device(9, DEVICES)
    with pytest.raises(DeviceError, match="no audio input devices"):
        find_input_device(None, [])


def test_open_source_falls_back_to_the_demo_audio_when_there_is_no_input(song, monkeypatch, caplog):
    import vjengine.audio.capture as capture

    monkeypatch.setattr(capture, "list_input_devices", lambda: [])
    path, _ = song
    with caplog.at_level("WARNING"):
        src = open_source(demo_audio=path)
    assert isinstance(src, FileSource) and src.loop and src.path == path
    assert "no audio input devices" in caplog.text and "demo audio" in caplog.text
    src.close()
    with pytest.raises(DeviceError, match="no audio input devices"):
        open_source()
    with pytest.raises(DeviceError, match="'USB'"):
        open_source(device="USB", demo_audio=path)
    src = open_source(file=path)
    assert isinstance(src, FileSource) and not src.loop
    src.close()


def test_file_source_plays_in_real_time_through_the_engine(song):
    path, _ = song
    src = FileSource(path, realtime=True)
    engine = AudioEngine(src)
    t0 = time.perf_counter()
    frames = []
    while time.perf_counter() - t0 < 0.5:
        frames.append(engine.poll(time.perf_counter() - t0))
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    last = frames[-1]
    # audio time follows the wall clock (never ahead of it), and the analysis is running
    assert 0.2 < last.time_s <= elapsed + 0.01
    assert last.input_ok and last.level > 0.0 and "loop 128.flac" in last.input_status
    assert src.last_arrival_s is not None
    engine.close()


def test_file_source_fast_mode_and_loop(song):
    path, _ = song
    src = FileSource(path, realtime=False, chunk_s=4.0)
    sizes = [src.read().size for _ in range(4)]
    assert sizes == [4 * 44100, 4 * 44100, 2 * 44100, 0] and src.finished and not src.ok
    looped = FileSource(path, realtime=False, chunk_s=4.0, loop=True)
    assert sum(looped.read().size for _ in range(5)) == 20 * 44100 and looped.ok


def test_push_source_and_feed():
    engine = AudioEngine.offline(48000)
    assert isinstance(engine.source, PushSource)
    x, _ = dance_loop(seconds=2.0, sr=48000)
    engine.feed(np.stack([x, x], axis=1))
    f = engine.poll()
    assert f.time_s == pytest.approx(2.0, abs=256 / 48000) and f.hops > 0 and f.level > 0
    assert engine.poll().hops == 0
    with pytest.raises(TypeError):
        AudioEngine(_Silent()).feed(x)


class _Silent:
    samplerate = 48000
    ok = False
    status = "device lost, retrying"

    def read(self):
        return np.zeros(0, np.float32)

    def close(self):
        pass


def test_a_lost_source_decays_features_and_the_engine_never_raises():
    x, _ = dance_loop(seconds=3.0, sr=48000)
    engine = AudioEngine.offline(48000)
    engine.feed(x)
    loud = engine.poll(3.0)
    assert loud.level > 0.3
    src = _Silent()
    engine.source = src  # the device vanishes: the engine analyses silence for the elapsed time
    levels = [engine.poll(3.0 + k / 60).level for k in range(1, 61)]
    assert levels[-1] < 0.05 and engine.frame.input_status == "device lost, retrying"
    assert not engine.frame.input_ok
    src.read = lambda: 1 / 0  # a broken source: logged once, the last frame is kept
    f = engine.poll(5.0)
    assert f is engine.frame


def test_latency_setting_is_validated():
    engine = AudioEngine.offline(48000, latency_ms=20.0)
    assert engine.latency_ms == 20.0
    with pytest.raises(ValueError):
        engine.latency_ms = -5
    assert isinstance(VJError("x"), Exception)


def test_capture_source_names_a_missing_device():
    from vjengine.audio.capture import CaptureSource, list_input_devices

    if list_input_devices():
        pytest.skip("this machine has input devices; the lookup itself is tested above")
    with pytest.raises(DeviceError, match="'Focusrite'"):
        CaptureSource("Focusrite")
    with pytest.raises(DeviceError, match="--channels"):
        CaptureSource(None, channels=(2, 4))
