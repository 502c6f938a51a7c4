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
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=30, check=True,
                         start_new_session=True)  # its own session: this one's autogroup stays as it is
    before, after, child, *desc = out.stdout.split()
    before, after, child = int(before), int(after), int(child)
    assert after <= before and child == after  # threads started later inherit it
    if os.geteuid() == 0:
        assert after <= -10 and " ".join(desc).startswith(f"nice {after}")


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


_SESSION_CHILD = """
from vjengine.priority import AUTOGROUP, raise_render_priority, restore_session_priority
def ag():
    return open(AUTOGROUP).read().split()[-1]
before = ag()
got = raise_render_priority()
during = ag()
restore_session_priority()
print(before, during, ag(), "|", got)
"""


def test_the_session_autogroup_is_raised_and_restored():
    """Autogroup scheduling shares the CPU between sessions first: the show's session is raised too,
    and put back when it ends. Run in a session of its own, so this test's session is untouched."""
    if not os.path.exists("/proc/self/autogroup"):
        import pytest

        pytest.skip("no autogroup scheduling on this kernel")
    out = subprocess.run([sys.executable, "-c", _SESSION_CHILD], capture_output=True, text=True, timeout=30,
                         check=True, start_new_session=True)
    nums, got = out.stdout.split("|")
    before, during, after = (int(x) for x in nums.split())
    assert after == before and during <= before
    if os.geteuid() == 0:
        assert during == -10 and "session nice -10" in got
    # a process that exits without restoring (a crash, a benchmark) puts it back at exit
    parent = ("import subprocess, sys; from vjengine.priority import AUTOGROUP; ag = lambda: open(AUTOGROUP).read().split()[-1]; "
              "b = ag(); subprocess.run([sys.executable, '-c', 'from vjengine.priority import raise_render_priority; "
              "raise_render_priority()'], check=True); print(b, ag())")
    ran = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=30, check=True,
                         start_new_session=True)
    first, last = ran.stdout.split()
    assert first == last


def test_encoder_thread_runs_idle_and_its_children_inherit_it():
    """Video-out encoders run SCHED_IDLE (a woken render thread preempts them at once; a nice value
    lets a running one finish its time slice first), and so does what they start (ffmpeg)."""
    from vjengine.priority import idle_this_thread

    seen = {}

    def work():
        seen["got"] = idle_this_thread()
        seen["policy"] = os.sched_getscheduler(threading.get_native_id())
        seen["child"] = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                                       capture_output=True, text=True, timeout=60, check=True).stdout.strip()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER  # only that thread
    if seen["got"] == "idle":
        assert seen["policy"] == os.SCHED_IDLE and int(seen["child"]) == os.SCHED_IDLE
    else:  # refused (a sandbox): it was at least lowered
        assert seen["got"] == "lowered" and seen["policy"] == os.SCHED_OTHER
