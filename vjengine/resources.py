"""Where the shipped shaders and presets are, in a wheel install or in a checkout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    # Installed: the wheel maps the top-level folders to vjengine._data.<name> (namespace
    # packages: data only, no __init__.py), so ask the import system where they are.
    try:
        spec = importlib.util.find_spec(f"vjengine._data.{name}")
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location)
        if path.is_dir():
            return path
    # Checkout without install (or an editable install that did not map the folder).
    path = _REPO_ROOT / name
    if path.is_dir():
        return path
    raise FileNotFoundError(f"vjengine data folder {name!r} not found (looked in the package and {path})")


def shaders_dir() -> Path:
    return _data_dir("shaders")


def presets_dir() -> Path:
    return _data_dir("presets")


def shader_source(name: str) -> str:
    """The text of ``shaders/<name>``."""
    return (shaders_dir() / name).read_text(encoding="utf-8")
