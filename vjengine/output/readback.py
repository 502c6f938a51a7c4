"""Reading the output back without stalling the render thread: a ring of pixel-buffer objects.

``Readback(ctx, size)`` owns ``depth`` (2) PBOs of ``size``. Per frame the render thread calls
``submit`` (asks GL to copy the frame into the next PBO: it returns at once on a GPU, where the copy
happens in the background) and then ``collect(keep=1)``, which maps the PBO submitted the frame
before, by now filled, into a fresh numpy array. A source of another size is first scaled (and
letterboxed) into a framebuffer of ``size`` by one textured pass.

On a software renderer (llvmpipe) the copy is done by the time ``submit`` returns, so ``immediate``
is set: ``submit`` reads straight into the frame's array (one copy instead of two: 0.36 instead of
0.73 ms for 1280x720 here) and the hub collects it the same frame (``keep=0``); waiting a frame there
bought nothing and cost a whole frame period of latency (17 ms at 60 fps).

Frames come back bottom row first, as GL stores them; :class:`vjengine.output.sink.OutFrame.rgba`
flips them for free (a view).
"""

from __future__ import annotations

import collections
from typing import Any

import moderngl
import numpy as np

from vjengine.render.context import is_software_renderer, load_program


def fit_rect(src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest rectangle of ``src``'s aspect inside ``dst``, centred: (x, y, w, h) in pixels."""
    sw, sh = src
    dw, dh = dst
    scale = min(dw / sw, dh / sh)
    w = max(1, min(dw, round(sw * scale)))
    h = max(1, min(dh, round(sh * scale)))
    return (dw - w) // 2, (dh - h) // 2, w, h


def shrink_factor(src: tuple[int, int], dst: tuple[int, int]) -> int:
    """``k`` when ``dst`` is ``src`` divided by a whole number ``k`` (same aspect), else 0."""
    k = src[0] // dst[0] if dst[0] else 0
    return k if k >= 1 and (dst[0] * k, dst[1] * k) == tuple(src) else 0


def scale_bottom_up(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The CPU twin of the scaling pass, for a sink's own thread: ``frame`` (RGBA uint8 [H, W, 4],
    bottom row first) scaled to ``size`` (letterboxed in black like :func:`fit_rect`), bottom row
    first. A whole-number shrink is a box average (what the pass's linear filter gives at 2x:
    2.6 ms from 1280x720 to 640x360 here; Pillow's "RGBX" keeps the fourth byte and runs 2.5 times
    faster than its "RGBA", which premultiplies)."""
    from PIL import Image  # noqa: PLC0415

    sh, sw = frame.shape[:2]
    img = Image.frombuffer("RGBX", (sw, sh), np.ascontiguousarray(frame), "raw", "RGBX", 0, 1)
    k = shrink_factor((sw, sh), size)
    if k:
        return np.asarray(img.reduce(k) if k > 1 else img)
    x, y, w, h = fit_rect((sw, sh), size)
    full = np.zeros((size[1], size[0], 4), np.uint8)
    full[..., 3] = 255
    full[y:y + h, x:x + w] = np.asarray(img.resize((w, h), Image.BILINEAR))  # rows from the bottom, as GL's
    return full


class Readback:
    """See the module docstring. All methods on the GL thread."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], depth: int = 2) -> None:
        self.ctx = ctx
        self.size = (int(size[0]), int(size[1]))
        w, h = self.size
        self.depth = max(1, depth)
        self.immediate = is_software_renderer(str(ctx.info.get("GL_RENDERER", "")))
        # PBOs let a GPU copy in the background; a software renderer copies at once, and straight
        # into the frame's own array is one copy instead of two.
        self.pbos = [] if self.immediate else [ctx.buffer(reserve=w * h * 4) for _ in range(self.depth)]
        self._next = 0
        self.pending: collections.deque[tuple[moderngl.Buffer | np.ndarray, Any]] = collections.deque()
        self._fbo: moderngl.Framebuffer | None = None
        self._copy: moderngl.Framebuffer | None = None
        self._prog: moderngl.Program | None = None
        self._vao: moderngl.VertexArray | None = None
        self.overruns = 0

    def _scale_target(self) -> moderngl.Framebuffer:
        if self._fbo is None:
            self._fbo = self.ctx.framebuffer([self.ctx.texture(self.size, 4)])
            self._prog = load_program(self.ctx, "out_scale", vertex="fullscreen")
            self._prog["source"].value = 0
            self._vao = self.ctx.vertex_array(self._prog, [])
        return self._fbo

    def _texture_of(self, source: moderngl.Framebuffer, size: tuple[int, int]) -> moderngl.Texture:
        """A texture holding ``source`` (its own colour attachment, or a copy for a window's screen)."""
        atts = getattr(source, "color_attachments", ())
        if atts and isinstance(atts[0], moderngl.Texture):
            return atts[0]
        if self._copy is None or self._copy.size != size:
            if self._copy is not None:
                for att in self._copy.color_attachments:
                    att.release()
                self._copy.release()
            self._copy = self.ctx.framebuffer([self.ctx.texture(size, 4)])
        self.ctx.copy_framebuffer(self._copy, source)
        return self._copy.color_attachments[0]

    def submit(self, source: moderngl.Framebuffer, meta: Any = None,
               source_size: tuple[int, int] | None = None) -> None:
        """Queue a copy of ``source`` (its viewport, or ``source_size`` from the origin) into the next PBO."""
        if len(self.pending) >= self.depth:  # nobody collected: the oldest is lost
            self.pending.popleft()
            self.overruns += 1
        x, y, sw, sh = source.viewport if source_size is None else (0, 0, *source_size)
        w, h = self.size
        if self.immediate:
            pbo = np.empty((h, w, 4), np.uint8)
        else:
            pbo = self.pbos[self._next]
            self._next = (self._next + 1) % len(self.pbos)
        if (sw, sh) == self.size and getattr(source, "color_attachments", ()):
            source.read_into(pbo, viewport=(x, y, w, h), components=4, alignment=1)
        elif (sw, sh) == self.size:
            # A window's own framebuffer: moderngl's read_into names a colour attachment it does not
            # have (GL_INVALID_OPERATION left for the next error check), so blit it into ours first.
            self._texture_of(source, (x + sw, y + sh))
            self._copy.read_into(pbo, viewport=(x, y, w, h), components=4, alignment=1)
            source.use()
        else:
            texture = self._texture_of(source, (x + sw, y + sh))
            fbo = self._scale_target()
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 1.0)
            rect = fit_rect((sw, sh), self.size)
            fbo.viewport = rect
            self._prog["rect"].value = tuple(float(v) for v in rect)
            texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            texture.use(0)
            self._vao.render(moderngl.TRIANGLES, vertices=3)
            fbo.viewport = (0, 0, w, h)
            fbo.read_into(pbo, viewport=(0, 0, w, h), components=4, alignment=1)
            source.use()
        self.pending.append((pbo, meta))

    def collect(self, keep: int = 1) -> list[tuple[np.ndarray, Any]]:
        """Every queued frame but the newest ``keep``, as (uint8 [H, W, 4] bottom row first, meta)."""
        out = []
        w, h = self.size
        while len(self.pending) > keep:
            pbo, meta = self.pending.popleft()
            if isinstance(pbo, np.ndarray):
                out.append((pbo, meta))
                continue
            arr = np.empty((h, w, 4), np.uint8)
            pbo.read_into(arr)
            out.append((arr, meta))
        return out

    def release(self) -> None:
        for obj in (*self.pbos, self._vao, self._prog):
            if obj is not None:
                obj.release()
        for fbo in (self._fbo, self._copy):
            if fbo is not None:
                for att in fbo.color_attachments:
                    att.release()
                fbo.release()
        self.pbos = []
        self.pending.clear()
