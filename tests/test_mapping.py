"""Every mapping mode with a fixed-step clock and synthetic AudioFrames: the coordinates it must produce."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _show_helpers import DEMO_AXES, BeatClock, frame
from vjengine.clock import FixedStepClock
from vjengine.mapping import AxisInfo, Controls, Mapper, preset_from_text
from vjengine.mapping.features import FEATURES, read_feature
from vjengine.mapping.smoothing import follow, follow_coefficient

AXES2 = [AxisInfo("x", 9), AxisInfo("y", 9)]


def mapper(text: str, axes=AXES2) -> Mapper:
    return Mapper(preset_from_text("name = 't'\n" + text), list(axes))


def run(m: Mapper, frames, dt_s: float, controls: Controls | None = None):
    controls = controls or Controls()
    return [m.step(f, controls, dt_s).coord for f in frames]


# ---- smoothing


def test_follower_is_frame_rate_independent():
    # 0.5 s of a step input at 30, 60 and 144 fps lands on the same value
    results = []
    for fps in (30, 60, 144):
        clock = FixedStepClock(fps)
        v = 0.0
        while clock.now_s < 0.5 - 1e-9:
            v = follow(v, 1.0, 100.0, 400.0, clock.tick())
        results.append(v)
    assert results == pytest.approx([1 - math.exp(-5.0)] * 3, abs=1e-9)
    assert follow_coefficient(0.0, 0.016) == 1.0


# ---- direct


def test_direct_maps_range_curve_invert():
    m = mapper('[[layer]]\nmode="direct"\naxes=[0]\nfeature="bass"\nin_min=0.2\nin_max=0.6\n'
               'out_min=0.1\nout_max=0.9\nattack_ms=0\nrelease_ms=0\n')
    c = Controls()
    assert m.step(frame(bands={"bass": 0.4}), c, 1 / 60).coord[0] == pytest.approx(0.5)
    assert m.step(frame(bands={"bass": 0.0}), c, 1 / 60).coord[0] == pytest.approx(0.1)
    assert m.step(frame(bands={"bass": 1.0}), c, 1 / 60).coord[0] == pytest.approx(0.9)
    inv = mapper('[[layer]]\nmode="direct"\naxes=[1]\nfeature="rms"\ninvert=true\ncurve=2\nattack_ms=0\nrelease_ms=0\n')
    assert inv.step(frame(level=0.5), c, 1 / 60).coord[1] == pytest.approx(1 - 0.25)


def test_direct_attack_and_release_times():
    m = mapper('[[layer]]\nmode="direct"\naxes=[0]\nattack_ms=50\nrelease_ms=500\n')
    c, dt = Controls(), 1 / 100
    m.step(frame(level=0.0), c, dt)
    up = run(m, [frame(level=1.0)] * 5, dt, c)[-1][0]  # 50 ms = one attack time constant
    assert up == pytest.approx(1 - math.exp(-1), abs=1e-6)
    m2 = mapper('[[layer]]\nmode="direct"\naxes=[0]\nattack_ms=0\nrelease_ms=500\n')
    m2.step(frame(level=1.0), c, dt)
    down = run(m2, [frame(level=0.0)] * 50, dt, c)[-1][0]  # 500 ms = one release time constant
    assert down == pytest.approx(math.exp(-1), abs=1e-6)


# ---- orbit


def _orbit_turns(level: float, seconds: float = 2.0) -> float:
    m = mapper('[[layer]]\nmode="orbit"\naxes=[0,1]\nfeature="rms"\nspeed_hz=0.2\nbase_hz=0\n'
               'attack_ms=0\nrelease_ms=0\nradius=0.3\n')
    clock = FixedStepClock(60)
    c = Controls()
    pts = []
    while clock.now_s < seconds - 1e-9:
        pts.append(m.step(frame(level=level), c, clock.tick()).coord)
    dist = np.hypot(np.array(pts)[:, 0] - 0.5, np.array(pts)[:, 1] - 0.5)
    assert dist == pytest.approx(np.full(len(pts), 0.3), abs=1e-9)  # on the circle
    return m.layers[0].mode.phase


def test_orbit_speed_doubles_when_feature_doubles():
    slow, fast = _orbit_turns(0.25), _orbit_turns(0.5)
    assert slow == pytest.approx(0.25 * 0.2 * 2.0)
    assert fast == pytest.approx(2 * slow)


def test_orbit_path_passes_through_listed_points():
    m = mapper('[[layer]]\nmode="orbit"\naxes=[0,1]\nshape="path"\npath=[[0.1,0.1],[0.9,0.1],[0.9,0.9],[0.1,0.9]]\n'
               'feature="one"\nspeed_hz=0.25\nattack_ms=0\n')
    mode = m.layers[0].mode
    for k, p in enumerate([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]):
        assert mode.position(k / 4) == pytest.approx(p)
    # 1 s at 0.25 turns/s: exactly one segment along
    coords = run(m, [frame()] * 60, 1 / 60)
    assert coords[-1] == pytest.approx((0.9, 0.1), abs=1e-9)


def test_orbit_silence_drifts_at_base_speed():
    m = mapper('[[layer]]\nmode="orbit"\naxes=[0,1]\nshape="figure8"\nbase_hz=0.1\nspeed_hz=1\nattack_ms=0\n')
    run(m, [frame(level=0.0)] * 60, 1 / 60)
    assert m.layers[0].mode.phase == pytest.approx(0.1)


# ---- kick_morph


def test_kick_morph_jumps_then_returns_to_rest():
    m = mapper('[[layer]]\nmode="kick_morph"\naxes=[0,1]\nrest=[0.4,0.6]\namount_min=0\namount_max=1\n'
               'attack_ms=20\nrelease_ms=200\n')
    c, dt = Controls(), 1 / 100
    assert m.step(frame(level=0.8), c, dt).coord == pytest.approx((0.4, 0.6))
    m.step(frame(level=0.8, kick=True), c, dt)
    peak = run(m, [frame(level=0.8)] * 2, dt, c)[-1]
    assert np.hypot(peak[0] - 0.4, peak[1] - 0.6) > 0.02  # it jumped
    later = run(m, [frame(level=0.8)] * 300, dt, c)  # 3 s = 15 release time constants
    assert later[-1] == pytest.approx((0.4, 0.6), abs=1e-4)
    dists = [np.hypot(p[0] - 0.4, p[1] - 0.6) for p in later]
    assert all(a >= b - 1e-12 for a, b in zip(dists, dists[1:]))  # glides back monotonically


def test_kick_morph_jump_size_follows_rms():
    def jump(level: float) -> float:
        m = mapper('[[layer]]\nmode="kick_morph"\naxes=[0,1]\namount_min=0\namount_max=1\nattack_ms=0\nrelease_ms=300\n')
        c = Controls()
        p = m.step(frame(level=level, kick=True), c, 1 / 60).coord
        return float(np.hypot(p[0] - 0.5, p[1] - 0.5))

    assert jump(0.0) == pytest.approx(0.0, abs=1e-12)
    assert jump(0.5) == pytest.approx(0.5 * jump(1.0))  # same seed, same random target


def test_kick_morph_ignores_kicks_inside_min_interval():
    m = mapper('[[layer]]\nmode="kick_morph"\naxes=[0,1]\nmin_interval_ms=100\n')
    c = Controls()
    for i in range(10):  # a kick flagged on every frame at 100 fps for 100 ms
        m.step(frame(level=1.0, kick=True), c, 0.01)
    assert m.layers[0].mode.kicks == 1


# ---- softmax


def test_softmax_follows_the_loud_section():
    text = ('[[layer]]\nmode="softmax"\naxes=[0,1]\nanchors=[[0.1,0.1],[0.9,0.9]]\ntemperature=0.05\n'
            'attack_ms=0\nrelease_ms=0\n')
    low = mapper(text).step(frame(bands={"sub": 1.0, "bass": 1.0, "low_mid": 1.0}), Controls(), 1 / 60).coord
    high = mapper(text).step(frame(bands={"mid": 1.0, "high_mid": 1.0, "high": 1.0}), Controls(), 1 / 60).coord
    assert low == pytest.approx((0.1, 0.1), abs=1e-3)
    assert high == pytest.approx((0.9, 0.9), abs=1e-3)
    hot = ('[[layer]]\nmode="softmax"\naxes=[0,1]\nanchors=[[0.1,0.1],[0.9,0.9]]\ntemperature=100\n'
           'attack_ms=0\nrelease_ms=0\n')
    mid = mapper(hot).step(frame(bands={"sub": 1.0}), Controls(), 1 / 60).coord
    assert mid == pytest.approx((0.5, 0.5), abs=0.01)  # high temperature: the plain average


def test_softmax_weights_are_a_softmax_of_section_energies():
    m = mapper('[[layer]]\nmode="softmax"\naxes=[0]\nanchors=[[0.0],[0.5],[1.0]]\ntemperature=0.5\nattack_ms=0\n')
    bands = {"sub": 0.2, "bass": 0.2, "low_mid": 0.6, "mid": 0.6, "high_mid": 1.0, "high": 1.0}
    coord = m.step(frame(bands=bands), Controls(), 1 / 60).coord
    w = m.layers[0].mode.weights
    assert w.sum() == pytest.approx(1.0)
    assert w[0] < w[1] < w[2]
    assert coord[0] == pytest.approx(w @ np.array([0.0, 0.5, 1.0]))


def test_softmax_adapt_lets_a_quiet_section_win_when_it_stands_out():
    text = ('[[layer]]\nmode="softmax"\naxes=[0]\nanchors=[[0.0],[1.0]]\ntemperature=0.05\nattack_ms=0\n'
            'release_ms=0\nadapt_ms={}\n')
    steady = {"sub": 0.9, "bass": 0.9, "low_mid": 0.9, "mid": 0.3, "high_mid": 0.3, "high": 0.3}
    burst = dict(steady, mid=0.6, high_mid=0.6, high=0.6)  # highs rise, still below the bass
    for adapt_ms, expect in ((0, 0.0), (2000, 1.0)):
        m = mapper(text.format(adapt_ms))
        run(m, [frame(bands=steady)] * 300, 1 / 60)  # 5 s of a bass-heavy mix
        assert m.step(frame(bands=burst), Controls(), 1 / 60).coord[0] == pytest.approx(expect, abs=0.02)


# ---- beat_step


def test_beat_step_lands_on_the_beat():
    m = mapper('[[layer]]\nmode="beat_step"\naxes=[0,1]\npoints=[[0.1,0.2],[0.8,0.3],[0.5,0.9]]\nglide=0.5\n')
    pts = [(0.1, 0.2), (0.8, 0.3), (0.5, 0.9)]
    c = Controls()
    for k in range(7):
        assert m.step(frame(beats=float(k)), c, 1 / 60).coord == pytest.approx(pts[k % 3])
        # first half of the beat: still there; second half: gliding to the next
        assert m.step(frame(beats=k + 0.4), c, 1 / 60).coord == pytest.approx(pts[k % 3])
        mid = m.step(frame(beats=k + 0.75), c, 1 / 60).coord
        nxt = pts[(k + 1) % 3]
        assert mid == pytest.approx(tuple((a + b) / 2 for a, b in zip(pts[k % 3], nxt)))


def test_beat_step_walks_grid_cells_every_bar():
    m = mapper('[[layer]]\nmode="beat_step"\naxes=[0]\nevery="bar"\nglide=0\n', axes=[AxisInfo("x", 5)])
    c = Controls()
    got = [m.step(frame(beats=4.0 * bar + 1.5), c, 1 / 60).coord[0] for bar in range(6)]
    assert got == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 0.0])


def test_beat_step_with_a_fixed_step_clock_at_124_bpm():
    clock = BeatClock(bpm=124.0, fps=60.0)
    m = mapper('[[layer]]\nmode="beat_step"\naxes=[0]\nglide=0.5\n', axes=[AxisInfo("x", 4, cyclic=True)])
    c = Controls()
    for _ in range(600):
        f = clock.next()
        coord = m.step(f, c, clock.dt_s).coord[0]
        if f.beat_phase < 0.5:  # first half of every beat sits exactly on a grid cell
            assert coord * 4 == pytest.approx(round(coord * 4) % 4 or round(coord * 4), abs=1e-9)


def test_beat_step_random_order_is_seeded():
    text = '[[layer]]\nmode="beat_step"\naxes=[0,1]\norder="random"\nglide=0\n'
    a = [mapper(text).step(frame(beats=float(k)), Controls(), 0.01).coord for k in range(20)]
    b = [mapper(text).step(frame(beats=float(k)), Controls(), 0.01).coord for k in range(20)]
    assert a == b
    assert len(set(a)) > 5


# ---- lfo


@pytest.mark.parametrize("wave,expect", [
    ("sine", [0.5, 1.0, 0.5, 0.0]),
    ("triangle", [0.5, 1.0, 0.5, 0.0]),
    ("saw", [0.0, 0.25, 0.5, 0.75]),
    ("square", [1.0, 1.0, 0.0, 0.0]),
])
def test_lfo_locked_to_the_beat(wave, expect):
    m = mapper(f'[[layer]]\nmode="lfo"\naxes=[0]\nwave="{wave}"\nbeats=4\ncenter=0.5\ndepth=0.5\n')
    got = [m.step(frame(beats=b + 8.0), Controls(), 1 / 60).coord[0] for b in (0.0, 1.0, 2.0, 3.0)]
    assert got == pytest.approx(expect, abs=1e-9)


def test_lfo_spread_offsets_axes():
    m = mapper('[[layer]]\nmode="lfo"\naxes=[0,1]\nwave="sine"\nbeats=1\nspread=0.25\n')
    x, y = m.step(frame(beats=0.0), Controls(), 1 / 60).coord
    assert (x, y) == pytest.approx((0.5, 1.0))


def test_predict_sees_a_saw_wrap_coming_and_leaves_the_mapper_as_it_was():
    text = '[[layer]]\nmode="lfo"\naxes=[0]\nwave="saw"\nbeats=4\ncenter=0.5\ndepth=0.5\n' \
           '[[layer]]\nmode="orbit"\naxes=[1]\nbase_hz=0.5\nradius=0.3\n'
    m, twin = mapper(text), mapper(text)
    now = frame(beats=7.8, bpm=120.0)  # 0.2 beats before the saw wraps; 0.5 s is one beat at 120 BPM
    m.step(now, Controls(), 1 / 60)
    twin.step(now, Controls(), 1 / 60)
    ahead = m.predict(now, Controls(), [k / 20 for k in range(1, 11)])  # 0.5 s in 10 steps
    xs = [c[0] for c in ahead]
    assert xs[0] > 0.9 and min(xs) < 0.1, xs  # up to the top, then the wrap to the bottom
    assert xs.index(min(xs)) == int(np.argmax(np.diff(xs) < -0.5)) + 1
    assert len({c[1] for c in ahead}) == 10  # the orbit goes on turning along the way
    later = frame(beats=7.9, bpm=120.0)
    assert m.step(later, Controls(), 1 / 60).coord == twin.step(later, Controls(), 1 / 60).coord


def test_frame_ahead_advances_the_beat_and_bar_clock():
    from vjengine.mapping.features import FrameAhead, bars_elapsed, beats_elapsed

    now = frame(beats=6.5, beats_per_bar=3, level=0.7, beat=True)
    ahead = FrameAhead(now, 1.75)
    assert beats_elapsed(ahead) == pytest.approx(8.25)
    assert bars_elapsed(ahead) == pytest.approx(8.25 / 3)
    assert ahead.level == 0.7 and not ahead.beat  # the audio held, the pulses not repeated


# ---- manual, overrides, axes, fx


def test_manual_axes_follow_controls_with_glide():
    m = mapper('glide_ms = 0\n[[layer]]\nmode="manual"\naxes=[0,1]\nvalue=0.3\n')
    c = Controls()
    c.manual[:2] = [0.2, 0.7]
    assert m.step(frame(level=1.0), c, 1 / 60).coord == pytest.approx((0.2, 0.7))
    assert m.manual_defaults == {0: 0.3, 1: 0.3}


def test_override_glides_over_a_mapped_axis_and_release_hands_back():
    m = mapper('glide_ms = 50\n[[layer]]\nmode="direct"\naxes=[0]\nattack_ms=0\nrelease_ms=0\n')
    c = Controls()
    assert m.step(frame(level=0.8), c, 0.01).coord[0] == pytest.approx(0.8)
    c.manual[0], c.override[0] = 0.1, True
    coords = run(m, [frame(level=0.8)] * 100, 0.01, c)
    assert 0.1 < coords[0][0] < 0.8  # glides, no jump
    assert coords[-1][0] == pytest.approx(0.1, abs=1e-6)
    c.override[0] = False
    assert run(m, [frame(level=0.8)] * 100, 0.01, c)[-1][0] == pytest.approx(0.8, abs=1e-6)


def test_axes_by_name_missing_axes_and_cyclic_wrap():
    axes = [AxisInfo("hue", 8, cyclic=True), AxisInfo("seed", 4)]
    m = Mapper(preset_from_text('name="n"\n[[layer]]\nmode="direct"\naxes=["seed"]\nattack_ms=0\n'
                                '[[layer]]\nmode="lfo"\naxes=["hue", "absent", 3]\nwave="saw"\nbeats=1\ncenter=1.0\n'), axes)
    coord = m.step(frame(level=0.25, beats=0.75), Controls(), 1 / 60).coord
    assert len(coord) == 2
    assert coord[1] == pytest.approx(0.25)
    assert coord[0] == pytest.approx((1.0 + 0.5 * (2 * 0.75 - 1)) % 1.0)  # wrapped into 0..1


def test_fx_mapping_and_constants():
    m = mapper('[fx]\nfeedback = 0.4\nflash = { mode = "direct", feature = "beat", attack_ms = 0, release_ms = 100 }\n'
               'zoom = { mode = "lfo", beats = 1, center = 1.1, depth = 0.1 }\n')
    c = Controls()
    out = m.step(frame(beat=True, beats=0.25), c, 0.01)
    assert out.fx["feedback"] == 0.4
    assert out.fx["flash"] == pytest.approx(1.0)
    assert out.fx["zoom"] == pytest.approx(1.2)
    after = run(m, [frame(beats=0.3)] * 10, 0.01, c)  # 100 ms later: one release time constant
    assert m.step(frame(beats=0.3), c, 0.0).fx["flash"] == pytest.approx(math.exp(-1), abs=1e-9)
    assert after


def test_same_inputs_same_outputs_for_every_shipped_preset():
    from vjengine.mapping import load_preset, shipped_preset_paths

    rng = np.random.default_rng(0)
    frames = [frame(level=float(rng.random()), bands={"bass": float(rng.random()), "high": float(rng.random())},
                    beats=i / 30, kick=bool(rng.random() < 0.1), onset=bool(rng.random() < 0.2))
              for i in range(300)]
    for path in shipped_preset_paths():
        p = load_preset(path)
        a = run(Mapper(p, DEMO_AXES), frames, 1 / 60)
        b = run(Mapper(p, DEMO_AXES), frames, 1 / 60)
        assert a == b, path
        arr = np.array(a)
        assert np.all((arr >= 0) & (arr <= 1)), path
        if p.name != "manual":
            assert arr.std(axis=0).max() > 0.01, f"{path.name} does not move on the demo bank"


def test_read_feature_knows_every_declared_feature():
    f = frame(level=0.5, bands={"bass": 0.25}, kick=True, chroma=tuple(i / 12 for i in range(12)))
    for name in FEATURES:
        assert math.isfinite(read_feature(f, name))
    assert read_feature(f, "rms") == 0.5
    assert read_feature(f, "bass") == 0.25
    assert read_feature(f, "kick") == 1.0
    assert read_feature(f, "chroma6") == 0.5
    assert read_feature(f, "one") == 1.0
