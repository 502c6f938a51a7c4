"""``--operator``: a second window on the laptop's own screen for the VJ, while the projector window
shows only the show. It has the program output (read back at its own size through the output hub),
the HUD (fps, frame time, coordinates, input meter, show and output status), beat and bar lights,
and the bank and preset, and MIDI learn's state (with ``--midi-in``); its keys are the show keys (same
command queue): L arms MIDI learn for the next address (Shift+L the previous), shown in its own row in
the strip until a control is moved. H toggles its HUD.

Each window has its own GL context; the operator's is made current only while it draws, then the
projector's again. It draws when a new preview frame has arrived (``fps``), not every show frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import moderngl
import numpy as np

from vjengine.output.readback import fit_rect
from vjengine.render.context import load_program

log = logging.getLogger(__name__)

STRIP_ROWS = 4  # text rows under the preview: lights, preset and bank, MIDI learn


class OperatorView:
    """The operator window. ``preview_size``: the program output's size in it (read back at that)."""

    def __init__(self, *, queue: Any, axis_names: Sequence[str] = (), size: tuple[int, int] = (1024, 640),
                 preview_size: tuple[int, int] = (768, 432), fps: float = 30.0, projector: Any = None) -> None:
        from vjengine.render.window import Window  # noqa: PLC0415

        self.projector = projector
        self.fps = float(fps)
        self.preview_size = (int(preview_size[0]) & ~1, int(preview_size[1]) & ~1)
        self.window = Window(size=size, title="vjengine operator", vsync=False, queue=queue,
                             axis_names=axis_names)
        self.window.hud_visible = True
        ctx = self.ctx = self.window.ctx
        self.texture = ctx.texture(self.preview_size, 4)
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.program = load_program(ctx, "out_scale", vertex="fullscreen")
        self.program["source"].value = 0
        self.vao = ctx.vertex_array(self.program, [])
        self.frames = 0
        self._last_number = -1
        self._restore()

    def _restore(self) -> None:
        if self.projector is not None:
            self.projector.make_current()

    @property
    def should_close(self) -> bool:
        return self.window.should_close

    def draw(self, frame: Any, *, coord: Sequence[float] | None = None, input_level: float | None = None,
             lines: Sequence[str] = (), beat: bool = False, bar: bool = False, beat_in_bar: int = 0,
             beats_per_bar: int = 4, title: str = "", learn: str = "", force: bool = False) -> bool:
        """Draw the view if ``frame`` (an OutFrame from the hub) is new; returns whether it drew.
        Never raises: a failure is logged once and the view stops drawing."""
        if frame is None or (frame.number == self._last_number and not force):
            return False
        self._last_number = frame.number
        try:
            win = self.window
            win.make_current()
            win.poll()
            screen = win.screen
            screen.use()
            screen.clear(0.08, 0.08, 0.08, 1.0)
            w, h = win.size
            hud = win.hud
            row = hud.atlas.cell_h if hud is not None else 16
            strip = STRIP_ROWS * row + 24
            self.texture.write(np.ascontiguousarray(frame.bottom_up))
            area = (w, max(16, h - strip))
            x, y, pw, ph = fit_rect(self.preview_size, area)
            rect = (x, strip + y, pw, ph)  # GL rows count from the bottom: the strip is below
            screen.viewport = rect
            self.program["rect"].value = tuple(float(v) for v in rect)
            self.texture.use(0)
            self.vao.render(moderngl.TRIANGLES, vertices=3)
            screen.viewport = (0, 0, w, h)
            win.draw_hud(coord=coord, input_level=input_level, lines=lines)
            if hud is not None:
                self._strip(hud, screen, (w, h), strip, row, beat, bar, beat_in_bar, beats_per_bar, title, learn)
            win.swap()
            self.frames += 1
            return True
        except Exception:  # noqa: BLE001
            log.exception("operator view failed; closing it (the show goes on)")
            self.close()
            return False
        finally:
            self._restore()

    @staticmethod
    def _strip(hud: Any, screen: Any, size: tuple[int, int], strip: int, row: int, beat: bool, bar: bool,
               beat_in_bar: int, beats_per_bar: int, title: str, learn: str = "") -> None:
        from vjengine.render.hud import TextBatch  # noqa: PLC0415

        w, h = size
        top = h - strip + 8
        batch = TextBatch(hud.atlas)
        batch.rect(0, h - strip, w, strip, (0.0, 0.0, 0.0, 0.85))
        x = batch.text(12, top, "BEAT ", (0.8, 0.8, 0.8, 1))
        batch.rect(x, top, row, row, (0.2, 1.0, 0.3, 1.0) if beat else (0.25, 0.25, 0.25, 1.0))
        x = batch.text(x + row * 2, top, "BAR ", (0.8, 0.8, 0.8, 1))
        batch.rect(x, top, row, row, (1.0, 0.6, 0.2, 1.0) if bar else (0.25, 0.25, 0.25, 1.0))
        x += row * 2
        for i in range(max(1, beats_per_bar)):
            on = i == beat_in_bar
            batch.rect(x + i * row * 1.5, top + row * 0.2, row * 1.1, row * 0.6,
                       (0.9, 0.9, 0.9, 1.0) if on else (0.3, 0.3, 0.3, 1.0))
        fit = max(1, (w - 24) // hud.atlas.cell_w)
        batch.text(12, top + row * 1.5, title[:fit], (1.0, 0.95, 0.6, 1.0))
        if learn:  # armed: red, so it is not missed; else grey
            armed = learn.startswith("MIDI LEARN")
            batch.text(12, top + row * 2.7, learn[:fit], (1.0, 0.35, 0.3, 1.0) if armed else (0.6, 0.6, 0.6, 1.0))
        hud.draw_batch(screen, batch)

    def close(self) -> None:
        try:
            self.window.make_current()
            for obj in (self.vao, self.program, self.texture):
                obj.release()
            self.window.close(terminate=False)
        except Exception:  # noqa: BLE001
            pass
        finally:
            self._restore()
