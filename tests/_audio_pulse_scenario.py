"""Run inside a subprocess whose environment points at a private PulseAudio (see _audio_pulse.py).

Captures device ``pulse`` through CaptureSource + AudioEngine while paplay plays into the null sink:
two tones, a dance loop, then the sink is unloaded mid-stream and loaded again. Prints one JSON
line with what the analysis saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from vjengine.audio.engine import AudioEngine, CaptureSource, FileSource
from vjengine.audio.synth import dance_loop, tone

SR = 48000
# Bounds on waits for something that should happen (each ends as soon as it does): generous, as on a
# loaded 2-core machine PulseAudio, paplay and PortAudio can each take seconds to get going.
DEADLINE_S = 60.0


def play(path: Path) -> subprocess.Popen:
    return subprocess.Popen(["paplay", "-d", "vj", str(path)])


def run_for(engine: AudioEngine, seconds: float, frames: list, until=None) -> None:
    t_end = time.monotonic() + seconds
    t0 = time.monotonic()
    while time.monotonic() < t_end:
        f = engine.poll(time.monotonic() - t0)
        frames.append(f)
        if until is not None and until(f):
            return
        time.sleep(0.01)


def run_while_playing(engine: AudioEngine, player: subprocess.Popen, frames: list, max_s: float = DEADLINE_S) -> None:
    """Poll while ``player`` runs (its start-up delay varies with load), then 0.1 s more."""
    t_end = time.monotonic() + max_s
    while player.poll() is None and time.monotonic() < t_end:
        run_for(engine, 0.05, frames)
    run_for(engine, 0.1, frames)
    player.wait(timeout=DEADLINE_S)


def is_loud(f) -> bool:
    return f.input_ok and f.gate_open and f.level > 0.5


def main(workdir: str) -> None:
    work = Path(workdir)
    files = {}
    for hz in (100.0, 1000.0, 3000.0):
        files[hz] = work / f"tone{int(hz)}.wav"
        soundfile.write(files[hz], tone(hz, seconds=1.5, sr=SR, amplitude=0.4), SR)
    loop, _ = dance_loop(bpm=124.0, seconds=14.0, sr=SR)  # long enough for 20 beats after the lock
    soundfile.write(work / "loop.wav", loop, SR)
    long_tone = work / "long.wav"
    soundfile.write(long_tone, tone(440.0, seconds=6.0, sr=SR, amplitude=0.3), SR)

    result: dict = {"tones": {}}
    source = CaptureSource("pulse", samplerate=SR, blocksize=256, retry_s=0.5, stall_s=0.5)
    engine = AudioEngine(source)
    frames: list = []
    # Wait until the stream really delivers (opening PortAudio on pulse can take a while on a busy
    # machine), then let the gate and gain settle on the sink's silence.
    delivering: list = []
    run_for(engine, DEADLINE_S, delivering, until=lambda f: f.input_ok and sum(g.hops for g in delivering) > 200)
    run_for(engine, 0.3, frames)
    for hz, path in files.items():
        p = play(path)
        seen = []
        run_while_playing(engine, p, seen)
        loud = [f for f in seen if f.gate_open and f.level > 0.5]
        if loud:
            mid = loud[len(loud) // 2]
            result["tones"][str(int(hz))] = {
                "centroid_hz": float(np.median([f.centroid_hz for f in loud])),
                "top_band": max(mid.bands, key=mid.bands.get), "frames": len(loud)}
        else:
            result["tones"][str(int(hz))] = None
        run_for(engine, 0.3, frames)

    # The loop's beats, in stream time: the clock's own beat times (hop-accurate, whenever the polls
    # come) and the beats the polls flagged. Stream time is the heard time only while the capture is
    # continuous: a starved capture thread that stalls past stall_s is declared lost (silence stands in
    # for the time), and one that falls behind loses samples (overruns). A play the capture did not
    # hear whole is played again (a loaded machine's doing, not the tracker's), up to three times.
    for attempt in range(1, 4):
        overruns = engine.source.overruns
        first = len(engine.analyzer.beat_times)
        engine.analyzer.record = True
        p = play(work / "loop.wav")
        seen = []
        run_while_playing(engine, p, seen)
        engine.analyzer.record = False
        whole = all(f.input_ok for f in seen) and engine.source.overruns == overruns
        if whole:
            break
        run_for(engine, 0.5, frames)  # the clock free-runs on silence between plays
    beat_times = engine.analyzer.beat_times[first:]
    result["loop"] = {"bpm": seen[-1].bpm, "locked": seen[-1].locked,
                      "beats": sum(1 for f in seen if f.beat and f.bpm > 0),
                      "beat_intervals_s": np.diff(beat_times).tolist(), "status": seen[-1].input_status,
                      "heard_whole": whole, "plays": attempt}

    # the sink vanishes mid-stream, then comes back
    p = play(long_tone)
    run_for(engine, 1.0, frames)
    subprocess.run(["pactl", "unload-module", "module-null-sink"], check=True)
    lost = []
    run_for(engine, DEADLINE_S, lost, until=lambda f: not f.input_ok)
    run_for(engine, 0.5, lost)
    p.kill()
    p.wait()
    result["lost"] = {"saw_not_ok": any(not f.input_ok for f in lost), "statuses": sorted({f.input_status for f in lost}),
                      "last_level": lost[-1].level}
    subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=vj", "rate=48000"], check=True,
                   capture_output=True)
    subprocess.run(["pactl", "set-default-source", "vj.monitor"], check=True)
    back = []
    run_for(engine, DEADLINE_S, back, until=lambda f: f.input_ok)
    p = play(long_tone)
    after = []
    # until the tone is heard again (paplay's start varies with load), for 50 polls of it
    run_for(engine, DEADLINE_S, after, until=lambda f: sum(map(is_loud, after)) >= 50)
    p.kill()
    p.wait()
    result["resumed"] = {"input_ok": after[-1].input_ok, "status": after[-1].input_status,
                         "max_level": max(f.level for f in after),
                         "centroid_hz": float(np.median([f.centroid_hz for f in after if f.gate_open] or [0.0]))}
    # a file monitored to the default output (the null sink): the analysis reads what was played,
    # and the capture hears it through the sink's monitor
    source = FileSource(files[3000.0], realtime=True, monitor=True)
    latency = round(source.output_latency_s * source.samplerate)
    monitored = AudioEngine(source)
    heard, played, held_back = [], [], []

    def heard_it_all() -> bool:  # the file has played and been analysed; the capture heard it come and go
        caught_up = source.finished and source.delivered >= source.played - latency
        loud_at = [i for i, f in enumerate(heard) if is_loud(f)]
        return caught_up and len(loud_at) > 10 and len(heard) - 1 - loud_at[-1] >= 5  # then 5 quiet polls

    t_end = time.monotonic() + DEADLINE_S
    while time.monotonic() < t_end and not heard_it_all():
        # What the output has that is not heard yet, bracketed: the poll reads up to (samples played
        # at that moment - latency), and that moment lies between these two readings of ``played``.
        before = source.played
        played.append(monitored.poll())
        held_back.append((before - source.delivered, source.played - source.delivered, source.delivered))
        heard.append(engine.poll())
        time.sleep(0.01)
    monitored.close()
    engine.close()
    loud_played = [f for f in played if is_loud(f)]
    loud_heard = [f for f in heard if is_loud(f)]
    result["monitor"] = {
        "played_frames": len(loud_played), "heard_frames": len(loud_heard),
        "played_centroid_hz": float(np.median([f.centroid_hz for f in loud_played] or [0.0])),
        "heard_centroid_hz": float(np.median([f.centroid_hz for f in loud_heard] or [0.0])),
        # every status it showed: the file may already have ended by the last poll
        "statuses": sorted({f.input_status for f in played}), "latency_s": source.output_latency_s,
        "held_back_samples": [(lo, hi) for lo, hi, delivered in held_back if delivered > 0],
        "samplerate": source.samplerate}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
