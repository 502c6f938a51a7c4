"""The show window (glfw): windowed or fullscreen on a chosen monitor, vsync, keyboard, HUD.

Keys: F toggles fullscreen, H toggles the HUD, Esc twice within one second quits (one stray Esc must
not end a show; the first shows a notice), R says "this is the one" (``resync``: the nearest beat
becomes beat 1 of the bar, as ``/vj/resync`` does). Show keys become :class:`Command` values on the app's
:class:`CommandQueue` (``source="key"``):

- 1..9 -> ``preset`` with value 0..8 (the preset index, 0-based);
- space -> ``tap``;
- Left/Right -> ``axis_nudge`` of the first axis by -/+``NUDGE_STEP``, Up/Down of the second; with
  Shift, the third and fourth axes (``axis_names`` gives the targets);
- B -> ``blackout`` with the toggled state (``blackout_on`` tracks it; the app may set it when a
  blackout arrives another way).

Typical loop::

    win = Window(monitor=0, fullscreen=True, queue=queue)
    renderer = Renderer(win.ctx, bank)
    while not win.should_close:
        win.poll()
        renderer.render(coord, fx, dt_s, target=win.screen)
        win.draw_hud(coord=coord, lines=[...])
        win.swap()
    win.close()

The window's GL context is GLX/WGL/Cocoa through glfw; do not create an EGL context (``headless_context``)
on the same thread.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence

import moderngl

from vjengine.control.commands import Command, CommandQueue
from vjengine.errors import DeviceError

log = logging.getLogger(__name__)

NUDGE_STEP = 0.02
ESC_QUIT_WINDOW_S = 1.0
NOTICE_S = 1.5


def init_glfw():
    """Import and initialise glfw, or raise :class:`DeviceError` saying why (no display, no library)."""
    import os

    try:
        import glfw
    except Exception as exc:  # the pip wheel bundles libglfw; a missing system lib shows up here
        raise DeviceError(f"cannot load glfw ({exc}); pip install glfw") from exc
    glfw.ERROR_REPORTING = "ignore"
    if not glfw.init():
        display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        where = f"DISPLAY={display!r}" if display else "no DISPLAY or WAYLAND_DISPLAY is set"
        raise DeviceError(f"cannot open a display for the window ({where}); run on a desktop session, "
                          "or under Xvfb for testing, or use `vj still` / `vj render` headless")
    return glfw


def list_monitors() -> list[dict]:
    """Every connected monitor: index, name, current mode, position, physical size, primary flag."""
    glfw = init_glfw()
    primary = glfw.get_primary_monitor()
    out = []
    for i, mon in enumerate(glfw.get_monitors() or []):
        mode = glfw.get_video_mode(mon)
        x, y = glfw.get_monitor_pos(mon)
        w_mm, h_mm = glfw.get_monitor_physical_size(mon)
        name = glfw.get_monitor_name(mon)
        out.append({
            "index": i,
            "name": name.decode(errors="replace") if isinstance(name, bytes) else str(name),
            "width": mode.size.width, "height": mode.size.height, "refresh_hz": mode.refresh_rate,
            "x": x, "y": y, "width_mm": w_mm, "height_mm": h_mm,
            "primary": bool(primary) and glfw.get_monitor_name(primary) == glfw.get_monitor_name(mon)
            and glfw.get_monitor_pos(primary) == (x, y),
        })
    return out


def describe_monitors(monitors: list[dict]) -> str:
    """One line per monitor, as ``--monitor N`` counts them (or that there are none)."""
    if not monitors:
        return "no monitors connected"
    return "monitors: " + "; ".join(
        f"{m['index']}: {m['name']} {m['width']}x{m['height']}@{m['refresh_hz']}Hz" + (" (primary)" if m["primary"] else "")
        for m in monitors)


class Window:
    """A glfw window with a moderngl context (``ctx``), its default framebuffer (``screen``) and HUD.

    ``size``: windowed size in screen coordinates; ``fullscreen``: start fullscreen; ``monitor``:
    index into ``vj monitors`` for fullscreen (None = primary); ``vsync``: swap at the display's
    refresh; ``queue``: where key commands go (None = a private queue, see ``queue``);
    ``axis_names``: targets of the arrow-key nudges.
    """

    def __init__(self, *, size: tuple[int, int] = (1280, 720), fullscreen: bool = False,
                 monitor: int | None = None, title: str = "vjengine", vsync: bool = True,
                 queue: CommandQueue | None = None, axis_names: Sequence[str] = ()) -> None:
        self._glfw = glfw = init_glfw()
        self.queue = queue if queue is not None else CommandQueue()
        self.axis_names = list(axis_names)
        self.hud_visible = False
        self.blackout_on = False
        self.monitor_index = monitor
        monitors = glfw.get_monitors() or []
        if monitor is not None and not 0 <= monitor < len(monitors):
            listed = describe_monitors(list_monitors())
            glfw.terminate()
            raise DeviceError(f"--monitor {monitor} does not exist: {len(monitors)} monitor(s) connected; {listed}")
        if fullscreen and not monitors:
            glfw.terminate()
            raise DeviceError("--fullscreen: no monitors connected (see `vj monitors`)")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.DOUBLEBUFFER, True)
        self._windowed_rect = (100, 100, int(size[0]), int(size[1]))
        self._win = glfw.create_window(int(size[0]), int(size[1]), title, None, None)
        if not self._win:
            glfw.terminate()
            raise DeviceError("cannot create an OpenGL 3.3 core window (check the GL driver; "
                              "`glxinfo -B` should show OpenGL 3.3 or newer)")
        glfw.make_context_current(self._win)
        glfw.swap_interval(1 if vsync else 0)
        self.ctx = moderngl.create_context(require=330)
        self.screen = self.ctx.detect_framebuffer(0)
        glfw.set_key_callback(self._win, self._on_key)
        self._last_esc_s = -1e9
        self._notice: tuple[str, float] | None = None
        self._frame_times = collections.deque(maxlen=240)
        self._last_swap_s: float | None = None
        self._hud = None
        try:  # made now, not on the first H press: rasterising the font takes a moment
            from vjengine.render.hud import Hud

            self._hud = Hud(self.ctx)
        except Exception:
            log.exception("HUD unavailable")
        self.fullscreen = False
        if fullscreen:
            self.set_fullscreen(True)
        self._update_viewport()

    # --- state ---------------------------------------------------------------------------------

    @property
    def should_close(self) -> bool:
        return bool(self._glfw.window_should_close(self._win))

    @should_close.setter
    def should_close(self, value: bool) -> None:
        self._glfw.set_window_should_close(self._win, bool(value))

    @property
    def size(self) -> tuple[int, int]:
        """Framebuffer size in pixels (what the renderer draws)."""
        w, h = self._glfw.get_framebuffer_size(self._win)
        return int(w), int(h)

    @property
    def position(self) -> tuple[int, int]:
        """Window position on the desktop, screen coordinates."""
        return tuple(self._glfw.get_window_pos(self._win))

    def _update_viewport(self) -> None:
        w, h = self.size
        self.screen.viewport = (0, 0, max(1, w), max(1, h))

    def _monitor(self):
        glfw = self._glfw
        monitors = glfw.get_monitors() or []
        if self.monitor_index is not None and self.monitor_index < len(monitors):
            return monitors[self.monitor_index]
        return glfw.get_primary_monitor() or (monitors[0] if monitors else None)

    def set_fullscreen(self, on: bool) -> None:
        """Fullscreen on the chosen monitor at its current mode (cursor hidden), or back to a window."""
        glfw = self._glfw
        if on == self.fullscreen:
            return
        if on:
            mon = self._monitor()
            if mon is None:
                log.warning("no monitor found for fullscreen")
                return
            x, y = glfw.get_window_pos(self._win)
            w, h = glfw.get_window_size(self._win)
            self._windowed_rect = (x, y, w, h)
            mode = glfw.get_video_mode(mon)
            glfw.set_window_monitor(self._win, mon, 0, 0, mode.size.width, mode.size.height, mode.refresh_rate)
            glfw.set_input_mode(self._win, glfw.CURSOR, glfw.CURSOR_HIDDEN)
        else:
            x, y, w, h = self._windowed_rect
            glfw.set_window_monitor(self._win, None, x, y, w, h, 0)
            glfw.set_input_mode(self._win, glfw.CURSOR, glfw.CURSOR_NORMAL)
        self.fullscreen = on
        self._update_viewport()

    @property
    def notice(self) -> tuple[str, float] | None:
        """The notice on screen now and the ``perf_counter`` time it goes (None when there is none)."""
        return self._notice

    @notice.setter
    def notice(self, value: tuple[str, float] | None) -> None:
        self._notice = value

    @property
    def hud(self):
        """The HUD text renderer (None when it could not be made)."""
        return self._hud

    def toggle_fullscreen(self) -> None:
        self.set_fullscreen(not self.fullscreen)

    def toggle_hud(self) -> None:
        self.hud_visible = not self.hud_visible

    def notify(self, text: str, seconds: float = NOTICE_S) -> None:
        """Show ``text`` in the middle of the screen for a moment (even with the HUD hidden)."""
        self._notice = (text, time.perf_counter() + seconds)

    def handle_command(self, cmd: Command) -> bool:
        """Apply a window command (``fullscreen``, ``hud``, ``quit``) from any source; returns whether
        it was one. The app calls this for commands it drains, so OSC can toggle these too."""
        if cmd.kind == "fullscreen":
            self.toggle_fullscreen()
        elif cmd.kind == "hud":
            self.toggle_hud()
        elif cmd.kind == "quit":
            self.should_close = True
        else:
            return False
        return True

    # --- keys ----------------------------------------------------------------------------------

    def _push(self, kind: str, target: str = "", value=None) -> None:
        self.queue.put(Command(kind, target, value, source="key"))

    def _axis(self, i: int) -> str:
        return self.axis_names[i] if i < len(self.axis_names) else str(i)

    def _on_key(self, _win, key, _scancode, action, mods) -> None:
        try:
            self.handle_key(key, action, mods)
        except Exception:  # a callback must never take the show down
            log.exception("key handler failed")

    def handle_key(self, key: int, action: int, mods: int = 0, now_s: float | None = None) -> None:
        """What a key press does (the glfw callback calls this; tests may too)."""
        glfw = self._glfw
        if action not in (glfw.PRESS, glfw.REPEAT):
            return
        now_s = time.perf_counter() if now_s is None else now_s
        shift = bool(mods & glfw.MOD_SHIFT)
        arrows = {glfw.KEY_LEFT: (0, -1), glfw.KEY_RIGHT: (0, 1), glfw.KEY_UP: (1, 1), glfw.KEY_DOWN: (1, -1)}
        if key in arrows:
            axis, sign = arrows[key]
            self._push("axis_nudge", self._axis(axis + (2 if shift else 0)), sign * NUDGE_STEP)
            return
        if action != glfw.PRESS:
            return
        if key == glfw.KEY_ESCAPE:
            if now_s - self._last_esc_s <= ESC_QUIT_WINDOW_S:
                self._last_esc_s = -1e9
                self.should_close = True
                self._push("quit")
            else:
                self._last_esc_s = now_s
                self.notify("Press Esc again to quit", ESC_QUIT_WINDOW_S)
        elif key == glfw.KEY_F:
            self.toggle_fullscreen()
        elif key == glfw.KEY_H:
            self.toggle_hud()
        elif key == glfw.KEY_B:
            self.blackout_on = not self.blackout_on
            self._push("blackout", value=self.blackout_on)
        elif key == glfw.KEY_SPACE:
            self._push("tap")
        elif key == glfw.KEY_R:  # "this is the one": the nearest beat becomes beat 1 of the bar
            self._push("resync")
            self.notify("beat 1 is here now (resync)")
        elif key == glfw.KEY_L:  # MIDI learn: each press arms the next address (axes, levels, effects), then off
            self._push("midi_learn", "prev" if shift else "")
        elif glfw.KEY_1 <= key <= glfw.KEY_9:
            self._push("preset", value=key - glfw.KEY_1)

    # --- per frame -----------------------------------------------------------------------------

    def poll(self) -> None:
        """Handle window events (keys, resize); call once per frame before drawing."""
        self._glfw.poll_events()
        self._update_viewport()

    def frame_stats(self) -> tuple[float, float, float]:
        """(fps, mean frame time ms, max frame time ms) over the last second of swaps."""
        times = list(self._frame_times)
        if not times:
            return 0.0, 0.0, 0.0
        recent, total = [], 0.0
        for dt in reversed(times):
            recent.append(dt)
            total += dt
            if total >= 1.0:
                break
        mean = total / len(recent)
        return (1.0 / mean if mean > 0 else 0.0), mean * 1000.0, max(recent) * 1000.0

    def draw_hud(self, *, coord: Sequence[float] | None = None, input_level: float | None = None,
                 lines: Sequence[str] = ()) -> None:
        """Draw the HUD (if visible: fps, frame time, ``coord`` with ``axis_names``, ``input_level``
        0..1 linear as dBFS, status ``lines``) and any notice, over what was rendered this frame."""
        notice = None
        if self._notice is not None:
            text, until = self._notice
            if time.perf_counter() < until:
                notice = text
            else:
                self._notice = None
        if not self.hud_visible and notice is None:
            return
        if self._hud is None:
            return
        try:
            if self.hud_visible:
                fps, mean_ms, max_ms = self.frame_stats()
                self._hud.draw(self.screen, fps=fps, frame_ms=mean_ms, frame_max_ms=max_ms, coord=coord,
                               axis_names=self.axis_names, input_level=input_level, lines=lines, notice=notice)
            else:
                self._hud.draw(self.screen, notice=notice)
        except Exception:
            log.exception("HUD failed; hiding it")
            self.hud_visible = False

    def swap(self) -> None:
        """Show the frame (waits for vsync when on) and record the frame time."""
        self._glfw.swap_buffers(self._win)
        now = time.perf_counter()
        if self._last_swap_s is not None:
            self._frame_times.append(now - self._last_swap_s)
        self._last_swap_s = now

    def make_current(self) -> None:
        """Make this window's GL context current (two windows: the projector and the operator)."""
        self._glfw.make_context_current(self._win)

    def close(self, terminate: bool = True) -> None:
        """Destroy the window and its context (and glfw, unless another window stays open)."""
        if self._hud is not None:
            self._hud.release()
            self._hud = None
        if self._win is not None:
            self._glfw.destroy_window(self._win)
            self._win = None
        if terminate:
            self._glfw.terminate()

    def __enter__(self) -> Window:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
