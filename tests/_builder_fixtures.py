"""Shared pieces of the builder tests: the tiny model (built once per session) and spec writing.

Test modules import the fixtures by name: ``from _builder_fixtures import tiny_model, ...``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BANK_CMD = "from vjengine.cli import bank_main; import sys; sys.exit(bank_main())"


def require_build_extra() -> None:
    for name in ("torch", "diffusers", "transformers"):
        pytest.importorskip(name, reason=f"the builder tests need the build extra ({name} missing)")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight SD pipeline saved with save_pretrained (loaded like a model id)."""
    require_build_extra()
    import torch

    from bank_builder.testing import make_tiny_pipeline

    # One torch thread: on this 2-core machine shared with other test runs, 2 threads are often
    # 10x slower (OpenMP threads spinning against other processes); the CLI subprocesses get --threads 1.
    torch.set_num_threads(1)

    folder = tmp_path_factory.mktemp("tiny-sd") / "model"
    make_tiny_pipeline(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_taesd(tmp_path_factory) -> Path:
    require_build_extra()
    from bank_builder.testing import make_tiny_taesd

    folder = tmp_path_factory.mktemp("tiny-taesd") / "taesd"
    make_tiny_taesd(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model):
    """The tiny model loaded by diffusers itself: the reference the builder must reproduce."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_spec(folder: Path, text: str, name: str = "spec.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def bank_cli(*args: str) -> list[str]:
    return [sys.executable, "-c", BANK_CMD, *args]


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    """A tiny random-weight SDXL-shaped pipeline (two text encoders, pooled embeddings, micro-conditioning)."""
    require_build_extra()
    import torch

    from bank_builder.testing import make_tiny_sdxl_pipeline

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny-sdxl") / "model"
    make_tiny_sdxl_pipeline(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_pipe(tiny_sdxl):
    """The tiny SDXL model loaded by diffusers itself: the reference the builder must reproduce."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl))
    pipe.set_progress_bar_config(disable=True)
    return pipe
