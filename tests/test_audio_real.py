"""The causal beat tracker on real recordings with annotated beats (../shared/data/audio), scored
with mir_eval. Thresholds sit a little under what the tracker measures (see benchmarks/analysis.py),
so a regression fails while run-to-run noise does not."""

from __future__ import annotations

import csv

import mir_eval
import numpy as np
import pytest

from _audio_util import analyse
from vjengine.audio.analyzer import AnalysisConfig
from vjengine.audio.sources import load_audio

CLIPS = [
    # folder/audio, beats file, min F-measure, tempo (BPM)
    ("bayesbeat_guitar/guitar_duple.flac", "bayesbeat_guitar/guitar_duple.beats", 0.9, 120.0),
    ("bayesbeat_guitar/guitar_triple.flac", "bayesbeat_guitar/guitar_triple.beats", 0.9, 139.5),
]


@pytest.mark.parametrize("audio,beats,min_f,bpm", CLIPS, ids=[c[0].split("/")[-1] for c in CLIPS])
def test_beat_tracker_on_annotated_recordings(shared_audio, audio, beats, min_f, bpm):
    x, sr = load_audio(shared_audio / audio)
    ref = np.loadtxt(shared_audio / beats, usecols=0, comments="#")
    a = analyse(x, sr, block=256)
    est = np.array(a.beat_times)
    f = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(est))
    assert f >= min_f, f"F-measure {f:.3f}"
    assert a.bpm == pytest.approx(bpm, rel=0.03)


def test_short_clip_gets_a_tempo_and_onsets(shared_audio):
    """madmom's 2.8 s sample: onsets must match the annotations, and the clock locks in time to
    hit half the annotated beats (no trim: mir_eval's default 5 s trim would drop them all)."""
    x, sr = load_audio(shared_audio / "madmom_sample/sample.wav")
    ref_onsets = np.loadtxt(shared_audio / "madmom_sample/sample.onsets", usecols=0, comments="#")
    a = analyse(x, sr)
    f, precision, recall = mir_eval.onset.f_measure(ref_onsets, np.array(a.onset_times), window=0.05)
    assert f >= 0.6, (f, precision, recall)
    ref_beats = np.loadtxt(shared_audio / "madmom_sample/sample.beats", usecols=0, comments="#")
    f_beats = mir_eval.beat.f_measure(ref_beats, np.array(a.beat_times))
    assert f_beats >= 0.45, (f_beats, a.beat_times)


@pytest.mark.parametrize("tracker", ["dsp", "learned"])
def test_fast_swing_is_followed_at_the_dancers_level(shared_audio, tracker):
    """The Jazz Trio Database excerpt is annotated at the players' quarter note, about 290 BPM: above
    the flash cap (3 Hz) and twice what a dancer steps to. The clock takes half of it (as librosa's
    offline tracker does) and every beat it gives after its first bar lands on an annotated beat (on
    this clip the 2 and 4, where the hi-hat closes and a jazz audience claps)."""
    with open(shared_audio / "jtd_jazz_trio/allgodschildren.beats.csv", newline="") as f:
        ref = np.array([float(r["beats"]) for r in csv.DictReader(f)])
    x, sr = load_audio(shared_audio / "jtd_jazz_trio/allgodschildren.wav")
    a = analyse(x, sr, block=256, config=AnalysisConfig(beat_tracker=tracker))
    annotated_bpm = 60.0 / np.median(np.diff(ref))
    assert a.bpm == pytest.approx(annotated_bpm / 2.0, rel=0.04)
    est = np.array(a.beat_times)
    late = est[est >= 2.5]
    assert late.size >= 5
    assert np.all(np.min(np.abs(late[:, None] - ref[None, :]), axis=1) <= 0.07), late
