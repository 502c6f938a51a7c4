"""A JACK dummy server for the MIDI tests and the sync benchmark: real MIDI ports on a machine
without a sound card (the ALSA sequencer needs /dev/snd).

``jack_server()`` starts ``jackd --no-realtime -d dummy`` under a name of its own (pid, counter and a
random part: parallel test runs never share a server, and a recycled pid never meets a dead server's
files), points this process's JACK clients at it (``JACK_DEFAULT_SERVER``) and waits until it accepts
clients (``jack_wait``). The client timeout is long: on a loaded machine a client that misses its
deadline would otherwise be dropped from the graph (and every later message lost).

A jackd that was SIGKILLed leaves its files in /dev/shm (its socket and semaphores, named after it, and
numbered shared-memory segments of about 100 MB each) and its slot in JACK's registry (8 slots: after
8 killed servers no jackd starts). :func:`clean_stale_shm` removes those of dead test servers,
numbered segments no live process maps, and dead servers' registry slots, before each server starts;
after each one ends, its own files and segments go (when jackd had to be killed, or was killed under
the test).

``Sender`` is a test controller: a JACK MIDI output in a process of its own (``_midi_sender.py``), so
it can also send bytes no well-behaved library would.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import secrets
import shutil
import subprocess
import time

_COUNTER = itertools.count()
SHM = "/dev/shm"
_OURS = re.compile(r"^jack(?:_sem\.\d+)?_vjtest-(\d+)-")  # a test server's socket or semaphore: pid inside
_SEGMENT = re.compile(r"^jack-\d+-\d+$")  # a numbered JACK segment (jack-UID-N)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mapped_shm() -> set[str]:
    """Paths under /dev/shm that some live process maps (a running server maps all its segments)."""
    paths: set[str] = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps, encoding="utf-8", errors="replace") as f:
                for line in f:
                    i = line.find(SHM + "/")
                    if i >= 0:
                        paths.add(line[i:].split(" (deleted)")[0].strip())
        except OSError:
            continue
    return paths


_REGISTRY = os.path.join(SHM, "jack-shm-registry")
_MAX_SERVERS, _SERVER_SLOT, _HEADER = 8, 264, 24  # jack2's registry: 8 x (pid, name[260]) after 24 bytes


def clean_registry_servers() -> list[str]:
    """Free the server slots of dead servers in JACK's shared registry; returns their names.

    jackd takes one of 8 slots when it starts and frees it when it exits; a killed jackd keeps its slot,
    and jackd reclaims a dead slot only for a server of the same name. Test servers have unique names,
    so 8 killed ones block every later start ("Too many servers already active"). Only slots whose pid
    is gone are zeroed; a registry of another layout is left alone.
    """
    import struct

    try:
        with open(_REGISTRY, "r+b") as f:
            head = f.read(_HEADER + _MAX_SERVERS * _SERVER_SLOT)
            if len(head) < _HEADER + _MAX_SERVERS * _SERVER_SLOT or head[:4] != b"KCAJ":
                return []
            if struct.unpack_from("<i", head, 16)[0] != _HEADER + _MAX_SERVERS * _SERVER_SLOT:  # hdr_len
                return []
            freed = []
            for i in range(_MAX_SERVERS):
                at = _HEADER + i * _SERVER_SLOT
                pid = struct.unpack_from("<i", head, at)[0]
                if pid > 0 and not _alive(pid):
                    name = head[at + 4:at + _SERVER_SLOT].split(b"\0", 1)[0].decode(errors="replace")
                    os.pwrite(f.fileno(), bytes(_SERVER_SLOT), at)
                    freed.append(name)
            return freed
    except OSError:
        return []


def clean_stale_shm(min_age_s: float = 30.0) -> list[str]:
    """Remove what dead JACK servers left in /dev/shm; returns the names removed.

    A test server's own files (``vjtest-PID-...``) go when that PID is gone. A numbered segment goes
    when no live process maps it and it is older than ``min_age_s`` (a server that is starting may not
    have mapped a new one yet). Dead servers' slots in the shared registry are freed
    (:func:`clean_registry_servers`); the registry file and the metadata folder stay.
    """
    removed = [f"registry slot {n}" for n in clean_registry_servers()]
    try:
        names = os.listdir(SHM)
    except OSError:
        return removed
    mapped: set[str] | None = None
    now = time.time()
    for name in names:
        path = os.path.join(SHM, name)
        m = _OURS.match(name)
        if m:
            stale = not _alive(int(m.group(1)))
        elif _SEGMENT.match(name):
            try:
                old_enough = now - os.stat(path).st_mtime >= min_age_s
            except OSError:
                continue
            if not old_enough:
                continue
            if mapped is None:
                mapped = _mapped_shm()
            stale = path not in mapped
        else:
            continue
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(name)
    return removed


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, so no jackd outlives a crashed run."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def jack_server(period: int = 128, rate: int = 48000, client_timeout_ms: int = 20000):
    import pytest

    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        pytest.skip("jackd is not installed (bash scripts/setup.sh --dev installs jackd2)")
    old = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    proc = None
    segments: set[str] = set()
    clean_stale_shm()
    try:
        # realtime when allowed (root, or rtprio in limits.conf): on a loaded machine a non-realtime
        # dummy driver falls behind the wall clock and drops events; else non-realtime
        for mode in (["-R", "-P", "60"], ["--no-realtime"]):
            name = f"vjtest-{os.getpid()}-{next(_COUNTER)}-{secrets.token_hex(3)}"
            proc = subprocess.Popen(["jackd", *mode, "-n", name, "-t", str(client_timeout_ms), "-d", "dummy",
                                     "-r", str(rate), "-p", str(period)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=_die_with_parent)
            ok = subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], capture_output=True,
                                timeout=30).returncode == 0
            if ok and proc.poll() is None:
                segments = _segments_of(proc.pid)
                break
            proc.kill()
            err = proc.communicate()[1][-2000:]
            proc = None
            _remove_server_files(name)
        if proc is None:
            raise RuntimeError(f"jackd did not start: {err}")
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        yield name
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _remove_server_files(name)
            mapped = _mapped_shm()  # if it was killed, its segments are still there: nobody maps them now
            for path in segments - mapped:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            clean_registry_servers()  # its registry slot, if it was killed
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _segments_of(pid: int) -> set[str]:
    """The numbered /dev/shm segments process ``pid`` maps (a server: its engine and clients)."""
    found: set[str] = set()
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                i = line.find(SHM + "/")
                if i >= 0:
                    path = line[i:].split(" (deleted)")[0].strip()
                    if _SEGMENT.match(os.path.basename(path)):
                        found.add(path)
    except OSError:
        pass
    return found


def _remove_server_files(name: str) -> None:
    """The socket and semaphores of the (ended) server ``name``: jackd removes them unless it was killed."""
    for path in glob.glob(os.path.join(SHM, f"jack_{name}_*")) + glob.glob(os.path.join(SHM, f"jack_sem.*_{name}_*")):
        with contextlib.suppress(OSError):
            os.unlink(path)


class Sender:
    """A test controller / clock master ``<client>:<port>``: ``_midi_sender.py`` in a process of its own
    (see there why), driven over a pipe. ``send`` queues raw bytes for the sender's next JACK cycle."""

    def __init__(self, client: str = "testctl", port: str = "out") -> None:
        import json
        import sys
        from pathlib import Path

        self._json = json
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_midi_sender.py")), client, port],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the MIDI sender process did not start")
        self.name = json.loads(line)["ready"]

    def _call(self, **cmd):
        self.proc.stdin.write(self._json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._json.loads(self.proc.stdout.readline())

    def send(self, *data: int) -> float:
        self._call(op="send", data=[list(data)])
        return time.perf_counter()

    def send_many(self, messages: list[list[int]]) -> None:
        self._call(op="send", data=messages)

    def cc(self, control: int, value: int, channel: int = 1) -> float:
        return self.send(0xB0 | (channel - 1), control, value)

    def note(self, note: int, velocity: int = 100, channel: int = 1) -> float:
        return self.send(0x90 | (channel - 1), note, velocity)

    def note_off(self, note: int, channel: int = 1) -> float:
        return self.send(0x80 | (channel - 1), note, 0)

    def clock(self, bpm: float, ticks: int, *, start: bool = True, lead_s: float = 0.02) -> None:
        """Start (optional), then ``ticks`` clocks at ``bpm``, due at exact wall-clock times."""
        self._call(op="clock", bpm=bpm, ticks=ticks, start=start, lead_s=lead_s)

    def clock_sent(self) -> dict:
        return self._call(op="clock_sent")

    def until_delivered(self, send, arrived, timeout: float = 60.0, each_s: float = 0.1) -> bool:
        """``send()`` again every ``each_s`` until ``arrived()`` holds or ``timeout`` passes: a JACK
        connection takes effect a cycle or more after it is made, and on a loaded machine seconds.
        Bounded by time, not by a count of tries (tries that come back fast run out in a moment)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            send()
            if wait_until(arrived, each_s):
                return True
        return bool(arrived())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call(op="close")
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(predicate, timeout: float = 60.0, poll_s: float = 0.002) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (waits on the condition itself, bounded: generously, as
    a loaded 2-core machine can be seconds late; a wait that succeeds ends at once)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
