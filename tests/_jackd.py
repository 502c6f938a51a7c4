"""A JACK dummy server for the MIDI tests and the sync benchmark: real MIDI ports on a machine
without a sound card (the ALSA sequencer needs /dev/snd).

``jack_server()`` starts ``jackd --no-realtime -d dummy`` under a name of its own (parallel test runs
never share a server), points this process's JACK clients at it (``JACK_DEFAULT_SERVER``) and waits
until it accepts clients (``jack_wait``). The client timeout is long: on a loaded machine a client
that misses its deadline would otherwise be dropped from the graph (and every later message lost). ``Sender`` is a test controller: a virtual JACK MIDI output
made with python-rtmidi directly, so it can also send bytes no well-behaved library would.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import time

_COUNTER = itertools.count()


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
    try:
        # realtime when allowed (root, or rtprio in limits.conf): on a loaded machine a non-realtime
        # dummy driver falls behind the wall clock and drops events; else non-realtime
        for mode in (["-R", "-P", "60"], ["--no-realtime"]):
            name = f"vjtest-{os.getpid()}-{next(_COUNTER)}"
            proc = subprocess.Popen(["jackd", *mode, "-n", name, "-t", str(client_timeout_ms), "-d", "dummy",
                                     "-r", str(rate), "-p", str(period)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=_die_with_parent)
            ok = subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], capture_output=True,
                                timeout=30).returncode == 0
            if ok and proc.poll() is None:
                break
            proc.kill()
            err = proc.communicate()[1][-2000:]
            proc = None
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
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def wait_until(predicate, timeout: float = 5.0, poll_s: float = 0.002) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (waits on the condition itself, bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
