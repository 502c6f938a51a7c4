"""Log lines leave the render thread through a queue: a stderr nobody reads never stalls a frame.

A logging handler writes in the thread that logs. When stderr is a pipe whose reader has stopped
reading (a hung journald, a terminal paused with Ctrl-S, a supervisor that never drains its pipe),
the 64 KB the pipe holds fill up and the next line blocks the render thread for good. While a show
runs, :class:`LogOffThread` puts a :class:`logging.handlers.QueueHandler` in front of the root
logger's handlers: a log call formats the line and appends it to a bounded queue; a ``vj-log``
thread hands it to the handlers, which write it. A queue that stays full (nobody reads
for a long time) drops lines and counts them; the count is logged when the show ends. On exit the handlers are put back after the queue has been written out,
or after ``close_timeout_s`` if the output still takes nothing.

    with LogOffThread():
        run the show
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
from typing import Any

log = logging.getLogger(__name__)

CAPACITY = 10_000  # lines waiting at most (a few MB)
_STOP = object()  # the writer thread's last item


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Never waits: a full queue drops the line and counts it."""

    def __init__(self, q: queue.Queue) -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class LogOffThread:
    def __init__(self, *, capacity: int = CAPACITY, close_timeout_s: float = 5.0,
                 logger: logging.Logger | None = None) -> None:
        self.capacity = int(capacity)
        self.close_timeout_s = close_timeout_s
        self.logger = logger if logger is not None else logging.getLogger()
        self.handler: _DroppingQueueHandler | None = None
        self._handlers: list[logging.Handler] = []
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        return self.handler.dropped if self.handler is not None else 0

    def __enter__(self) -> LogOffThread:
        handlers = list(self.logger.handlers)
        if not handlers or any(isinstance(h, logging.handlers.QueueHandler) for h in handlers):
            return self  # nothing to move, or already behind a queue
        q: queue.Queue = queue.Queue(self.capacity)
        self.handler = _DroppingQueueHandler(q)
        self._handlers = handlers
        self._thread = threading.Thread(target=self._write, args=(q, handlers), name="vj-log", daemon=True)
        self._thread.start()
        self.logger.handlers = [self.handler]
        return self

    @staticmethod
    def _write(q: queue.Queue, handlers: list[logging.Handler]) -> None:
        while True:
            record = q.get()
            if record is _STOP:
                return
            for h in handlers:
                if record.levelno >= h.level:
                    h.handle(record)

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> bool:
        """Write out what waits (at most ``close_timeout_s``) and put the handlers back; True when
        every line was written."""
        thread, handler = self._thread, self.handler
        if thread is None or handler is None:
            return True
        self._thread = None
        try:
            handler.queue.put(_STOP, timeout=self.close_timeout_s)
            thread.join(self.close_timeout_s)
            done = not thread.is_alive()
        except queue.Full:
            done = False
        # the handlers write in the logging thread again (a stuck output now only delays the exit)
        self.logger.handlers = [h for h in self.logger.handlers if h is not handler] + [
            h for h in self._handlers if h not in self.logger.handlers]
        if handler.dropped:
            log.warning("%d log line(s) dropped while the log output took nothing", handler.dropped)
        if not done:
            log.warning("the log output took nothing for %.0f s; lines may be missing", self.close_timeout_s)
        return done
