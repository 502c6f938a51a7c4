"""A real PortAudio capture through a private PulseAudio null sink (recipe in ../shared/GUIDE.md).

The capture runs in a subprocess whose environment points at the private server (PortAudio
enumerates devices when it initialises, so it must start with that environment).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from _audio_pulse import pulse_server
from conftest import REPO

pytestmark = pytest.mark.usefixtures("demo_bank_made")  # `vj demo` subprocesses find it made


@pytest.mark.slow
def test_capture_by_name_finds_tones_and_beats_and_survives_the_sink_vanishing(tmp_path):
    with pulse_server(tmp_path) as env:
        env["PYTHONPATH"] = f"{REPO}:{REPO / 'tests'}"
        proc = subprocess.run([sys.executable, str(REPO / "tests" / "_audio_pulse_scenario.py"), str(tmp_path)],
                              env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT "):])

    expected_band = {"100": "bass", "1000": "low_mid", "3000": "high_mid"}
    for hz, band in expected_band.items():
        seen = result["tones"][hz]
        assert seen is not None, f"the {hz} Hz tone never showed up in the capture"
        assert seen["centroid_hz"] == pytest.approx(float(hz), rel=0.05)
        assert seen["top_band"] == band

    loop = result["loop"]
    assert loop["heard_whole"], f"the capture lost audio in each of {loop['plays']} plays of the loop: {loop}"
    assert loop["locked"] and loop["bpm"] == pytest.approx(124.0, rel=0.02)
    assert loop["beats"] >= 8  # flagged to the polls
    # the clock's beats, in stream time (not when a poll saw them), sit on the 124 BPM grid once it has
    # locked: the last 12 of them (from cold, the lock takes 2-5 beats; test_audio_beats times it)
    assert len(loop["beat_intervals_s"]) >= 16, loop
    assert np.median(loop["beat_intervals_s"][-12:]) == pytest.approx(60 / 124.0, abs=0.012), loop
    assert "overruns" in loop["status"]

    lost = result["lost"]
    assert lost["saw_not_ok"], "unloading the sink was not noticed"
    assert any("lost" in s for s in lost["statuses"])
    resumed = result["resumed"]
    assert resumed["input_ok"] and resumed["max_level"] > 0.5
    assert resumed["centroid_hz"] == pytest.approx(440.0, rel=0.05)

    monitor = result["monitor"]  # FileSource(monitor=True) played through PortAudio into the sink
    assert monitor["played_frames"] > 10 and monitor["played_centroid_hz"] == pytest.approx(3000.0, rel=0.05)
    assert monitor["heard_frames"] > 10 and monitor["heard_centroid_hz"] == pytest.approx(3000.0, rel=0.05)
    assert any("tone3000.wav" in st and "playing to the output" in st for st in monitor["statuses"]), monitor["statuses"]
    # the analysis takes a played sample only once the output latency has passed (when it is heard):
    # what it has not taken yet is the latency, bracketed by the samples played before and after each poll
    latency = round(monitor["latency_s"] * monitor["samplerate"])
    assert latency > 0 and monitor["held_back_samples"]
    assert all(lo - 1 <= latency <= hi + 1 for lo, hi in monitor["held_back_samples"]), monitor["held_back_samples"]


@pytest.mark.slow
def test_vj_demo_plays_the_loop_to_the_speakers(tmp_path):
    """`vj demo` with an output device (the private PulseAudio's null sink) plays the demo loop, and
    --no-play keeps it silent."""
    with pulse_server(tmp_path) as env:
        env["PYTHONPATH"] = str(REPO)
        env.pop("DISPLAY", None)
        base = [sys.executable, "-m", "vjengine.cli", "demo", "--duration", "1.5", "--size", "64x36", "--no-osc",
                "--screenshot", str(tmp_path / "s.png")]
        heard = subprocess.run(base, env=env, capture_output=True, text=True, timeout=600)
        silent = subprocess.run([*base, "--no-play"], env=env, capture_output=True, text=True, timeout=600)
    assert heard.returncode == 0, heard.stderr[-3000:]
    assert re.search(r"to the speakers( through [^;]+)?; the picture follows what is heard", heard.stderr), \
        heard.stderr[-3000:]
    assert silent.returncode == 0 and "to the speakers" not in silent.stderr, silent.stderr[-3000:]
