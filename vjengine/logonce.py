"""Log a failure once per kind: the one way code that must not raise or flood (the frame loop, the
audio and OSC threads, a bank streaming in) reports a problem and carries on with its last good state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_KEYS = 1000  # distinct kinds remembered; beyond it nothing new is logged


class LogOnce:
    """``once(key, msg, *args, exc=None, level=logging.ERROR) -> bool`` logs ``msg % args`` (with
    ``exc``'s traceback when given) the first time ``key`` is seen, and returns whether it logged.

    With ``every_s``, a key is logged again once ``every_s`` seconds (of ``clock``) have passed since
    it last was, saying how many were held back meanwhile: for floods that go on (refused OSC
    datagrams). ``count(key)`` says how often ``key`` happened; ``warning(key, msg, *args)`` is
    ``once`` at WARNING level.
    """

    def __init__(self, logger: logging.Logger, *, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.every_s = every_s
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._logged_s: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, msg: str, *args: object, exc: BaseException | None = None,
                 level: int = logging.ERROR) -> bool:
        n = self.counts.get(key, 0)
        if n == 0 and len(self.counts) >= MAX_KEYS:
            return False
        self.counts[key] = n + 1
        if n:
            if self.every_s is None:
                return False
            now_s = self.clock()
            if now_s - self._logged_s[key] < self.every_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            if held:
                msg += " (%d more like it since)"
                args = (*args, held)
        self._logged_s[key] = self.clock() if self.every_s is not None else 0.0
        self.log.log(level, msg, *args, exc_info=exc)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self(key, msg, *args, level=logging.WARNING)

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)
