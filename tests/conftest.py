"""Shared test set-up: a private cache directory so tests never touch the user's ~/.cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _scratch import scratch_dir

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (a git worktree one level deeper finds it beside its parent)
SHARED_AUDIO = next((p / "shared" / "data" / "audio" for p in (REPO.parent, REPO.parent.parent)
                     if (p / "shared" / "data" / "audio").is_dir()), REPO.parent / "shared" / "data" / "audio")

# Set before any test imports vjengine.demo, and inherited by the subprocesses tests start (and by
# pytest-xdist's workers, which then share the controller's directory rather than making their own).
if "VJ_CACHE_DIR" not in os.environ:
    os.environ["VJ_CACHE_DIR"] = scratch_dir("vj-test-cache-")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"annotated recordings not found at {SHARED_AUDIO} (../shared beside the repo)")
    return SHARED_AUDIO


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="module")
def ctx():
    """A headless EGL context per test module; the test fails on any GL error left behind."""
    from _render_util import assert_no_gl_error, make_context

    context = make_context()
    yield context
    assert_no_gl_error(context)
    context.release()


@pytest.fixture(scope="session")
def demo_bank_made() -> Path:
    """The demo bank, made once in this session's cache before any `vj demo` / `vj live demo`
    subprocess starts (they inherit VJ_CACHE_DIR and find it there): making it inside the first of
    them counted against that test's deadline, which a heavily loaded machine overran."""
    from vjengine.demo import demo_bank_path

    return demo_bank_path()
