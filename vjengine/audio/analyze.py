"""`vj analyze SONG [-o DIR]`: the live (causal) analysis over a file, written to disk.

Writes ``features.csv`` (one row per analysis hop), ``beats.txt``, ``downbeats.txt`` (the beats the
clock called beat 1 with confidence) and ``onsets.txt`` (one time in seconds per line, as the live
clock would have emitted them, latency compensation off),
``kicks.txt``, ``sections.txt`` (``start<TAB>end<TAB>label``: boundaries and repeat labels from
self-similarity, :mod:`vjengine.audio.sections`), ``chords.txt`` (``time<TAB>chord`` at each change,
:mod:`vjengine.audio.harmony`), ``summary.json`` (with the key and the sections) and ``analysis.png``
(waveform, bands, onsets, beats, tempo, sections), and prints the estimated tempo, key and form.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from vjengine.audio.analyzer import AnalysisConfig, Analyzer, add_beat_tracker_argument
from vjengine.audio.sources import load_audio
from vjengine.errors import VJError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("song", help="WAV/FLAC file")
    parser.add_argument("-o", "--output", default=None, help="output directory (default: SONG.analysis/)")
    parser.add_argument("--block", type=int, default=256, help="samples per block fed to the analysis (like a device)")
    parser.add_argument("--bpm", type=float, default=None, help="fix the tempo instead of estimating it")
    add_beat_tracker_argument(parser)
    parser.add_argument("--no-plot", action="store_true", help="skip analysis.png")
    parser.add_argument("--no-sections", action="store_true", help="skip sections.txt and chords.txt")


def analyze_samples(samples: np.ndarray, samplerate: int, *, block: int = 256, bpm: float | None = None,
                    config: AnalysisConfig | None = None) -> Analyzer:
    """Run the causal analysis over ``samples`` fed in ``block``-sized pieces; returns the recording analyser."""
    if block <= 0:
        raise VJError(f"--block must be positive, got {block}")
    analyzer = Analyzer(samplerate, config or AnalysisConfig(latency_ms=0.0), record=True)
    analyzer.latency_ms = 0.0
    if bpm is not None:
        analyzer.set_bpm(bpm)
    step = max(block, 1)
    for i in range(0, samples.size, step):
        analyzer.process(samples[i:i + step])
    return analyzer


def estimated_tempo(analyzer: Analyzer) -> float:
    """Median tempo (BPM) over the locked part (or the whole file if it never locked)."""
    rec = analyzer.recorded()
    bpm = rec["bpm"][rec["locked"]] if rec["locked"].any() else rec["bpm"]
    return float(np.median(bpm)) if bpm.size else float(analyzer.bpm)


def song_structure(samples: np.ndarray, samplerate: int, beat_times: list[float]) -> tuple[list, list, str]:
    """(sections, chord changes ``[(time_s, name)]``, key name) of a whole song, offline."""
    from vjengine.audio.harmony import analyze_chroma, chord_name, key_name  # noqa: PLC0415
    from vjengine.audio.sections import find_sections, hop_features  # noqa: PLC0415

    sections = find_sections(samples, samplerate, beat_times)
    times, feats = hop_features(samples, samplerate)
    if not len(times):
        return sections, [], "none"
    h = analyze_chroma(feats[:, -12:], times)
    changes = [(float(times[i]), chord_name(int(h["chord"][i]))) for i in range(len(times))
               if i == 0 or h["chord"][i] != h["chord"][i - 1]]
    return sections, changes, key_name(int(h["key"][-1]))


def write_results(analyzer: Analyzer, samples: np.ndarray, out_dir: Path, *, song: str, plot: bool = True,
                  sections: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    rec = analyzer.recorded()
    names = list(analyzer.band_names)
    header = ["time_s", "rms_db", "level", *names, "centroid_hz", "onset_strength", "bpm", "beat_phase", "locked"]
    cols = [rec["time_s"], rec["rms_db"], rec["level"], *rec["bands"].T, rec["centroid"], rec["onset_strength"],
            rec["bpm"], rec["beat_phase"], rec["locked"].astype(float)]
    table = np.column_stack(cols) if rec["time_s"].size else np.zeros((0, len(header)))
    np.savetxt(out_dir / "features.csv", table, delimiter=",", header=",".join(header), comments="", fmt="%.5g")
    for name, times in (("beats", analyzer.beat_times), ("downbeats", analyzer.downbeat_times),
                        ("onsets", analyzer.onset_times), ("kicks", analyzer.kick_times)):
        (out_dir / f"{name}.txt").write_text("".join(f"{t:.4f}\n" for t in times))
    tempo = estimated_tempo(analyzer)
    summary = {"song": song, "samplerate_hz": analyzer.samplerate, "duration_s": samples.size / analyzer.samplerate,
               "hop_s": analyzer.hop_s, "tempo_bpm": round(tempo, 2), "beats": len(analyzer.beat_times),
               "beats_per_bar": analyzer.beats_per_bar, "downbeats": len(analyzer.downbeat_times),
               "onsets": len(analyzer.onset_times), "kicks": len(analyzer.kick_times),
               "first_beat_s": analyzer.beat_times[0] if analyzer.beat_times else None}
    secs: list = []
    if sections:
        from vjengine.audio.sections import write_sections  # noqa: PLC0415

        secs, changes, key = song_structure(samples, analyzer.samplerate, analyzer.beat_times)
        write_sections(out_dir / "sections.txt", secs)
        (out_dir / "chords.txt").write_text("".join(f"{t:.3f}\t{c}\n" for t, c in changes))
        summary["key"] = key
        summary["sections"] = [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "label": s.label}
                               for s in secs]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if plot:
        _plot(analyzer, rec, samples, out_dir / "analysis.png", song, secs)
    return summary


def _plot(analyzer: Analyzer, rec: dict, samples: np.ndarray, path: Path, title: str, sections: list = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sr = analyzer.samplerate
    fig, axes = plt.subplots(4, 1, figsize=(14, 9), sharex=True)
    step = max(1, samples.size // 20000)
    t = np.arange(0, samples.size, step) / sr
    axes[0].plot(t, samples[::step], lw=0.4, color="0.3")
    for b in analyzer.beat_times:
        axes[0].axvline(b, color="tab:red", lw=0.6, alpha=0.7)
    axes[0].set_ylabel("waveform\n(red: beats)")
    colours = {}
    for sec in sections:  # shaded per label, the label written at the section's start
        c = colours.setdefault(sec.label, f"C{len(colours) % 10}")
        axes[0].axvspan(sec.start_s, sec.end_s, color=c, alpha=0.15, lw=0)
        axes[0].text(sec.start_s, 0.95, f" {sec.label}", transform=axes[0].get_xaxis_transform(), va="top",
                     fontsize=11, fontweight="bold", color=c)
    ht = rec["time_s"]
    for i, name in enumerate(analyzer.band_names):
        axes[1].plot(ht, rec["bands"][:, i] + i * 1.1, lw=0.6, label=name)
    axes[1].set_ylabel("bands 0..1")
    axes[1].legend(loc="upper right", fontsize=7, ncol=len(analyzer.band_names))
    axes[2].plot(ht, rec["onset_strength"], lw=0.5, color="tab:blue")
    axes[2].vlines(analyzer.onset_times, 0, 1.05, color="tab:orange", lw=0.6, label="onsets")
    axes[2].vlines(analyzer.kick_times, 1.05, 1.25, color="tab:green", lw=0.8, label="kicks")
    axes[2].set_ylabel("onset strength")
    axes[2].legend(loc="upper right", fontsize=7)
    axes[3].plot(ht, rec["bpm"], color="tab:purple", lw=1.0)
    locked = rec["locked"].astype(bool)
    axes[3].fill_between(ht, rec["bpm"].min() - 2, rec["bpm"].max() + 2, where=locked, color="tab:green", alpha=0.1,
                         label="locked")
    axes[3].set_ylabel("tempo BPM")
    axes[3].set_xlabel("time (s)")
    axes[3].legend(loc="upper right", fontsize=7)
    fig.suptitle(f"vj analyze: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    song = Path(args.song)
    samples, sr = load_audio(song)
    out_dir = Path(args.output) if args.output else song.with_name(song.name + ".analysis")
    analyzer = analyze_samples(samples, sr, block=args.block, bpm=args.bpm,
                               config=AnalysisConfig(latency_ms=0.0, beat_tracker=args.beat_tracker))
    summary = write_results(analyzer, samples, out_dir, song=str(song), plot=not args.no_plot,
                            sections=not args.no_sections)
    print(f"{song.name}: tempo {summary['tempo_bpm']:.1f} BPM, {summary['beats']} beats, {summary['onsets']} onsets, "
          f"{summary['kicks']} kicks; first beat at "
          f"{summary['first_beat_s']:.2f} s" if summary["first_beat_s"] is not None else
          f"{song.name}: no steady beat found (tempo guess {summary['tempo_bpm']:.1f} BPM)")
    if "sections" in summary:
        print(f"key {summary['key']}; sections " + " ".join(f"{s['label']}@{s['start_s']:.1f}s"
                                                           for s in summary["sections"]))
    print(f"wrote {out_dir}/features.csv, beats.txt, downbeats.txt, onsets.txt, kicks.txt, summary.json"
          + ("" if args.no_sections else ", sections.txt, chords.txt") + ("" if args.no_plot else ", analysis.png"))
    return 0
