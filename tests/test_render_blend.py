"""The GL blend against the numpy oracle (vjengine.bank.grid), on a real headless EGL context."""

from __future__ import annotations

import numpy as np
import pytest

from _render_util import assert_no_gl_error, random_bank
from vjengine.bank import grid
from vjengine.render.compositor import blend_taps, program_k
from vjengine.render.renderer import Renderer
from vjengine.render.textures import plan_layout

CASES = [  # sizes, cyclic, channels
    ((5,), (False,), 3),
    ((6,), (True,), 4),
    ((3, 4), (False, True), 3),
    ((2, 3, 3), (True, False, False), 4),
    ((2, 3, 2, 3), (False, True, False, True), 3),
]


def coordinates(sizes, cyclic, rng, count=24):
    """Random points plus cell edges, the clamped ends and the cyclic wrap on every axis."""
    dims = len(sizes)
    out = [rng.random(dims) for _ in range(count)]
    for d, (n, cyc) in enumerate(zip(sizes, cyclic)):
        specials = [0.0, 1.0, -0.3, 1.4, 0.999, 1e-6]
        specials += [i / n for i in range(n + 1)] if cyc else [i / (n - 1) for i in range(n)]
        specials += [(i + 0.5) / n for i in range(n)] if cyc else []
        for value in specials:
            c = rng.random(dims)
            c[d] = value
            out.append(c)
    out.append(np.zeros(dims))
    out.append(np.ones(dims))
    return out


@pytest.mark.parametrize("upload", ["stream", "eager"])
@pytest.mark.parametrize("sizes,cyclic,channels", CASES, ids=lambda v: str(v))
def test_gl_blend_matches_numpy_oracle(ctx, tmp_path, sizes, cyclic, channels, upload):
    bank = random_bank(tmp_path / "bank", sizes, cyclic, channels=channels, seed=len(sizes) + channels)
    frames = np.asarray(bank.frames)
    rng = np.random.default_rng(1)
    # stream_budget_ms=0: only the frames each blend needs get uploaded, so every blend tests that path
    r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True, upload=upload, stream_budget_ms=0)
    try:
        for coord in coordinates(sizes, cyclic, rng):
            r.render(coord)
            expected = grid.blend(frames, coord, sizes, cyclic)[..., :3]
            got = r.read_rgb().astype(np.float64)
            assert got.shape == expected.shape
            worst = np.abs(got - expected).max()
            assert worst <= 1.0, f"coord {coord.tolist()}: off by {worst:.2f}/255"
            # The bank-resolution image is the same blend.
            assert np.abs(r.read_image_rgb() - expected).max() <= 1.0
        assert_no_gl_error(ctx)
    finally:
        r.release()


def test_split_arrays_give_the_same_result(ctx, tmp_path):
    sizes, cyclic = (3, 2, 2), (False, True, False)
    bank = random_bank(tmp_path / "bank", sizes, cyclic, seed=7)
    frame_mb = bank.width * bank.height * bank.channels / (1 << 20)
    whole = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True)
    split = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True, memory_budget_mb=frame_mb * 2.5)
    try:
        assert whole.textures.layout.arrays == 1
        assert split.textures.layout.arrays == 6  # two frames per array
        rng = np.random.default_rng(3)
        for coord in coordinates(sizes, cyclic, rng, count=12):
            whole.render(coord)
            split.render(coord)
            assert np.array_equal(whole.read_rgb(), split.read_rgb()), coord
    finally:
        whole.release()
        split.release()


def test_layout_respects_layer_limit_and_budget():
    layout = plan_layout(count=5000, frame_bytes=1 << 20, max_layers=2048, memory_budget_mb=10_000)
    assert layout.layers_per_array == 2048 and layout.arrays == 3
    assert layout.locate(2048) == (1, 0) and layout.locate(4999) == (2, 903)
    layout = plan_layout(count=10, frame_bytes=1 << 20, max_layers=2048, memory_budget_mb=3.5)
    assert layout.layers_per_array == 3 and layout.arrays == 4
    assert plan_layout(count=4, frame_bytes=1 << 20, max_layers=2048, memory_budget_mb=0.001).arrays == 4


def test_taps_merge_repeats_and_drop_zero_weights():
    taps = blend_taps([0.5, 0.25], (3, 5), (False, False))  # exactly on a grid point
    assert taps.indices.tolist() == [1 * 5 + 1] and taps.weights.tolist() == [1.0]
    taps = blend_taps([0.3], (1,), (False,))
    assert len(taps.indices) == 1
    assert program_k(3) == 4 and program_k(16) == 16 and program_k(1) == 1


def test_output_size_and_fit_modes(ctx, tmp_path):
    bank = random_bank(tmp_path / "bank", (2,), width=16, height=16, seed=2)
    for fit in ("fit", "fill", "stretch"):
        r = Renderer(ctx, bank, output_size=(64, 32), fit=fit, progress=False, raise_errors=True)
        r.render([0.0])
        out = r.read_rgb()
        assert out.shape == (32, 64, 3)
        bars = out[:, :16].max() == 0 and out[:, 48:].max() == 0
        assert bars == (fit == "fit"), fit
        if fit == "fit":  # the image is a 32x32 square in the middle: 2x upscale of the bank
            centre = out[:, 16:48].astype(int)
            frame = np.asarray(bank.frames[0])
            assert np.abs(centre[1::2, 1::2].mean() - frame.mean()) < 3
        if fit == "fill":  # 64x64 image cropped to rows 16..48 of it
            assert out.min(axis=(0, 1)).sum() >= 0 and out[:, :16].max() > 0
        r.release()


def test_warm_up_then_render_still_matches(ctx, tmp_path):
    sizes, cyclic = (2, 3), (True, False)
    bank = random_bank(tmp_path / "bank", sizes, cyclic, seed=12)
    r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True)
    try:
        r.warm_up()
        assert r.compositor.programs >= 3 * 12  # K = 1, 2, 4; every switch combination
        assert_no_gl_error(ctx)
        coord = [0.8, 0.4]
        r.render(coord)
        expected = grid.blend(np.asarray(bank.frames), coord, sizes, cyclic)
        assert np.abs(r.read_rgb() - expected).max() <= 1.0
    finally:
        r.release()


def test_set_bank_switches_banks_of_another_size(ctx, tmp_path):
    a = random_bank(tmp_path / "a", (3,), seed=1)
    b = random_bank(tmp_path / "b", (2, 2), width=30, height=18, seed=2)
    r = Renderer(ctx, a, output_size=(40, 40), fit="stretch", progress=False, raise_errors=True)
    try:
        r.set_bank(b)
        r.resize((30, 18))
        r.render([0.25, 0.75])
        expected = grid.blend(np.asarray(b.frames), [0.25, 0.75], b.sizes, b.cyclic)
        assert np.abs(r.read_rgb() - expected).max() <= 1.0
    finally:
        r.release()


def test_render_never_raises_in_show_mode(ctx, tmp_path, caplog):
    bank = random_bank(tmp_path / "bank", (3,), seed=3)
    r = Renderer(ctx, bank, fit="stretch", progress=False)
    try:
        r.render([0.5])
        good = r.read_rgb()
        r.render([0.1, 0.2, 0.3])  # wrong number of axes: logged once, frame skipped
        r.render([0.1, 0.2, 0.3])
        assert r.failures == 2
        assert sum("render failed" in m for m in caplog.messages) == 1
        assert np.array_equal(r.read_rgb(), good)  # the last good frame stays
    finally:
        r.release()


def test_headless_context_failure_is_a_device_error(monkeypatch):
    import moderngl

    from vjengine.errors import DeviceError
    from vjengine.render.context import headless_context

    def fail(**_kwargs):
        raise Exception("eglGetDisplay failed")

    monkeypatch.setattr(moderngl, "create_standalone_context", fail)
    with pytest.raises(DeviceError, match="EGL.*eglGetDisplay failed"):
        headless_context()


def test_streaming_upload_shows_the_first_frame_before_the_whole_bank(ctx, tmp_path):
    sizes = (6, 5)
    bank = random_bank(tmp_path / "bank", sizes, width=16, height=16, seed=30)
    r = Renderer(ctx, bank, fit="stretch", progress=False, raise_errors=True, stream_budget_ms=0)
    try:
        assert r.textures.resident.sum() == 0
        coord = [0.5, 0.3]
        r.render(coord)
        assert r.textures.resident.sum() == 4 and not r.textures.complete
        expected = grid.blend(np.asarray(bank.frames), coord, sizes, (False, False))
        assert np.abs(r.read_rgb() - expected).max() <= 1.0
        r.compositor.stream_budget_s = 1.0  # now stream the rest
        r.render(coord)
        assert r.textures.complete and r.textures.resident.all()
        for coord in ([0.0, 0.0], [1.0, 1.0], [0.77, 0.12]):
            r.render(coord)
            expected = grid.blend(np.asarray(bank.frames), coord, sizes, (False, False))
            assert np.abs(r.read_rgb() - expected).max() <= 1.0
    finally:
        r.release()


@pytest.mark.parametrize("upload", ["eager", "stream"])
def test_upload_progress_bar_runs_to_completion(ctx, tmp_path, capsys, upload):
    bank = random_bank(tmp_path / "bank", (4, 3), seed=5)
    r = Renderer(ctx, bank, fit="stretch", progress=True, raise_errors=True, upload=upload, stream_budget_ms=1000)
    try:
        r.render([0.5, 0.5])
        assert r.textures.complete and r.textures._bar is None  # the bar was closed
        assert "uploading bank" in capsys.readouterr().err
    finally:
        r.release()


def test_render_scale_and_tap_limit_are_cheaper_approximations(ctx, tmp_path):
    """The frame-rate governor's levers: a smaller blend, and only the nearest cells."""
    from vjengine.render.compositor import blend_taps, nearest_taps
    from vjengine.render.renderer import Renderer

    bank = random_bank(tmp_path / "b", (3, 3), width=64, height=48, smooth=True)
    r = Renderer(ctx, bank, output_size=(64, 48), progress=False, raise_errors=True, upload="eager")
    coord = (0.3, 0.6)
    r.render(coord)
    full = r.read_rgb().astype(int)
    r.set_render_scale(0.5)
    r.render(coord)
    assert r.image.size == (32, 24)
    half = r.read_rgb().astype(int)
    assert half.shape == full.shape
    assert 0 < np.abs(half - full).mean() < 12  # the same picture, softer
    r.set_render_scale(1.0)
    r.render(coord)
    assert np.array_equal(r.read_rgb().astype(int), full)  # restored exactly
    taps = blend_taps(coord, bank.sizes, bank.cyclic)
    near = nearest_taps(taps, 1)
    assert len(near.indices) == 1 and near.indices[0] == taps.indices[np.argmax(taps.weights)]
    r.max_k = 1
    r.render(coord)
    one = r.read_rgb().astype(int)
    r.max_k = None
    r2 = Renderer(ctx, bank, output_size=(64, 48), progress=False, raise_errors=True, upload="eager")
    grid_coord = [bank.cell(int(near.indices[0]))[d] / (bank.sizes[d] - 1) for d in range(2)]
    r2.render(grid_coord)
    assert np.array_equal(one, r2.read_rgb().astype(int))  # exactly the nearest frame
    assert_no_gl_error(ctx)
