"""SIGTERM, SIGHUP and SIGINT end the loop the same way; a second signal interrupts the shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vjengine.shutdown import GracefulStop


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_each_signal_requests_a_clean_stop(sig):
    seen = []
    before = signal.getsignal(sig)
    with GracefulStop(on_stop=seen.append) as stop:
        os.kill(os.getpid(), sig)  # delivered to the main thread before kill() returns to Python code
        assert stop.requested == sig.name and seen == [sig.name]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)  # the second one does not wait
    assert signal.getsignal(sig) == before  # restored


STUCK_CHILD = """
import threading
from vjengine.shutdown import GracefulStop

def stuck_in_close():  # a close that never returns, as in a driver call
    threading.Event().wait()

stopped = threading.Event()
with GracefulStop(on_stop=lambda name: stopped.set(), deadline_s=0.5):
    print("ready", flush=True)
    stopped.wait()  # until SIGTERM
stuck_in_close()
"""


def test_a_stop_stuck_past_its_deadline_dumps_the_stacks_and_exits_1():
    """The first signal arms the watchdog: a close stuck where no second signal reaches still ends,
    with exit code 1 and every thread's stack on stderr, naming where it hung."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", STUCK_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "stuck_in_close" in err and "SIGTERM: ending the show" not in err  # logging was not set up here
