"""A real Ray cluster on this machine for the builder's --ray tests and benchmark.

Two nodes made by the ``ray`` CLI, the way an artist starts them on two machines: ``ray start --head``
and ``ray start --address HEAD`` (each its own raylet, one CPU each), with Ray's token authentication
from a shared token file. Each ``ray start --block`` runs in its own session, so one node is stopped
(or "lost", with SIGKILL) by signalling the processes of that session. Everything is bounded in time,
and ``stop()`` leaves no process of ours behind (and touches no other Ray on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY_BIN = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 300.0  # a loaded 2-core machine can take minutes to bring up two raylets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # fields after the command: state ppid pgrp session


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def session_pids(sid: int) -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and session_of(int(d.name)) == sid]


class LocalRayCluster:
    def __init__(self, folder: Path, *, cpus_per_node: int = 1) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.cpus = cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = folder / "ray-token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # the driver (a CLI subprocess) reads the same three variables
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
                        RAY_ADDRESS=self.address, RAY_USAGE_STATS_ENABLED="0",
                        # notice a lost node in seconds, not the default half minute
                        RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="4")
        self.nodes: list[subprocess.Popen] = []

    def _ray(self, *args: str, block: bool = True) -> subprocess.Popen:
        log = open(self.folder / f"node{len(self.nodes)}.log", "wb")
        proc = subprocess.Popen([str(RAY_BIN), "start", *args, f"--num-cpus={self.cpus}", "--num-gpus=0",
                                 "--object-store-memory=100000000", "--disable-usage-stats", "--block"],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.nodes.append(proc)
        return proc

    def alive_nodes(self) -> int:
        code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR');"
                "print(sum(n['Alive'] for n in ray.nodes()))")
        try:
            out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                                 text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return 0
        if out.returncode != 0:
            return 0
        # the count is the last line: Ray may print its own lines first (e.g. on a slow start)
        counts = [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]
        return int(counts[-1]) if counts else 0

    def _started(self) -> bool:
        """Every running node's ``ray start`` has said the runtime started (it then has registered)."""
        for i, proc in enumerate(self.nodes):
            if proc.poll() is None:
                try:
                    if b"Ray runtime started" not in (self.folder / f"node{i}.log").read_bytes():
                        return False
                except OSError:
                    return False
        return True

    def wait_nodes(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        # the nodes' own logs first (cheap): each probe below is a Python that imports Ray and
        # connects, seconds of CPU on a loaded machine, which slowed the very start it waited for
        while not self._started() and time.monotonic() < deadline:
            if self.nodes and self.nodes[0].poll() not in (None, 0):
                break  # the head exited: the loop below says so
            time.sleep(0.2)  # polling a condition (log lines), bounded
        while self.alive_nodes() != n:
            for p in self.nodes:
                if p.poll() not in (None, 0) and p is self.nodes[0]:
                    raise RuntimeError(f"ray head exited: {(self.folder / 'node0.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray cluster did not reach {n} node(s) in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.5)  # polling a condition (nodes registered), bounded by the deadline

    def launch(self, nodes: int = 2) -> "LocalRayCluster":
        """Start the nodes' ``ray start`` without waiting for them (see ``wait_nodes``)."""
        self._ray("--head", f"--port={self.port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                  f"--temp-dir={self.folder / 'ray'}")
        for _ in range(nodes - 1):
            self._ray(f"--address={self.address}")
        return self

    def start(self, nodes: int = 2) -> "LocalRayCluster":
        self.launch(nodes)
        self.wait_nodes(nodes)
        return self

    def add_node(self) -> subprocess.Popen:
        proc = self._ray(f"--address={self.address}")
        return proc

    def lose_node(self, proc: subprocess.Popen) -> None:
        """The node goes away as a machine would: SIGKILL to its raylet, workers and all (Ray gives each
        worker its own process group, but they all stay in the session of the node's ``ray start``)."""
        for pid in [proc.pid, *session_pids(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, to every process of our nodes' sessions (raylets, GCS, workers): only
        ours, so a Ray cluster someone else runs on this machine is left alone."""
        # Some of Ray's processes do not end on SIGTERM once the GCS has gone (the wait ran its full
        # 15 s at every stop): a short grace, then SIGKILL, leaves the same nothing behind.
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 15.0)):
            pids = [p for proc in self.nodes for p in {proc.pid, *session_pids(proc.pid)}]
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while any(_running(p) for p in pids) and time.monotonic() < deadline:
                for proc in self.nodes:
                    proc.poll()  # reap our direct children
                time.sleep(0.1)  # polling a condition (processes gone), bounded
        shutil.rmtree(self.folder / "ray", ignore_errors=True)
