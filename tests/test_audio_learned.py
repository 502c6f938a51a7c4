"""The learned beat activation (BeatNet's CRNN in numpy, audio/learned.py) and `--beat-tracker learned`:
the numpy network against the same network in torch, its features' definition, sample-rate and
blocking independence, and the tracker it drives on real and synthetic music."""

from __future__ import annotations

import subprocess
import sys

import mir_eval
import numpy as np
import pytest

from _audio_util import analyse
from vjengine.audio.analyzer import AnalysisConfig, Analyzer
from vjengine.audio.learned import CRNN, N_FEATURES, BeatActivation, load_weights, log_filterbank
from vjengine.audio.sources import load_audio
from vjengine.audio.trackers import BarTracker
from vjengine.errors import ConfigError
from vjengine.audio.synth import dance_loop, groove

LEARNED = AnalysisConfig(beat_tracker="learned")


def _torch_bda(weights: dict[str, np.ndarray]):
    """BeatNet's BDA network as its paper and code define it, built here in torch from the .npz arrays."""
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class BDA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv1d(1, 2, 10)
            self.linear0 = nn.Linear(262, 150)
            self.lstm = nn.LSTM(150, 150, num_layers=2, batch_first=True)
            self.linear = nn.Linear(150, 3)

        def forward(self, feats):  # (T, 272) -> (T, 3) probabilities
            x = F.max_pool1d(F.relu(self.conv1(feats[:, None, :])), 2).reshape(feats.shape[0], -1)
            x, _ = self.lstm(self.linear0(x)[None])
            return torch.softmax(self.linear(x[0]), dim=1)

    net = BDA()
    state = {k: torch.from_numpy(weights[k.replace(".", "_")]) for k in net.state_dict()}
    net.load_state_dict(state)
    return net.eval(), torch


@pytest.fixture(scope="module")
def waltz(shared_audio):
    x, sr = load_audio(shared_audio / "ballroom_waltz/Media-105901.wav")
    ann = np.loadtxt(shared_audio / "ballroom_waltz/Media-105901.beats", ndmin=2)
    return x, sr, ann


def test_numpy_network_matches_torch(waltz):
    """The rearranged numpy forward pass (banded conv matmul, fused gates) equals torch's layers."""
    x, sr, _ = waltz
    _, feats = BeatActivation(sr).push_features(x[:sr * 6])
    assert feats.shape[1] == N_FEATURES and len(feats) > 250
    weights = load_weights()
    net, torch = _torch_bda(weights)
    with torch.no_grad():
        ref = net(torch.from_numpy(feats)).numpy()
    ours = CRNN(weights).run(feats)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    assert ref[:, :2].max() > 0.5, "the clip has confident beats: the comparison is not all 'neither'"


def test_filterbank_is_beatnets():
    """24 bands per octave from 30 Hz over 705 bins at 22050 Hz: 136 triangles of unit area, rising."""
    fb = log_filterbank()
    assert fb.shape == (705, 136)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, rtol=1e-5)
    centres = np.argmax(fb, axis=0)
    assert np.all(np.diff(centres) > 0)
    assert 1 <= centres[0] <= 3  # ~30-47 Hz at 15.6 Hz a bin


def test_sample_rate_and_blocking_do_not_change_the_activation(waltz):
    """At 44.1 kHz (frames of the same length in seconds) the activation is the one at BeatNet's
    22050 Hz; and a stream cut in random blocks gives exactly the one-block result, while another
    stream runs through its own instance in between (the instances share the network's weights,
    read once a process and read-only, and nothing else)."""
    import librosa

    x, sr, _ = waltz
    x = x[:sr * 8]
    _, at_sr = BeatActivation(sr).push(x)
    _, at_ref = BeatActivation(22050).push(librosa.resample(x, orig_sr=sr, target_sr=22050))
    n = min(len(at_sr), len(at_ref))
    assert abs(len(at_sr) - len(at_ref)) <= 1
    assert np.corrcoef(at_sr[:n, 0], at_ref[:n, 0])[0, 1] > 0.99
    assert np.corrcoef(at_sr[:n, 1], at_ref[:n, 1])[0, 1] > 0.99
    blocked, other = BeatActivation(sr), BeatActivation(sr)
    assert blocked.net.lstm_w[0] is other.net.lstm_w[0] and blocked.fb is other.fb
    with pytest.raises(ValueError):
        blocked.net.lstm_w[0][0, 0] = 1.0
    rng = np.random.default_rng(1)
    parts, ends, i = [], [], 0
    while i < x.size:
        k = int(rng.integers(1, 2000))
        other.push(x[::-1][i:i + k] * 0.5)
        e, p = blocked.push(x[i:i + k])
        ends += e
        parts.append(p)
        i += k
    np.testing.assert_allclose(np.concatenate(parts), at_sr, atol=1e-6)
    assert len(ends) == len(at_sr) and ends == sorted(ends)


def test_learned_tracker_on_the_waltz(waltz):
    """The annotated waltz: the dancer's level in 3/4 and its bar lines, claimed only when confident."""
    x, sr, ann = waltz
    a = analyse(x, sr, config=LEARNED)
    ref = ann[:, 0]
    est = np.array(a.beat_times)
    assert a.bpm == pytest.approx(60.0 / np.median(np.diff(ref)), rel=0.06)
    assert a.beats_per_bar == 3
    trim = mir_eval.beat.trim_beats
    assert mir_eval.beat.f_measure(trim(ref), trim(est)) >= 0.85
    down_f = mir_eval.beat.f_measure(trim(ann[ann[:, 1] == 1, 0]), trim(np.array(a.downbeat_times)))
    assert down_f >= 0.8, down_f


def test_a_quiet_line_in_is_raised_to_the_level_the_network_knows(waltz):
    """A line-in 36 dB below full scale: within a minute the network sees what it sees at -6 dBFS
    (the gain has risen to its +30 dB); an input that peaks near full scale is never touched."""
    x, sr, _ = waltz
    loop = x[sr * 10:sr * 14] / np.abs(x[sr * 10:sr * 14]).max()  # peaks at full scale
    _, raw = BeatActivation(sr, normalise=False).push(np.tile(loop, 3))
    _, ours = BeatActivation(sr).push(np.tile(loop, 3))
    np.testing.assert_allclose(ours, raw, atol=1e-6)
    _, at_minus_6 = BeatActivation(sr, normalise=False).push(np.tile(loop * 10.0 ** (-6.0 / 20.0), 3))
    quiet = BeatActivation(sr)
    for _ in range(18):  # 72 s: 30 dB at 0.5 dB a second, and a few seconds more
        _, got = quiet.push(loop * 10.0 ** (-36.0 / 20.0))
    assert np.abs(got[-100:] - at_minus_6[-100:]).max() < 0.02
    _, untouched = BeatActivation(sr, normalise=False).push(np.tile(loop * 10.0 ** (-36.0 / 20.0), 3))
    assert np.abs(untouched[-100:] - at_minus_6[-100:]).max() > 0.1, "the level matters to the raw network"


@pytest.mark.parametrize("bpm,metre", [(96.0, 3), (124.0, 4), (150.0, 4)])
def test_learned_tracker_on_synthetic_grooves(bpm, metre):
    x, beats, _ = groove(bpm=bpm, beats_per_bar=metre, seconds=16.0, sr=44100, seed=4)
    a = analyse(x, 44100, config=LEARNED)
    assert a.bpm == pytest.approx(bpm, rel=0.02)
    est = np.array(a.beat_times)
    late = est[(est > 8.0) & (est <= beats[-1] + 0.07)]
    assert late.size >= 8
    assert np.all(np.min(np.abs(late[:, None] - beats[None, :]), axis=1) <= 0.07), "every late beat on a true one"


@pytest.mark.parametrize("bpm", [124.0, 128.0, 150.0])
def test_the_learned_clock_is_on_the_grid_within_two_seconds(bpm):
    """Until it locks, the learned tracker re-estimates the tempo every 0.25 s and may lock after 1 s
    of sound: on a steady groove it gives a true beat before 1.65 s, and every beat from there on is
    a true one (from 1.9-2.0 s before)."""
    x, beats, _ = groove(bpm=bpm, seconds=10.0, sr=44100, seed=1)
    a = analyse(x, 44100, config=LEARNED)
    est = np.array(a.beat_times)
    ref = beats[beats <= 9.3]
    est = est[est <= ref[-1] + 0.07]
    hit = np.array([np.min(np.abs(ref - e)) <= 0.07 for e in est])
    assert est.size >= 10 and hit[-1]
    first_of_the_run = est[np.nonzero(~hit)[0][-1] + 1] if not hit.all() else est[0]
    assert first_of_the_run < 1.65, est[:6]


def test_the_learned_clock_does_not_depend_on_the_blocking():
    """Tempo updates every 0.25 s until the lock and every 0.5 s after it fall on fixed hops: the
    beats, the lock and the bar are the same in 256-sample device blocks and in 16384-sample reads."""
    x, _, _ = groove(bpm=128.0, seconds=10.0, sr=44100, seed=2)
    small, big = (analyse(x, 44100, block=b, config=LEARNED) for b in (256, 16384))
    assert len(small.beat_times) >= 15
    np.testing.assert_allclose(small.beat_times, big.beat_times, atol=1e-3)
    np.testing.assert_allclose(small.downbeat_times, big.downbeat_times, atol=1e-3)
    assert small.bpm == pytest.approx(big.bpm, abs=1e-6)


def test_the_learned_clock_follows_a_short_clip_from_its_third_beat(shared_audio):
    """madmom's 2.8 s excerpt (87.5 BPM, four annotated beats): the beats at 1.48 s and 2.15 s are
    given, and nothing else (the clock used to lock only after the third)."""
    x, sr = load_audio(shared_audio / "madmom_sample/sample.wav")
    ref = np.loadtxt(shared_audio / "madmom_sample/sample.beats", usecols=0)
    est = np.array(analyse(x, sr, config=LEARNED).beat_times)
    est = est[est <= ref[-1] + 0.07]
    assert all(np.min(np.abs(est - r)) <= 0.07 for r in ref[2:]), est
    assert all(np.min(np.abs(ref - e)) <= 0.07 for e in est), est


@pytest.mark.parametrize("bpm,metre", [(60.0, 4), (66.0, 3), (72.0, 3), (80.0, 4)])
def test_the_learned_tracker_reads_slow_grooves_at_their_level(bpm, metre):
    """BeatNet's activation fires on a slow groove's off-beat hats as on its beats (alone, it read
    these at double tempo); the spectral flux, which shows the kick and snare on every other pulse,
    judges the metrical level."""
    x, beats, _ = groove(bpm=bpm, beats_per_bar=metre, seconds=max(20.0, 40 * 60.0 / bpm), sr=44100, seed=1)
    a = analyse(x, 44100, config=LEARNED)
    assert a.bpm == pytest.approx(bpm, rel=0.02)
    assert a.beats_per_bar == metre
    est = np.array(a.beat_times)
    # (not the last beat: on the 80 BPM clip the learned phase slips 110 ms there, as it did before)
    late = est[(est > x.size / 44100 / 2) & (est <= beats[-2] + 0.07)]
    assert late.size >= 8 and np.all(np.min(np.abs(late[:, None] - beats[None, :]), axis=1) <= 0.07)


def test_a_learned_fast_groove_stays_at_its_level():
    """At 180 BPM BeatNet's activation fires mostly on every other beat: its comb prefers 90 and its
    ACF at one beat falls near 0. Locked at 180 (the flux shows every pulse as a beat), the clock
    used to flip to 90 at 10 s (the comb outvoted the lock) or, held there, unlock after 10 s of
    'weak' confidence and lock again at 90. The flip needs the flux's halve vote now, and a grid
    whose onsets fall on every other beat still holds the lock."""
    x, beats, _ = groove(bpm=180.0, seconds=20.0, sr=44100, seed=1)
    a = analyse(x, 44100, config=LEARNED)
    rec = a.recorded()
    first_lock = rec["time_s"][np.argmax(rec["locked"])]
    assert rec["locked"].any() and first_lock < 4.0
    after = rec["locked"][rec["time_s"] >= first_lock]
    assert after.all(), "it never unlocks"
    assert np.all(np.abs(rec["bpm"][rec["time_s"] >= first_lock] / 180.0 - 1.0) < 0.05), "no octave flip"
    est = np.array(a.beat_times)
    late = est[(est > 10.0) & (est <= beats[-1] + 0.07)]
    assert late.size >= 25 and np.all(np.min(np.abs(late[:, None] - beats[None, :]), axis=1) <= 0.07)


def test_a_learned_100_bpm_loop_locks_when_its_comb_settles_on_its_level():
    """The comb reads this loop at 200 for 2 s (off-beat hats) while the flux votes to halve; then the
    comb itself moves to 100. The halve votes, now moot (50 BPM is below the range), used to stand and
    keep the clock from ever locking (it waits while a halve vote is pending)."""
    x, beats = dance_loop(bpm=100.0, seconds=12.0, sr=48000, seed=5)
    a = analyse(x, 48000, config=LEARNED)
    assert a.locked and a.bpm == pytest.approx(100.0, rel=0.02)
    est = np.array(a.beat_times)
    assert est.size and est[0] < 4.0, est[:3]
    late = est[(est > est[0] + 1.0) & (est <= beats[-1] + 0.07)]
    assert late.size >= 10 and np.all(np.min(np.abs(late[:, None] - beats[None, :]), axis=1) <= 0.07)


def test_learned_analysis_imports_no_torch():
    code = ("import sys, numpy as np\n"
            "from vjengine.audio.analyzer import AnalysisConfig, Analyzer\n"
            "a = Analyzer(48000, AnalysisConfig(beat_tracker='learned'))\n"
            "a.process(np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1)\n"
            "a.snapshot()\n"
            "assert a.learned is not None and 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bad_weight_files_are_named_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, conv1_weight=np.array([{"code": "x"}], dtype=object))  # an object array is a pickle
    with pytest.raises(ConfigError, match="bad.npz.*allow_pickle"):
        load_weights(bad)
    short = tmp_path / "short.npz"
    np.savez(short, **{k: v[:1] for k, v in load_weights().items()})
    with pytest.raises(ConfigError, match=r"short.npz: conv1_weight is \(1, 1, 10\), expected shape \(2, 1, 10\)"):
        load_weights(short)
    with pytest.raises(ConfigError, match="at least 22050 Hz, got 16000"):
        BeatActivation(16000)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="junk.npz: cannot read"):
        load_weights(tmp_path / "junk.npz")


def test_an_unknown_beat_tracker_is_named(tmp_path):
    with pytest.raises(ValueError, match="beat_tracker.*'neural'"):
        Analyzer(44100, AnalysisConfig(beat_tracker="neural"))
    out = subprocess.run([sys.executable, "-m", "vjengine.cli", "analyze", str(tmp_path / "x.wav"),
                          "--beat-tracker", "neural"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--beat-tracker" in out.stderr and "'neural'" in out.stderr


def test_vj_analyze_with_the_learned_tracker(shared_audio, tmp_path):
    """`vj analyze --beat-tracker learned` on the 2/4 guitar: its beats at 120 BPM in beats.txt."""
    out = subprocess.run([sys.executable, "-m", "vjengine.cli", "analyze",
                          str(shared_audio / "bayesbeat_guitar/guitar_duple.flac"), "--beat-tracker", "learned",
                          "-o", str(tmp_path), "--no-plot", "--no-sections"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    beats = np.loadtxt(tmp_path / "beats.txt", ndmin=1)
    assert 60.0 / np.median(np.diff(beats)) == pytest.approx(120.0, rel=0.02)


def _feed_bars(bars: BarTracker, n_beats: int, *, low, harmony, learned) -> None:
    for i in range(n_beats):
        bars.add_beat(i, low(i), harmony(i), learned(i))


def test_a_spread_learned_downbeat_gives_way_to_the_bass_and_harmony():
    """A learned activation that leans to every 4th beat but spreads over the bar (BeatNet unsure,
    e.g. on a solo guitar in 3/4) is not trusted: the chord changes every 3 beats set the metre."""
    bars = BarTracker()
    spread = {0: 1.7, 1: 1.0, 2: 0.9, 3: 0.8}  # at most 38% of the 4-fold mass on one beat
    _feed_bars(bars, 48, low=lambda i: 1.0, harmony=lambda i: 0.6 if i % 3 == 1 else 0.1,
               learned=lambda i: spread[i % 4])
    assert not bars.learned_trusted
    assert (bars.metre, bars.downbeat) == (3, 1) and bars.confidence >= 0.3


def test_a_sharp_learned_downbeat_is_followed():
    """An activation near 0 except on one beat a bar (BeatNet sure) says where bar 1 is, over a
    bass line that leans another way."""
    bars = BarTracker()
    _feed_bars(bars, 48, low=lambda i: 1.3 if i % 3 == 0 else 1.0, harmony=lambda i: 0.2,
               learned=lambda i: 0.9 if i % 3 == 2 else 0.02)
    assert bars.learned_trusted
    assert (bars.metre, bars.downbeat) == (3, 2) and bars.confidence >= 0.3
    plain = BarTracker()  # without the learned cue the bass line decides
    _feed_bars(plain, 48, low=lambda i: 1.3 if i % 3 == 0 else 1.0, harmony=lambda i: 0.2, learned=lambda i: None)
    assert (plain.metre, plain.downbeat) == (3, 0) and not plain.learned_trusted


def test_learned_tracker_keeps_the_triple_guitar_in_three(shared_audio):
    """bayesbeat's solo guitar in 3/4: BeatNet's downbeat head reads it as 4/4 (spread, so not
    trusted); the harmony gives its bars."""
    x, sr = load_audio(shared_audio / "bayesbeat_guitar/guitar_triple.flac")
    ann = np.loadtxt(shared_audio / "bayesbeat_guitar/guitar_triple.beats", ndmin=2)
    a = analyse(x, sr, config=LEARNED)
    assert a.beats_per_bar == 3
    trim = mir_eval.beat.trim_beats
    down_f = mir_eval.beat.f_measure(trim(ann[ann[:, 1] == 1, 0]), trim(np.array(a.downbeat_times)))
    assert down_f >= 0.8, down_f
