"""The operator page in a real browser (Debian's Chromium, headless, driven by selenium) against a
real `vj demo --out http://...`: the preview is not black and moves, a preset button changes the
show; bound beyond loopback, a request without the token gets 401 and changes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _output_helpers import free_port

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_bank_made")]


def _status(base: str, token: str = "") -> dict | None:
    try:
        with urllib.request.urlopen(base + "/api/status" + (f"?token={token}" if token else ""), timeout=60) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _show_status(base: str, token: str = "") -> dict | None:
    """The status once the show has published one (the page serves from before the first frame)."""
    st = _status(base, token)
    return st if st and "preset_index" in st else None


def _wait(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _demo(url: str, tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "vjengine.cli", "demo", "--headless", "--duration", "120",
                             "--no-osc", "--size", "640x360", "--fps", "30", "--out", url,
                             "--screenshot", str(tmp_path / "last.png")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)


def _set_up(proc: subprocess.Popen, tmp_path: Path) -> None:
    """Wait until the show is set up (its log says so): first the demo bank is made (once per test
    cache), which on a heavily loaded machine took minutes; the waits for the page start after it."""
    log = tmp_path / "demo.log"
    deadline = time.monotonic() + 600.0
    while "show: " not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # ends the show like Ctrl-C: the normal shutdown
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Chromium and its driver are not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1000",
                "--disable-gpu"):
        opts.add_argument(arg)
    # Chromium leaves org.chromium.Chromium.* folders in TMPDIR: give it pytest's, which is cleaned up
    env = {**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("chromium"))}
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=opts)  # the system driver: no download
    yield driver
    driver.quit()


def _preview(driver) -> np.ndarray:
    from PIL import Image
    import io

    png = driver.find_element("id", "preview").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def test_page_preview_moves_and_buttons_drive_the_show(browser, tmp_path):
    port = free_port(kind=__import__("socket").SOCK_STREAM)
    base = f"http://127.0.0.1:{port}"
    proc = _demo(f"{base}/", tmp_path)
    try:
        _set_up(proc, tmp_path)
        first = _wait(lambda: _show_status(base), 90, "the show's status page")
        pick = 3 if first["preset_index"] != 3 else 2  # a preset the show is not on
        browser.get(base + "/")
        _wait(lambda: browser.execute_script(
            "const i = document.getElementById('preview'); return i.complete && i.naturalWidth > 0"),
            60, "the MJPEG preview")
        shot = _preview(browser)
        assert shot.mean() > 10, "the preview is black"
        _wait(lambda: np.abs(_preview(browser) - shot).mean() > 2, 60, "the preview to change")
        _wait(lambda: len(browser.find_elements("css selector", "#presets button")) >= 4, 60, "preset buttons")
        browser.save_screenshot(str(tmp_path / "page.png"))
        browser.find_elements("css selector", "#presets button")[pick].click()
        _wait(lambda: (_status(base) or {}).get("preset_index") == pick, 60, "the preset to change")
        _wait(lambda: "current" in browser.find_elements("css selector", "#presets button")[pick]
              .get_attribute("class"), 10, "the page to mark the preset")
        browser.find_element("id", "blackout").click()
        _wait(lambda: (_status(base) or {}).get("blackout") is True, 60, "blackout")
        outputs = _status(base)["outputs"]
        assert outputs[0]["url"] == f"{base}/" and outputs[0]["state"] == "live" and outputs[0]["viewers"] >= 1
    finally:
        _stop(proc)
    assert proc.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]


def test_lan_bound_page_refuses_without_the_token(tmp_path):
    port = free_port(kind=__import__("socket").SOCK_STREAM)
    proc = _demo(f"http://0.0.0.0:{port}/", tmp_path)  # every interface; the test talks to loopback only
    base = f"http://127.0.0.1:{port}"
    try:
        log = tmp_path / "demo.log"
        _set_up(proc, tmp_path)
        m = _wait(lambda: re.search(r"token required.*\?token=([\w-]+)", log.read_text()), 90, "the token line")
        token = m.group(1)
        start = _wait(lambda: _show_status(base, token), 60, "the status page")["preset_index"]
        want = 5 if start != 5 else 4
        for path in ("/", "/api/status", "/stream.mjpg", "/frame.jpg"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path, timeout=60)
            assert err.value.code == 401
        req = urllib.request.Request(base + "/api/command", data=json.dumps({"address": "/vj/preset", "args": [want]}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=60)
        assert err.value.code == 401
        before = _status(base, token)["frames"]
        _wait(lambda: _status(base, token)["frames"] > before + 10, 60, "frames to pass")
        st = _status(base, token)
        assert st["preset_index"] == start  # nothing applied
        assert st["outputs"][0]["unauthorized"] >= 5 and st["outputs"][0]["token"] is True
        req.add_header("X-VJ-Token", token)
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
        _wait(lambda: _status(base, token)["preset_index"] == want, 60, "the preset from the token holder")
    finally:
        _stop(proc)
