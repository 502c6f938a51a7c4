"""Bank reads off the render thread: :class:`FrameReader`, one thread per bank, bounded.

The live renderer asks for frames (``request``: never blocks; a full queue says no and counts it),
collects what was read (``take``) and uploads it on its own thread, which owns GL. The reader thread
runs ``read(key)`` (a ``pread`` of the bank file, the checksum check, a CPU decode where the driver
needs one) and keeps the result, or the exception, for ``take``. A read that hangs (a network share
gone, a disk stalled) holds only this thread: ``stuck()`` says so after ``stall_s`` (logged once),
and the renderer stops waiting for it and draws what it has. Offline render and replay read on the
caller's thread instead, so they stay frame-exact.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

STALL_S = 2.0  # a read running longer than this is a stalled disk: the renderer stops waiting for reads


class FrameReader:
    """Runs ``read(key)`` for requested keys on a ``vj-bank-read`` thread (see the module docstring).

    ``max_queued``: requests waiting at most (beyond it ``request`` returns False and counts a drop);
    ``max_done``: results not yet taken at most (the reader waits for ``take`` beyond it, so an
    unattended reader holds bounded memory); ``clock``: for ``stuck`` (injectable).
    """

    def __init__(self, read: Callable[[Hashable], Any], *, name: str = "bank", max_queued: int = 64,
                 max_done: int = 64, stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.name = name
        self.max_queued = int(max_queued)
        self.max_done = int(max_done)
        self.stall_s = stall_s
        self._clock = clock
        self._queue: collections.deque = collections.deque()
        self._queued: set = set()
        self._done: dict[Hashable, tuple[bool, Any]] = {}
        self._current: Hashable | None = None
        self._current_since: float | None = None
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0  # requests refused because the queue was full
        self.reads = 0
        self._warned_stuck = False
        self._thread = threading.Thread(target=self._run, name=f"vj-bank-read:{name}", daemon=True)
        self._thread.start()

    # --- the renderer's side (never blocks, except wait_for up to its timeout) ---------------

    def request(self, key: Hashable, *, urgent: bool = False) -> bool:
        """Ask for ``key`` (``urgent``: before what is queued, displacing the last one queued when the
        queue is full). False when the queue is full (never for an urgent request)."""
        with self._cv:
            if key in self._queued or key in self._done or key == self._current:
                if urgent and key in self._queued:
                    self._queue.remove(key)
                    self._queue.appendleft(key)
                return True
            if len(self._queue) >= self.max_queued:
                if not urgent:
                    self.dropped += 1
                    return False
                self._queued.discard(self._queue.pop())  # an urgent read displaces the last one queued
                self.dropped += 1
            (self._queue.appendleft if urgent else self._queue.append)(key)
            self._queued.add(key)
            self._cv.notify_all()
            return True

    def pending(self, key: Hashable) -> bool:
        """Whether ``key`` is queued, being read, or read and not taken."""
        with self._cv:
            return key in self._queued or key == self._current or key in self._done

    @property
    def busy(self) -> int:
        """Requests queued or in flight (results not yet taken included)."""
        with self._cv:
            return len(self._queue) + (self._current is not None) + len(self._done)

    def room(self) -> int:
        """How many more requests the queue takes now."""
        with self._cv:
            return max(0, self.max_queued - len(self._queue))

    def take(self, limit: int | None = None) -> list[tuple[Hashable, bool, Any]]:
        """Finished reads (at most ``limit``): ``(key, ok, value or exception)``, oldest first."""
        with self._cv:
            if not self._done:
                return []
            keys = list(self._done)[:limit]
            out = [(k, *self._done.pop(k)) for k in keys]
            self._cv.notify_all()
            return out

    def take_key(self, key: Hashable) -> tuple[bool, Any] | None:
        """``(ok, value or exception)`` of ``key`` if its read has finished (and forget it), else None."""
        with self._cv:
            got = self._done.pop(key, None)
            if got is not None:
                self._cv.notify_all()
            return got

    def wait_for(self, key: Hashable, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``key``'s read to finish (True if it has)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cv:
            while key not in self._done:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cv.wait(left)
            return True

    def stuck(self) -> bool:
        """Whether the read in flight has run longer than ``stall_s`` (logged once per stall)."""
        since = self._current_since
        if since is None or self._clock() - since < self.stall_s:
            return False
        if not self._warned_stuck:
            self._warned_stuck = True
            log.error("%s: a frame read has not returned for %.0f s (disk or network share stalled?); the show "
                      "draws what is on the GPU until reads come back", self.name, self._clock() - since)
        return True

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._queued.clear()
            self._cv.notify_all()

    # --- the reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        from vjengine.priority import lower_this_thread  # noqa: PLC0415

        lower_this_thread()  # the render thread comes first
        while True:
            with self._cv:
                while not self._closed and (not self._queue or len(self._done) >= self.max_done):
                    self._cv.wait()
                if self._closed:
                    return
                key = self._queue.popleft()
                self._queued.discard(key)
                self._current, self._current_since = key, self._clock()
            try:
                result = (True, self._read(key))
            except Exception as exc:  # noqa: BLE001 - handed to the renderer, which logs it once
                result = (False, exc)
            with self._cv:
                self._current, self._current_since = None, None
                if self._warned_stuck:
                    log.warning("%s: frame reads are back", self.name)
                    self._warned_stuck = False
                self._done[key] = result
                self.reads += 1
                self._cv.notify_all()
