"""`vj-bank selftest`: the documented no-download proof that the builder works on a new machine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from _builder_fixtures import bank_cli, cli_env, require_build_extra

require_build_extra()


def test_selftest_bakes_both_families_and_cleans_up():
    r = subprocess.run(bank_cli("selftest", "--threads", "1"), capture_output=True, text=True, env=cli_env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "no downloads" in out and "noise by design" in out
    assert re.search(r"SD 1\.x \+ LoRA: 9 keyframes \+ 21 in-betweens", out)
    assert "SDXL: 9 keyframes + 21 in-betweens" in out
    removed = re.search(r"selftest passed in [\d.]+ s; removed (\S+)\.", out)
    assert removed and not Path(removed[1]).exists()


# parameter counts of the released models (diffusers' configs of SD 1.5, SD 2.1 / SD-Turbo, SDXL base)
RELEASED = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd-turbo": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}


def test_full_size_benchmark_models_are_the_released_architectures():
    """benchmarks/build_gpu.py times random-weight models of the real architectures: every part has
    the released model's parameter count (made on the meta device: shapes only, no memory)."""
    from bank_builder.testing import FULL_SIZE_FAMILIES, full_size_modules

    for name, want in RELEASED.items():
        got = {k: sum(p.numel() for p in m.parameters()) for k, m in full_size_modules(name, "meta").items()}
        assert got == want, name
    assert FULL_SIZE_FAMILIES["sdxl-turbo"][:2] == ("sdxl", 512)  # SDXL's architecture, at 512x512
