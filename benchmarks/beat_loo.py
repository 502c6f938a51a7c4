"""Leave-one-out check of the beat clock's lock settings: what each tracker would score on a recording
it was not tuned on.

The lock settings (how soon the clock may lock, how often the tempo is re-estimated before it does,
and whether the tempo comb averages only the harmonics the short early history can hold) were chosen
by looking at scores. This script makes that choice again without the recording it is scored on: for
each annotated recording in turn, the grid point with the best mean F on the *other* recordings is
picked (ties, within 0.005: fewer octave errors on the synthetic set, then the shipped setting), and
the held-out recording is scored with it. The held-out means are the figures to trust; the shipped
setting's own means (tuned with every recording in view) are printed beside them.

Grid (per tracker, ``--beat-tracker dsp`` and ``learned``): ``min_lock_s`` in {1.0, 1.2, 1.4}, the
tempo update interval before the lock in {0.25, 0.5} s (the level votes scaled so they span the same
time; every 0.5 s once locked) and ``comb_mean`` off / on: 12 settings.

Prints the per-setting table, the per-fold choice and held-out scores, then one JSON line (keys:
``loo_f_measure`` and ``shipped_f_measure`` per tracker, ``folds``, ``grid``).

Run: ``python benchmarks/beat_loo.py [--clips DIR ...]`` (as ``analysis.py``: held-out sets are added
to the recordings; about 2 minutes on 2 cores for the shared ones).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis  # noqa: E402  (also puts the repository on sys.path)
from vjengine.audio.analyzer import AnalysisConfig, Analyzer  # noqa: E402

TRACKERS = ("dsp", "learned")
TIE = 0.005


def grid() -> list[dict]:
    out = []
    for min_lock, update, comb_mean in itertools.product((1.0, 1.2, 1.4), (0.25, 0.5), (False, True)):
        out.append({"min_lock_s": min_lock, "update_s": update, "comb_mean": comb_mean})
    return out


def config(tracker: str, point: dict) -> AnalysisConfig:
    """``AnalysisConfig`` for ``tracker`` with one grid point's lock settings."""
    base = AnalysisConfig(beat_tracker=tracker)
    tempo = base.learned_tempo if tracker == "learned" else base.tempo
    scale = point["update_s"] / tempo.update_s  # the vote counts are in updates: keep their span in time
    votes = {k: max(1, round(getattr(tempo, k) / scale)) for k in ("half_votes_needed", "unhalve_votes", "switch_votes")}
    tempo = dataclasses.replace(tempo, update_s=point["update_s"], locked_update_s=0.5,
                                comb_mean=point["comb_mean"], **votes)
    if tracker == "learned":
        return dataclasses.replace(base, learned_tempo=tempo, learned_min_lock_s=point["min_lock_s"])
    return dataclasses.replace(base, tempo=tempo, min_lock_s=point["min_lock_s"])


def shipped(tracker: str) -> dict:
    base = AnalysisConfig(beat_tracker=tracker)
    tempo = base.learned_tempo if tracker == "learned" else base.tempo
    return {"min_lock_s": base.learned_min_lock_s if tracker == "learned" else base.min_lock_s,
            "update_s": tempo.update_s, "comb_mean": tempo.comb_mean}


def run(clip, cfg: AnalysisConfig) -> dict:
    a = Analyzer(clip.sr, cfg, record=True)
    for i in range(0, clip.x.size, analysis.BLOCK):
        a.process(clip.x[i:i + analysis.BLOCK])
    return analysis.score(clip, np.array(a.beat_times), np.array(a.downbeat_times), a.bpm if a.locked else None)


def label(point: dict) -> str:
    return f"lock {point['min_lock_s']:.1f} s, every {point['update_s']:.2f} s, comb {'mean' if point['comb_mean'] else 'sum'}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="leave-one-out check of the beat clock's lock settings")
    args = analysis.parse_clips_args(ap, argv)
    if args is None:
        return 2
    clips = analysis.load_clips(tuple(args.clips))
    real = [c for c in clips if c.real]
    synthetic = [c for c in clips if not c.real]
    if len(real) < 2:
        print("beat_loo: needs at least two annotated recordings (../shared/data/audio or --clips)", file=sys.stderr)
        return 2
    points = grid()
    result: dict = {"grid": [label(p) for p in points], "folds": {}}
    for tracker in TRACKERS:
        scores = [[run(c, config(tracker, p)) for c in real] for p in points]          # [point][clip]
        syn_oct = [sum(run(c, config(tracker, p))["octave_error"] for c in synthetic) for p in points]
        ship = next(i for i, p in enumerate(points) if p == shipped(tracker))
        print(f"--beat-tracker {tracker}: F per recording for each setting (* shipped)")
        print(f"  {'setting':<40} " + " ".join(f"{c.name[:10]:>10}" for c in real) + f" {'mean':>6} {'syn oct':>7}")
        for i, p in enumerate(points):
            f = [s["f"] for s in scores[i]]
            print(f"  {('* ' if i == ship else '  ') + label(p):<40} " + " ".join(f"{v:10.3f}" for v in f)
                  + f" {np.mean(f):6.3f} {syn_oct[i]:7d}")
        held, folds = [], {}
        for k, clip in enumerate(real):
            def train(i: int) -> float:
                return float(np.mean([s["f"] for j, s in enumerate(scores[i]) if j != k]))
            best = max(train(i) for i in range(len(points)))
            tied = [i for i in range(len(points)) if train(i) >= best - TIE]
            pick = min(tied, key=lambda i: (syn_oct[i], i != ship, i))
            s = scores[pick][k]
            held.append(s)
            folds[clip.name] = {"setting": label(points[pick]), "f": round(s["f"], 4),
                                "downbeat_f": None if s["downbeat_f"] is None else round(s["downbeat_f"], 4),
                                "octave_error": s["octave_error"]}
        print("  leave one out: the setting chosen on the other recordings, scored on the one left out")
        for name, fold in folds.items():
            print(f"    {name[:24]:<24} {fold['setting']:<40} F {fold['f']:.3f}"
                  f"{'  octave error' if fold['octave_error'] else ''}")
        loo_f = float(np.mean([s["f"] for s in held]))
        ship_f = float(np.mean([s["f"] for s in scores[ship]]))
        print(f"  mean F held out: {loo_f:.3f}   shipped setting, tuned on all: {ship_f:.3f}   "
              f"octave errors held out: {sum(s['octave_error'] for s in held)}/{len(held)}")
        print()
        result["folds"][tracker] = folds
        result[f"loo_f_measure_{tracker}"] = round(loo_f, 4)
        result[f"shipped_f_measure_{tracker}"] = round(ship_f, 4)
        result[f"shipped_{tracker}"] = label(points[ship])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
