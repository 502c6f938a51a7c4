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


def test_build_gpu_benchmark_tiny_run_and_its_checks(tmp_path):
    """The GPU benchmark's CI-sized run writes the figures it prints (JSON line and --out file) for
    each family asked; on a machine it cannot run on, --check says why with exit 2."""
    import json
    import sys

    import torch

    script = [sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "build_gpu.py")]
    r = subprocess.run(script + ["--tiny", "--families", "sdxl-turbo", "--out", str(tmp_path / "res")],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    fam = printed["families"]["sdxl-turbo"]
    for key in ("frames_per_s", "keyframes_per_s", "decode_ms", "peak_mem_mb", "projected_100x100_s"):
        assert fam[key] > 0, key
    assert list(printed["families"]) == ["sdxl-turbo"] and fam["frames"] == 64 and fam["steps"] == 1
    assert json.loads((tmp_path / "res" / "build_gpu.json").read_text())["families"] == printed["families"]
    assert "sdxl-turbo" in (tmp_path / "res" / "build_gpu.txt").read_text()

    r = subprocess.run(script + ["--tiny", "--grid", "6"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 2 and "--grid 6: must be a multiple of --densify 4" in r.stderr

    import importlib.util

    loader = importlib.util.spec_from_file_location("build_gpu", script[1])
    bench = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(bench)
    info, problems = bench.preflight(tiny=False)
    assert info["torch"] == torch.__version__ and info["tmp_free_gb"] > 0
    if not torch.cuda.is_available():
        assert any("sees no CUDA GPU" in p and "use --tiny" in p for p in problems)
