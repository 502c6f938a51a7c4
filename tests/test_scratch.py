"""The suite cleans up after itself: its private cache (the demo bank, ~100 MB) is removed when the
run ends, and a process that inherits the cache's path makes no directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Imports conftest as pytest does, fills the cache it was given, and prints where that was.
CHILD = f"""
import os, sys
sys.path.insert(0, {str(TESTS)!r})
import conftest
cache = os.environ["VJ_CACHE_DIR"]
open(os.path.join(cache, "bank.bin"), "wb").write(b"x" * 1024)
print(cache)
"""


def _run(tmp_path: Path, **env: str) -> Path:
    base = {k: v for k, v in os.environ.items() if k != "VJ_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", CHILD], env={**base, "TMPDIR": str(tmp_path), **env},
                         capture_output=True, text=True, timeout=60, check=True)
    return Path(out.stdout.strip())


def test_private_cache_is_removed_when_the_run_ends(tmp_path):
    cache = _run(tmp_path)
    assert cache.parent == tmp_path and cache.name.startswith("vj-test-cache-")
    assert not cache.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_inherited_cache_is_used_and_left_alone(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    cache = _run(tmp_path, VJ_CACHE_DIR=str(given))
    assert cache == given
    assert (given / "bank.bin").stat().st_size == 1024  # the owner's files survive the child's exit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given"]  # and no directory of its own
