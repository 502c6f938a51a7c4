"""Scheduling priority: the render thread first, background I/O last.

``raise_render_priority()`` (call it on the render thread before other threads start: they inherit
it) lowers the thread's nice value as far as the OS lets this user (RLIMIT_NICE; root or
CAP_SYS_NICE: down to ``RENDER_NICE``), never to a real-time class: a render thread that cannot keep
up must not starve the audio callback. ``lower_this_thread()`` puts a background thread (stats
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


def raise_render_priority(target: int = RENDER_NICE) -> str:
    """Best effort; returns what it got, e.g. ``"nice -10"`` (for the log and /vj/status)."""
    if not hasattr(os, "setpriority"):
        return "default (no nice on this platform)"
    tid = _tid()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return "default"
    if current <= target:
        return f"nice {current}"  # already there (inherited)
    lowest = current
    try:
        import resource  # noqa: PLC0415

        soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
        if soft not in (resource.RLIM_INFINITY,) and soft > 0:
            lowest = min(current, 20 - int(soft))  # RLIMIT_NICE n allows nice down to 20 - n
    except (ImportError, OSError, ValueError, AttributeError):
        pass
    for want in sorted({max(target, x) for x in (target, lowest)}):
        if want >= current:
            break
        try:
            os.setpriority(os.PRIO_PROCESS, tid, want)
            return f"nice {want}"
        except OSError:
            continue
    return f"nice {current} (this user may not raise it)"


def lower_this_thread(step: int = BACKGROUND_NICE_STEP) -> None:
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = _tid()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        pass
