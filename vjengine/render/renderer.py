"""The renderer: a bank's neighbouring frames blended on the GPU, post effects, one scaled pass out.

Per frame (``Renderer.render``):

1. ``vjengine.bank.grid.neighbours`` gives the 2**D frames around the coordinate and their weights;
   repeated frames are merged and zero weights dropped, and the smallest compiled program with
   K >= that many taps is used (K in 1, 2, 4, 8, 16; one program per K).
2. Blend pass at bank resolution (``shaders/blend.glsl``): the taps, an optional crossfade with another
   bank's blend, hue rotation, feedback trails (ping-pong state textures), intensity and flash.
3. Output pass (``shaders/output.glsl``): one filtered tap per output pixel to the target at any size
   (fit / fill / stretch), zoom / mirror / kaleidoscope as geometry; mipmapped when shrinking.

Blending at bank resolution and scaling once is what keeps a 1080p output near the cost of one copy.
Nothing in ``render`` raises (unless ``raise_errors``): a failure is logged once and the frame skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import moderngl
import numpy as np

from vjengine.bank import grid
from vjengine.render.context import load_program
from vjengine.render.effects import FIT_MODES, Effects, FlashGate, hue_matrix, output_vertices, per_frame_amount
from vjengine.render.textures import DEFAULT_MEMORY_BUDGET_MB, BankTextures

log = logging.getLogger(__name__)

TAP_COUNTS = (1, 2, 4, 8, 16)
SCALE_FILTERS = ("linear", "cubic")
_MAX_OUTPUT_VERTICES = 4096
_NEUTRAL = Effects()


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


def _release_framebuffers(ctx: moderngl.Context, fbos) -> None:
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


class Renderer:
    """Renders one bank (with an optional crossfade to another) to an offscreen image or a target.

    ``ctx``: the moderngl context (headless or the window's); ``bank``: an opened bank;
    ``output_size``: (width, height) in pixels of the renderer's own offscreen output, used when
    ``render`` gets no target (default: the bank's size); ``fit``: "fit" (whole image, bars),
    "fill" (cover, crop) or "stretch"; ``memory_budget_mb``: the most one texture array may take (a
    bank is split over several arrays beyond it); ``progress``: a tqdm bar while uploading;
    ``raise_errors``: let ``render`` raise (tests) instead of logging once and skipping the frame;
    ``upload``: "stream" (default: the first frame needs only its own frames, the rest of the bank
    streams in ``stream_budget_ms`` per frame) or "eager" (everything before the constructor returns);
    ``scale_filter``: "linear" (one bilinear tap per output pixel, mipmapped when shrinking: about the
    cost of a copy) or "cubic" (Catmull-Rom, sharper when enlarging, nine taps: for GPUs).
    ``failures`` counts frames that failed.
    """

    def __init__(self, ctx: moderngl.Context, bank, *, output_size: tuple[int, int] | None = None,
                 fit: str = "fit", memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                 progress: bool = True, raise_errors: bool = False, upload: str = "stream",
                 stream_budget_ms: float = 4.0, scale_filter: str = "linear") -> None:
        if fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {fit!r}")
        if scale_filter not in SCALE_FILTERS:
            raise ValueError(f"scale_filter must be one of {SCALE_FILTERS}, got {scale_filter!r}")
        self.scale_filter = scale_filter
        self.ctx = ctx
        self.fit = fit
        self.memory_budget_mb = memory_budget_mb
        self.progress = progress
        self.raise_errors = raise_errors
        self.upload = upload
        self.stream_budget_s = max(0.0, stream_budget_ms) / 1000.0
        self.failures = 0
        self.render_scale = 1.0  # see set_render_scale
        self.max_k: int | None = None  # at most this many blend taps (the nearest cells); None: all
        self.textures: BankTextures | None = None
        self.bank = None
        self._blend_programs: dict[tuple, tuple[moderngl.Program, moderngl.VertexArray]] = {}
        self._state: list[moderngl.Texture] = []
        self._fbos: list[moderngl.Framebuffer] = []
        self._current = 0  # index of the state texture holding the latest image
        self._fresh = True
        self._gate = FlashGate()
        self._max_units = int(ctx.info.get("GL_MAX_TEXTURE_IMAGE_UNITS", 16))
        self._crossfade_cache: tuple[object, Renderer] | None = None

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
        self._graded: moderngl.Texture | None = None  # trail state with intensity and flash, when both on
        self._graded_fbo: moderngl.Framebuffer | None = None
        self._show_graded = False
        self._scratch: moderngl.Texture | None = None  # this bank's plain blend as a crossfade source
        self._scratch_fbo: moderngl.Framebuffer | None = None
        self._output_fbo: moderngl.Framebuffer | None = None
        self._last_target: moderngl.Framebuffer | None = None
        self.set_bank(bank)
        self.resize(output_size or (bank.width, bank.height))

    # --- set-up ------------------------------------------------------------------------------

    def set_bank(self, bank) -> None:
        """Upload ``bank`` (replacing the current one) and reset the feedback trail."""
        new = BankTextures(self.ctx, bank, memory_budget_mb=self.memory_budget_mb, progress=self.progress,
                           upload=self.upload)
        if self.textures is not None:
            self.textures.release()
        self.textures, self.bank = new, bank
        self.max_taps = program_k(1 << len(bank.sizes))
        self._allocate_state()
        self._fresh = True

    def set_render_scale(self, scale: float) -> None:
        """Blend at ``scale`` (0 < scale <= 1) times the bank's resolution: fewer texels to blend when the
        machine is busy (the frame-rate governor lowers it, then restores it); the output pass scales
        up as it always does. Changing it restarts the trails."""
        scale = min(max(float(scale), 0.05), 1.0)
        if scale != self.render_scale:
            self.render_scale = scale
            self._allocate_state()
            self._fresh = True

    def _allocate_state(self) -> None:
        bank = self.bank
        size = (max(1, round(bank.width * self.render_scale)), max(1, round(bank.height * self.render_scale)))
        if not self._state or self._state[0].size != size:
            _release_framebuffers(self.ctx, [*self._fbos, self._graded_fbo, self._scratch_fbo])
            for tex in [*self._state, self._graded, self._scratch]:
                if tex is not None:
                    tex.release()
            self._state = [self._bank_res_texture(size) for _ in range(2)]
            self._fbos = [self.ctx.framebuffer([s]) for s in self._state]
            self._graded = self._bank_res_texture(size)
            self._graded_fbo = self.ctx.framebuffer([self._graded])
            self._scratch = self._bank_res_texture(size)
            self._scratch_fbo = self.ctx.framebuffer([self._scratch])

    def _bank_res_texture(self, size: tuple[int, int]) -> moderngl.Texture:
        tex = self.ctx.texture(size, 4)
        tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        tex.repeat_x = tex.repeat_y = False
        return tex

    def _blend_program(self, k: int, crossfade: bool = False, feedback: bool = False, hue: bool = False,
                       grade: bool = False) -> tuple[moderngl.Program, moderngl.VertexArray]:
        """The blend variant for these switches (compiled on first use, then cached)."""
        split = self.textures.layout.arrays > 1
        grade = grade and not feedback
        key = (k, split, crossfade, feedback, hue, grade)
        if key not in self._blend_programs:
            defines = {"K": k, "SPLIT": int(split), "CROSSFADE": int(crossfade), "FEEDBACK": int(feedback),
                       "HUE": int(hue), "GRADE": int(grade)}
            prog = load_program(self.ctx, "blend", defines, vertex="fullscreen")
            self._blend_programs[key] = (prog, self.ctx.vertex_array(prog, []))
        return self._blend_programs[key]

    def warm_up(self) -> None:
        """Compile and run once every blend variant this bank can use (a few ms each), so switching an
        effect on mid-show does not stall a frame on a shader compile."""
        import itertools

        for k in TAP_COUNTS:
            if k > self.max_taps:
                break
            for crossfade, feedback, hue, grade in itertools.product((False, True), repeat=4):
                if feedback and grade:
                    continue
                prog, vao = self._blend_program(k, crossfade, feedback, hue, grade)
                self.textures.ensure([0])
                unit = self._bind_taps(prog, k, [0], [1.0])
                self._state[1].use(unit)
                for name in ("other", "previous"):
                    if name in prog:
                        prog[name].value = unit
                self._fbos[0].use()
                vao.render(moderngl.TRIANGLES, vertices=3)
        self._fresh = True

    def reset_trails(self) -> None:
        """Start the feedback trail afresh on the next frame (after a cut or a bank switch)."""
        self._fresh = True

    def resize(self, output_size: tuple[int, int]) -> None:
        """Set the size (pixels) of the renderer's own offscreen output."""
        w, h = int(output_size[0]), int(output_size[1])
        if w < 1 or h < 1:
            raise ValueError(f"output size must be positive, got {w}x{h}")
        if self._output_fbo is not None and self._output_fbo.size == (w, h):
            return
        if self._output_fbo is not None:
            attachments = self._output_fbo.color_attachments
            _release_framebuffers(self.ctx, [self._output_fbo])
            for att in attachments:
                att.release()
        self._output_fbo = self.ctx.framebuffer([self.ctx.texture((w, h), 4)])

    @property
    def output_size(self) -> tuple[int, int]:
        return self._output_fbo.size

    @property
    def output(self) -> moderngl.Framebuffer:
        """The offscreen output framebuffer (RGBA8, ``output_size``)."""
        return self._output_fbo

    @property
    def image(self) -> moderngl.Texture:
        """The latest bank-resolution image the output shows (RGBA8, rows top first): the blend with
        the colour effects and trails."""
        return self._graded if self._show_graded else self._state[self._current]

    @property
    def scratch_image(self) -> moderngl.Texture:
        """The plain blend last made for the other side of a crossfade (bank resolution, RGBA8)."""
        return self._scratch

    # --- per frame ---------------------------------------------------------------------------

    def _bind_taps(self, prog: moderngl.Program, k: int, indices: Sequence[int], weights: Sequence[float]) -> int:
        """Bind the arrays holding ``indices`` to units 0.., set the tap uniforms; returns units used."""
        units: dict[int, int] = {}
        samplers, layers, ws = [], [], []
        for index, weight in zip(indices, weights):
            a, layer = self.textures.layout.locate(index)
            samplers.append(units.setdefault(a, len(units)))
            layers.append(layer)
            ws.append(weight)
        while len(samplers) < k:  # pad with zero-weight taps on an already bound array
            samplers.append(samplers[0])
            layers.append(layers[0])
            ws.append(0.0)
        if len(units) + 2 > self._max_units:
            raise RuntimeError(f"this blend needs {len(units)} texture arrays but the GPU binds "
                               f"{self._max_units} textures at once; raise memory_budget_mb")
        for a, unit in units.items():
            self.textures.arrays[a].use(unit)
        if "frames0" in prog:  # one array: every tap reads unit 0
            prog["frames0"].value = 0
        else:
            prog["frames"].write(np.asarray(samplers, np.int32).tobytes())
        prog["layer"].write(np.asarray(layers, np.int32).tobytes())
        prog["weight"].write(np.asarray(ws, np.float32).tobytes())
        sw, sh = self._state[0].size
        prog["texel_scale"].value = (self.bank.width / sw, self.bank.height / sh)
        if "size" in prog:  # only the crossfade and feedback variants use it
            prog["size"].value = (float(sw), float(sh))
        return len(units)

    def blend(self, coord: Sequence[float], fx: Effects = _NEUTRAL, dt_s: float = 1 / 60, *,
              crossfade: tuple[object, Sequence[float], float] | None = None,
              flash: float | None = None, scratch: bool = False,
              rect: tuple[int, int, int, int] | None = None) -> bool:
        """The bank-resolution pass into ``image``; returns whether intensity and flash are still to be
        applied (feedback on). ``render`` calls it; ``fx`` must be sanitized. ``scratch``: the plain
        blend into ``scratch_image`` instead, leaving the trail state alone (this renderer is the other
        side of a crossfade, possibly with itself). ``rect``: (x, y, w, h) texels to draw (default: all)."""
        if scratch:
            fx, crossfade, flash = _NEUTRAL, None, 0.0
        else:
            self._show_graded = False
        taps = blend_taps(coord, self.bank.sizes, self.bank.cyclic)
        if self.max_k is not None and len(taps.indices) > self.max_k:
            taps = nearest_taps(taps, self.max_k)
        k = program_k(len(taps.indices))
        mix = 0.0
        other_renderer = None
        if crossfade is not None:
            other, coord2, mix = crossfade
            mix = min(max(float(mix), 0.0), 1.0)
            if mix > 0.0:
                other_renderer = self._crossfade_renderer(other)
                other_renderer.blend(coord2, scratch=True)
        keep = 0.0 if self._fresh or scratch else per_frame_amount(fx.feedback, dt_s)
        feedback = keep > 0.0
        hue = fx.hue_deg % 360.0 != 0.0
        flash = fx.flash if flash is None else flash
        grade = fx.intensity < 1.0 or flash > 0.0
        prog, vao = self._blend_program(k, other_renderer is not None, feedback, hue, grade)
        self.textures.ensure(taps.indices.tolist())
        unit = self._bind_taps(prog, k, taps.indices.tolist(), taps.weights.tolist())
        if hue:  # GLSL matrices are column-major: upload the transpose
            prog["hue"].write(np.ascontiguousarray(hue_matrix(fx.hue_deg).T).tobytes())
        if other_renderer is not None:
            other_renderer.scratch_image.use(unit)
            prog["other"].value = unit
            prog["crossfade"].value = mix
            prog["other_rect"].value = _aspect_crop(other_renderer.scratch_image.size, self._state[0].size)
            unit += 1
        previous = self._state[self._current]
        if feedback:
            previous.use(unit)
            prog["previous"].value = unit
            prog["feedback"].value = keep
            prog["feedback_zoom"].value = fx.feedback_zoom ** (60.0 * max(dt_s, 0.0))
        elif grade:
            prog["intensity"].value = fx.intensity
            prog["flash"].value = flash
        full = (0, 0, *self._state[0].size)
        if scratch:
            self._scratch_fbo.viewport = full
            self._scratch_fbo.use()
            vao.render(moderngl.TRIANGLES, vertices=3)
            if not self.textures.complete:
                self.textures.upload_some(self.stream_budget_s)
            return False
        self._current = 1 - self._current
        fbo = self._fbos[self._current]
        fbo.viewport = rect or full
        fbo.use()
        vao.render(moderngl.TRIANGLES, vertices=3)
        self._fresh = False
        return feedback

    def render(self, coord: Sequence[float], fx: Effects | None = None, dt_s: float = 1 / 60,
               target: moderngl.Framebuffer | None = None, *,
               crossfade: tuple[object, Sequence[float], float] | None = None) -> None:
        """Draw one frame at grid ``coord`` (0..1 per axis) into ``target`` (within its viewport) or
        the renderer's own output.

        ``fx``: effect parameters (neutral when None); ``dt_s``: seconds since the previous frame (for
        trails and strobe timing); ``crossfade``: ``(other, coord2, mix)`` blends in another bank at
        ``coord2`` with weight ``mix`` (0..1) before the effects; ``other`` is a ``Renderer`` sharing
        this context, or an opened bank (uploaded once, cached until another bank is passed).
        """
        target = self._output_fbo if target is None else target
        self._last_target = target
        try:
            fx = (fx or _NEUTRAL).sanitized()
            flash_level, strobe_on = self._gate.update(fx, dt_s)
            flash = 1.0 if strobe_on else flash_level
            if fx.blackout:
                target.use()
                target.clear(0.0, 0.0, 0.0, 1.0, viewport=target.viewport)
                return
            _, _, vw, vh = target.viewport
            verts = output_vertices(self._state[0].size, (max(vw, 1), max(vh, 1)), self.fit, fx)
            verts = verts[:_MAX_OUTPUT_VERTICES]
            # Blend only the texels the output will sample (a 16:9 fill of a square bank needs 56%).
            # With trails, all of them: the trail reads last frame's texels, which must all be fresh.
            rect = needed_rect(verts[:, 2:], self._state[0].size)
            if fx.feedback > 0.0:
                rect = (0, 0, *self._state[0].size)
            trails = self.blend(coord, fx, dt_s, crossfade=crossfade, flash=flash, rect=rect)
            self._show_graded = trails and (fx.intensity < 1.0 or flash > 0.0)
            if self._show_graded:
                self._state[self._current].use(0)
                self._grade_prog["intensity"].value = fx.intensity
                self._grade_prog["flash"].value = flash
                self._graded_fbo.viewport = rect
                self._graded_fbo.use()
                self._grade_vao.render(moderngl.TRIANGLES, vertices=3)
            self._draw_output(fx, target, verts)
            if not self.textures.complete:
                self.textures.upload_some(self.stream_budget_s)
        except Exception:  # the frame loop never raises: log once, keep the last good image
            self.failures += 1
            if self.raise_errors:
                raise
            if self.failures == 1:
                log.exception("render failed (coord=%r); keeping the last good frame", coord)

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
        """The last output as uint8 [H, W, 3], top row first (the last target's viewport; for a
        window, call it before ``swap``)."""
        fbo = self._last_target or self._output_fbo
        x, y, w, h = fbo.viewport
        data = fbo.read(viewport=(x, y, w, h), components=4, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 4)[::-1, :, :3].copy()

    def read_image_rgb(self) -> np.ndarray:
        """``image`` as uint8 [H, W, 3], top row first."""
        w, h = self.image.size
        data = self.image.read(alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 4)[:, :, :3].copy()

    # --- crossfade ---------------------------------------------------------------------------

    def _crossfade_renderer(self, other) -> Renderer:
        if isinstance(other, Renderer):
            return other
        cached = self._crossfade_cache
        if cached is not None and cached[0] is other:
            return cached[1]
        if cached is not None:
            cached[1].release()
        renderer = Renderer(self.ctx, other, output_size=(1, 1), memory_budget_mb=self.memory_budget_mb,
                            progress=self.progress, raise_errors=self.raise_errors, upload=self.upload,
                            stream_budget_ms=self.stream_budget_s * 1000.0)
        self._crossfade_cache = (other, renderer)
        return renderer

    def release(self) -> None:
        """Free every GL object this renderer made."""
        if self._crossfade_cache is not None:
            self._crossfade_cache[1].release()
            self._crossfade_cache = None
        if self.textures is not None:
            self.textures.release()
            self.textures = None
        attachments = self._output_fbo.color_attachments if self._output_fbo else ()
        _release_framebuffers(self.ctx, [*self._fbos, self._output_fbo, self._graded_fbo, self._scratch_fbo])
        self._last_target = None
        objs = [*self._state, self._graded, self._scratch, *attachments, *self._output_vaos.values(),
                self._output_vbo, *self._output_progs.values(), self._grade_vao, self._grade_prog]
        for prog, vao in self._blend_programs.values():
            objs += [vao, prog]
        for obj in objs:
            obj.release()
        self._blend_programs.clear()
        self._output_vaos.clear()
        self._output_progs.clear()
        self._fbos, self._state, self._output_fbo = [], [], None
        self._graded = self._graded_fbo = self._scratch = self._scratch_fbo = None
