"""Scratch directories that go away with the process that made them.

The suite's cache (the demo bank, ~100 MB) was made with ``mkdtemp`` and never removed, so every run
left one behind in /tmp; a machine that ran the suite all day filled its disk. Only the process that
made a directory removes it: worker processes that inherit its path through the environment must
not delete it from under the others.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def scratch_dir(prefix: str) -> str:
    """A new directory under the temp dir, removed when this process exits normally."""
    path = tempfile.mkdtemp(prefix=prefix)
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked child that inherited the handler
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path
