"""GL contexts and shader programs.

``headless_context()`` gives an offscreen EGL context (Mesa llvmpipe on a machine without a GPU), used
by tests, ``vj still`` and offline render. The window (``vjengine.render.window``) makes its own GLX
context instead. Never create both kinds on one thread: an EGL context current on a thread makes a later
GLX make-current on that thread kill the process, so tests run windows in a subprocess.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import moderngl

from vjengine.errors import DeviceError
from vjengine.resources import shader_source

log = logging.getLogger(__name__)

GLSL_VERSION = "#version 330 core"
_VERSION_LINE = re.compile(r"^\s*#version[^\n]*\n", re.MULTILINE)


def headless_context() -> moderngl.Context:
    """A standalone OpenGL 3.3+ core context through EGL, with no window and no display.

    Raises :class:`DeviceError` naming what is missing when EGL or a GL driver cannot be loaded
    (on Debian: ``apt-get install libegl1 libgl1-mesa-dri``).
    """
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:  # moderngl/glcontext raise plain Exceptions with driver messages
        raise DeviceError(
            "cannot create a headless OpenGL context through EGL "
            f"({type(exc).__name__}: {exc}); install Mesa's EGL and GL drivers "
            "(Debian: apt-get install libegl1 libgl1-mesa-dri) or check that a GPU driver provides EGL"
        ) from exc
    log.debug("headless GL: %s, GL %s", ctx.info.get("GL_RENDERER"), ctx.version_code)
    return ctx


def program_source(name: str, stage: str, defines: Mapping[str, object] | None = None) -> str:
    """The GLSL text of one stage (``"VERTEX"`` or ``"FRAGMENT"``) of ``shaders/<name>.glsl``.

    A program file holds both stages, selected with ``#ifdef VERTEX`` / ``#ifdef FRAGMENT``; the file's
    own ``#version`` line (kept for editors) is replaced so the defines can follow it.
    """
    body = _VERSION_LINE.sub("", shader_source(f"{name}.glsl"), count=1)
    lines = [GLSL_VERSION, f"#define {stage} 1"]
    lines += [f"#define {key} {value}" for key, value in (defines or {}).items()]
    lines.append("#line 2")
    return "\n".join(lines) + "\n" + body


def load_program(ctx: moderngl.Context, name: str, defines: Mapping[str, object] | None = None,
                 vertex: str | None = None) -> moderngl.Program:
    """Compile and link ``shaders/<name>.glsl`` with the given ``#define`` values.

    ``vertex`` takes the vertex stage from another file instead, e.g. ``"fullscreen"``: the one
    full-screen triangle every full-screen pass shares, kept in one place.
    """
    try:
        return ctx.program(
            vertex_shader=program_source(vertex or name, "VERTEX", defines),
            fragment_shader=program_source(name, "FRAGMENT", defines),
        )
    except moderngl.Error as exc:
        raise RuntimeError(f"shader program {name}.glsl {dict(defines or {})} failed to build: {exc}") from exc


SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "lavapipe")


def is_software_renderer(renderer: str) -> bool:
    """Whether ``GL_RENDERER`` names a CPU rasteriser (Mesa's llvmpipe and kin): there, every GL call
    runs to completion on the CPU before it returns (a readback is done when it is issued)."""
    return any(name in renderer.lower() for name in SOFTWARE_RENDERERS)


def max_array_layers(ctx: moderngl.Context) -> int:
    """GL_MAX_ARRAY_TEXTURE_LAYERS of this context."""
    return int(ctx.info["GL_MAX_ARRAY_TEXTURE_LAYERS"])
