"""Harmony (key, chord), HPSS and section finding on synthetic music with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vjengine.audio.engine import AudioEngine
from vjengine.audio.features import SpectralFrontEnd
from vjengine.audio.harmony import HarmonyTracker, chord_name, key_name
from vjengine.audio.hpss import StreamingHPSS, open_separator
from vjengine.audio.songsynth import chord_index, chord_progression, kick_and_pad
from vjengine.errors import ConfigError

SR = 22050
FPS = 30


def _track(x: np.ndarray) -> list[tuple[float, object]]:
    """The live path: push-mode engine frames at FPS, their chroma into a HarmonyTracker."""
    eng = AudioEngine.offline(SR)
    tr = HarmonyTracker()
    out = []
    for i in range(1, int(len(x) / SR * FPS) + 1):
        t = i / FPS
        eng.feed(x[int((i - 1) / FPS * SR):int(t * SR)])
        out.append((t, tr.update(eng.poll(t).chroma, 1.0 / FPS)))
    return out


@pytest.mark.parametrize("chords,key", [
    (["C", "F", "G", "C"], "C major"),
    (["Am", "Dm", "E", "Am"], "A minor"),
    (["Cm", "Fm", "G", "Cm"], "C minor"),
    (["Ebm", "Abm", "Bb", "Ebm"], "D# minor"),
    (["F#", "B", "C#", "F#"], "F# major"),
])
def test_progression_gives_key_and_chords(chords, key):
    x, truth = chord_progression(chords, beats_per_chord=4, repeats=2, sr=SR, kick=True)
    res = _track(x)
    assert key_name(res[-1][1].key) == key
    hits = total = 0
    for t, s in res:
        for a, b, c in truth:
            if a + 0.5 <= t < b:  # half a second to settle after each change
                total += 1
                hits += s.chord == c
    assert hits / total >= 0.9, f"chord accuracy {hits / total:.2f}"
    changes = sum(s.chord_change for _, s in res)
    assert len(truth) - 1 <= changes <= len(truth) + 2


def test_modulation_moves_the_key():
    a, _ = chord_progression(["C", "F", "G", "C"], beats_per_chord=2, repeats=3, sr=SR)
    b, _ = chord_progression(["E", "A", "B", "E"], beats_per_chord=2, repeats=3, sr=SR)
    res = _track(np.concatenate([a, b]))
    half = len(a) / SR
    assert key_name(res[int(half * FPS) - 1][1].key) == "C major"
    assert key_name(res[-1][1].key) == "E major"
    assert res[-1][1].key_confidence > 0.3
    # hue: E major sits 4 fifths from C on the wheel
    assert res[-1][1].hue == pytest.approx(4 / 12, abs=0.03)


def test_silence_and_garbage_never_raise():
    tr = HarmonyTracker()
    s = tr.update([0.0] * 12, 1 / 60)
    assert s.chord == -1 and chord_name(s.chord) == "N"
    assert tr.update([float("nan")] * 12, 1 / 60) == s
    assert tr.update([1.0, 2.0], 1 / 60) == s
    assert chord_index("Bb") == 10 and chord_index("C#m") == 13


def _mel_power(x: np.ndarray, fe: SpectralFrontEnd, hop: int) -> np.ndarray:
    x = np.concatenate([np.zeros(fe.n_fft - hop, np.float32), x])
    frames = np.lib.stride_tricks.sliding_window_view(x, fe.n_fft)[::hop]
    cols = [10.0 ** (fe.compute(frames[i:i + 16]).onset_db[:fe.n_mels].copy() / 10.0)
            for i in range(0, len(frames) - 16, 16)]
    return np.concatenate(cols, axis=1)


def test_streaming_hpss_separates_kick_from_pad():
    kick, pad = kick_and_pad(seconds=6.0, sr=SR)
    hop = 128
    fe = SpectralFrontEnd(samplerate=SR, n_fft=1024, max_hops=16)
    mix, k, p = (_mel_power(v, fe, hop) for v in (kick + pad, kick, pad))
    h = StreamingHPSS(fe.n_mels, hop_s=hop / SR)
    masks, levels = [], []
    for s in range(0, mix.shape[1], 3):  # frame-sized batches, as live
        h.process(mix[:, s:s + 3], keep_masks=True)
        if h.last_masks is not None:
            masks.append(h.last_masks)
            h.last_masks = None
        levels.append((h.drums, h.harmonic))
    mp = np.concatenate(masks).T
    idx = np.arange(0, mix.shape[1], h.every)[:mp.shape[1]]
    k, p = k[:, idx], p[:, idx]
    kick_in_p = (mp * k).sum() / k.sum()
    pad_in_h = ((1 - mp) * p).sum() / p.sum()
    mix_ratio = k.sum() / p.sum()
    p_ratio = (mp * k).sum() / (mp * p).sum()
    h_ratio = ((1 - mp) * k).sum() / ((1 - mp) * p).sum()
    assert kick_in_p > 0.55 and pad_in_h > 0.75, (kick_in_p, pad_in_h)
    assert p_ratio > 3 * mix_ratio and h_ratio < mix_ratio / 2, (p_ratio, h_ratio, mix_ratio)
    lv = np.array(levels[len(levels) // 2:])
    assert lv[:, 0].max() > 0.8 and lv[:, 1].min() > 0.5  # drums pulse, the pad holds


def test_stem_separators_share_an_interface_and_explain_missing_models(tmp_path):
    kick, pad = kick_and_pad(seconds=2.0, sr=SR)
    sep = open_separator("hpss")
    stems = sep.separate(kick + pad, SR)
    assert set(stems) == set(sep.stems) and all(v.shape == kick.shape for v in stems.values())
    with pytest.raises(ConfigError, match="demucs"):
        open_separator(f"demucs:{tmp_path / 'missing.th'}")
    with pytest.raises(ConfigError, match="hpss or demucs"):
        open_separator("spleeter")


def test_abab_song_sections_within_a_bar(tmp_path):
    import soundfile

    from vjengine.audio.songsynth import form_song
    from vjengine.cli import main

    x, bounds, _ = form_song("ABAB", bars=4, bpm=120.0, sr=SR)
    wav = tmp_path / "abab.wav"
    soundfile.write(wav, x, SR)
    assert main(["analyze", str(wav), "-o", str(tmp_path / "an")]) == 0
    rows = [ln.split("\t") for ln in (tmp_path / "an" / "sections.txt").read_text().splitlines()]
    starts = [float(r[0]) for r in rows]
    assert [r[2] for r in rows] == ["A", "B", "A", "B"]
    bar_s = 4 * 60.0 / 120.0
    assert starts[0] == 0.0 and np.allclose(starts[1:], bounds, atol=bar_s)
    assert (tmp_path / "an" / "analysis.png").stat().st_size > 10_000
    assert (tmp_path / "an" / "chords.txt").read_text().count("\n") >= 4


@pytest.mark.filterwarnings("ignore:overflow encountered")  # numpy says so once (live path); it recovers
def test_sections_of_a_file_with_broken_samples(tmp_path):
    """A file with NaN, inf and 1e30 samples in it (a broken recorder): the offline section finder
    reads them as the live analysis does (silence, or clamped) instead of letting one NaN spread
    through every feature (it found one section, 'A', for the whole song)."""
    import soundfile

    from vjengine.audio.songsynth import form_song
    from vjengine.cli import main

    x, bounds, _ = form_song("ABAB", bars=4, bpm=120.0, sr=SR)
    x = x.astype(np.float32)
    x[SR * 3:SR * 3 + 200], x[SR * 10] = np.nan, np.inf
    x[SR * 20:SR * 20 + 50] = 1e30
    wav = tmp_path / "broken.wav"
    soundfile.write(wav, x, SR, subtype="FLOAT")
    assert main(["analyze", str(wav), "-o", str(tmp_path / "an")]) == 0
    rows = [ln.split("\t") for ln in (tmp_path / "an" / "sections.txt").read_text().splitlines()]
    assert [r[2] for r in rows] == ["A", "B", "A", "B"]
    assert np.allclose([float(r[0]) for r in rows[1:]], bounds, atol=4 * 60.0 / 120.0)


def test_audio_frames_carry_harmony_and_drums_to_mapping_and_osc():
    from vjengine.control.osc_out import out_values
    from vjengine.mapping.features import read_feature

    x, _ = chord_progression(["Am", "Dm", "E", "Am"], beats_per_chord=4, repeats=2, sr=SR, kick=True)
    eng = AudioEngine.offline(SR)
    changes, drums = 0, []
    for i in range(1, int(len(x) / SR * FPS) + 1):
        t = i / FPS
        eng.feed(x[int((i - 1) / FPS * SR):int(t * SR)])
        f = eng.poll(t)
        changes += read_feature(f, "chord_change") == 1.0
        drums.append(read_feature(f, "drums"))
    assert key_name(f.key) == "A minor" and read_feature(f, "mode") == 0.0
    assert read_feature(f, "key") == pytest.approx(9 / 12)
    assert chord_name(f.chord) == "Am" and read_feature(f, "chord_root") == pytest.approx(9 / 12)
    assert 7 <= changes <= 10  # 8 chords
    assert max(drums) > 0.8 and min(drums[FPS * 2:]) < 0.5  # the kicks pulse through the drums level
    osc = out_values(f)
    assert osc["/vj/harmony/key_name"] == "A minor" and osc["/vj/harmony/chord_name"] == "Am"
    assert osc["/vj/harmony/hue"] == pytest.approx(f.harmony_hue)
    assert osc["/vj/harmony/hue"] == pytest.approx(0.0, abs=0.05) or osc["/vj/harmony/hue"] > 0.95  # Am ~ C
