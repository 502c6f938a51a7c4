"""`vj-bank repair` without the build's work folder: a bad frame is decoded again from its good latent,
with the decoder of the spec the manifest records (a real tiny diffusers pipeline, built at test time)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from _builder_fixtures import bank_cli, cli_env, require_build_extra, tiny_model, write_spec  # noqa: F401

require_build_extra()

from vjengine.bank import open_bank, validate_bank  # noqa: E402
from vjengine.bank.format import FRAMES_FILE, MANIFEST  # noqa: E402


def _spec(model, latent_dtype):
    return (f'model = "{model}"\nsteps = 2\nguidance = 2.0\nsize = [32, 32]\nseed = 5\nprompt = "a neon cat"\n'
            f'latent_dtype = "{latent_dtype}"\n[[axes]]\nkind = "seed"\nseeds = [1, 2, 3]\ncount = 3\ncyclic = true\n')


def _build(tmp_path, model, latent_dtype):
    spec = write_spec(tmp_path, _spec(model, latent_dtype))
    out = tmp_path / "bank"
    r = subprocess.run(bank_cli("build", str(spec), "-o", str(out), "--threads", "1", "--no-progress"),
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (tmp_path / "bank.work").exists()  # a finished build keeps no work folder: only latents are left
    return out


@pytest.fixture(scope="module")
def float32_bank(tmp_path_factory, tiny_model):
    """A bank built from its own copy of the tiny model (a test removes the model), latents in float32."""
    folder = tmp_path_factory.mktemp("repair32")
    model = folder / "model"
    shutil.copytree(tiny_model, model)
    return _build(folder, model, "float32"), model


def _copy(bank, tmp_path):
    return shutil.copytree(bank, tmp_path / "bank")


def _break_frame(bank_path, index):
    bank = open_bank(bank_path)
    frame_bytes = bank.width * bank.height * bank.channels
    data = bytearray((bank_path / FRAMES_FILE).read_bytes())
    start = len(data) - (bank.count - index) * frame_bytes  # the frames are the file's last bytes
    data[start + 100:start + 400] = b"\xff" * 300
    (bank_path / FRAMES_FILE).write_bytes(bytes(data))


def _repair(bank_path, *extra):
    return subprocess.run(bank_cli("repair", "--no-progress", "--device", "cpu", *extra, str(bank_path)),
                          capture_output=True, text=True, env=cli_env(), timeout=600)


@pytest.mark.slow
def test_a_bad_frame_is_decoded_again_from_its_float32_latent_byte_for_byte(tmp_path, float32_bank):
    path = _copy(float32_bank[0], tmp_path)
    before = (path / FRAMES_FILE).read_bytes()
    _break_frame(path, 1)
    assert _repair(path, "--no-decode").returncode == 2  # the work folder alone cannot: it is gone
    r = _repair(path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "decoded again from their latents, byte-identical" in r.stdout
    validate_bank(path)
    assert (path / FRAMES_FILE).read_bytes() == before


@pytest.mark.slow
def test_from_a_float16_latent_the_frame_is_close_and_the_note_says_so(tmp_path, tiny_model):
    path = _build(tmp_path, tiny_model, "float16")
    original = np.asarray(open_bank(path).frames[2]).astype(np.float64)
    _break_frame(path, 2)
    r = _repair(path)
    assert r.returncode == 0, r.stderr[-2000:]
    bank = validate_bank(path)  # the new checksums cover the new frame
    repaired = np.asarray(bank.frames[2]).astype(np.float64)
    mse = float(np.mean((repaired - original) ** 2))
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-9))
    assert psnr > 35, psnr
    if mse > 0:
        assert "differ slightly" in r.stdout and "seed=2" in r.stdout


@pytest.mark.slow
def test_a_manifest_whose_spec_was_edited_or_whose_model_is_gone_is_exit_2(tmp_path, float32_bank):
    path, model = _copy(float32_bank[0], tmp_path), float32_bank[1]
    _break_frame(path, 0)
    manifest = json.loads((path / MANIFEST).read_text())
    edited = json.loads(json.dumps(manifest))
    edited["made_by"]["spec"]["steps"] = 3
    (path / MANIFEST).write_text(json.dumps(edited))
    r = _repair(path)
    assert r.returncode == 2 and "spec_sha256" in r.stderr and "Traceback" not in r.stderr
    (path / MANIFEST).write_text(json.dumps(manifest))
    shutil.rmtree(model)
    before = (path / FRAMES_FILE).read_bytes()
    r = _repair(path)
    assert r.returncode == 2 and str(model) in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert (path / FRAMES_FILE).read_bytes() == before  # nothing written
