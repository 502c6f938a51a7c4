"""A text file written by its own thread, so the render thread never waits for a disk.

The render thread hands items to :meth:`LineWriter.put` (an append to a deque: no I/O, no lock held
for long); a writer thread turns each into a line with ``encode`` (the costly part: JSON, a hash)
and writes it, flushing about once a second. A stalled target (a hung network share, a FIFO nobody
reads) fills the backlog; past ``max_backlog`` items the file stops there (``on_fail`` is told once)
and the show goes on. A write error (a full disk) stops it the same way. ``close`` writes what is
waiting and ``end()``'s line, waiting at most ``close_timeout_s`` for the disk.

Used by the set log (:class:`vjengine.show.record.Recorder`) and the frame hashes
(:class:`vjengine.frameloop.FrameHashes`).
"""

from __future__ import annotations

import collections
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger(__name__)

FLUSH_S = 1.0


def open_for_writing(path: Any, option: str) -> TextIO:
    """Open ``path`` to write text, as ``option`` (``--record``) names it in errors: a FIFO that no one
    reads is a :class:`~vjengine.errors.ConfigError` at once (a plain open would wait for a reader
    forever, before the show's first frame), as is any other OSError."""
    from vjengine.errors import ConfigError  # noqa: PLC0415

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise ConfigError(f"{option} {path}: a FIFO with no reader (start its reader first, or give a file)") from None
        raise ConfigError(f"{option} {path}: cannot write: {exc}") from None
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)  # the writer thread may wait
    return os.fdopen(fd, "w", encoding="utf-8")


class LineWriter:
    def __init__(self, fh: TextIO, *, name: str, encode: Callable[[Any], str],
                 on_fail: Callable[[str], None], label: str, max_backlog: int = 18_000,
                 close_timeout_s: float = 5.0, end: Callable[[], str | None] | None = None) -> None:
        self._fh = fh
        self.encode = encode
        self.on_fail = on_fail
        self.label = label  # "set log PATH": what the close-time message calls the file
        self.max_backlog = int(max_backlog)
        self.close_timeout_s = close_timeout_s
        self.end = end
        self.queued = 0  # items handed over (render thread)
        self.written = 0  # items written (writer thread)
        self.failed = False
        self._backlog: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items handed over and not yet written."""
        return len(self._backlog)

    def put(self, item: Any) -> bool:
        """Hand one item to the writer (never blocks); False once the file has stopped."""
        if self.failed:
            return False
        if len(self._backlog) >= self.max_backlog:
            self.fail(f"the disk has not taken the last {len(self._backlog)} lines (stalled?)")
            return False
        self._backlog.append(item)
        self.queued += 1
        return True

    def fail(self, why: str) -> None:
        """Stop the file here (once): nothing more is taken, ``on_fail(why)`` says so."""
        if not self.failed:
            self.failed = True
            self.on_fail(why)

    def _run(self) -> None:
        from vjengine.priority import lower_this_thread  # noqa: PLC0415

        lower_this_thread()  # the render thread comes first
        last_flush = time.monotonic()
        fh = self._fh
        try:
            while True:
                self._wake.wait(0.25)
                self._wake.clear()
                while self._backlog:
                    fh.write(self.encode(self._backlog[0]) + "\n")
                    self._backlog.popleft()  # after the write: pending counts the item being written
                    self.written += 1
                if self._closing:
                    line = self.end() if self.end is not None else None
                    if line is not None:
                        fh.write(line + "\n")
                    fh.close()
                    return
                t = time.monotonic()
                if t - last_flush > FLUSH_S:
                    fh.flush()
                    last_flush = t
        except Exception as exc:  # noqa: BLE001 - a full disk, a vanished share
            self.fail(f"cannot write: {exc}")
            self._backlog.clear()
            try:
                fh.close()
            except Exception:  # noqa: BLE001
                pass
        finally:
            self._done.set()

    def close(self) -> bool:
        """Write what is waiting and the end line; give up (logged) after ``close_timeout_s``.
        True when the file was closed complete."""
        if not self._closing:
            self._closing = True
            self._wake.set()
        if not self._done.wait(self.close_timeout_s):
            log.error("%s: the disk did not take the last %d line(s) in %.0f s; the file may end early",
                      self.label, len(self._backlog), self.close_timeout_s)
            return False
        return not self.failed
