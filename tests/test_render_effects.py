"""Each post effect against what it must do (and would fail if the effect did nothing or did it wrong)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _render_util import random_bank
from vjengine.bank import grid
from vjengine.effects import MIRROR_BOTH, MIRROR_HORIZONTAL, MIRROR_VERTICAL, Effects
from vjengine.render.compositor import Compositor
from vjengine.render.effects import FlashGate, hue_matrix, output_vertices
from vjengine.render.renderer import Renderer
from vjengine.render.textures import BankTextures

SIZES, CYCLIC = (3, 4), (False, True)
COORD = [0.37, 0.61]


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("fx") / "bank", SIZES, CYCLIC, width=24, height=24, seed=11)


@pytest.fixture(scope="module")
def smooth_bank(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("fxs") / "bank", SIZES, CYCLIC, width=64, height=64, seed=5,
                       smooth=True)


def oracle(bank, coord=COORD) -> np.ndarray:
    """The plain blend (float 0..255, [H, W, 3])."""
    return grid.blend(np.asarray(bank.frames), coord, bank.sizes, bank.cyclic)[..., :3]


def render(ctx, bank, fx, coord=COORD, size=None, frames=1, dt_s=1 / 60):
    r = Renderer(ctx, bank, output_size=size, fit="stretch", progress=False, raise_errors=True)
    try:
        for _ in range(frames):
            r.render(coord, fx, dt_s)
        return r.read_rgb().astype(np.float64)
    finally:
        r.release()


def bilinear(image: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Sample ``image`` [H, W, C] at texture coordinates (s right, t down), GL style, clamped."""
    h, w = image.shape[:2]
    x = np.clip(s * w - 0.5, 0, w - 1)
    y = np.clip(t * h - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_neutral_is_the_plain_blend(ctx, bank):
    assert np.abs(render(ctx, bank, Effects()) - oracle(bank)).max() <= 1.0


def test_intensity_scales(ctx, bank):
    got = render(ctx, bank, Effects(intensity=0.4))
    assert np.abs(got - 0.4 * oracle(bank)).max() <= 1.0


def test_flash_mixes_toward_white(ctx, bank):
    got = render(ctx, bank, Effects(flash=0.5))
    expected = 0.5 * oracle(bank) + 0.5 * 255
    assert np.abs(got - expected).max() <= 1.0


def test_hue_rotation(ctx, bank):
    base = oracle(bank)
    for deg in (120.0, 45.0):
        got = render(ctx, bank, Effects(hue_deg=deg))
        expected = np.clip(base @ hue_matrix(deg).astype(np.float64).T, 0, 255)
        assert np.abs(got - expected).max() <= 1.0, deg
    m = hue_matrix(120.0)
    assert np.allclose(m @ [1, 0, 0], [0, 1, 0], atol=1e-6)  # red -> green
    assert np.allclose(m @ [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], atol=1e-6)  # grey stays grey


def test_zoom_magnifies_about_the_centre(ctx, smooth_bank):
    base = oracle(smooth_bank)
    got = render(ctx, smooth_bank, Effects(zoom=2.0))
    h, w = base.shape[:2]
    t, s = np.mgrid[0:h, 0:w]
    s = 0.5 + ((s + 0.5) / w - 0.5) / 2
    t = 0.5 + ((t + 0.5) / h - 0.5) / 2
    expected = bilinear(base, s, t)
    assert np.abs(got - expected).max() <= 2.0
    assert np.abs(got - base).mean() > 5  # it did something


@pytest.mark.parametrize("mode", [MIRROR_HORIZONTAL, MIRROR_VERTICAL, MIRROR_BOTH])
def test_mirror(ctx, bank, mode):
    base = oracle(bank)
    got = render(ctx, bank, Effects(mirror=mode))
    h, w = got.shape[:2]
    if mode in (MIRROR_HORIZONTAL, MIRROR_BOTH):
        assert np.array_equal(got, got[:, ::-1])
    if mode in (MIRROR_VERTICAL, MIRROR_BOTH):
        assert np.array_equal(got, got[::-1, :])
    # the kept quarter / half is the original image
    assert np.abs(got[: h // 2, : w // 2] - base[: h // 2, : w // 2]).max() <= 1.0
    assert np.abs(got - base).mean() > 10


@pytest.mark.parametrize("segments", [4, 8])
def test_kaleidoscope_has_the_wedge_symmetry(ctx, smooth_bank, segments):
    got = render(ctx, smooth_bank, Effects(kaleidoscope=segments), size=(96, 96))
    base = render(ctx, smooth_bank, Effects(), size=(96, 96))
    # The wedge edges are mirror lines (the axes, and for 8 wedges the diagonals too), and rotation
    # by two wedges is a symmetry.
    def close(a, b):
        diff = np.abs(a - b)
        return diff.mean() < 1.0 and np.percentile(diff, 99) <= 8

    assert close(got, got[:, ::-1]) and close(got, got[::-1, :]) and close(got, got[::-1, ::-1])
    if segments == 8:
        assert close(got, np.rot90(got)) and close(got, got.transpose(1, 0, 2))
    else:
        assert not close(got, np.rot90(got))
    assert np.abs(got - base).mean() > 10  # it did something
    # geometry check: every output vertex maps inside the image
    verts = output_vertices((64, 64), (96, 96), "stretch", Effects(kaleidoscope=segments))
    assert verts[:, 2:].min() >= -1e-6 and verts[:, 2:].max() <= 1 + 1e-6


def test_kaleidoscope_covers_the_whole_viewport():
    for segments in (2, 3, 6, 12):
        verts = output_vertices((64, 48), (160, 90), "fill", Effects(kaleidoscope=segments))
        tris = verts[:, :2].reshape(-1, 3, 2).astype(np.float64)
        e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
        area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
        x0, y0 = verts[:, 0].min(), verts[:, 1].min()
        x1, y1 = verts[:, 0].max(), verts[:, 1].max()
        assert math.isclose(area, (x1 - x0) * (y1 - y0), rel_tol=1e-4), segments


def test_feedback_trails_mix_the_previous_frame(ctx, bank):
    a, b = [0.0, 0.0], [1.0, 0.5]
    r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True)
    try:
        fx = Effects(feedback=0.5)
        r.render(a, fx, 1 / 60)
        first = r.read_rgb().astype(np.float64)
        assert np.abs(first - oracle(bank, a)).max() <= 1.0  # no trail on the first frame
        r.render(b, fx, 1 / 60)
        second = r.read_rgb().astype(np.float64)
        expected = 0.5 * oracle(bank, b) + 0.5 * first
        assert np.abs(second - expected).max() <= 1.5
        # frame-rate independence: two 1/120 s frames keep as much as one 1/60 s frame
        r.render(b, fx, 1 / 120)
        third = r.read_rgb().astype(np.float64)
        keep = 0.5 ** 0.5
        assert np.abs(third - (keep * second + (1 - keep) * oracle(bank, b))).max() <= 1.5
        # intensity applies to the output only, not inside the trail
        r.render(b, Effects(feedback=0.5, intensity=0.5), 1 / 60)
        dim = r.read_rgb().astype(np.float64)
        r.render(b, Effects(feedback=0.5), 1 / 60)
        full = r.read_rgb().astype(np.float64)
        state_before = 0.5 * oracle(bank, b) + 0.5 * third
        assert np.abs(dim - 0.5 * state_before).max() <= 2.0
        assert np.abs(full - (0.5 * oracle(bank, b) + 0.5 * state_before)).max() <= 2.0
    finally:
        r.release()


def test_blackout_is_black(ctx, bank):
    assert render(ctx, bank, Effects(blackout=True)).max() == 0


def white_frames(ctx, bank, fx, seconds, fps=60):
    """Per frame, whether the output was flashed white."""
    r = Renderer(ctx, bank, output_size=(8, 8), fit="stretch", progress=False, raise_errors=True)
    out = []
    try:
        for _ in range(int(seconds * fps)):
            r.render(COORD, fx, 1 / fps)
            out.append(r.read_rgb().min() >= 250)
    finally:
        r.release()
    return np.array(out)


def onsets(flags: np.ndarray) -> np.ndarray:
    return np.flatnonzero(flags & ~np.r_[False, flags[:-1]])


def test_strobe_is_capped_at_three_per_second(ctx, bank):
    fps = 60
    fast = white_frames(ctx, bank, Effects(strobe_hz=25.0), 4.0, fps)
    starts = onsets(fast)
    assert len(starts) >= 10  # it strobes ...
    assert np.diff(starts).min() >= fps / 3.0 - 1e-9  # ... never more than 3 per second
    slow = white_frames(ctx, bank, Effects(strobe_hz=2.0), 4.0, fps)
    assert 7 <= len(onsets(slow)) <= 8  # an allowed rate is kept
    raised = white_frames(ctx, bank, Effects(strobe_hz=25.0, strobe_max_hz=10.0), 2.0, fps)
    assert np.diff(onsets(raised)).min() >= 6


def test_flash_gate_caps_beat_flashes_too():
    gate = FlashGate()
    shown = []
    for i in range(240):  # a flash request every 4 frames at 60 fps = 15 per second
        request = 1.0 if i % 4 == 0 else 0.5
        level, _ = gate.update(Effects(flash=request), 1 / 60)
        shown.append(level)
    shown = np.array(shown)
    rises = np.flatnonzero(np.diff(shown) > 0.1) + 1
    assert len(rises) >= 8 and np.diff(rises).min() >= 20


def test_crossfade_between_two_banks(ctx, tmp_path, bank):
    other = random_bank(tmp_path / "other", (2, 2, 2), width=24, height=24, seed=99)
    ta = BankTextures(ctx, bank, progress=False)
    tb = BankTextures(ctx, other, progress=False)
    c = Compositor(ctx, output_size=(24, 24), fit="stretch", raise_errors=True)
    try:
        coord2 = [0.2, 0.7, 0.4]
        for mix in (0.0, 0.3, 1.0):
            c.render(a=(ta, COORD), b=(tb, coord2, mix), fx=Effects())
            expected = (1 - mix) * oracle(bank) + mix * oracle(other, coord2)
            assert np.abs(c.read_rgb() - expected).max() <= 1.5, mix
        c.render(a=(tb, coord2), b=(ta, COORD, 0.25), fx=Effects())  # the other way round
        expected = 0.75 * oracle(other, coord2) + 0.25 * oracle(bank)
        assert np.abs(c.read_rgb() - expected).max() <= 1.5
    finally:
        c.release()
        ta.release()
        tb.release()


def test_bad_parameters_do_not_raise(ctx, bank):
    fx = Effects(intensity=float("nan"), zoom=-3, hue_deg=float("inf"), kaleidoscope=999, feedback=7)
    got = render(ctx, bank, fx)
    assert got.shape == (24, 24, 3)


def test_crossfade_within_one_bank_keeps_the_trail(ctx, bank):
    """Two presets on one bank: the renderer crossfades with itself; its trail state is not disturbed."""
    r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True)
    try:
        a, b = [0.1, 0.2], [0.9, 0.6]
        r.render(a, Effects(feedback=0.5))
        first = r.read_rgb().astype(np.float64)
        r.compositor.render(a=(r.textures, a), b=(r.textures, b, 0.5), fx=Effects(feedback=0.5))
        mixed = 0.5 * oracle(bank, a) + 0.5 * oracle(bank, b)
        expected = 0.5 * mixed + 0.5 * first
        assert np.abs(r.read_rgb() - expected).max() <= 2.0
    finally:
        r.release()


def test_only_the_sampled_texels_are_blended_and_the_output_is_unchanged(ctx, tmp_path):
    from vjengine.render.compositor import needed_rect

    # a 16:9 fill of a square bank samples the middle 9/16 of its rows
    verts = output_vertices((64, 64), (160, 90), "fill", Effects())
    x, y, w, h = needed_rect(verts[:, 2:], (64, 64))
    assert (x, w) == (0, 64) and 36 <= h <= 42 and abs((y + h / 2) - 32) <= 1
    # zoom 2 samples about the middle half on each axis
    verts = output_vertices((64, 64), (64, 64), "stretch", Effects(zoom=2.0))
    x, y, w, h = needed_rect(verts[:, 2:], (64, 64))
    assert 32 <= w <= 38 and 32 <= h <= 38
    # and the output is the same as blending everything: compare fill with an exact crop
    bank = random_bank(tmp_path / "b", (3, 2), width=32, height=32, seed=8, smooth=True)
    r = Renderer(ctx, bank, output_size=(64, 36), fit="fill", progress=False, raise_errors=True)
    try:
        r.render([0.4, 0.6])
        got = r.read_rgb().astype(float)
        full = oracle(bank, [0.4, 0.6])
        t, s = np.mgrid[0:36, 0:64]
        expected = bilinear(full, (s + 0.5) / 64, 0.5 + ((t + 0.5) / 36 - 0.5) * 36 / 64)
        assert np.abs(got - expected).max() <= 2.0
    finally:
        r.release()


def catmull_rom_1d(n_out: int, n_in: int) -> np.ndarray:
    """Resampling matrix [n_out, n_in] of Catmull-Rom (a = -0.5) at GL texel centres, clamped edges."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = (i + 0.5) / n_out * n_in - 0.5
        base = int(np.floor(x))
        f = x - base
        w = [f * (-0.5 + f * (1 - 0.5 * f)), 1 + f * f * (-2.5 + 1.5 * f), f * (0.5 + f * (2 - 1.5 * f)),
             f * f * (-0.5 + 0.5 * f)]
        for k, wk in enumerate(w):
            m[i, min(max(base - 1 + k, 0), n_in - 1)] += wk
    return m


def test_cubic_scale_filter_is_catmull_rom(ctx, smooth_bank, bank):
    for b, size, tol in ((smooth_bank, (160, 120), 3.0), (bank, (60, 48), None)):
        base = oracle(b)
        h, w = base.shape[:2]
        my, mx = catmull_rom_1d(size[1], h), catmull_rom_1d(size[0], w)
        expected = np.clip(np.einsum("ij,jkc,lk->ilc", my, base, mx, optimize=True), 0, 255)
        errors = {}
        for scale_filter in ("cubic", "linear"):
            r = Renderer(ctx, b, output_size=size, fit="stretch", progress=False, raise_errors=True,
                         scale_filter=scale_filter)
            try:
                r.render(COORD)
                errors[scale_filter] = np.abs(r.read_rgb() - expected)
            finally:
                r.release()
        if tol is not None:  # smooth content: close to the exact filter
            assert errors["cubic"].max() <= tol
        else:  # detailed content: much closer to Catmull-Rom than bilinear is
            assert errors["cubic"].mean() < 2.0 and errors["cubic"].mean() * 3 < errors["linear"].mean()
