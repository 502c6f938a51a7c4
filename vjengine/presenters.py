"""Where a live show's frames go: a glfw window (vsync, HUD, keys) or nowhere (headless, paced)."""

from __future__ import annotations

import os
import time
from typing import Any

from vjengine.control.commands import Command
from vjengine.frameloop import Presenter
from vjengine.show.state import ShowState


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class HeadlessPresenter(Presenter):
    """Offscreen: frames stay in the compositor's output; paced to ``fps`` in real time when live."""

    def __init__(self, size: tuple[int, int], fps: float, *, pace: bool = True) -> None:
        self.size = size
        self.period_s = 1.0 / fps
        self.pace = pace
        self._next = time.perf_counter() + self.period_s

    def present(self, compositor: Any) -> None:
        if not self.pace:
            return
        now = time.perf_counter()
        wait = self._next - now
        if wait > 0:
            time.sleep(wait)
            self._next += self.period_s
        else:  # late: do not try to catch up with a burst
            self._next = now + self.period_s


class WindowPresenter(Presenter):
    """A glfw window (vsync, HUD, keys -> Commands on the queue)."""

    def __init__(self, window: Any, show: ShowState, *, operator: Any = None, preview: Any = None) -> None:
        self.window = window
        self.show = show
        self.lines: list[str] = []
        self.input_level: float | None = None
        self._bank: int | None = None
        # --operator: the HUD goes to the operator view (vjengine.output.operator), fed by
        # ``preview()`` (the newest read-back frame), and the projector shows only the show.
        self.operator = operator
        self.preview = preview
        self.frame: Any = None  # the newest AudioFrame, for the operator's beat lights
        self.learn = ""  # MIDI learn's state, a row of its own in the operator view

    @property
    def target(self) -> Any:  # type: ignore[override]
        return self.window.screen

    @property
    def size(self) -> tuple[int, int]:  # type: ignore[override]
        return tuple(self.window.size)

    def begin_frame(self) -> None:
        self.window.poll()

    def present(self, compositor: Any) -> None:
        show = self.show
        if self._bank != show.bank_index:  # arrow keys nudge the current bank's axes
            self._bank = show.bank_index
            self.window.axis_names = [a.name for a in show.axes]
        self.window.blackout_on = show.blackout  # B toggles from the state, whoever set it
        last = show.last
        coord = last.coord if last else None
        if self.operator is None:
            self.window.draw_hud(coord=coord, input_level=self.input_level, lines=self.lines)
            self.window.swap()
            return
        self.window.swap()
        self._draw_operator(coord)

    def _draw_operator(self, coord: Any) -> None:
        op = self.operator
        if op.should_close:  # the operator window closed: the show goes on without it
            op.close()
            self.operator = None
            return
        win = self.window
        if win.notice is not None and op.window.notice is None:  # Esc notices show on both
            op.window.notice = win.notice
        frame = self.frame
        beat_phase = float(getattr(frame, "beat_phase", 1.0)) if frame is not None else 1.0
        bar_phase = float(getattr(frame, "bar_phase", 1.0)) if frame is not None else 1.0
        per_bar = int(getattr(frame, "beats_per_bar", 4) or 4) if frame is not None else 4
        show = self.show
        title = (f"preset {show.preset_index + 1}: {show.current_preset.name}    "
                 f"bank {show.bank_index + 1}: {show.banks[show.bank_index].name}"
                 + ("    BLACKOUT" if show.blackout else ""))
        op.draw(self.preview(), coord=coord, input_level=self.input_level, lines=self.lines,
                beat=beat_phase < 0.2, bar=bar_phase < 0.2 / per_bar,
                beat_in_bar=min(per_bar - 1, int(bar_phase * per_bar)), beats_per_bar=per_bar, title=title,
                learn=self.learn)

    def should_close(self) -> bool:
        return bool(self.window.should_close)

    def handle_request(self, request: str) -> None:
        if request == "hud" and self.operator is not None:
            self.operator.window.handle_command(Command(request, source="show"))
        elif request in ("fullscreen", "hud"):
            self.window.handle_command(Command(request, source="show"))

    def set_hud(self, lines: list[str]) -> None:
        self.lines = list(lines)

    def close(self) -> None:
        if self.operator is not None:
            self.operator.close()
            self.operator = None
        self.window.close()
