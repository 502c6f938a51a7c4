"""SIGTERM, SIGHUP and SIGINT end the loop the same way; a second signal interrupts the shutdown."""

from __future__ import annotations

import os
import signal

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
