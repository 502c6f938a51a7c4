"""The HUD overlay: fps, frame time, coordinates, input level and status lines, drawn with GL.

The glyphs come from DejaVu Sans Mono rasterised once by matplotlib's FreeType binding (matplotlib is
already a dependency), packed into a one-channel texture atlas; text and panels are quads of one program
(``shaders/text.glsl``) drawn in a single call with alpha blending.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import moderngl
import numpy as np

from vjengine.render.context import load_program

FIRST_CHAR, LAST_CHAR = 32, 126
_MAX_QUADS = 8192


class GlyphAtlas:
    """ASCII 32..126 of a monospace font in one row of a uint8 texture, plus a solid cell at the end."""

    def __init__(self, ctx: moderngl.Context, pixel_size: int = 16) -> None:
        from matplotlib import font_manager, ft2font

        font = ft2font.FT2Font(font_manager.findfont("DejaVu Sans Mono"))
        font.set_size(pixel_size * 72.0 / 96.0, 96)
        chars = "".join(chr(c) for c in range(FIRST_CHAR, LAST_CHAR + 1))
        font.set_text(chars, 0.0)
        font.draw_glyphs_to_bitmap(antialiased=True)
        row = np.asarray(font.get_image(), dtype=np.uint8)
        count = len(chars)
        advance = max(1, round(font.load_char(ord("M")).horiAdvance / 64))
        self.cell_w = advance if abs(row.shape[1] - advance * count) <= advance else max(1, row.shape[1] // count)
        self.cell_h = row.shape[0]
        atlas = np.zeros((self.cell_h, self.cell_w * (count + 1)), np.uint8)
        width = min(row.shape[1], self.cell_w * count)
        atlas[:, :width] = row[:, :width]
        atlas[:, self.cell_w * count:] = 255  # solid cell for panels and bars
        self.texture = ctx.texture((atlas.shape[1], atlas.shape[0]), 1, atlas.tobytes(), alignment=1)
        self.texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.count = count

    def cell_uv(self, index: int) -> tuple[float, float, float, float]:
        """(u0, v0, u1, v1) of cell ``index`` (``count`` = the solid cell); v0 is the top row."""
        w = self.cell_w * (self.count + 1)
        u0 = index * self.cell_w / w
        u1 = (index + 1) * self.cell_w / w
        if index == self.count:  # sample the middle of the solid cell only
            u0, u1 = (u0 * 3 + u1) / 4, (u0 + u1 * 3) / 4
        return u0, 0.0, u1, 1.0

    def release(self) -> None:
        self.texture.release()


class TextBatch:
    """Quads collected for one frame, then drawn in a single call."""

    def __init__(self, atlas: GlyphAtlas) -> None:
        self.atlas = atlas
        self.rows: list[tuple] = []

    def _quad(self, x0, y0, x1, y1, uv, color) -> None:
        u0, v0, u1, v1 = uv
        a = (x0, y0, u0, v0, *color)
        b = (x1, y0, u1, v0, *color)
        c = (x1, y1, u1, v1, *color)
        d = (x0, y1, u0, v1, *color)
        self.rows += [a, b, c, a, c, d]

    def rect(self, x: float, y: float, w: float, h: float, color: Sequence[float]) -> None:
        """A solid rectangle (pixels, origin top-left), colour RGBA 0..1."""
        self._quad(x, y, x + w, y + h, self.atlas.cell_uv(self.atlas.count), tuple(color))

    def text(self, x: float, y: float, line: str, color: Sequence[float] = (1, 1, 1, 1)) -> float:
        """One line of text with its top-left at (x, y); returns the x after it."""
        cw, ch = self.atlas.cell_w, self.atlas.cell_h
        for char in line:
            code = ord(char)
            if code < FIRST_CHAR or code > LAST_CHAR:
                code = ord("?")
            if code != FIRST_CHAR:
                self._quad(x, y, x + cw, y + ch, self.atlas.cell_uv(code - FIRST_CHAR), tuple(color))
            x += cw
        return x

    def array(self) -> np.ndarray:
        return np.asarray(self.rows, dtype=np.float32).reshape(-1, 8)


class Hud:
    """Draws the overlay into the current framebuffer of ``ctx``."""

    def __init__(self, ctx: moderngl.Context, pixel_size: int = 16) -> None:
        self.ctx = ctx
        self.atlas = GlyphAtlas(ctx, pixel_size)
        self.program = load_program(ctx, "text")
        self.program["atlas"].value = 0
        self.vbo = ctx.buffer(reserve=_MAX_QUADS * 6 * 32, dynamic=True)
        self.vao = ctx.vertex_array(self.program, [(self.vbo, "2f 2f 4f", "in_pos", "in_uv", "in_color")])

    def layout(self, *, fps: float | None = None, frame_ms: float | None = None,
               frame_max_ms: float | None = None, coord: Sequence[float] | None = None,
               axis_names: Sequence[str] = (), input_level: float | None = None,
               lines: Sequence[str] = (), notice: str | None = None,
               viewport: tuple[int, int] = (1280, 720)) -> TextBatch:
        """The quads of the HUD (no GL calls): stats, coordinates, input meter, status lines, notice."""
        batch = TextBatch(self.atlas)
        cw, ch = self.atlas.cell_w, self.atlas.cell_h
        text_lines: list[str] = []
        stats = []
        if fps is not None:
            stats.append(f"{fps:5.1f} fps")
        if frame_ms is not None:
            stats.append(f"frame {frame_ms:5.1f} ms" + (f" (max {frame_max_ms:.1f})" if frame_max_ms is not None else ""))
        if stats:
            text_lines.append("  ".join(stats))
        if coord is not None:
            names = list(axis_names) + [f"axis{i}" for i in range(len(axis_names), len(coord))]
            text_lines.append("  ".join(f"{n} {float(c):.3f}" for n, c in zip(names, coord)))
        meter_row = None
        if input_level is not None:
            level = min(max(float(input_level), 0.0), 1.0)
            db = 20 * math.log10(level) if level > 0 else -math.inf
            meter_row = len(text_lines)
            text_lines.append(f"input {db:6.1f} dBFS " if db > -100 else "input   -inf dBFS ")
        text_lines += [str(s) for s in lines]
        pad = 8
        if text_lines:
            meter_w = 20 * cw
            width = max(len(s) for s in text_lines) * cw + (meter_w if meter_row is not None else 0)
            batch.rect(pad, pad, width + 2 * pad, len(text_lines) * ch + 2 * pad, (0.0, 0.0, 0.0, 0.6))
            for i, s in enumerate(text_lines):
                x_end = batch.text(2 * pad, 2 * pad + i * ch, s)
                if i == meter_row:
                    db = 20 * math.log10(max(level, 1e-9))
                    fill = min(max((db + 60.0) / 60.0, 0.0), 1.0)  # -60..0 dBFS
                    colour = (0.2, 0.9, 0.3, 1.0) if db < -6 else (0.95, 0.8, 0.1, 1.0) if db < -1 else (1, 0.2, 0.2, 1)
                    batch.rect(x_end, 2 * pad + i * ch + ch * 0.25, meter_w, ch * 0.5, (0.3, 0.3, 0.3, 1.0))
                    batch.rect(x_end, 2 * pad + i * ch + ch * 0.25, meter_w * fill, ch * 0.5, colour)
        if notice:
            w = len(notice) * cw + 2 * pad
            x = max(0.0, (viewport[0] - w) / 2)
            y = viewport[1] * 0.45
            batch.rect(x, y, w, ch + 2 * pad, (0.0, 0.0, 0.0, 0.75))
            batch.text(x + pad, y + pad, notice, (1.0, 0.9, 0.3, 1.0))
        return batch

    def draw(self, target: moderngl.Framebuffer, **fields) -> None:
        """Lay out and draw the HUD over ``target`` (within its viewport)."""
        _, _, vw, vh = target.viewport
        self.draw_batch(target, self.layout(viewport=(vw, vh), **fields))

    def draw_batch(self, target: moderngl.Framebuffer, batch: TextBatch) -> None:
        """Draw quads laid out by the caller (pixels, origin top-left of ``target``'s viewport)."""
        _, _, vw, vh = target.viewport
        verts = batch.array()[: _MAX_QUADS * 6]
        if len(verts) == 0:
            return
        self.vbo.write(verts.tobytes())
        target.use()
        self.program["viewport"].value = (float(vw), float(vh))
        self.atlas.texture.use(0)
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        try:
            self.vao.render(moderngl.TRIANGLES, vertices=len(verts))
        finally:
            self.ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        for obj in (self.vao, self.vbo, self.program):
            obj.release()
        self.atlas.release()
