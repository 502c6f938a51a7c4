"""Run in a subprocess under Xvfb by test_window.py: open a Window, render a bank, then follow orders.

argv: BANK COORD(comma separated) WIDTH HEIGHT. Prints JSON lines; reads commands from stdin:
``keys`` (simulate key presses through the window's handler), ``pump N`` (N frames), ``quit``.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    import glfw

    from vjengine.bank import open_bank
    from vjengine.control.commands import CommandQueue
    from vjengine.render.renderer import Renderer
    from vjengine.render.window import Window

    bank_path, coord_text, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    coord = [float(v) for v in coord_text.split(",")]
    bank = open_bank(bank_path)
    queue = CommandQueue()
    win = Window(size=(width, height), queue=queue, axis_names=[a.name for a in bank.axes], title="vj-test")
    renderer = Renderer(win.ctx, bank, fit="stretch", progress=False, raise_errors=True)
    hud_lines: list[str] = []
    clock_s = 100.0

    def frame() -> None:
        win.poll()
        renderer.render(coord, None, 1 / 60, target=win.screen)
        win.draw_hud(coord=coord, input_level=0.25, lines=hud_lines)
        win.swap()

    def say(**obj) -> None:
        print(json.dumps(obj), flush=True)

    for _ in range(3):
        frame()
    win.ctx.finish()
    say(event="ready", pos=list(win.position), size=list(win.size), gl=win.ctx.info["GL_RENDERER"])
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "pump":
            for _ in range(int(parts[1])):
                frame()
            win.ctx.finish()
            cursor = glfw.get_input_mode(win._win, glfw.CURSOR)
            say(event="pumped", size=list(win.size), fullscreen=win.fullscreen, hud=win.hud_visible,
                should_close=win.should_close, cursor_hidden=cursor == glfw.CURSOR_HIDDEN)
        elif parts[0] == "keys":  # key names; "wait" lets 2 s pass; presses are 0.3 s apart
            for name in parts[1:]:
                if name == "wait":
                    clock_s += 2.0
                    continue
                mods = glfw.MOD_SHIFT if name.startswith("shift+") else 0
                key = getattr(glfw, "KEY_" + name.split("+")[-1].upper())
                win.handle_key(key, glfw.PRESS, mods, now_s=clock_s)
                clock_s += 0.3
            cmds = [(c.kind, c.target, c.value, c.source) for c in queue.drain()]
            say(event="keys", commands=cmds, should_close=win.should_close)
        elif parts[0] == "drain":
            cmds = [(c.kind, c.target, c.value, c.source) for c in queue.drain()]
            say(event="drained", commands=cmds, should_close=win.should_close, fullscreen=win.fullscreen,
                hud=win.hud_visible)
        elif parts[0] == "quit":
            break
    renderer.release()
    win.close()
    say(event="closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
