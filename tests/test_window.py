"""The glfw window under Xvfb, in a subprocess (an EGL and a GLX context on one thread kill a process):
open, render, screenshot with xwd, compare with the headless render of the same coordinate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _render_util import make_context, random_bank
from _render_xvfb import screenshot, xvfb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Child:
    """The window process: send a line, read JSON lines back."""

    def __init__(self, display: str, args: list[str]) -> None:
        env = dict(os.environ, DISPLAY=display, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
        env.pop("WAYLAND_DISPLAY", None)
        self.proc = subprocess.Popen([sys.executable, str(HERE / "_render_window_child.py"), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)

    def read(self, timeout_s: float = 60.0) -> dict:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith("{"):
                    return json.loads(line)
            elif self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError(f"window process gave no answer; stderr:\n{self.proc.stderr.read()[-3000:]}")

    def send(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(20)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("win") / "bank", (3, 4), (False, True), width=64, height=48,
                       seed=21, smooth=True)


def headless_render(bank, coord, size):
    from vjengine.render.renderer import Renderer

    ctx = make_context()
    try:
        r = Renderer(ctx, bank, output_size=size, fit="stretch", progress=False, raise_errors=True)
        r.render(coord)
        out = r.read_rgb()
        r.release()
        return out
    finally:
        ctx.release()


def test_window_shows_the_same_frame_as_headless(bank):
    coord = [0.3, 0.7]
    size = (160, 120)
    with xvfb() as display:
        child = Child(display, [str(bank.path), "0.3,0.7", str(size[0]), str(size[1])])
        try:
            ready = child.read()
            assert ready["event"] == "ready", ready
            x, y = ready["pos"]
            w, h = ready["size"]
            assert (w, h) == size
            shot = screenshot(display)
            window = shot[y:y + h, x:x + w]
            expected = headless_render(bank, coord, size)
            assert window.shape == expected.shape
            diff = np.abs(window.astype(int) - expected.astype(int))
            assert diff.max() <= 2, f"window differs from headless by up to {diff.max()}"
            assert expected.std() > 10  # a real picture, not a blank

            # H shows the HUD over the frame: the top-left corner changes.
            child.send("keys h")
            child.send("pump 2")
            with_hud = screenshot(display)[y:y + h, x:x + w]
            assert np.abs(with_hud[:30, :100].astype(int) - expected[:30, :100]).mean() > 10
        finally:
            child.close()
        assert child.proc.returncode == 0, child.proc.stderr.read()[-2000:]


def test_keys_become_commands_and_esc_needs_two_presses(bank):
    with xvfb() as display:
        child = Child(display, [str(bank.path), "0.5,0.5", "120", "90"])
        try:
            assert child.read()["event"] == "ready"
            got = child.send("keys 1 9 space left right up down shift+left b b r")
            cmds = [tuple(c) for c in got["commands"]]
            names = [a for a in ("axis0", "axis1")]
            assert cmds == [
                ("preset", "", 0, "key"), ("preset", "", 8, "key"), ("tap", "", None, "key"),
                ("axis_nudge", names[0], -0.02, "key"), ("axis_nudge", names[0], 0.02, "key"),
                ("axis_nudge", names[1], 0.02, "key"), ("axis_nudge", names[1], -0.02, "key"),
                ("axis_nudge", "2", -0.02, "key"),
                ("blackout", "", True, "key"), ("blackout", "", False, "key"),
                ("resync", "", None, "key"),  # R: "this is the one"
            ]
            assert got["should_close"] is False
            # One Esc does not quit (keys are 0.3 s apart in the child) ...
            got = child.send("keys wait escape wait escape")
            assert got["should_close"] is False and got["commands"] == []
            # ... and F toggles fullscreen, to the Xvfb screen size.
            child.send("keys f")
            pumped = child.send("pump 2")
            assert pumped["fullscreen"] is True and pumped["size"] == [1024, 768]
            assert pumped["cursor_hidden"] is True
            child.send("keys f")
            pumped = child.send("pump 2")
            assert pumped["fullscreen"] is False and pumped["size"] == [120, 90]
            assert pumped["cursor_hidden"] is False
            # Two Esc within a second quit.
            got = child.send("keys wait escape escape")
            assert got["should_close"] is True and [c[0] for c in got["commands"]] == ["quit"]
        finally:
            child.close()


def test_monitors_lists_the_xvfb_screen():
    with xvfb(800, 600) as display:
        env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(REPO))
        env.pop("WAYLAND_DISPLAY", None)
        out = subprocess.run([sys.executable, "-m", "vjengine.cli", "monitors", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        monitors = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(monitors) >= 1 and monitors[0]["width"] == 800 and monitors[0]["height"] == 600


def test_monitors_without_a_display_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-m", "vjengine.cli", "monitors"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "display" in out.stderr.lower()


def test_real_key_events_reach_the_window(bank):
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (Debian: apt-get install xdotool)")
    with xvfb() as display:
        child = Child(display, [str(bank.path), "0.5,0.5", "120", "90"])
        env = dict(os.environ, DISPLAY=display)
        try:
            assert child.read()["event"] == "ready"
            ids = subprocess.run(["xdotool", "search", "--name", "vj-test"], env=env, capture_output=True,
                                 text=True, timeout=30).stdout.split()
            assert ids, "the window is not on the X display"
            subprocess.run(["xdotool", "windowfocus", "--sync", ids[0]], env=env, check=True, timeout=30)
            subprocess.run(["xdotool", "key", "h", "space", "3"], env=env, check=True, timeout=30)
            commands: list = []
            end = time.monotonic() + 60.0  # pump the window until the X events have arrived (bounded by time)
            while time.monotonic() < end:
                child.send("pump 1")
                got = child.send("drain")
                commands += got["commands"]
                if len(commands) >= 2 and got["hud"]:
                    break
            assert got["hud"] is True
            assert [c[0] for c in commands] == ["tap", "preset"] and commands[1][2] == 2
        finally:
            child.close()
