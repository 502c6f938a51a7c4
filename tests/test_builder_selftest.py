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
