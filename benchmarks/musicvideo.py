"""Benchmark the music-video parts: harmony, sections, HPSS cost, the refine pass.

- ``key_accuracy`` / ``chord_accuracy``: synthetic progressions (I-IV-V-I in all 12 major keys,
  i-iv-V-i in all 12 minor keys, pad + bass, half of them with a kick) through the live path (push-mode
  AudioEngine at 30 fps; the frames' key and chord fields). Key: share of frames after the first 4 s
  with the right key; chord: share of frames from 0.5 s after each change with the right triad.
  Modulations: C major -> E major and A minor -> C minor, scored on each half after 4 s. Target >= 0.9.
- Shared recordings: none of ``../shared/data/audio`` has key or chord annotations, so no real-music
  accuracy; the keys found are printed for a look.
- ``section_boundary_f``: `vj analyze`'s sections on synthetic forms (ABAB, AABA, ABCAB, ABBA; 8 bars
  of 120 BPM per section), boundary F-measure within one bar (2 s). AABA's A-A repeat has no change to
  find and counts as a miss. Target >= 0.9. ``section_label_accuracy``: sections labelled like the form.
- ``hpss_ms_per_audio_s``: CPU of the streaming HPSS alone, fed 60 fps frame-sized batches of mel
  powers (target <= 3 ms); ``music_features_ms_per_audio_s``: HPSS + harmony as the analyser runs them.
- ``refine_fps_tiny``: `vj render --refine` frames per second on the tiny random model (64x64, every
  4 frames, strength 0.5 of 8 steps, CPU, model load included).
- ``projected_refine_s_per_min_1080p30``: keyframes x img2img UNet steps x a 1080p UNet step, plus
  frames x a 1080p VAE decode, with per-step GPU times from ``--gpu-figures`` (JSON
  ``{"unet_step_s": ..., "decode_s": ...}`` measured by the builder on a GPU). No builder GPU figures are
  recorded in the repository yet: without the file it is null (the formula is printed).

The machine these run on is shared: timings are noisy (best and median of several runs are given).
Prints a table, then one JSON line.

    python benchmarks/musicvideo.py [--quick] [--gpu-figures gpu.json] [--every-beats 1] [--bpm 120]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vjengine.audio.engine import AudioEngine  # noqa: E402
from vjengine.audio.harmony import key_name  # noqa: E402
from vjengine.audio.songsynth import chord_index, chord_progression, form_song  # noqa: E402

SR = 22050
FPS = 30
PC = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


def _frames(x: np.ndarray) -> list:
    eng = AudioEngine.offline(SR)
    out = []
    for i in range(1, int(len(x) / SR * FPS) + 1):
        t = i / FPS
        eng.feed(x[int((i - 1) / FPS * SR):int(t * SR)])
        out.append((t, eng.poll(t)))
    return out


def harmony(quick: bool) -> dict:
    keys_ok = keys_n = chords_ok = chords_n = 0
    misses: list[str] = []
    roots = range(0, 12, 3) if quick else range(12)
    for minor in (False, True):
        for r in roots:
            m = "m" if minor else ""
            chords = [PC[r] + m, PC[(r + 5) % 12] + m, PC[(r + 7) % 12], PC[r] + m]
            x, truth = chord_progression(chords, beats_per_chord=4, repeats=2, sr=SR, kick=bool(r % 2))
            want = r + (12 if minor else 0)
            for t, f in _frames(x):
                if t >= 4.0:
                    keys_n += 1
                    keys_ok += f.key == want
                for a, b, c in truth:
                    if a + 0.5 <= t < b:
                        chords_n += 1
                        chords_ok += f.chord == c
            if f.key != want:
                misses.append(f"{key_name(want)} -> {key_name(f.key)}")
    for first, second in ((["C", "F", "G", "C"], ["E", "A", "B", "E"]), (["Am", "Dm", "E", "Am"],
                                                                         ["Cm", "Fm", "G", "Cm"])):
        a, _ = chord_progression(first, beats_per_chord=2, repeats=3, sr=SR)
        b, _ = chord_progression(second, beats_per_chord=2, repeats=3, sr=SR)
        half = len(a) / SR
        k1, k2 = chord_index(first[0]), chord_index(second[0])
        for t, f in _frames(np.concatenate([a, b])):
            if 4.0 <= t < half:
                keys_n += 1
                keys_ok += f.key == k1
            elif t >= half + 4.0:
                keys_n += 1
                keys_ok += f.key == k2
    return {"key_accuracy": keys_ok / keys_n, "chord_accuracy": chords_ok / chords_n, "key_misses": misses}


def real_keys() -> list[tuple[str, str]]:
    from vjengine.audio.harmony import analyze_chroma  # noqa: PLC0415
    from vjengine.audio.sections import hop_features  # noqa: PLC0415
    from vjengine.audio.sources import load_audio  # noqa: PLC0415

    root = REPO.parent / "shared" / "data" / "audio"
    if not root.is_dir():
        root = Path("/work/shared/data/audio")
    out = []
    for p in sorted(root.glob("*/*.wav")) + sorted(root.glob("*/*.flac")):
        x, sr = load_audio(p)
        times, feats = hop_features(x, sr)
        if len(times):
            out.append((p.name, key_name(int(analyze_chroma(feats[:, -12:], times)["key"][-1]))))
    return out


def sections(quick: bool) -> dict:
    from vjengine.audio.analyze import analyze_samples  # noqa: PLC0415
    from vjengine.audio.sections import find_sections  # noqa: PLC0415

    forms = ["ABAB", "ABCAB"] if quick else ["ABAB", "AABA", "ABCAB", "ABBA"]
    hits = n_ref = n_est = 0
    label_ok = label_n = 0
    per_form = {}
    for form in forms:
        x, bounds, _ = form_song(form, bars=8, bpm=120.0, sr=SR)
        secs = find_sections(x, SR, analyze_samples(x, SR).beat_times)
        est = [s.start_s for s in secs[1:]]
        used: set[int] = set()
        h = 0
        for b in bounds:
            j = next((j for j, e in enumerate(est) if j not in used and abs(e - b) <= 2.0), None)
            if j is not None:
                used.add(j)
                h += 1
        hits, n_ref, n_est = hits + h, n_ref + len(bounds), n_est + len(est)
        # labels: the section's label at each true section's middle, same grouping as the form
        mids = [(i + 0.5) * 16.0 for i in range(len(form))]
        got = [next(s.label for s in secs if s.start_s <= t < s.end_s) for t in mids]
        mapping: dict[str, str] = {}
        for want, g in zip(form, got):
            label_n += 1
            label_ok += mapping.setdefault(want, g) == g and list(mapping.values()).count(g) == 1
        per_form[form] = " ".join(f"{s.label}@{s.start_s:.0f}" for s in secs)
    p = hits / n_est if n_est else 0.0
    r = hits / n_ref if n_ref else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"section_boundary_f": f, "section_precision": p, "section_recall": r,
            "section_label_accuracy": label_ok / label_n, "forms": per_form}


def hpss_cost(runs: int) -> dict:
    from vjengine.audio.analyzer import Analyzer  # noqa: PLC0415
    from vjengine.audio.features import SpectralFrontEnd  # noqa: PLC0415
    from vjengine.audio.hpss import StreamingHPSS  # noqa: PLC0415
    from vjengine.audio.musicfeatures import MusicFeatures  # noqa: PLC0415
    from vjengine.audio.synth import dance_loop  # noqa: PLC0415

    sr = 48000
    seconds = 20.0
    x, _ = dance_loop(seconds=seconds, sr=sr)
    an = Analyzer(sr)
    fe = SpectralFrontEnd(samplerate=sr, n_fft=an.n_fft, max_hops=16)
    hop = an.hop
    frames = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.zeros(an.n_fft - hop, np.float32), x]),
                                                      an.n_fft)[::hop]
    mel, chroma = [], []
    for i in range(0, len(frames) - 16, 16):
        f = fe.compute(frames[i:i + 16])
        mel.append(f.onset_db.copy())
        chroma.append(f.chroma.copy())
    mel_db, chroma = np.concatenate(mel, axis=1), np.concatenate(chroma, axis=1)
    per_frame = int(round(sr / 60 / hop))  # ~3 hops a 60 fps frame
    batches = [(s, min(s + per_frame, mel_db.shape[1])) for s in range(0, mel_db.shape[1], per_frame)]
    audio_s = mel_db.shape[1] * hop / sr
    hp, mf = [], []
    for _ in range(runs):
        h = StreamingHPSS(fe.n_mels, hop_s=hop / sr)
        t0 = time.process_time()
        for a, b in batches:
            h.process(mel_db[:fe.n_mels, a:b], first_hop=a, db=True)
        hp.append((time.process_time() - t0) / audio_s * 1000)
        m = MusicFeatures(fe.n_mels, hop_s=hop / sr)
        gates = [True] * per_frame
        t0 = time.process_time()
        for a, b in batches:
            m.process(a, mel_db[:, a:b], chroma[:, a:b], gates)
            m.fields()
        mf.append((time.process_time() - t0) / audio_s * 1000)
    return {"hpss_ms_per_audio_s": min(hp), "hpss_ms_median": float(np.median(hp)),
            "music_features_ms_per_audio_s": min(mf), "music_features_ms_median": float(np.median(mf))}


def refine_tiny() -> dict:
    try:
        import torch  # noqa: PLC0415
    except ModuleNotFoundError:
        return {"refine_fps_tiny": None}
    from bank_builder.refine import load_refine_spec, refine_video  # noqa: PLC0415
    from bank_builder.testing import make_tiny_pipeline  # noqa: PLC0415
    from vjengine.cli import main  # noqa: PLC0415

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vj-mv-bench-") as d:
        d = Path(d)
        make_tiny_pipeline(d / "model")
        import soundfile  # noqa: PLC0415

        from vjengine.audio.synth import dance_loop  # noqa: PLC0415

        x, _ = dance_loop(seconds=4.0, sr=SR)
        soundfile.write(d / "song.wav", x, SR)
        spec_path = d / "refine.toml"
        spec_path.write_text(f'model = "{d / "model"}"\nprompt = "neon"\nstrength = 0.5\nsteps = 8\n'
                             'guidance = 1.0\nevery = "4 frames"\n')
        assert main(["render", str(d / "song.wav"), "-o", str(d / "rough.mp4"), "--size", "64x64", "--fps", "12",
                     "--no-progress"]) == 0
        t0 = time.perf_counter()
        res = refine_video(load_refine_spec(spec_path), d / "rough.mp4", d / "out.mp4", progress=False,
                           work_dir=d / "work")
        wall = time.perf_counter() - t0
    return {"refine_fps_tiny": res.frames / wall, "refine_tiny_frames": res.frames,
            "refine_tiny_keyframes": res.keyframes}


def projection(gpu_figures: str | None, every_beats: float, bpm: float, strength: float, steps: int) -> dict:
    frames = 60 * 30
    keyframes = int(60 * bpm / 60 / every_beats) + 1
    unet_steps = keyframes * max(1, int(steps * strength))
    out = {"projection_keyframes_per_min": keyframes, "projection_unet_steps_per_min": unet_steps,
           "projection_decodes_per_min": frames, "projected_refine_s_per_min_1080p30": None}
    if gpu_figures:
        g = json.loads(Path(gpu_figures).read_text())
        out["projected_refine_s_per_min_1080p30"] = unet_steps * g["unet_step_s"] + frames * g["decode_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer keys and forms (a smoke run)")
    ap.add_argument("--runs", type=int, default=5, help="CPU timing runs (best and median)")
    ap.add_argument("--gpu-figures", default=None, help="JSON {unet_step_s, decode_s} at 1080p from a GPU")
    ap.add_argument("--every-beats", type=float, default=1.0)
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--strength", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-refine", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res: dict = {}
    res.update(harmony(args.quick))
    res.update(sections(args.quick))
    res.update(hpss_cost(args.runs))
    if not args.no_refine:
        res.update(refine_tiny())
    res.update(projection(args.gpu_figures, args.every_beats, args.bpm, args.strength, args.steps))
    real = real_keys()

    def fmt(v):
        return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    rows = [("key_accuracy (synthetic)", res["key_accuracy"], ">= 0.9"),
            ("chord_accuracy (synthetic)", res["chord_accuracy"], ">= 0.9"),
            ("key/chord accuracy (shared recordings)", None, "no key annotations"),
            ("section_boundary_f (within 1 bar)", res["section_boundary_f"], ">= 0.9"),
            ("section_label_accuracy", res["section_label_accuracy"], ""),
            ("hpss_ms_per_audio_s (best)", res["hpss_ms_per_audio_s"], "<= 3"),
            ("hpss_ms_per_audio_s (median)", res["hpss_ms_median"], ""),
            ("music_features_ms_per_audio_s (best)", res["music_features_ms_per_audio_s"], "HPSS + harmony"),
            ("refine_fps_tiny", res.get("refine_fps_tiny"), "CPU, 64x64, load incl."),
            ("projected_refine_s_per_min_1080p30", res["projected_refine_s_per_min_1080p30"],
             f"{res['projection_unet_steps_per_min']} UNet steps + {res['projection_decodes_per_min']} decodes")]
    w = max(len(r[0]) for r in rows)
    print(f"{'figure':<{w}}  {'value':>8}  target / note")
    for name, v, note in rows:
        print(f"{name:<{w}}  {fmt(v):>8}  {note}")
    if res["key_misses"]:
        print("key misses:", ", ".join(res["key_misses"]))
    print("sections found:", "; ".join(f"{k}: {v}" for k, v in res["forms"].items()))
    print("keys found in the shared recordings (not annotated):", ", ".join(f"{a} {b}" for a, b in real))
    print("projection: keyframes/min x int(steps x strength) x unet_step_s + 1800 x decode_s (1080p30, "
          f"every {args.every_beats:g} beat at {args.bpm:g} BPM); timings on a shared machine are noisy")
    print(json.dumps({k: v for k, v in res.items() if k not in ("forms", "key_misses")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
