"""Builder pieces that need no model: the spec, the plan, interpolation, the seam report, preview."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _builder_fixtures import REPO, bank_cli, cli_env, write_spec
from bank_builder.errors import SpecError
from bank_builder.interpolate import lp_direction, nested_slerp, perturb_keep_norm, polyline, slerp
from bank_builder.plan import GridPlan, cell_params, denoise_start
from bank_builder.seams import seam_report, summarize, write_seam_report
from bank_builder.spec import load_spec, parse_spec

BASE = """
model = "some/model"
steps = 4
size = [64, 48]
seed = 3
prompt = "a red cat"
"""


def spec_of(extra: str, base: str = BASE, tmp: Path | None = None):
    return parse_spec(base + extra, source="test.toml", base_dir=tmp or ".")


AXIS = '\n[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 5\n'


# --- spec -----------------------------------------------------------------------------------

def test_presets_validate():
    presets = sorted((REPO / "presets" / "banks").glob("*.toml"))
    assert len(presets) >= 3
    kinds = set()
    for p in presets:
        spec = load_spec(p)
        kinds |= {a.kind for a in spec.axes}
        assert 1 <= len(spec.axes) <= 4
    assert {"prompt", "seed", "strength"} <= kinds


def test_valid_spec_values():
    spec = spec_of(AXIS + '\n[[axes]]\nkind = "guidance"\nrange = [1.0, 9.0]\ncount = 5\ndensify = 2\n')
    assert spec.width == 64 and spec.height == 48 and spec.sizes == (5, 5) and spec.count == 25
    assert spec.axes[0].values() == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert spec.axes[1].values() == (1.0, 3.0, 5.0, 7.0, 9.0)
    assert spec.axes[1].keyframe_indices() == (0, 2, 4)
    assert not spec.model_is_path  # a hub id
    assert spec.digest() == spec_of(AXIS + '\n[[axes]]\nkind = "guidance"\nrange = [1.0, 9.0]\ncount = 5\ndensify = 2\n').digest()


@pytest.mark.parametrize("extra, key", [
    ("colour = 3\n" + AXIS, "colour"),
    (AXIS + "wobble = 1\n", "axes[0].wobble"),
    (AXIS.replace('"seed"', '"zoom"'), "axes[0].kind"),
    (AXIS.replace("count = 5", "count = 1"), "axes[0].count"),
    (AXIS + "cyclic = 1\n", "axes[0].cyclic"),
    (AXIS.replace("[1, 2]", "[1]"), "axes[0].seeds"),
    ('\n[[axes]]\nkind = "guidance"\nrange = [1.0, 9.0]\ncount = 5\ncyclic = true\n', "axes[0].cyclic"),
    ('\n[[axes]]\nkind = "guidance"\nrange = [0.0, 9.0]\ncount = 5\n', "axes[0].range"),
    ('\n[[axes]]\nkind = "strength"\nrange = [0.2, 0.8]\ncount = 5\n', "axes[0]"),
    ('\n[[axes]]\nkind = "token_weight"\nrange = [0.5, 2]\ncount = 5\n', "axes[0].token"),
    ('\n[[axes]]\nkind = "jitter"\nradius = 0.2\ncount = 5\n', "axes[0].radius"),
    ('\n[[axes]]\nkind = "prompt"\nprompts = ["a", "b"]\ncount = 5\n', "prompt"),
    (AXIS + AXIS, "axes[1].name"),
    (AXIS.replace("count = 5", "count = 6\ncyclic = true\ndensify = 4"), "axes[0].densify"),
    (AXIS + "adaptive = 2\n", "axes[0].adaptive"),
])
def test_spec_errors_name_the_key(extra, key):
    with pytest.raises(SpecError) as err:
        spec_of(extra)
    assert f"test.toml: {key}" in str(err.value)


def test_size_not_multiple_of_8():
    with pytest.raises(SpecError, match=r"size: width must be a multiple of 8 .*got 500; try 496 or 504"):
        spec_of(AXIS, BASE.replace("[64, 48]", "[500, 48]"))


def test_img2img_needs_init_image_and_enough_steps(tmp_path):
    with pytest.raises(SpecError, match="strength: img2img strength needs init_image"):
        spec_of(AXIS + "", BASE + "strength = 0.5\n")
    img = tmp_path / "art.png"
    img.write_bytes(b"not checked here")
    with pytest.raises(SpecError, match=r"axes\[0\].range: strength 0.1 with 4 steps runs no denoising step"):
        spec_of('init_image = "art.png"\n[[axes]]\nkind = "strength"\nrange = [0.1, 0.9]\ncount = 3\n', tmp=tmp_path)
    with pytest.raises(SpecError, match="init_image: file not found"):
        spec_of('init_image = "missing.png"\n' + AXIS, tmp=tmp_path)
    ok = spec_of('init_image = "art.png"\n[[axes]]\nkind = "strength"\nrange = [0.3, 0.9]\ncount = 3\n', tmp=tmp_path)
    assert ok.img2img and ok.init_image == str(img.resolve())


def test_toml_syntax_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="bad.toml: not valid TOML"):
        load_spec(write_spec(tmp_path, "model = \n", "bad.toml"))
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml")


def test_cli_spec_error_exits_2_without_torch(tmp_path):
    spec = write_spec(tmp_path, BASE + "colour = 1\n" + AXIS)
    probe = ("import sys; from vjengine.cli import bank_main; rc = bank_main(['build', sys.argv[1], '-o', sys.argv[2]]);"
             "print('TORCH' if 'torch' in sys.modules else 'NOTORCH'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", probe, str(spec), str(tmp_path / "b")], capture_output=True,
                       text=True, env=cli_env(), timeout=120)
    assert r.returncode == 2
    assert "spec.toml: colour: unknown key" in r.stderr
    assert "NOTORCH" in r.stdout
    dry = write_spec(tmp_path, BASE + AXIS.replace("count = 5", "count = 9\ndensify = 4"), "ok.toml")
    r = subprocess.run([sys.executable, "-c", probe.replace("'-o', sys.argv[2]]", "'-o', sys.argv[2], '--dry-run']"),
                        str(dry), str(tmp_path / "b")], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 keyframes by the full pipeline, 6 in-betweens" in r.stdout
    assert "NOTORCH" in r.stdout
    r = subprocess.run(bank_cli("build", "--help"), capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0 and "--batch-size" in r.stdout


# --- plan -----------------------------------------------------------------------------------

def test_cell_params_and_start_step(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    spec = spec_of('init_image = "a.png"\n[[axes]]\nkind = "strength"\nrange = [0.5, 1.0]\ncount = 3\n'
                   '[[axes]]\nkind = "token_weight"\ntoken = "red"\nrange = [0.0, 2.0]\ncount = 3\n', tmp=tmp_path)
    p = cell_params(spec, (1, 2))
    assert p.strength == 0.75 and p.token_weights == (("red", 2.0),) and p.seed_position is None
    assert [denoise_start(4, s) for s in (0.5, 0.75, 1.0)] == [2, 1, 0]
    assert denoise_start(4, None) == 0


def test_plan_keyframes_and_sources():
    spec = spec_of('\n[[axes]]\nkind = "seed"\nseeds = [1, 2, 3]\ncount = 6\ncyclic = true\ndensify = 3\n'
                   '[[axes]]\nkind = "guidance"\nrange = [1.0, 5.0]\ncount = 5\ndensify = 2\n')
    plan = GridPlan(spec)
    assert plan.uniform_keys == ((0, 3), (0, 2, 4))
    keys = plan.uniform_keys
    assert len(plan.keyframe_cells(keys)) == 6 and len(plan.dense_cells(keys)) == 24
    # a keyframe is its own source
    corners, fr = plan.sources(plan.flat((3, 2)), keys)
    assert corners == [plan.flat((3, 2))] and fr == []
    # off-keyframe on both axes: 4 corners; the cyclic axis wraps 5 -> between 3 and 0 (=6)
    corners, fr = plan.sources(plan.flat((5, 1)), keys)
    assert corners == [plan.flat(c) for c in [(3, 0), (3, 2), (0, 0), (0, 2)]]
    assert fr == pytest.approx([2 / 3, 0.5])


def test_adaptive_refines_where_keyframes_differ_most():
    spec = spec_of('\n[[axes]]\nkind = "guidance"\nrange = [1.0, 9.0]\ncount = 9\ndensify = 4\nadaptive = 1\n')
    plan = GridPlan(spec)
    frames = {0: np.zeros((4, 4, 3)), 4: np.full((4, 4, 3), 10.0), 8: np.full((4, 4, 3), 90.0)}
    keys = plan.refine(lambda i: frames[i])
    assert keys == ((0, 4, 6, 8),)  # the 4..8 segment changes most: its midpoint becomes a keyframe


# --- interpolation --------------------------------------------------------------------------

def test_slerp_properties():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1000), rng.standard_normal(1000)
    assert np.array_equal(slerp(a, b, 0.0), a) and np.array_equal(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    # on the arc: equal angles to both ends, norm between the two
    cos = lambda x, y: np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y)
    assert cos(mid, a) == pytest.approx(cos(mid, b), rel=1e-9)
    assert np.linalg.norm(mid) == pytest.approx((np.linalg.norm(a) + np.linalg.norm(b)) / 2)
    # a lerp of two independent noises shrinks the norm; slerp does not
    assert np.linalg.norm((a + b) / 2) < 0.8 * np.linalg.norm(mid)
    assert np.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel: lerp
    pts = [a, b, -a]
    assert np.allclose(polyline(pts, 1.5), slerp(b, -a, 0.5))
    assert np.allclose(polyline(pts, 2.5, cyclic=True), slerp(-a, a, 0.5))


def test_nested_slerp_matches_axis_by_axis():
    rng = np.random.default_rng(1)
    c = [rng.standard_normal((2, 3)) for _ in range(4)]
    got = nested_slerp(c, [0.25, 0.75])
    want = slerp(slerp(c[0], c[2], 0.25), slerp(c[1], c[3], 0.25), 0.75)
    assert np.allclose(got, want)
    assert np.allclose(nested_slerp(c, [0.0, 1.0]), c[1])


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_lp_direction_norm(p):
    d = lp_direction((4, 8, 8), p, seed=5)
    size = np.max(np.abs(d)) if math.isinf(p) else np.mean(np.abs(d) ** p) ** (1 / p)
    assert size == pytest.approx(1.0)
    assert np.array_equal(d, lp_direction((4, 8, 8), p, seed=5))
    noise = np.random.default_rng(2).standard_normal((4, 8, 8))
    out = perturb_keep_norm(noise, 0.2 * d)
    assert np.linalg.norm(out) == pytest.approx(np.linalg.norm(noise))


# --- seam report on a known bank ------------------------------------------------------------

def test_seam_report_known_values(tmp_path):
    levels = [0, 10, 20, 50]  # grey frames: MAD between neighbours is the level step
    frames = np.stack([np.full((16, 16, 3), v, np.uint8) for v in levels])
    rep = seam_report(frames, (4,), (False,), ("x",))
    ax = rep["axes"][0]
    assert ax["mad"] == [10.0, 10.0, 30.0]
    assert ax["stats"]["mad_median"] == 10.0 and ax["stats"]["mad_max"] == 30.0
    assert ax["worst"][0]["from"] == [2] and ax["worst"][0]["to"] == [3]
    cyc = seam_report(frames, (4,), (True,), ("x",))["axes"][0]
    assert cyc["mad"] == [10.0, 10.0, 30.0, 50.0] and cyc["worst"][0]["from"] == [3] and cyc["worst"][0]["to"] == [0]
    # identical frames: SSIM 1; a structural change lowers it
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    two = np.stack([tex, tex, 255 - tex]).astype(np.uint8)
    r2 = seam_report(two, (3,), (False,), ("y",))["axes"][0]
    assert r2["ssim"][0] == pytest.approx(1.0) and r2["ssim"][1] < 0.2
    # 2-D: per-axis arrays have the grid shape with that axis one shorter
    grid = np.stack([np.full((8, 8, 3), 10 * i + j, np.uint8) for i in range(3) for j in range(2)])
    r3 = seam_report(grid, (3, 2), (False, False), ("a", "b"))
    assert np.shape(r3["axes"][0]["mad"]) == (2, 2) and np.allclose(r3["axes"][0]["mad"], 10.0)
    assert np.shape(r3["axes"][1]["mad"]) == (3, 1) and np.allclose(r3["axes"][1]["mad"], 1.0)
    js, png = write_seam_report(r3, tmp_path)
    assert js.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summarize(r3)["axes"][1]["mad_median"] == 1.0


def test_missing_build_extra_gives_the_install_hint(tmp_path):
    spec = write_spec(tmp_path, BASE + AXIS)
    probe = ("import sys; sys.modules['torch'] = None; sys.modules['diffusers'] = None;"
             "from vjengine.cli import bank_main; sys.exit(bank_main(['build', sys.argv[1], '-o', sys.argv[2]]))")
    r = subprocess.run([sys.executable, "-c", probe, str(spec), str(tmp_path / "b")], capture_output=True,
                       text=True, env=cli_env(), timeout=120)
    assert r.returncode == 2
    assert "pip install 'vjengine[build]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_build_refuses_to_replace_a_folder_that_is_not_a_bank(tmp_path):
    from bank_builder.build import build_bank
    from bank_builder.errors import WorkDirError

    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(WorkDirError, match="photos: exists and is not a bank"):
        build_bank(spec_of(AXIS), precious)
    assert (precious / "holiday.jpg").read_bytes() == b"jpeg"


def test_spec_reads_through_vjengine_config_build(monkeypatch):
    """One validated TOML reader for presets, cue sheets, setlists and bank specs (config.build)."""
    import vjengine.config as config

    calls = []
    real = config.build

    def spy(cls, table, source, key=""):
        calls.append((cls.__name__, key))
        return real(cls, table, source, key)

    monkeypatch.setattr("bank_builder.spec.config_build", spy)
    spec = spec_of(AXIS + '[[lora]]\nfile = "a/b"\n')
    assert calls == [("_SpecToml", ""), ("_SeedAxisToml", "axes[0]")]  # [[lora]] tables: nested in _SpecToml
    assert spec.loras[0].name == "b" and not spec.loras[0].file_is_path
    # config's own wording, as for a preset
    with pytest.raises(SpecError, match=r"test.toml: steps: must be an integer, got 'four'"):
        spec_of(AXIS, base=BASE.replace("steps = 4", 'steps = "four"'))
    with pytest.raises(SpecError, match=r"test.toml: axes\[0\].count: must be in \[2, 10000\], got 1"):
        spec_of(AXIS.replace("count = 5", "count = 1"))
    with pytest.raises(SpecError, match=r"test.toml: lora\[0\].file: is required"):
        spec_of(AXIS + "[[lora]]\nweight = 0.5\n")
    with pytest.raises(SpecError, match=r"test.toml: scheduler: must be one of 'default', "):
        spec_of('scheduler = "fast"\n' + AXIS)
