"""`vj osc-monitor`: a VJ wiring up sees what arrives, what it does, and what is refused and why."""

from __future__ import annotations

import re
import subprocess

import pytest

from _osc_helpers import NEEDS_LIBLO, oscsend, send_raw
from vjengine.control.osc_wire import encode_message

pytestmark = pytest.mark.usefixtures("demo_bank_made")  # `vj demo` subprocesses find it made


@NEEDS_LIBLO
def test_monitor_prints_accepted_and_refused_messages(python_exe: str, repo_root) -> None:
    proc = subprocess.Popen(
        [python_exe, "-m", "vjengine.cli", "osc-monitor", "--osc-port", "0", "--axes", "mood,warp", "--count", "7",
         "--duration", "30"],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"listening for OSC on 127\.0\.0\.1:(\d+)", first)
        assert match, first
        port = int(match.group(1))
        oscsend(port, "/vj/axis/mood", "f", "0.5")
        oscsend(port, "/vj/axis/*", "s", "2")
        oscsend(port, "/composition/layers/1/video/opacity", "f", "0.5")
        oscsend(port, "/vj/tap", "i", "0")
        send_raw(port, encode_message("/vj/bpm", [120.0])[:-1])
        oscsend(port, "/vj/fx/zoom/amount", "f", "0.5")  # the show's effects are known by default
        oscsend(port, "/vj/fx/bloom/amount", "f", "0.5")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert any("ok" in ln and "/vj/axis/mood 0.5 -> axis mood = 0.5" in ln for ln in lines), out
    assert any("/vj/axis/* '2' -> axis mood = 1.0, axis warp = 1.0 (clamped)" in ln for ln in lines), out
    assert any("REFUSED" in ln and "/composition/layers/1/video/opacity" in ln and "[unknown_address]" in ln
               for ln in lines), out
    assert any("ignored" in ln and "/vj/tap 0" in ln for ln in lines), out
    assert any("REFUSED" in ln and "[truncated]" in ln for ln in lines), out
    assert any("/vj/fx/zoom/amount 0.5 -> fx zoom.amount = 0.5" in ln for ln in lines), out
    assert "7 datagrams, 6 messages: 3 accepted, 1 ignored, refused: truncated 1, unknown_address 2" in out


def test_monitor_takes_axis_names_from_a_bank(python_exe: str, repo_root, tmp_path) -> None:
    import numpy as np

    from vjengine.bank import Axis, write_bank

    bank = write_bank(tmp_path / "tiny", [Axis("hue", (0, 1)), Axis("size", (0, 1, 2))],
                      np.zeros((6, 4, 4, 3), np.uint8))
    done = subprocess.run(
        [python_exe, "-m", "vjengine.cli", "osc-monitor", "--osc-port", "0", "--bank", str(bank), "--duration", "0.3"],
        cwd=repo_root, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "axes: hue, size" in done.stdout
    missing = subprocess.run(
        [python_exe, "-m", "vjengine.cli", "osc-monitor", "--osc-port", "0", "--bank", str(tmp_path / "nope")],
        cwd=repo_root, capture_output=True, text=True, timeout=30,
    )
    assert missing.returncode == 2 and "nope" in missing.stderr


@NEEDS_LIBLO
def test_monitor_takes_the_axis_names_of_the_demo_bank(python_exe: str, repo_root) -> None:
    """`--bank demo` means the built-in bank, as everywhere else a bank is asked for."""
    from vjengine.bank import open_bank
    from vjengine.demo import demo_bank_path

    names = [a.name for a in open_bank(demo_bank_path()).axes]
    proc = subprocess.Popen(
        [python_exe, "-m", "vjengine.cli", "osc-monitor", "--osc-port", "0", "--bank", "demo", "--count", "1",
         "--duration", "30"],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        match = re.search(r"listening for OSC on 127\.0\.0\.1:(\d+)", first)
        assert match, first + proc.stderr.read()
        oscsend(int(match.group(1)), f"/vj/axis/{names[0]}", "f", "0.25")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"axis {names[0]} = 0.25" in out, out
