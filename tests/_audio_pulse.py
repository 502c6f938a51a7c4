"""Test helper: a private PulseAudio server with a null sink standing in for line-in.

``pulse_server(tmp_path)`` starts ``pulseaudio`` with its own XDG_RUNTIME_DIR and HOME (nothing
touches the user's session), loads ``module-null-sink sink_name=vj`` and makes ``vj.monitor`` the
default source, so PortAudio's ALSA device ``pulse`` captures whatever ``paplay -d vj`` plays.
Yields the environment for subprocesses; stops the server and removes its files afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

NEEDED = ("pulseaudio", "pactl", "paplay")


def require_pulse() -> None:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"PulseAudio capture test needs {', '.join(missing)} (Debian: pulseaudio pulseaudio-utils)")
    if not any(Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so",
                                          "/usr/lib/aarch64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so",
                                          "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so")):
        pytest.skip("the ALSA pulse plugin is missing (Debian: libasound2-plugins); PortAudio cannot see 'pulse'")


def load_null_sink(env: dict) -> str:
    """Load the ``vj`` null sink and make its monitor the default source; returns the module id."""
    out = subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=vj", "rate=48000"],
                         env=env, check=True, capture_output=True, text=True, timeout=60)
    subprocess.run(["pactl", "set-default-source", "vj.monitor"], env=env, check=True, timeout=60)
    subprocess.run(["pactl", "set-default-sink", "vj"], env=env, check=True, timeout=60)
    return out.stdout.strip()


@contextlib.contextmanager
def pulse_server(tmp_path: Path):
    require_pulse()
    runtime = tmp_path / "pulse-runtime"
    home = tmp_path / "pulse-home"
    runtime.mkdir(mode=0o700)
    home.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(home), PULSE_RUNTIME_PATH=str(runtime / "pulse"))
    env.pop("PULSE_SERVER", None)
    log = open(tmp_path / "pulseaudio.log", "wb")
    proc = subprocess.Popen(["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--disable-shm=yes",
                             "--load=module-native-protocol-unix"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60.0  # generous: a loaded machine starts it slowly
        while True:
            if proc.poll() is not None:
                pytest.skip(f"pulseaudio exited at start (code {proc.returncode}); see {tmp_path}/pulseaudio.log")
            if subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=60).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("pulseaudio did not answer pactl within 60 s")
            time.sleep(0.1)  # polling the condition (pactl answers), bounded by the deadline
        load_null_sink(env)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
