"""The render thread gets the best nice value the OS allows; background threads yield to it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from vjengine.priority import lower_this_thread, raise_render_priority

_CHILD = """
import os, threading
from vjengine.priority import raise_render_priority
before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
got = raise_render_priority()
after = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
seen = []
t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
t.start(); t.join()
print(before, after, seen[0], got)
"""


def test_render_priority_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=30, check=True)
    before, after, child, *desc = out.stdout.split()
    before, after, child = int(before), int(after), int(child)
    assert after <= before and child == after  # threads started later inherit it
    if os.geteuid() == 0:
        assert after <= -10 and " ".join(desc) == f"nice {after}"


def test_background_thread_yields():
    seen = []

    def work():
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_this_thread()
        seen.append((before, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    before, after = seen[0]
    assert after == min(19, before + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.getpriority(os.PRIO_PROCESS, 0)
    assert isinstance(raise_render_priority(target=os.getpriority(os.PRIO_PROCESS, 0)), str)
