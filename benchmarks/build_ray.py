"""Benchmark `vj-bank build --ray`: one process against a local Ray cluster of 1 and of 2 workers.

The same spec (the tiny random model, sized for about a minute in one process on this machine) is
built three ways, each by the real CLI with one torch thread per worker: in one process; on a local
two-node cluster (``ray start --head`` + ``ray start --address``, one CPU each, token auth) with one
worker; and on the same cluster with two workers. The cluster is started before the timed builds
(an artist's cluster is up before the build), so each time covers what ``vj-bank build`` itself
does: actors starting and loading the model, every batch, the shards and the pack.

Then a fourth build on two workers loses the second node (SIGKILL to its raylet and workers) while
it runs a batch, and reports how long that batch took to run again on the other worker.

Prints a table, then one JSON line with ``single_s``, ``ray_1w_s``, ``ray_2w_s``, ``ray_overhead_1w``
(1-worker time / single-process time), ``ray_speedup_2w`` (single-process time / 2-worker time),
``identical`` (every bank's bytes equal the single-process bank's) and ``node_loss_move_s``.

    python benchmarks/build_ray.py [--steps 20] [--seeds 16] [--guidance-count 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

BANK_FILES = ("manifest.json", "frames.safetensors", "latents.safetensors", "reports/seams.json")
CLI = "from vjengine.cli import bank_main; import sys; sys.exit(bank_main())"


def build(spec: Path, out: Path, env: dict[str, str], *extra: str) -> tuple[float, dict, str]:
    cmd = [sys.executable, "-c", CLI, "build", str(spec), "-o", str(out), "--threads", "1", "--batch-size", "1",
           "--decode-batch-size", "2", "--no-progress", "--json", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"build failed ({r.returncode}): {r.stderr[-3000:]}")
    return elapsed, json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def same(a: Path, b: Path) -> bool:
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in BANK_FILES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=16, help="cells on the cyclic seed axis (densify 2)")
    ap.add_argument("--guidance-count", type=int, default=8)
    ap.add_argument("--skip-node-loss", action="store_true")
    args = ap.parse_args()

    from _ray_cluster import LocalRayCluster, session_of

    from bank_builder.testing import make_tiny_pipeline

    scratch = tempfile.TemporaryDirectory(prefix="vj-bench-ray-")  # removed at exit, even on error
    tmp = Path(scratch.name)
    model = tmp / "tiny"
    make_tiny_pipeline(model)
    spec = tmp / "spec.toml"
    spec.write_text(f'model = "{model}"\nsteps = {args.steps}\nguidance = 2.0\nsize = [32, 32]\nseed = 5\n'
                    'prompt = "a neon cat"\n[[axes]]\nkind = "seed"\nseeds = [1, 2, 3, 4]\n'
                    f'count = {args.seeds}\ncyclic = true\ndensify = 2\n'
                    f'[[axes]]\nkind = "guidance"\nrange = [1.0, 4.0]\ncount = {args.guidance_count}\n')
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    single_s, single, _ = build(spec, tmp / "single", env)
    print(f"one process: {single_s:.1f} s", flush=True)
    cluster = LocalRayCluster(tmp / "cluster").start(nodes=2)
    try:
        renv = {**env, **{k: v for k, v in cluster.env.items() if k.startswith("RAY")}}
        one_s, one, _ = build(spec, tmp / "ray1", renv, "--ray", cluster.address, "--ray-workers", "1")
        two_s, two, _ = build(spec, tmp / "ray2", renv, "--ray", cluster.address, "--ray-workers", "2")
        identical = same(tmp / "single", tmp / "ray1") and same(tmp / "single", tmp / "ray2")
        move_s = None
        if not args.skip_node_loss:
            move_s, lost_identical = lose_node_mid_build(cluster, spec, tmp / "ray-lost", renv, session_of)
            identical = identical and lost_identical and same(tmp / "single", tmp / "ray-lost")
    finally:
        cluster.stop()

    rows = [("one process", single_s, "-"), ("Ray, 1 worker", one_s, f"{one_s / single_s:.2f}x time"),
            ("Ray, 2 workers", two_s, f"{single_s / two_s:.2f}x speed-up")]
    cells = single["made_now"]
    print(f"{'build':<16} {'wall s':>8} {'cells/s':>8}  vs one process")
    for name, s, note in rows:
        print(f"{name:<16} {s:8.1f} {cells / s:8.2f}  {note}")
    print(f"bank bytes identical: {identical}; a batch lost with its node ran again after "
          f"{move_s if move_s is None else round(move_s, 2)} s")
    for w in two["ray"]["workers"]:
        print(f"  2-worker build, worker {w['worker']} on {w['node']}: {w['cells']} cells, {w['busy_s']:.1f} s busy")
    print(json.dumps({"cells": cells, "single_s": round(single_s, 2), "ray_1w_s": round(one_s, 2),
                      "ray_2w_s": round(two_s, 2), "ray_overhead_1w": round(one_s / single_s, 3),
                      "ray_speedup_2w": round(single_s / two_s, 3), "identical": identical,
                      "node_loss_move_s": None if move_s is None else round(move_s, 3)}))
    return 0


def lose_node_mid_build(cluster, spec: Path, out: Path, env: dict[str, str], session_of) -> tuple[float | None, bool]:
    """Kill node 2 while its worker runs a batch; seconds from the kill until that batch runs again."""
    log = out.with_suffix(".log")
    cmd = [sys.executable, "-c", CLI, "build", str(spec), "-o", str(out), "--threads", "1", "--batch-size", "1",
           "--decode-batch-size", "2", "--no-progress", "--json", "--ray", cluster.address, "--ray-workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
    node2 = cluster.nodes[1].pid
    killed_at = None
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        busy = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _title(d).startswith(b"ray::_Worker.")]
        if log.read_text().count(" ready on ") == 2 and any(session_of(p) == node2 for p in busy):
            killed_at = time.time()
            cluster.lose_node(cluster.nodes[1])
            break
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    out_text, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the build that lost a node failed: {log.read_text()[-3000:]}")
    got = json.loads(out_text.strip().splitlines()[-1])
    moved = got["ray"]["moved"]
    if killed_at is None or not moved:
        return None, True
    return moved[0]["rerun_unix"] - killed_at, True


def _title(d: Path) -> bytes:
    try:
        return (d / "cmdline").read_bytes()
    except OSError:
        return b""


if __name__ == "__main__":
    raise SystemExit(main())
