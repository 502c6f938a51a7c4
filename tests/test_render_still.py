"""`vj still`: one frame headless to a PNG, the same pixels as the renderer; bad input exits 2."""

from __future__ import annotations

import numpy as np
import pytest

from _render_util import random_bank
from vjengine.bank import grid
from vjengine.cli import main


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("still") / "bank", (3, 4), (False, True), width=32, height=24,
                       seed=4)


def read_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_still_writes_the_blend(tmp_path, bank):
    out = tmp_path / "frame.png"
    assert main(["still", str(bank.path), "--coord", "0.3,0.7", "-o", str(out)]) == 0
    got = read_png(out).astype(float)
    expected = grid.blend(np.asarray(bank.frames), [0.3, 0.7], bank.sizes, bank.cyclic)
    assert got.shape == (24, 32, 3)
    assert np.abs(got - expected).max() <= 1.0


def test_still_size_fit_and_effects(tmp_path, bank):
    out = tmp_path / "big.png"
    assert main(["still", str(bank.path), "--coord", "0.5,0.5", "-o", str(out), "--size", "96x48",
                 "--fit", "fit", "--mirror", "horizontal", "--hue", "90"]) == 0
    got = read_png(out)
    assert got.shape == (48, 96, 3)
    assert got[:, :16].max() == 0 and got[:, 80:].max() == 0  # bars beside a 64x48 image
    image = got[:, 16:80].astype(int)
    assert np.abs(image - image[:, ::-1]).max() <= 1  # mirrored


@pytest.mark.parametrize("argv,needle", [
    (["--coord", "0.3"], "2 axes"),
    (["--coord", "0.3,abc"], "abc"),
    (["--coord", "0.3,1.5"], "between 0 and 1"),
    (["--size", "big"], "--size"),
    (["--zoom", "0.5"], "--zoom"),
])
def test_still_bad_arguments_exit_2(tmp_path, bank, capsys, argv, needle):
    code = main(["still", str(bank.path), "-o", str(tmp_path / "x.png"), *argv])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_still_missing_bank_exits_2(tmp_path, capsys):
    assert main(["still", str(tmp_path / "nope"), "-o", str(tmp_path / "x.png")]) == 2
    assert "nope" in capsys.readouterr().err


def test_the_readme_still_example_runs_on_the_demo_bank(tmp_path, repo_root):
    """The README's `vj still demo --coord ...` line, exactly as written (one value per demo axis)."""
    import shlex

    line = next(ln for ln in (repo_root / "README.md").read_text().splitlines() if ln.startswith("vj still demo"))
    argv = shlex.split(line.split("#")[0])[1:]
    out = tmp_path / "frame.png"
    argv[argv.index("-o") + 1] = str(out)
    assert main(argv) == 0
    assert out.stat().st_size > 0
