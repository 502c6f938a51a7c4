"""Benchmark of the live audio analysis: CPU cost, beat tracking quality, latency.

Prints tables, then one JSON line (keys: cpu_ms_per_audio_s, f_measure, f_measure_librosa,
f_measure_aubio, onset_latency_ms_p99, ...).

- CPU: the analysis fed like a show (256-frame device blocks, polled at 60 fps) over a dance loop,
  as CPU ms per second of audio and per video frame; also fed in large blocks (`vj analyze`). Ten
  runs spread over the benchmark: the best (least disturbed on a shared machine) and the median.
- Beat tracking on every clip in ../shared/data/audio and on synthesized dance loops: F-measure,
  CMLt, AMLt (mir_eval), mean signed timing error of matched beats and time to lock (the first beat
  that starts a run of 4 correct ones), for our causal tracker fed block by block, librosa's
  offline ``beat_track`` and aubio's causal ``tempo`` (hop 256, window 1024).
- Latency from a sample entering the ring (the end of its 256-frame device block) to its onset
  flag appearing in the AudioFrame, with polls at 60 fps (simulated clock; the measured compute
  time per poll is added). Beats are predicted (and shown half a frame ahead), so their figure is
  the flag time minus the true beat time, latency compensation off.

Run: ``python benchmarks/analysis.py`` (needs mir_eval and librosa; aubio optional:
``pip install aubio``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vjengine.audio.analyzer import Analyzer  # noqa: E402
from vjengine.audio.engine import AudioEngine  # noqa: E402
from vjengine.audio.sources import load_audio  # noqa: E402
from vjengine.audio.synth import click_train, dance_loop  # noqa: E402

SHARED_AUDIO = next((p / "shared" / "data" / "audio" for p in (REPO.parent, REPO.parent.parent)
                     if (p / "shared" / "data" / "audio").is_dir()), REPO.parent / "shared" / "data" / "audio")
BLOCK = 256
FPS = 60.0
warnings.filterwarnings("ignore")


# ----------------------------------------------------------------------------- CPU
def _live_run(x: np.ndarray, sr: int) -> tuple[float, list[float]]:
    """Feed whole 256-frame device blocks and poll at 60 fps; returns (CPU s, wall s per frame)."""
    engine = AudioEngine.offline(sr)
    per_frame = []
    fed = 0
    n_frames = int(x.size / sr * FPS)
    cpu0 = time.process_time()
    for k in range(1, n_frames + 1):
        upto = int(k / FPS * sr) // BLOCK * BLOCK  # the device blocks that arrived by this frame
        t0 = time.perf_counter()
        if upto > fed:
            engine.feed(x[fed:upto])
            fed = upto
        engine.poll(k / FPS)
        per_frame.append(time.perf_counter() - t0)
    return time.process_time() - cpu0, per_frame


class CpuCost:
    """The live CPU figure, from runs spread over the whole benchmark (``measure`` between the other
    parts). The machine is shared and its speed drifts by up to 1.5x over minutes: the minimum is
    the least disturbed figure, and the median is reported beside it."""

    def __init__(self) -> None:
        self.sr = 48000
        self.x, _ = dance_loop(bpm=126.0, seconds=15.0, sr=self.sr, seed=7)
        self.runs: list[tuple[float, list[float]]] = []
        self.batch: list[float] = []

    def measure(self, repeats: int) -> None:
        for _ in range(repeats):
            self.runs.append(_live_run(self.x, self.sr))
            a = Analyzer(self.sr)
            cpu0 = time.process_time()
            for i in range(0, self.x.size, self.sr):
                a.process(self.x[i:i + self.sr])
            self.batch.append(time.process_time() - cpu0)

    def result(self) -> dict:
        seconds = self.x.size / self.sr
        live_cpu, per_frame = min(self.runs, key=lambda r: r[0])
        pf = np.array(per_frame) * 1000
        return {"cpu_ms_per_audio_s": live_cpu / seconds * 1000,
                "cpu_ms_per_audio_s_median": float(np.median([r[0] for r in self.runs])) / seconds * 1000,
                "cpu_ms_per_audio_s_batch": min(self.batch) / seconds * 1000, "runs": len(self.runs),
                "frame_ms_mean": float(pf.mean()), "frame_ms_p99": float(np.percentile(pf, 99)),
                "frame_ms_max": float(pf.max())}


# ----------------------------------------------------------------------------- beat tracking
def load_clips() -> list[tuple[str, np.ndarray, int, np.ndarray]]:
    clips = []
    if SHARED_AUDIO.is_dir():
        for audio in sorted(SHARED_AUDIO.glob("*/*")):
            if audio.suffix.lower() not in (".wav", ".flac"):
                continue
            beats = audio.with_suffix(".beats")
            if beats.is_file():
                x, sr = load_audio(audio)
                clips.append((audio.name, x, sr, np.loadtxt(beats, usecols=0, comments="#", ndmin=1)))
    for bpm in (124.0, 128.0, 140.0, 174.0, 90.0):
        x, b = dance_loop(bpm=bpm, seconds=30.0, sr=44100, seed=int(bpm))
        clips.append((f"dance_loop_{bpm:g}", x, 44100, b))
    return clips


def ours(x: np.ndarray, sr: int) -> np.ndarray:
    a = Analyzer(sr)
    a.record = True
    for i in range(0, x.size, BLOCK):
        a.process(x[i:i + BLOCK])
    return np.array(a.beat_times)


def librosa_beats(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    _, beats = librosa.beat.beat_track(y=x, sr=sr, units="time")
    return np.asarray(beats)


def aubio_beats(x: np.ndarray, sr: int) -> np.ndarray:
    import aubio

    tracker = aubio.tempo("default", 1024, BLOCK, sr)
    out = []
    x = np.ascontiguousarray(x, dtype=np.float32)
    for i in range(0, x.size - BLOCK + 1, BLOCK):
        if tracker(x[i:i + BLOCK])[0]:
            out.append(tracker.get_last_s())
    return np.array(out)


def score(ref: np.ndarray, est: np.ndarray, duration_s: float) -> dict:
    import mir_eval

    if duration_s >= 10.0:
        ref_s, est_s = mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(est)
    else:  # mir_eval's default trim drops everything in a short clip
        ref_s, est_s = ref, est
    f = mir_eval.beat.f_measure(ref_s, est_s)
    cmlt = amlt = 0.0
    if est_s.size > 1 and ref_s.size > 1:
        _, cmlt, _, amlt = mir_eval.beat.continuity(ref_s, est_s)
    errors = []
    for e in est:
        d = ref - e
        j = int(np.argmin(np.abs(d))) if ref.size else -1
        if j >= 0 and abs(d[j]) <= 0.07:
            errors.append(e - ref[j])
    hit = np.array([np.min(np.abs(ref - e)) <= 0.07 for e in est]) if est.size else np.zeros(0, bool)
    lock = float("nan")
    for i in range(max(0, hit.size - 3)):
        if hit[i:i + 4].all():
            lock = float(est[i])
            break
    return {"f": float(f), "cmlt": float(cmlt), "amlt": float(amlt),
            "err_ms": float(np.mean(errors) * 1000) if errors else float("nan"), "lock_s": lock}


def beat_tracking() -> tuple[list[dict], str | None]:
    try:
        import aubio  # noqa: F401
        aubio_error = None
    except ImportError as exc:
        aubio_error = f"aubio not installed ({exc}); try: pip install aubio"
    rows = []
    for name, x, sr, ref in load_clips():
        dur = x.size / sr
        row = {"clip": name, "duration_s": dur, "ours": score(ref, ours(x, sr), dur),
               "librosa": score(ref, librosa_beats(x, sr), dur)}
        if aubio_error is None:
            row["aubio"] = score(ref, aubio_beats(x, sr), dur)
        rows.append(row)
    return rows, aubio_error


# ----------------------------------------------------------------------------- latency
def latency() -> dict:
    """Onset and beat flags vs the time their first sample entered the ring (simulated show clock)."""
    sr = 48000
    x, onsets = click_train(bpm=128.0, seconds=30.0, sr=sr, kind="kick", offset_s=0.01)
    engine = AudioEngine.offline(sr)
    fed = 0
    rng = np.random.default_rng(0)
    phase = rng.uniform(0, 1 / FPS)  # frame clock not aligned with the audio clock
    onset_lat, beat_lat, compute = [], [], []
    pending = list(onsets)
    pending_beats = list(onsets)
    n_frames = int(x.size / sr * FPS) - 1
    for k in range(1, n_frames):
        t_poll = phase + k / FPS
        upto = int(t_poll * sr) // BLOCK * BLOCK
        c0 = time.perf_counter()
        if upto > fed:
            engine.feed(x[fed:upto])
            fed = upto
        f = engine.poll(t_poll)
        dt = time.perf_counter() - c0
        compute.append(dt)
        shown = t_poll + dt
        if f.onset:
            while pending and pending[0] < f.time_s - 0.1:
                pending.pop(0)
            if pending and pending[0] <= f.time_s:
                t_on = pending.pop(0)
                entered = (int(t_on * sr) // BLOCK + 1) * BLOCK / sr  # end of the block holding it
                onset_lat.append(shown - entered)
        if f.beat and f.time_s > 5.0:
            while pending_beats and pending_beats[0] < f.time_s - 0.25:
                pending_beats.pop(0)
            if pending_beats:
                t_b = min(pending_beats, key=lambda b: abs(b - f.time_s))
                beat_lat.append(shown - t_b)  # beats are predicted: can be early
    ol = np.array(onset_lat) * 1000
    bl = np.array(beat_lat) * 1000
    return {"onset_latency_ms_p50": float(np.percentile(ol, 50)), "onset_latency_ms_p99": float(np.percentile(ol, 99)),
            "beat_latency_ms_p50": float(np.percentile(bl, 50)), "beat_latency_ms_p99": float(np.percentile(bl, 99)),
            "onsets_measured": int(ol.size), "beats_measured": int(bl.size)}


def main() -> int:
    load_1min = os.getloadavg()[0]
    cost = CpuCost()
    cost.measure(4)
    rows, aubio_error = beat_tracking()
    cost.measure(3)
    lat = latency()
    cost.measure(3)
    cpu = cost.result()
    print(f"machine: {os.cpu_count()} cores, load average {load_1min:.1f} when the run started")
    print(f"CPU (48 kHz dance loop, 256-frame blocks, polled at 60 fps; best of {cpu['runs']} runs spread over "
          "the benchmark, on a shared machine)")
    print(f"  analysis CPU per audio second: {cpu['cpu_ms_per_audio_s']:.1f} ms (target <= 10; median: "
          f"{cpu['cpu_ms_per_audio_s_median']:.1f} ms); in 1 s blocks: {cpu['cpu_ms_per_audio_s_batch']:.1f} ms")
    print(f"  per video frame: mean {cpu['frame_ms_mean']:.2f} ms, p99 {cpu['frame_ms_p99']:.2f} ms, "
          f"max {cpu['frame_ms_max']:.2f} ms (own thread only if > ~2 ms)")
    print()
    trackers = ["ours", "librosa"] + ([] if aubio_error else ["aubio"])
    print("Beat tracking (F, CMLt, AMLt from mir_eval; err = mean signed error of beats within 70 ms; "
          "lock = first of 4 correct beats)")
    print(f"  {'clip':<22} {'tracker':<8} {'F':>6} {'CMLt':>6} {'AMLt':>6} {'err ms':>7} {'lock s':>7}")
    for row in rows:
        for t in trackers:
            s = row[t]
            print(f"  {row['clip']:<22} {t:<8} {s['f']:6.3f} {s['cmlt']:6.3f} {s['amlt']:6.3f} "
                  f"{s['err_ms']:7.1f} {s['lock_s']:7.2f}")
    if aubio_error:
        print(f"  (aubio skipped: {aubio_error})")
    mean = {t: float(np.mean([r[t]["f"] for r in rows])) for t in trackers}
    print("  mean F: " + ", ".join(f"{t} {mean[t]:.3f}" for t in trackers))
    real = [r for r in rows if not r["clip"].startswith("dance_loop")]
    mean_real = {t: float(np.mean([r[t]["f"] for r in real])) if real else float("nan") for t in trackers}
    print("  mean F on the recordings only: " + ", ".join(f"{t} {mean_real[t]:.3f}" for t in trackers))
    print("  (librosa's offline tracker follows the off-beat hats/bass of the synthetic loops: right tempo,"
          " AMLt ~1, but F ~0 there)")
    if not aubio_error:
        below = [r["clip"] for r in rows if r["ours"]["f"] < r["aubio"]["f"] - 1e-9]
        print(f"  ours >= aubio on every clip: {'yes' if not below else 'no, below on ' + ', '.join(below)}")
    print(f"  ours / librosa mean F: {mean['ours'] / max(mean['librosa'], 1e-9):.2f} (target >= 0.9)")
    print()
    print("Latency (sample enters the ring -> flag in the AudioFrame; 60 fps polls, 256-frame blocks)")
    print(f"  onset: p50 {lat['onset_latency_ms_p50']:.1f} ms, p99 {lat['onset_latency_ms_p99']:.1f} ms "
          f"({lat['onsets_measured']} onsets)")
    print(f"  beat (predicted, vs the true beat): p50 {lat['beat_latency_ms_p50']:.1f} ms, "
          f"p99 {lat['beat_latency_ms_p99']:.1f} ms ({lat['beats_measured']} beats)")
    result = {
        "cpu_ms_per_audio_s": round(cpu["cpu_ms_per_audio_s"], 2),
        "cpu_ms_per_audio_s_median": round(cpu["cpu_ms_per_audio_s_median"], 2),
        "cpu_ms_per_audio_s_batch": round(cpu["cpu_ms_per_audio_s_batch"], 2),
        "load_avg_1min": round(load_1min, 2),
        "frame_ms_p99": round(cpu["frame_ms_p99"], 3),
        "f_measure": round(mean["ours"], 4),
        "f_measure_librosa": round(mean["librosa"], 4),
        "f_measure_aubio": round(mean["aubio"], 4) if not aubio_error else None,
        "aubio_error": aubio_error,
        "f_measure_recordings": round(mean_real["ours"], 4),
        "f_measure_recordings_librosa": round(mean_real["librosa"], 4),
        "f_measure_recordings_aubio": round(mean_real["aubio"], 4) if not aubio_error else None,
        "per_clip_f": {r["clip"]: {t: round(r[t]["f"], 4) for t in trackers} for r in rows},
        "onset_latency_ms_p50": round(lat["onset_latency_ms_p50"], 2),
        "onset_latency_ms_p99": round(lat["onset_latency_ms_p99"], 2),
        "beat_latency_ms_p50": round(lat["beat_latency_ms_p50"], 2),
        "beat_latency_ms_p99": round(lat["beat_latency_ms_p99"], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
