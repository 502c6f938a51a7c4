"""One output's drawing: the compositor blends banks' frames on the GPU, grades them, scales them out.

Per bank there are only its frames on the GPU (:class:`~vjengine.render.textures.BankTextures`); per
output there is one :class:`Compositor`, which owns everything that must outlive a bank switch: the
shader programs (compiled once per output), the working textures (trail ping-pong, graded image,
crossfade scratch), the flash/strobe limiter and the output framebuffer. A bank switch, a crossfade, a
preset change, a cue or a replay therefore never resets the photosensitivity cap.

Per frame (``Compositor.render(a=(textures, coord), b=(textures, coord, mix) or None, fx, dt_s, target)``):

1. ``vjengine.bank.grid.neighbours`` gives the 2**D frames around each coordinate and their weights;
   repeated frames are merged and zero weights dropped, and the smallest compiled program with
   K >= that many taps is used (K in 1, 2, 4, 8, 16; one program per K).
2. ``b`` (the bank faded from, weight ``mix``) is blended plain into the scratch texture at its own
   resolution.
3. Blend pass at ``a``'s resolution (``shaders/blend.glsl``): the taps, the crossfade with the scratch,
   hue rotation, feedback trails (ping-pong state textures), intensity and flash.
4. Output pass (``shaders/output.glsl``): one filtered tap per output pixel to the target at any size
   (fit / fill / stretch), zoom / mirror / kaleidoscope as geometry; mipmapped when shrinking.

Blending at bank resolution and scaling once is what keeps a 1080p output near the cost of one copy.
Nothing in ``render`` raises (unless ``raise_errors``): a failure is logged once and the frame skipped.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import moderngl
import numpy as np

from vjengine.bank import grid
from vjengine.effects import Effects
from vjengine.logonce import LogOnce
from vjengine.render.context import load_program
from vjengine.render.effects import FIT_MODES, FlashGate, hue_matrix, output_vertices, per_frame_amount

log = logging.getLogger(__name__)

TAP_COUNTS = (1, 2, 4, 8, 16)
SCALE_FILTERS = ("linear", "cubic")
_MAX_OUTPUT_VERTICES = 4096
_NEUTRAL = Effects()


class FrameSource(Protocol):
    """What the compositor needs from a bank's frames on the GPU (``BankTextures`` is one).

    ``width``, ``height``: frame size in pixels; ``sizes``, ``cyclic``: the grid; ``split``: whether
    frames may lie in more than one texture array; ``layers_for(indices)``: make these frames
    resident now and say where each is, ``[(texture_array, layer), ...]`` in order; ``tick(budget_s)``:
    background work (streaming) for about ``budget_s`` seconds, once per frame the source is drawn.
    Optionally ``low_ids``: ``id()`` of arrays holding smaller stand-ins of frames (a streaming low
    tier), which the blend samples by texture coordinate instead of by texel.
    """

    width: int
    height: int
    sizes: tuple[int, ...]
    cyclic: tuple[bool, ...]
    split: bool

    def layers_for(self, indices: Sequence[int]) -> list[tuple[moderngl.TextureArray, int]]: ...

    def tick(self, budget_s: float) -> None: ...


@dataclass(frozen=True)
class Taps:
    """The frames one blend reads: bank frame indices and weights (float64), merged and non-zero."""

    indices: np.ndarray
    weights: np.ndarray


def blend_taps(coord: Sequence[float], sizes: Sequence[int], cyclic: Sequence[bool]) -> Taps:
    """Neighbours of ``coord`` with repeated frames merged and zero weights dropped (at least one tap)."""
    indices, weights = grid.neighbours(coord, sizes, cyclic)
    merged: dict[int, float] = {}
    for i, w in zip(indices.tolist(), weights.tolist()):
        if w > 0.0:
            merged[i] = merged.get(i, 0.0) + w
    if not merged:
        merged[int(indices[0])] = 1.0
    return Taps(np.fromiter(merged.keys(), np.int64), np.fromiter(merged.values(), np.float64))


def nearest_taps(taps: Taps, k: int) -> Taps:
    """The ``k`` heaviest taps (the nearest cells), weights renormalised to sum to 1."""
    k = max(1, int(k))
    order = np.argsort(-taps.weights, kind="stable")[:k]
    weights = taps.weights[order]
    return Taps(taps.indices[order], weights / weights.sum())


def program_k(taps: int) -> int:
    """The smallest compiled tap count that holds ``taps`` taps."""
    for k in TAP_COUNTS:
        if k >= taps:
            return k
    raise ValueError(f"at most {TAP_COUNTS[-1]} taps (4 axes), got {taps}")


def needed_rect(uv: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The texels (x, y, width, height) of a ``size`` image that the output pass samples at the
    texture coordinates ``uv`` [n, 2], with a texel of margin for the bilinear filter; it always holds
    the centre, so trails that zoom in (toward the centre) stay inside it."""
    w, h = size
    if len(uv) == 0:
        return 0, 0, w, h
    u0 = min(float(uv[:, 0].min()), 0.5)
    u1 = max(float(uv[:, 0].max()), 0.5)
    v0 = min(float(uv[:, 1].min()), 0.5)
    v1 = max(float(uv[:, 1].max()), 0.5)
    x0 = max(0, int(np.floor(u0 * w - 0.5)) - 1)
    y0 = max(0, int(np.floor(v0 * h - 0.5)) - 1)
    x1 = min(w, int(np.ceil(u1 * w + 0.5)) + 1)
    y1 = min(h, int(np.ceil(v1 * h + 0.5)) + 1)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def release_framebuffers(ctx: moderngl.Context, fbos) -> None:
    """Release framebuffers, first unbinding them if bound (moderngl would rebind a deleted one)."""
    fbos = [f for f in fbos if f is not None]
    if any(ctx.fbo is f for f in fbos):
        ctx.detect_framebuffer(0).use()
    for f in fbos:
        f.release()


def _aspect_crop(src_size: tuple[int, int], dst_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """uv offset and scale that crop ``src`` to the aspect of ``dst`` about its centre (fill)."""
    sa = src_size[0] / src_size[1]
    da = dst_size[0] / dst_size[1]
    if sa > da:
        sx = da / sa
        return (0.5 - sx / 2, 0.0, sx, 1.0)
    sy = sa / da
    return (0.0, 0.5 - sy / 2, 1.0, sy)


class _Image:
    """A bank-resolution RGBA8 texture and its framebuffer."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int]) -> None:
        self.texture = ctx.texture(size, 4)
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.texture.repeat_x = self.texture.repeat_y = False
        self.fbo = ctx.framebuffer([self.texture])

    @property
    def size(self) -> tuple[int, int]:
        return self.texture.size

    def release(self, ctx: moderngl.Context) -> None:
        release_framebuffers(ctx, [self.fbo])
        self.texture.release()


class Compositor:
    """Draws frames for one output (see the module docstring).

    ``ctx``: the moderngl context (headless or the window's); ``output_size``: (width, height) of
    the compositor's own offscreen output, used when ``render`` gets no target; ``fit``: "fit"
    (whole image, bars), "fill" (cover, crop) or "stretch"; ``scale_filter``: "linear" (one bilinear
    tap per output pixel, mipmapped when shrinking: about the cost of a copy) or "cubic" (Catmull-Rom,
    nine taps: for GPUs); ``raise_errors``: let ``render`` raise (tests) instead of logging once and
    skipping the frame; ``stream_budget_ms``: per frame, how long a drawn source may spend streaming.

    After each ``render``, ``frame_target`` is the framebuffer holding the frame (within its
    viewport) until the presenter swaps: output hooks read it back there (``read_rgb``).
    ``failures`` counts frames that failed; ``gate`` is the flash/strobe limiter of this output.

    Two levers trade quality for time (the frame-rate governor pulls them): ``set_render_scale(s)``
    blends at ``s`` times the bank's resolution, and ``max_k`` (None: all) keeps only the nearest
    cells of a blend.
    """

    def __init__(self, ctx: moderngl.Context, *, output_size: tuple[int, int] = (1280, 720), fit: str = "fit",
                 scale_filter: str = "linear", raise_errors: bool = False, stream_budget_ms: float = 4.0) -> None:
        if fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {fit!r}")
        if scale_filter not in SCALE_FILTERS:
            raise ValueError(f"scale_filter must be one of {SCALE_FILTERS}, got {scale_filter!r}")
        self.ctx = ctx
        self.fit = fit
        self.scale_filter = scale_filter
        self.raise_errors = raise_errors
        self.stream_budget_s = max(0.0, stream_budget_ms) / 1000.0
        self.failures = 0
        self._once = LogOnce(log)
        self.gate = FlashGate()
        self.render_scale = 1.0  # see set_render_scale
        self.max_k: int | None = None  # at most this many blend taps (the nearest cells); None: all
        self._max_units = int(ctx.info.get("GL_MAX_TEXTURE_IMAGE_UNITS", 16))
        self._blend_programs: dict[tuple, tuple[moderngl.Program, moderngl.VertexArray]] = {}
        self._state: list[_Image] = []  # trail ping-pong at the working (bank) resolution
        self._current = 0  # index of the state image holding the latest blend
        self._fresh = True
        self._graded: _Image | None = None  # trail state with intensity and flash, when both on
        self._show_graded = False
        self._scratch: _Image | None = None  # the faded-from bank's plain blend
        self._output_fbo: moderngl.Framebuffer | None = None
        self.frame_target: moderngl.Framebuffer | None = None

        self._output_vbo = ctx.buffer(reserve=_MAX_OUTPUT_VERTICES * 16, dynamic=True)
        self._output_progs: dict[bool, moderngl.Program] = {}
        self._output_vaos: dict[bool, moderngl.VertexArray] = {}
        for cubic in (False, True):
            prog = load_program(ctx, "output", {"CUBIC": int(cubic)})
            prog["image"].value = 0
            self._output_progs[cubic] = prog
            self._output_vaos[cubic] = ctx.vertex_array(prog, [(self._output_vbo, "2f 2f", "in_pos", "in_uv")])
        self._grade_prog = load_program(ctx, "grade", vertex="fullscreen")
        self._grade_prog["state"].value = 0
        self._grade_vao = ctx.vertex_array(self._grade_prog, [])
        self.resize(output_size)

    # --- set-up ------------------------------------------------------------------------------

    def resize(self, output_size: tuple[int, int]) -> None:
        """Set the size (pixels) of the compositor's own offscreen output."""
        w, h = int(output_size[0]), int(output_size[1])
        if w < 1 or h < 1:
            raise ValueError(f"output size must be positive, got {w}x{h}")
        if self._output_fbo is not None and self._output_fbo.size == (w, h):
            return
        if self._output_fbo is not None:
            attachments = self._output_fbo.color_attachments
            release_framebuffers(self.ctx, [self._output_fbo])
            for att in attachments:
                att.release()
        self._output_fbo = self.ctx.framebuffer([self.ctx.texture((w, h), 4)])
        self.frame_target = None

    def set_render_scale(self, scale: float) -> None:
        """Blend at ``scale`` (0.05..1) times the bank's resolution: fewer texels to blend when the
        machine is busy; the output pass scales up as it always does. Changing it restarts the trails."""
        scale = min(max(float(scale), 0.05), 1.0)
        if scale != self.render_scale:
            self.render_scale = scale
            self._fresh = True

    def _scaled(self, source: FrameSource) -> tuple[int, int]:
        """The blend resolution for ``source``: its own, times the render scale."""
        s = self.render_scale
        return max(1, round(source.width * s)), max(1, round(source.height * s))

    def _working(self, size: tuple[int, int]) -> None:
        """Working images at ``size`` (a bank of another size, or a new render scale, restarts the trail)."""
        if self._state and self._state[0].size == size:
            return
        for img in [*self._state, self._graded]:
            if img is not None:
                img.release(self.ctx)
        self._state = [_Image(self.ctx, size) for _ in range(2)]
        self._graded = _Image(self.ctx, size)
        self._fresh = True

    def _scratch_for(self, size: tuple[int, int]) -> _Image:
        if self._scratch is None or self._scratch.size != size:
            if self._scratch is not None:
                self._scratch.release(self.ctx)
            self._scratch = _Image(self.ctx, size)
        return self._scratch

    def _blend_program(self, k: int, split: bool, crossfade: bool = False, feedback: bool = False,
                       hue: bool = False, grade: bool = False,
                       low: bool = False) -> tuple[moderngl.Program, moderngl.VertexArray]:
        """The blend variant for these switches (compiled on first use, then kept for this output)."""
        grade = grade and not feedback
        key = (k, split, crossfade, feedback, hue, grade, low)
        if key not in self._blend_programs:
            defines = {"K": k, "SPLIT": int(split), "CROSSFADE": int(crossfade), "FEEDBACK": int(feedback),
                       "HUE": int(hue), "GRADE": int(grade)}
            if low:  # the shader tests #ifdef LOW
                defines["LOW"] = 1
            prog = load_program(self.ctx, "blend", defines, vertex="fullscreen")
            self._blend_programs[key] = (prog, self.ctx.vertex_array(prog, []))
        return self._blend_programs[key]

    @property
    def programs(self) -> int:
        """How many blend variants this output has compiled."""
        return len(self._blend_programs)

    def warm_up(self, source: FrameSource) -> None:
        """Compile and run once every blend variant ``source`` can use (a few ms each, only the ones
        not compiled yet), so switching an effect on mid-show never stalls a frame on a compile."""
        max_k = program_k(1 << len(source.sizes))
        self._working(self._scaled(source))
        (array, layer), = source.layers_for([0])
        lows = (False, True) if getattr(source, "low_ids", None) else (False,)
        for k in TAP_COUNTS:
            if k > max_k:
                break
            for split, crossfade, feedback, hue, grade, low in itertools.product(
                    (False, True) if source.split else (False,), *([(False, True)] * 4), lows):
                if feedback and grade or (k, split, crossfade, feedback, hue, grade, low) in self._blend_programs:
                    continue
                prog, vao = self._blend_program(k, split, crossfade, feedback, hue, grade, low)
                unit = self._bind_taps(prog, k, [(array, layer)], [1.0], source, self._state[0].size)
                self._state[1].texture.use(unit)
                for name in ("other", "previous"):
                    if name in prog:
                        prog[name].value = unit
                self._state[0].fbo.use()
                vao.render(moderngl.TRIANGLES, vertices=3)
        self._fresh = True

    def reset_trails(self) -> None:
        """Start the feedback trail afresh on the next frame (after a cut)."""
        self._fresh = True

    @property
    def output_size(self) -> tuple[int, int]:
        return self._output_fbo.size

    @property
    def output(self) -> moderngl.Framebuffer:
        """The offscreen output framebuffer (RGBA8, ``output_size``): where ``render`` draws when it
        gets no target."""
        return self._output_fbo

    @property
    def image(self) -> moderngl.Texture | None:
        """The latest bank-resolution image the output shows (RGBA8, rows top first): the blend with
        the colour effects and trails (None before the first frame)."""
        if not self._state:
            return None
        return self._graded.texture if self._show_graded else self._state[self._current].texture

    @property
    def scratch_image(self) -> moderngl.Texture | None:
        """The plain blend last made of the faded-from bank (its resolution, RGBA8)."""
        return None if self._scratch is None else self._scratch.texture

    # --- per frame ---------------------------------------------------------------------------

    def _bind_taps(self, prog: moderngl.Program, k: int, where: list[tuple[moderngl.TextureArray, int]],
                   weights: Sequence[float], source: FrameSource, size: tuple[int, int]) -> int:
        """Bind the arrays holding the taps to units 0.., set the tap uniforms for a blend drawn at
        ``size``; returns units used."""
        units: dict[int, int] = {}
        arrays: list[moderngl.TextureArray] = []
        samplers, layers, ws = [], [], []
        for (array, layer), weight in zip(where, weights):
            unit = units.get(id(array))
            if unit is None:
                unit = units[id(array)] = len(arrays)
                arrays.append(array)
            samplers.append(unit)
            layers.append(layer)
            ws.append(weight)
        while len(samplers) < k:  # pad with zero-weight taps on an already bound array
            samplers.append(samplers[0])
            layers.append(layers[0])
            ws.append(0.0)
        if len(arrays) + 2 > self._max_units:
            raise RuntimeError(f"this blend needs {len(arrays)} texture arrays but the GPU binds "
                               f"{self._max_units} textures at once; raise memory_budget_mb")
        for unit, array in enumerate(arrays):
            array.use(unit)
        if "frames0" in prog:  # one array: every tap reads unit 0
            prog["frames0"].value = 0
        else:
            prog["frames"].write(np.asarray(samplers, np.int32).tobytes())
        prog["layer"].write(np.asarray(layers, np.int32).tobytes())
        prog["weight"].write(np.asarray(ws, np.float32).tobytes())
        if "texel_scale" in prog:  # the LOW variant samples by uv instead
            prog["texel_scale"].value = (source.width / size[0], source.height / size[1])
        if "size" in prog:  # the crossfade, feedback and LOW variants use it
            prog["size"].value = (float(size[0]), float(size[1]))
        return len(arrays)

    def _taps(self, source: FrameSource, coord: Sequence[float]) -> tuple[int, list, list[float], bool, bool]:
        """(K, where each tap is, weights, several arrays?, any low-tier tap?) of ``source`` at ``coord``."""
        taps = blend_taps(coord, source.sizes, source.cyclic)
        if self.max_k is not None and len(taps.indices) > self.max_k:
            taps = nearest_taps(taps, self.max_k)
        where = source.layers_for(taps.indices.tolist())
        ids = {id(array) for array, _ in where}
        low_ids = getattr(source, "low_ids", None)
        low = bool(low_ids) and not ids.isdisjoint(low_ids)
        return program_k(len(taps.indices)), where, taps.weights.tolist(), len(ids) > 1, low

    def _blend_scratch(self, source: FrameSource, coord: Sequence[float]) -> _Image:
        """``source``'s plain blend at ``coord`` into the scratch image (the trail is left alone)."""
        scratch = self._scratch_for(self._scaled(source))
        k, where, weights, split, low = self._taps(source, coord)
        prog, vao = self._blend_program(k, split, low=low)
        self._bind_taps(prog, k, where, weights, source, scratch.size)
        scratch.fbo.viewport = (0, 0, *scratch.size)
        scratch.fbo.use()
        vao.render(moderngl.TRIANGLES, vertices=3)
        return scratch

    def _blend(self, source: FrameSource, coord: Sequence[float], fx: Effects, dt_s: float,
               other: tuple[_Image, float] | None, flash: float, rect: tuple[int, int, int, int]) -> bool:
        """The blend pass into the next state image; returns whether intensity and flash are still to
        be applied (trails on)."""
        self._show_graded = False
        k, where, weights, split, low = self._taps(source, coord)
        keep = 0.0 if self._fresh else per_frame_amount(fx.feedback, dt_s)
        feedback = keep > 0.0
        hue = fx.hue_deg % 360.0 != 0.0
        grade = fx.intensity < 1.0 or flash > 0.0
        prog, vao = self._blend_program(k, split, other is not None, feedback, hue, grade, low)
        unit = self._bind_taps(prog, k, where, weights, source, self._state[0].size)
        if hue:  # GLSL matrices are column-major: upload the transpose
            prog["hue"].write(np.ascontiguousarray(hue_matrix(fx.hue_deg).T).tobytes())
        if other is not None:
            scratch, mix = other
            scratch.texture.use(unit)
            prog["other"].value = unit
            prog["crossfade"].value = mix
            prog["other_rect"].value = _aspect_crop(scratch.size, self._state[0].size)
            unit += 1
        if feedback:
            self._state[self._current].texture.use(unit)
            prog["previous"].value = unit
            prog["feedback"].value = keep
            prog["feedback_zoom"].value = fx.feedback_zoom ** (60.0 * max(dt_s, 0.0))
        elif grade:
            prog["intensity"].value = fx.intensity
            prog["flash"].value = flash
        self._current = 1 - self._current
        fbo = self._state[self._current].fbo
        fbo.viewport = rect
        fbo.use()
        vao.render(moderngl.TRIANGLES, vertices=3)
        self._fresh = False
        return feedback

    def render(self, a: tuple[FrameSource, Sequence[float]],
               b: tuple[FrameSource, Sequence[float], float] | None = None,
               fx: Effects | None = None, dt_s: float = 1 / 60,
               target: moderngl.Framebuffer | None = None) -> None:
        """Draw one frame into ``target`` (within its viewport) or the compositor's own output.

        ``a``: ``(frames, coord)``, the bank shown and its grid coordinate (0..1 per axis); ``b``:
        ``(frames, coord, mix)`` blends in another bank (or the same one elsewhere) with weight
        ``mix`` (0..1) before the effects, or None; ``fx``: effect parameters (neutral when None);
        ``dt_s``: seconds since the previous frame (for trails and strobe timing).
        """
        target = self._output_fbo if target is None else target
        self.frame_target = target
        try:
            fx = (fx or _NEUTRAL).sanitized()
            flash_level, strobe_on = self.gate.update(fx, dt_s)  # every frame, blackout or not
            flash = 1.0 if strobe_on else flash_level
            if fx.blackout:
                target.use()
                target.clear(0.0, 0.0, 0.0, 1.0, viewport=target.viewport)
                return
            source, coord = a
            size = self._scaled(source)
            self._working(size)
            _, _, vw, vh = target.viewport
            verts = output_vertices(size, (max(vw, 1), max(vh, 1)), self.fit, fx)[:_MAX_OUTPUT_VERTICES]
            # Blend only the texels the output will sample (a 16:9 fill of a square bank needs 56%).
            # With trails, all of them: the trail reads last frame's texels, which must all be fresh.
            rect = (0, 0, *size) if fx.feedback > 0.0 else needed_rect(verts[:, 2:], size)
            other = None
            if b is not None:
                b_source, b_coord, mix = b
                mix = min(max(float(mix), 0.0), 1.0)
                if mix > 0.0:
                    other = (self._blend_scratch(b_source, b_coord), mix)
                    b_source.tick(self.stream_budget_s)
            trails = self._blend(source, coord, fx, dt_s, other, flash, rect)
            self._show_graded = trails and (fx.intensity < 1.0 or flash > 0.0)
            if self._show_graded:
                self._state[self._current].texture.use(0)
                self._grade_prog["intensity"].value = fx.intensity
                self._grade_prog["flash"].value = flash
                self._graded.fbo.viewport = rect
                self._graded.fbo.use()
                self._grade_vao.render(moderngl.TRIANGLES, vertices=3)
            self._draw_output(fx, target, verts)
            source.tick(self.stream_budget_s)
        except Exception as exc:  # the frame loop never raises: log once, keep the last good image
            self.failures += 1
            if self.raise_errors:
                raise
            self._once("render", "render failed (coord=%r); keeping the last good frame", a[1] if a else None,
                       exc=exc)

    def _draw_output(self, fx: Effects, target: moderngl.Framebuffer, verts: np.ndarray) -> None:
        image = self.image
        vx, vy, vw, vh = target.viewport
        if vw <= 0 or vh <= 0:  # a minimised window
            return
        self._output_vbo.write(verts.tobytes())
        shrinking = vw < image.width or vh < image.height
        if shrinking:
            image.build_mipmaps()
            image.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        elif image.filter[0] != moderngl.LINEAR:
            image.filter = (moderngl.LINEAR, moderngl.LINEAR)
        cubic = self.scale_filter == "cubic" and not shrinking
        if cubic:
            self._output_progs[True]["image_size"].value = (float(image.width), float(image.height))
        target.use()
        if self.fit == "fit" or fx.kaleidoscope >= 2:  # parts of the viewport stay uncovered
            target.clear(0.0, 0.0, 0.0, 1.0, viewport=target.viewport)
        image.use(0)
        self._output_vaos[cubic].render(moderngl.TRIANGLES, vertices=len(verts))

    def read_rgb(self) -> np.ndarray:
        """The last frame as uint8 [H, W, 3], top row first (the viewport of ``frame_target``; for a
        window, call it before ``swap``)."""
        fbo = self.frame_target or self._output_fbo
        x, y, w, h = fbo.viewport
        data = fbo.read(viewport=(x, y, w, h), components=4, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 4)[::-1, :, :3].copy()

    def read_image_rgb(self) -> np.ndarray:
        """``image`` as uint8 [H, W, 3], top row first."""
        w, h = self.image.size
        data = self.image.read(alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 4)[:, :, :3].copy()

    def release(self) -> None:
        """Free every GL object this compositor made (not the sources' textures)."""
        attachments = self._output_fbo.color_attachments if self._output_fbo else ()
        release_framebuffers(self.ctx, [self._output_fbo])
        for img in [*self._state, self._graded, self._scratch]:
            if img is not None:
                img.release(self.ctx)
        self.frame_target = None
        objs = [*attachments, *self._output_vaos.values(), self._output_vbo, *self._output_progs.values(),
                self._grade_vao, self._grade_prog]
        for prog, vao in self._blend_programs.values():
            objs += [vao, prog]
        for obj in objs:
            obj.release()
        self._blend_programs.clear()
        self._output_vaos.clear()
        self._output_progs.clear()
        self._state, self._output_fbo = [], None
        self._graded = self._scratch = None
