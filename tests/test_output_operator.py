"""--operator under Xvfb: `vj demo` opens two windows; the operator one has the preview and the HUD,
the projector one only the show, even when its HUD key is pressed (compared on screenshots)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _render_xvfb import screenshot, xvfb

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_bank_made")]
# Deadlines for things that should happen (a wait that succeeds ends at once): generous, as on a loaded
# 2-core machine the demo bank alone takes seconds to make and an X client seconds to answer.
DEADLINE_S = 120.0
SETUP_DEADLINE_S = 600.0  # making the demo bank and opening the show
TOOL_TIMEOUT_S = 60.0


def _windows(display: str, name: str) -> list[tuple[int, int, int, int, int]]:
    """(id, x, y, w, h) of the visible windows whose title is exactly ``name``."""
    out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", f"^{re.escape(name)}$"],
                         capture_output=True, text=True, env=dict(os.environ, DISPLAY=display), timeout=TOOL_TIMEOUT_S)
    found = []
    for wid in out.stdout.split():
        geo = subprocess.run(["xwininfo", "-id", wid], capture_output=True, text=True,
                             env=dict(os.environ, DISPLAY=display), timeout=TOOL_TIMEOUT_S).stdout
        num = {k: int(re.search(rf"{k}:\s+(-?\d+)", geo).group(1)) for k in
               ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height")}
        found.append((int(wid), num["Absolute upper-left X"], num["Absolute upper-left Y"], num["Width"],
                      num["Height"]))
    return found


def _busy(img: np.ndarray) -> float:
    """Mean horizontal step between neighbouring pixels: text is busy, the demo's gradients are not."""
    return float(np.abs(np.diff(img.astype(np.int16), axis=1)).mean())


def test_operator_window_has_the_hud_and_the_projector_stays_clean(tmp_path):
    if subprocess.run(["which", "xdotool"], capture_output=True).returncode != 0:
        pytest.skip("xdotool is not installed (Debian: apt-get install xdotool)")
    with xvfb(1920, 1080) as display:
        env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(REPO))
        env.pop("WAYLAND_DISPLAY", None)
        log = open(tmp_path / "demo.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "vjengine.cli", "demo", "--operator", "--duration", "600",
                                 "--no-osc", "--size", "640x360"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path)
        try:
            # the demo bank is made first (once per test cache): on a heavily loaded machine that alone
            # took minutes, so the windows' deadline starts once the show is set up
            deadline = time.monotonic() + SETUP_DEADLINE_S
            while time.monotonic() < deadline and "show: " not in (tmp_path / "demo.log").read_text():
                assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
                time.sleep(0.2)
            deadline = time.monotonic() + DEADLINE_S
            proj = oper = []
            while time.monotonic() < deadline and not (proj and oper):
                assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
                proj, oper = _windows(display, "vjengine"), _windows(display, "vjengine operator")
                time.sleep(0.2)
            assert len(proj) == 1 and len(oper) == 1, (proj, oper, (tmp_path / "demo.log").read_text()[-2000:])
            # Xvfb has no window manager to place them: side by side, as on a desk
            for wid, x in ((proj[0][0], 0), (oper[0][0], 700)):
                subprocess.run(["xdotool", "windowmove", str(wid), str(x), "0"], env=env, timeout=TOOL_TIMEOUT_S,
                               check=True)
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                proj, oper = _windows(display, "vjengine"), _windows(display, "vjengine operator")
                if proj[0][1] == 0 and oper[0][1] == 700:
                    break
                time.sleep(0.1)
            assert proj[0][1] == 0 and oper[0][1] == 700, ("the windows were not moved", proj, oper)
            # the HUD key on the projector window: with an operator view it must not draw there
            subprocess.run(["xdotool", "key", "--window", str(proj[0][0]), "h"], env=env, timeout=TOOL_TIMEOUT_S,
                           check=True)

            def regions():
                shot = screenshot(display)
                _, px, py, pw, ph = proj[0]
                _, ox, oy, ow, oh = oper[0]
                return shot[py:py + ph, px:px + pw], shot[oy:oy + oh, ox:ox + ow]

            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:  # until the operator view shows its HUD and preview
                p_img, o_img = regions()
                if _busy(o_img[10:120, 10:400]) > 8 and o_img[150:300].mean() > 20:
                    break
                time.sleep(0.3)
            from vjengine.render.still import write_png

            write_png(tmp_path / "projector.png", p_img)
            write_png(tmp_path / "operator.png", o_img)
            assert _busy(o_img[10:120, 10:400]) > 8, "no HUD text in the operator window"
            assert o_img[150:300].mean() > 20, "the operator preview is black"
            assert p_img.mean() > 20, "the projector shows nothing"
            assert _busy(p_img[10:120, 10:400]) < 4, "HUD-like detail on the projector window"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    text = (tmp_path / "demo.log").read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "GL error" not in text and "Traceback" not in text, text[-3000:]  # two contexts, no stray errors
