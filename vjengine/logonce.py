"""Log a failure once per kind: the one way code that must not raise or flood (the frame loop, the
audio and OSC threads) reports a problem and carries on with its last good state."""

from __future__ import annotations

import logging

MAX_KEYS = 1000  # distinct kinds remembered; beyond it nothing more is logged


class LogOnce:
    """``once(key, msg, *args, exc=None, level=logging.ERROR) -> bool`` logs ``msg % args`` (with
    ``exc``'s traceback when given) the first time ``key`` is seen and returns whether it logged.
    ``count(key)`` says how often ``key`` happened."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.counts: dict[str, int] = {}

    def __call__(self, key: str, msg: str, *args: object, exc: BaseException | None = None,
                 level: int = logging.ERROR) -> bool:
        n = self.counts.get(key, 0)
        if n == 0 and len(self.counts) >= MAX_KEYS:
            return False
        self.counts[key] = n + 1
        if n:
            return False
        self.log.log(level, msg, *args, exc_info=exc)
        return True

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)
