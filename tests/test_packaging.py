"""What a plain wheel install ships, and what the live engine imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

HEAVY = ("torch", "diffusers", "transformers")

LIVE_MODULES = [
    "vjengine", "vjengine.cli", "vjengine.app", "vjengine.demo", "vjengine.bank",
    "vjengine.render.renderer", "vjengine.render.window", "vjengine.audio.engine",
    "vjengine.mapping", "vjengine.control.commands", "vjengine.offline",
]


def test_live_engine_never_imports_torch():
    code = (
        "import importlib, sys\n"
        f"for m in {LIVE_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_live_show_never_imports_torch(tmp_path):
    # The whole path of a show, headless: bank, audio file, mapping, render, OSC.
    code = (
        "import sys\n"
        "from vjengine.cli import main\n"
        f"rc = main(['demo', '--headless', '--duration', '1', '--screenshot', {str(tmp_path / 'last.png')!r}])\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('heavy:', heavy)\n"
        "sys.exit(rc or (1 if heavy else 0))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "DISPLAY": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy: []" in result.stdout
    assert (tmp_path / "last.png").stat().st_size > 1000


@pytest.mark.slow
def test_wheel_carries_shaders_and_presets(tmp_path, repo_root):
    # Build from a copy: setuptools leaves build/ and *.egg-info in the source tree.
    src = tmp_path / "src"
    shutil.copytree(repo_root, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir),
         str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("vjengine-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped_shaders = {n.rsplit("/", 1)[1] for n in names if n.startswith("vjengine/_data/shaders/")}
    shipped_presets = {n.rsplit("/", 1)[1] for n in names if n.startswith("vjengine/_data/presets/")}
    repo_shaders = {p.name for p in (repo_root / "shaders").iterdir() if p.suffix in {".glsl", ".vert", ".frag"}}
    repo_presets = {p.name for p in (repo_root / "presets").glob("*.toml")}
    assert repo_shaders and repo_shaders <= shipped_shaders
    assert repo_presets and repo_presets <= shipped_presets
    # The tiny random-weight models ship on purpose: `vj-bank selftest` bakes banks with them on a
    # user's machine, no downloads. They import nothing a user lacks (no pytest).
    assert "bank_builder/testing.py" in names and "bank_builder/cli_selftest.py" in names
    assert "import pytest" not in (repo_root / "bank_builder" / "testing.py").read_text()
    # the learned beat tracker's weights (CC BY 4.0, attributed in NOTICE and the README)
    assert "vjengine/audio/models/beatnet_crnn.npz" in names
    # Installed away from the checkout, the package finds its data inside itself.
    target = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr
    code = ("from vjengine.resources import shaders_dir, presets_dir; import importlib, vjengine; "
            f"[importlib.import_module(m) for m in {LIVE_MODULES + ['bank_builder.cli_preview']!r}]; "
            "from vjengine.audio.learned import load_weights; assert len(load_weights()) == 14; "
            "print(vjengine.__file__); print(shaders_dir()); print(presets_dir())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert all(line.startswith(str(target)) for line in lines), lines
