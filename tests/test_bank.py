"""The bank format: round trip, memory mapping, atomic writes, and every validation error."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vjengine.bank import Axis, BankWriter, open_bank, validate_bank, write_bank
from vjengine.bank.format import FRAMES_FILE, LATENTS_FILE, MANIFEST
from vjengine.errors import BankError

AXES = (Axis("prompt", (0.0, 0.5, 1.0)), Axis("seed", ("a", "b"), cyclic=True))


def _make(path, latents=True, channels=3, dtype=np.float16):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 5, 7, channels), dtype=np.uint8)
    lat = rng.standard_normal((6, 4, 2, 3)).astype(dtype) if latents else None
    write_bank(path, AXES, frames, lat, made_by={"tool": "test", "spec": {"steps": 2}})
    return frames, lat


def test_round_trip_is_exact_and_memory_mapped(tmp_path):
    frames, lat = _make(tmp_path / "b")
    bank = open_bank(tmp_path / "b")
    assert isinstance(bank.frames, np.memmap) and isinstance(bank.latents, np.memmap)
    assert not bank.frames.flags.writeable
    np.testing.assert_array_equal(bank.frames, frames)
    np.testing.assert_array_equal(bank.latents, lat)
    assert bank.sizes == (3, 2) and bank.cyclic == (False, True)
    assert (bank.width, bank.height, bank.channels, bank.count) == (7, 5, 3, 6)
    assert bank.axes[1].values == ("a", "b")
    assert bank.made_by["spec"] == {"steps": 2}
    # row-major: the last axis varies fastest
    assert bank.index((1, 1)) == 3 and bank.cell(5) == (2, 1)


def test_rgba_and_float32_latents(tmp_path):
    frames, lat = _make(tmp_path / "b", channels=4, dtype=np.float32)
    bank = validate_bank(tmp_path / "b")
    assert bank.channels == 4 and bank.latents.dtype == np.float32


def test_files_are_read_by_the_safetensors_library(tmp_path):
    from safetensors.numpy import load_file

    frames, lat = _make(tmp_path / "b")
    np.testing.assert_array_equal(load_file(str(tmp_path / "b" / FRAMES_FILE))["frames"], frames)
    np.testing.assert_array_equal(load_file(str(tmp_path / "b" / LATENTS_FILE))["latents"], lat)


def test_writer_without_commit_leaves_nothing_and_keeps_the_old_bank(tmp_path):
    old_frames, _ = _make(tmp_path / "b")
    with BankWriter(tmp_path / "b", AXES, 7, 5, 3) as w:
        w.frames[:] = 1
        # no commit: an interrupted build
    assert not (tmp_path / "b.partial").exists()
    np.testing.assert_array_equal(open_bank(tmp_path / "b").frames, old_frames)
    with BankWriter(tmp_path / "b", AXES, 7, 5, 3) as w:
        w.frames[:] = 9
        w.commit()
    assert (open_bank(tmp_path / "b").frames == 9).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_writer_refuses_non_finite_latents(tmp_path):
    with BankWriter(tmp_path / "b", AXES, 7, 5, 3, latent_shape=(4,)) as w:
        w.latents[:] = 0
        w.latents[2, 1] = np.nan
        with pytest.raises(BankError, match="non-finite"):
            w.commit()
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def _edit_manifest(path, **changes):
    m = json.loads((path / MANIFEST).read_text())
    m.update(changes)
    (path / MANIFEST).write_text(json.dumps(m))


def _truncate(f, nbytes):
    data = f.read_bytes()
    f.write_bytes(data[:nbytes])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / MANIFEST).unlink(), r"manifest.json: missing file"),
        (lambda p: (p / FRAMES_FILE).unlink(), r"frames.safetensors: missing file"),
        (lambda p: (p / LATENTS_FILE).unlink(), r"latents.safetensors: missing file"),
        (lambda p: (p / "stray.bin").write_bytes(b"x"), r"stray.bin: unexpected file"),
        (lambda p: (p / MANIFEST).write_text("{not json"), r"manifest.json: not valid JSON"),
        (lambda p: _edit_manifest(p, version=99), r"unknown version 99"),
        (lambda p: _edit_manifest(p, count=7), r"multiply to 6 but count is 7"),
        (lambda p: _edit_manifest(p, axes=[{"name": "x", "values": [1, 2, 3, 4]}, {"name": "y", "values": [1, 2]}]),
         r"multiply to 8 but count is 6"),
        (lambda p: _edit_manifest(p, axes=[]), r"1 to 4 axes"),
        (lambda p: _edit_manifest(p, frame={"width": 8, "height": 5, "channels": 3}), r"frames have shape .*manifest says"),
        (lambda p: _edit_manifest(p, frame={"width": 7, "height": 5, "channels": 2}), r"channels must be 3 or 4"),
        (lambda p: _truncate(p / FRAMES_FILE, 300), r"frames.safetensors: truncated or corrupt"),
        (lambda p: _truncate(p / FRAMES_FILE, 5), r"frames.safetensors: truncated"),
        (lambda p: (p / FRAMES_FILE).write_bytes(b"\xff" * 64), r"frames.safetensors: corrupt safetensors header"),
    ],
)
def test_each_damage_is_named(tmp_path, damage, message):
    _make(tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(BankError, match=message):
        validate_bank(tmp_path / "b")


def test_wrong_dtype_is_named(tmp_path):
    _make(tmp_path / "b")
    # a frames file holding float32 data instead of uint8
    from safetensors.numpy import save_file

    save_file({"frames": np.zeros((6, 5, 7, 3), np.float32)}, str(tmp_path / "b" / FRAMES_FILE))
    with pytest.raises(BankError, match="frames must be uint8, got float32"):
        open_bank(tmp_path / "b")
    save_file({"frames": np.zeros((6, 5, 7, 3), np.uint8)}, str(tmp_path / "b" / FRAMES_FILE))
    open_bank(tmp_path / "b")
    save_file({"latents": np.zeros((6, 4), np.int32)}, str(tmp_path / "b" / LATENTS_FILE))
    with pytest.raises(BankError, match="latents.safetensors: tensor 'latents' has dtype I32"):
        open_bank(tmp_path / "b")


def test_non_finite_latents_found_by_validate_only(tmp_path):
    _make(tmp_path / "b")
    lat_file = tmp_path / "b" / LATENTS_FILE
    bank = open_bank(tmp_path / "b")
    offset = bank.latents.offset + 4 * bank.latents[0].nbytes  # frame 4
    del bank
    with open(lat_file, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.array([np.inf], np.float16).tobytes())
    open_bank(tmp_path / "b")  # opening does not scan
    with pytest.raises(BankError, match="non-finite values .* frame 4"):
        validate_bank(tmp_path / "b")


def _vj_bank(*args):
    code = "import sys; from vjengine.cli import bank_main; sys.exit(bank_main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_cli_info_validate_and_exit_code_2(tmp_path):
    _make(tmp_path / "b")
    info = _vj_bank("info", str(tmp_path / "b"))
    assert info.returncode == 0, info.stderr
    assert "6 x 7x5x3 uint8" in info.stdout and "prompt: 3 values" in info.stdout and "(cyclic)" in info.stdout
    ok = _vj_bank("validate", str(tmp_path / "b"))
    assert ok.returncode == 0 and "ok" in ok.stdout
    _edit_manifest(tmp_path / "b", count=5)
    bad = _vj_bank("validate", str(tmp_path / "b"))
    assert bad.returncode == 2
    assert "manifest.json" in bad.stderr and "count is 5" in bad.stderr and "Traceback" not in bad.stderr
