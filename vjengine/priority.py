"""Scheduling priority: the render thread first, background I/O last.

``raise_render_priority()`` (call it on the render thread before other threads start: they inherit
it) lowers the thread's nice value as far as the OS lets this user (RLIMIT_NICE; root or
CAP_SYS_NICE: down to ``RENDER_NICE``), never to a real-time class: a render thread that cannot keep
up must not starve the audio callback.

Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, the default on many
distributions) shares the CPU between *sessions* first (a terminal, a desktop application) and only
then between the threads of one by their nice values: a thread's nice -10 weighs nothing against a
busy program in another session, and a show on a loaded machine got 2 ms of CPU in a 2.5 s frame
gap. So it also lowers this session's autogroup nice the same way (``/proc/self/autogroup``), and
``restore_session_priority()`` puts it back when the show ends (the session outlives us). ``lower_this_thread()`` puts a background thread (stats
writer, preset watcher) ``BACKGROUND_NICE_STEP`` below the process. Linux nice values are per thread;
elsewhere both do what the platform allows, and neither ever raises.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

RENDER_NICE = -10
BACKGROUND_NICE_STEP = 10


def _tid() -> int:
    return threading.get_native_id()


AUTOGROUP = "/proc/self/autogroup"
_session_before: int | None = None  # the autogroup nice we found, to restore


def _lowest_allowed(current: int) -> int:
    try:
        import resource  # noqa: PLC0415

        soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
        if soft not in (resource.RLIM_INFINITY,) and soft > 0:
            return min(current, 20 - int(soft))  # RLIMIT_NICE n allows nice down to 20 - n
    except (ImportError, OSError, ValueError, AttributeError):
        pass
    return current


def _lower(current: int, target: int, set_nice) -> int | None:
    """Set the lowest nice in ``target..current`` that ``set_nice`` is allowed; what it set, or None."""
    for want in sorted({max(target, x) for x in (target, _lowest_allowed(current))}):
        if want >= current:
            break
        try:
            set_nice(want)
            return want
        except OSError:
            continue
    return None


def _read_autogroup() -> int | None:
    try:
        with open(AUTOGROUP, encoding="ascii") as fh:
            return int(fh.read().split()[-1])  # "/autogroup-415 nice 0"
    except (OSError, ValueError, IndexError):
        return None


def _write_autogroup(nice: int) -> None:
    with open(AUTOGROUP, "w", encoding="ascii") as fh:
        fh.write(str(int(nice)))


def raise_session_priority(target: int = RENDER_NICE) -> str | None:
    """Lower this session's autogroup nice toward ``target`` (Linux with autogroup; else None)."""
    global _session_before
    current = _read_autogroup()
    if current is None:
        return None
    if current <= target:
        return f"session nice {current}"
    got = _lower(current, target, _write_autogroup)
    if got is None:
        return f"session nice {current} (this user may not raise it)"
    if _session_before is None:
        _session_before = current
        import atexit  # noqa: PLC0415

        atexit.register(restore_session_priority)  # whoever called us: the session outlives this process
    return f"session nice {got}"


def restore_session_priority() -> None:
    """Put the session's autogroup nice back to what ``raise_session_priority`` found (never raises)."""
    global _session_before
    if _session_before is None:
        return
    try:
        _write_autogroup(_session_before)
    except OSError:
        pass
    _session_before = None


def raise_render_priority(target: int = RENDER_NICE) -> str:
    """Best effort; returns what it got, e.g. ``"nice -10, session nice -10"`` (for the log and
    /vj/status). Also the session's autogroup (see the module docstring)."""
    if not hasattr(os, "setpriority"):
        return "default (no nice on this platform)"
    session = raise_session_priority(target)
    tail = f", {session}" if session else ""
    tid = _tid()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return "default" + tail
    if current <= target:
        return f"nice {current}" + tail  # already there (inherited)
    got = _lower(current, target, lambda n: os.setpriority(os.PRIO_PROCESS, tid, n))
    if got is None:
        return f"nice {current} (this user may not raise it)" + tail
    return f"nice {got}" + tail


def lower_this_thread(step: int = BACKGROUND_NICE_STEP) -> None:
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = _tid()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        pass


def idle_this_thread() -> str:
    """Run this thread only when no normal thread wants the CPU: Linux's ``SCHED_IDLE`` (what it
    starts later, threads and processes such as ffmpeg, inherits it). For video encoders: a lower
    nice still lets a running encoder finish its time slice before a woken render thread gets the
    core (on 2 cores, every llvmpipe wake-up of a frame could wait so), while a normal thread that
    wakes preempts a ``SCHED_IDLE`` one at once. Elsewhere (or where refused) ``lower_this_thread``.
    Returns what it got, never raises."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is not None and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(_tid(), policy, os.sched_param(0))
            return "idle"
        except OSError:
            pass
    lower_this_thread()
    return "lowered"


def unidle_thread(tid: int, step: int = BACKGROUND_NICE_STEP) -> bool:
    """Put thread ``tid`` back under the normal policy, ``step`` below the process's main thread
    (a ``SCHED_IDLE`` encoder that a busy machine left without CPU; also for a thread about to start
    a process that must not inherit ``SCHED_IDLE``). Whether it did; never raises."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + step)
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        return True
    except OSError:
        return False
