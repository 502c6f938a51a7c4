"""Bake one bank on many GPUs or machines with Ray (``vj-bank build --ray auto|ADDRESS``, the ``ray`` extra).

The driver (the ``vj-bank build`` process) plans the build exactly as a single-process build does: the
same batches, cut the same way, under the same shard names. Only the heavy calls move: a keyframe batch
(full pipeline + decode) or an in-between batch (decode of latents the driver slerped) runs on a Ray
actor that keeps one pipeline loaded (one actor per GPU; on a CPU-only cluster one per CPU, or
``--ray-workers``). Results come back as Ray objects and the driver writes them as the usual atomic,
checksummed shards, so the bank is byte-identical to a single-process build of the same spec (the
tests compare bytes), and a rerun after anything dies resumes from the shards that exist.

Faults are handled here, not by Ray's task retries: a batch whose worker died (process killed, node
lost) goes back on the queue for any live worker; the dead actor is restarted by Ray where resources
allow (``max_restarts=-1``) and is used again once it answers a ping. A worker whose model does not
load is reported with its node and left out; the build fails (exit 2) only when no worker is left.

Specs travel as TOML text (parsed on the worker), arrays as numpy; nothing of ours is pickled beyond
Ray's own task plumbing. Nothing imports Ray unless ``--ray`` is given.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bank_builder.errors import BuildError

log = logging.getLogger("bank_builder")

RAY_EXTRA_HINT = "pip install 'vjengine[ray]'"
STALL_S = 600.0  # no worker alive and nothing finished for this long: give up (exit 2) rather than hang


def import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise BuildError(f"--ray needs Ray, which is not installed: {RAY_EXTRA_HINT} ({exc})") from None
    return ray


class _Worker:
    """One pipeline on one GPU (or CPU slot). Made remote with ``ray.remote`` in :class:`RayRunner`."""

    def __init__(self, spec_text: str, spec_source: str, base_dir: str, digest: str, device: str, dtype: str,
                 threads: int | None, compile_unet: bool, exact: bool | None) -> None:
        from bank_builder.pipeline import Generator
        from bank_builder.plan import GridPlan
        from bank_builder.spec import parse_spec

        self.node = f"{socket.gethostname()} ({_node_ip()})"
        try:
            spec = parse_spec(spec_text, source=spec_source, base_dir=base_dir)
            if spec.digest() != digest:
                raise RuntimeError(f"{spec_source} is not the spec the build started with (changed on disk?)")
            self.gen = Generator(spec, device=device, dtype=dtype, compile_unet=compile_unet, threads=threads,
                                 exact=exact)
        except Exception as exc:
            raise RuntimeError(f"worker on node {self.node} could not load the model: {exc}") from None
        self.spec, self.plan = spec, GridPlan(spec)
        self.retries = 0

    def info(self) -> dict[str, Any]:
        return {"node": self.node, "pid": os.getpid(), "retries": self.retries}

    def keyframes(self, cells: list[int], shard: tuple[str, str, str] | None) -> tuple:
        """The batch's latents and frames, or (shared work folder) its shard written here and None, None."""
        from bank_builder.plan import cell_params

        latents, frames = self._halving(cells, lambda c: self._keyframes([cell_params(self.spec, self.plan.cell(i))
                                                                          for i in c]))
        scaling, info = self.gen.scaling_factor, self.gen.model_info()
        if shard is not None:
            _write_shard(shard, {"latents": latents.astype(np.float32), "frames": frames},
                         {"cells": cells, "scaling_factor": scaling, "model": info})
            latents = frames = None
        return latents, frames, scaling, info, self.retries

    def _keyframes(self, params) -> tuple[np.ndarray, np.ndarray]:
        latents = self.gen.generate(params)
        return latents, self.gen.decode(latents)

    def decode(self, latents: np.ndarray, cells: list[int], shard: tuple[str, str, str] | None) -> tuple:
        frames = self._halving(latents, lambda z: (self.gen.decode(z),))[0]
        if shard is not None:
            _write_shard(shard, {"latents": latents, "frames": frames}, {"cells": cells})
            frames = None
        return frames, self.retries

    def _halving(self, items, make) -> tuple[np.ndarray, ...]:
        """``make(items)``; out of memory: halve and concatenate (a cell's bytes do not depend on its batch)."""
        from bank_builder.errors import OutOfMemoryError

        try:
            return make(items)
        except OutOfMemoryError:
            if len(items) == 1:
                raise
            self.retries += 1
            half = len(items) // 2
            a, b = self._halving(items[:half], make), self._halving(items[half:], make)
            return tuple(np.concatenate([x, y]) for x, y in zip(a, b))


def _write_shard(shard: tuple[str, str, str], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write one shard into the shared work folder, atomically and checksummed like the driver does."""
    from bank_builder.store import WorkDir

    root, digest, name = shard
    WorkDir(root, digest, {}).write_shard(name, arrays, meta)  # no lock: the driver holds it


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return "?"


class _Slot:
    """The driver's view of one actor: its state and what it has done (for the summary)."""

    def __init__(self, index: int, actor: Any) -> None:
        self.index, self.actor = index, actor
        self.state = "starting"     # starting -> idle <-> busy; -> restarting after a death; -> dead
        self.node = "?"
        self.cells = 0
        self.busy_s = 0.0
        self.retried = 0            # batches that were running on it when it died, sent elsewhere
        self.retries = 0            # out-of-memory halvings on the worker (as of its last ping)
        self.error = ""

    def summary(self) -> dict[str, Any]:
        return {"worker": self.index, "node": self.node, "cells": self.cells, "busy_s": round(self.busy_s, 3),
                "failures_retried": self.retried, "state": self.state, **({"error": self.error} if self.error else {})}


class RayRunner:
    """Runs the builder's batches on Ray actors (see the module docstring)."""

    def __init__(self, spec: Any, address: str, *, spec_text: str | None = None, workers: int | None = None,
                 device: str = "auto", dtype: str = "auto", threads: int | None = None, compile_unet: bool = False,
                 exact: bool | None = None, shared_work: bool = False, on_status=None) -> None:
        ray = import_ray()
        self.ray = ray
        source = Path(spec.source)
        if spec_text is None:
            try:
                spec_text = source.read_text(encoding="utf-8")
            except OSError as exc:
                raise BuildError(f"{source}: cannot read the spec to send to the Ray workers ({exc})") from None
        self._spec_args = (spec_text, str(source), str(source.resolve().parent), spec.digest())
        self._opts = (device, dtype, threads, compile_unet, exact)
        self._on_status = on_status
        self.shared_work = shared_work
        self._started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
            try:
                if address == "auto":
                    # "auto": this machine's GPUs; join a cluster already running here if there is one
                    ray.init(address=os.environ.get("RAY_ADDRESS"), **kwargs)
                else:
                    ray.init(address=address, **kwargs)
            except Exception as exc:
                raise BuildError(f"--ray {address}: cannot reach a Ray cluster ({str(exc).splitlines()[0]})") from None
            self._started_ray = True
        res = ray.cluster_resources()
        self.gpus = int(res.get("GPU", 0))
        cpus = int(res.get("CPU", 1))
        self.device_kind = "cuda" if self.gpus else "cpu"
        n = workers or (self.gpus or max(1, cpus // max(1, threads or 1)))
        if n < 1:
            raise BuildError(f"--ray-workers {n}: must be at least 1")
        per = {"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": max(1, threads or 1)}
        self._remote = ray.remote(max_restarts=-1, max_task_retries=0, **per)(_Worker)
        self.slots = [self._spawn(i) for i in range(n)]
        self._pings: dict[Any, _Slot] = {s.actor.info.remote(): s for s in self.slots}
        self.moved: list[dict[str, Any]] = []   # batches whose worker died: when noticed, when running again
        log.info("Ray: %d worker(s) on %s (%s)", n, ", ".join(f"{k} {v:g}" for k, v in sorted(res.items())
                                                               if k in ("CPU", "GPU")), self.device_kind)

    def _spawn(self, index: int) -> _Slot:
        return _Slot(index, self._remote.remote(*self._spec_args, *self._opts))

    @property
    def alive(self) -> int:
        return sum(s.state in ("idle", "busy") for s in self.slots)

    # --- the two kinds of batch -------------------------------------------------------------------------
    def _target(self, work: Any, name: str) -> tuple[str, str, str] | None:
        return (str(work.root.resolve()), work.path.name, name) if self.shared_work else None

    def _read_back(self, work: Any, name: str) -> dict[str, np.ndarray]:
        got = work.read_shard(name)  # checksum verified; a worker's shard the driver cannot read is an error
        if got is None:
            raise BuildError(f"{work.shard_path(name)}: a worker wrote this shard but it cannot be read here; "
                             "--ray-shared-work needs the work folder (--work-dir) on storage every node shares")
        return got[0]

    def keyframes(self, chunks: Iterable[list[int]], work: Any, phase: str) -> Iterator[tuple]:
        """Yields ``(cells, latents, frames, scaling_factor, model_info)`` per keyframe batch, in any order."""
        from bank_builder.build import shard_name

        def submit(slot: _Slot, chunk):
            return slot.actor.keyframes.remote(chunk, self._target(work, shard_name(phase, chunk)))

        for chunk, (latents, frames, scaling, info, _) in self._run(chunks, submit, lambda c: c):
            if latents is None:
                arrays = self._read_back(work, shard_name(phase, chunk))
                latents, frames = arrays["latents"], arrays["frames"]
            yield chunk, latents, frames, scaling, info

    def decode(self, jobs: Iterable[tuple[list[int], np.ndarray]], work: Any) -> Iterator[tuple]:
        """Takes ``(cells, latents)``; yields ``(cells, latents, frames)`` per in-between batch, in any order."""
        from bank_builder.build import shard_name

        def submit(slot: _Slot, job):
            return slot.actor.decode.remote(job[1], job[0], self._target(work, shard_name("dense", job[0])))

        for job, (frames, _) in self._run(jobs, submit, lambda j: j[0]):
            if frames is None:
                frames = self._read_back(work, shard_name("dense", job[0]))["frames"]
            yield job[0], job[1], frames

    # --- scheduling ----------------------------------------------------------------------------------------
    def _run(self, jobs: Iterable, submit, cells_of) -> Iterator[tuple[Any, Any]]:
        ray = self.ray
        source = iter(jobs)            # pulled only when a worker is free: the in-betweens' latents are big
        retry: deque = deque()         # batches whose worker died, first in line
        running: dict[Any, tuple[_Slot, Any, float]] = {}
        requeued_at: dict[int, tuple[list[int], float]] = {}  # id(job) -> (cells, when its worker's death was noticed)
        last_progress = time.monotonic()
        exhausted = False
        while not exhausted or retry or running:
            for slot in self.slots:
                if slot.state != "idle":
                    continue
                job = retry.popleft() if retry else next(source, None)
                if job is None:
                    exhausted = True
                    break
                if id(job) in requeued_at:
                    cells, noticed = requeued_at.pop(id(job))
                    self.moved.append({"cells": cells, "noticed_unix": round(noticed, 3),
                                       "rerun_unix": round(time.time(), 3), "on_worker": slot.index})
                running[submit(slot, job)] = (slot, job, time.perf_counter())
                slot.state = "busy"
            if exhausted and not retry and not running:
                break
            if not running and not self._pings:
                raise BuildError("no Ray worker is left to run the build: "
                                 + "; ".join(s.error or f"worker {s.index} {s.state}" for s in self.slots))
            refs = list(running) + list(self._pings)
            ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in self._pings:
                    self._pinged(ref, self._pings.pop(ref))
                    continue
                slot, job, t0 = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # our code raised on the worker: say where and what
                    cause = getattr(exc, "cause", None)
                    raise BuildError(f"worker {slot.index} on {slot.node}, cells {cells_of(job)}: "
                                     f"{cause if cause is not None else str(exc).splitlines()[0]}") from None
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                        ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
                    log.warning("worker %d on %s died during the batch of cells %s (%s); it runs again elsewhere",
                                slot.index, slot.node, cells_of(job), type(exc).__name__)
                    slot.retried += 1
                    slot.state = "restarting"
                    retry.append(job)
                    requeued_at[id(job)] = (cells_of(job), time.time())
                    self._pings[slot.actor.info.remote()] = slot
                    continue
                slot.state = "idle"
                slot.cells += len(cells_of(job))
                slot.retries = result[-1]
                slot.busy_s += time.perf_counter() - t0
                last_progress = time.monotonic()
                yield job, result
            if self._on_status is not None:
                self._on_status(self.alive, len(self.slots))
            if not ready and self.alive == 0 and time.monotonic() - last_progress > STALL_S:
                raise BuildError(f"no Ray worker has been alive for {STALL_S:.0f} s; the work so far is kept, "
                                 "run the same command again to resume")

    def _pinged(self, ref: Any, slot: _Slot) -> None:
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            # a creation-task failure (model not loadable on that node) is final; say which node and why
            text = str(exc)
            reason = next((ln.strip() for ln in text.splitlines() if "could not load the model" in ln), "")
            slot.state, slot.error = "dead", reason or f"worker {slot.index} died: {text.splitlines()[0]}"
            log.error("%s", slot.error)
            return
        slot.node = info["node"]
        slot.retries = info["retries"]
        log.info("ray worker %d ready on %s (pid %d)", slot.index, slot.node, info["pid"])
        slot.state = "idle"

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.slots)

    def summary(self) -> dict[str, Any]:
        return {"workers": [s.summary() for s in self.slots], "device": self.device_kind, "moved": self.moved}

    def close(self) -> None:
        for slot in self.slots:
            try:
                self.ray.kill(slot.actor)
            except Exception:
                pass
        if self._started_ray:
            self.ray.shutdown()
