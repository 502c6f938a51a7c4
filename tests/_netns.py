"""Run a Python script in a private network namespace that has only loopback.

Ableton Link finds its peers by UDP multicast on every network interface. A test (or the sync
benchmark) must neither send that onto the machine's real network nor meet the Link peers of another
test run on the same machine, so its Link peers live in a network namespace of their own: the
child is started with ``unshare -n`` (``unshare -rn`` when not root: a user namespace as well) and
brings ``lo`` up itself (:func:`loopback_up`) before creating any Link peer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr)[:18])[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def unshare_prefix() -> list[str] | None:
    """The command prefix that starts a process in a new network namespace, or None if none works here."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for prefix in ([exe, "-n"], [exe, "-rn"]) if os.geteuid() == 0 else ([exe, "-rn"],):
        try:
            ok = subprocess.run(prefix + [sys.executable, "-c", "pass"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return prefix
    return None


def run_isolated(args: list[str], *, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` in a private network namespace; raises RuntimeError when none can be made."""
    prefix = unshare_prefix()
    if prefix is None:
        raise RuntimeError("cannot make a private network namespace here (needs unshare and root or user namespaces)")
    return subprocess.run(prefix + [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)
