"""The builder writes block-compressed banks directly: the spec's codec key and `vj-bank build --codec`."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from _builder_fixtures import bank_cli, cli_env, require_build_extra, tiny_model, write_spec  # noqa: F401

require_build_extra()

from bank_builder.spec import SpecError, load_spec  # noqa: E402
from vjengine.bank import codecs, open_bank, validate_bank  # noqa: E402


def spec_text(model, extra=""):
    return (f'model = "{model}"\nsteps = 2\nguidance = 2.0\nsize = [32, 32]\nseed = 5\nprompt = "a neon cat"\n'
            f'{extra}[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\ncyclic = true\n')


def test_codec_key_is_checked_and_leaves_the_work_digest_alone(tmp_path):
    raw = load_spec(write_spec(tmp_path, spec_text("m"), "a.toml"))
    bc1 = load_spec(write_spec(tmp_path, spec_text("m", 'codec = "bc1"\n'), "b.toml"))
    assert raw.codec == "raw" and bc1.codec == "bc1"
    assert raw.digest() == bc1.digest()  # one work folder serves every codec
    with pytest.raises(SpecError, match=r"codec: must be 'raw', 'bc1' or 'bc7'.*got 'dxt9'"):
        load_spec(write_spec(tmp_path, spec_text("m", 'codec = "dxt9"\n'), "c.toml"))


@pytest.mark.slow
def test_build_writes_a_compressed_bank_from_the_spec_or_the_option(tmp_path, tiny_model):
    spec = write_spec(tmp_path, spec_text(tiny_model, 'codec = "bc1"\n'))
    out = tmp_path / "bank"
    r = subprocess.run(bank_cli("build", str(spec), "-o", str(out), "--threads", "1", "--no-progress",
                                "--keep-work"), capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    bank = validate_bank(out)
    assert bank.codec == "bc1" and bank.blocks.shape == (2, 8, 8, 8) and bank.latents is not None
    # --codec overrides the spec and repacks from the same work folder
    r = subprocess.run(bank_cli("build", str(spec), "-o", str(tmp_path / "raw"), "--codec", "raw", "--threads", "1",
                                "--no-progress", "--work-dir", str(tmp_path / "bank.work")),
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    raw = validate_bank(tmp_path / "raw")
    assert raw.codec == "raw"
    np.testing.assert_array_equal(raw.latents, bank.latents)
    for i in range(2):  # the bc1 bank holds exactly etcpak's encoding of the frames the model made
        np.testing.assert_array_equal(bank.blocks[i], codecs.encode(raw.frames[i], "bc1"))
    assert open_bank(out).manifest["codec"] == "bc1"
