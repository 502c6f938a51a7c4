"""`vj-bank build --ray`: one bank baked by workers on a real two-node Ray cluster on this machine.

Every build here is compared byte for byte with a single-process build of the same spec: after a clean
run, after a worker process is killed mid-build, after the second node is lost mid-build, and after the
driver itself is SIGKILLed and the same command is run again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _builder_fixtures import bank_cli, cli_env, require_build_extra, tiny_model, write_spec  # noqa: F401

require_build_extra()
pytest.importorskip("ray", reason="the --ray tests need the ray extra (pip install 'vjengine[ray]')")

from _ray_cluster import LocalRayCluster, session_of  # noqa: E402

from bank_builder.build import BuildOptions, build_bank  # noqa: E402
from bank_builder.spec import load_spec  # noqa: E402

pytestmark = pytest.mark.slow
BANK_FILES = ("manifest.json", "frames.safetensors", "latents.safetensors", "reports/seams.json")
BUILD_TIMEOUT_S = 300


def spec_text(model: Path, steps: int, guidance_count: int) -> str:
    return (f'model = "{model}"\nsteps = {steps}\nguidance = 2.0\nsize = [32, 32]\nseed = 5\nprompt = "a neon cat"\n'
            '[[axes]]\nkind = "seed"\nseeds = [1, 2, 3, 4]\ncount = 12\ncyclic = true\ndensify = 2\n'
            f'[[axes]]\nkind = "guidance"\nrange = [1.0, 4.0]\ncount = {guidance_count}\n')


BUILD_ARGS = ("--threads", "1", "--batch-size", "1", "--decode-batch-size", "2", "--no-progress", "--json")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    c = LocalRayCluster(tmp_path_factory.mktemp("ray"))
    try:
        c.launch(nodes=2)
        request.getfixturevalue("specs")  # the reference banks are built while the nodes come up
        c.wait_nodes(2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def specs(tmp_path_factory, tiny_model):
    """A quick spec, and a slow one (more steps) so that a kill lands while workers are busy; each with
    its single-process reference bank, built in this process with the CLI's settings."""
    import torch

    folder = tmp_path_factory.mktemp("ray-specs")
    out = {}
    threads = torch.get_num_threads()
    try:
        # "slow" (96 cells) outlasts a worker's start (about 30 s on a loaded 2-core machine: torch and
        # diffusers import), so that both workers take cells and a kill lands while they are busy
        for name, steps, guidance_count in (("quick", 2, 4), ("slow", 8, 8)):
            path = write_spec(folder, spec_text(tiny_model, steps, guidance_count), f"{name}.toml")
            build_bank(load_spec(path), folder / f"{name}-ref",
                       BuildOptions(batch_size=1, decode_batch_size=2, threads=1, progress=False))
            out[name] = (path, folder / f"{name}-ref")
    finally:
        torch.set_num_threads(threads)
    return out


def same_bytes(a: Path, b: Path) -> None:
    for name in BANK_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def ray_build(cluster, spec: Path, out: Path, *extra: str, log: Path | None = None) -> subprocess.Popen:
    # the previous build's actors must be gone, or this build starts with fewer free CPU slots
    deadline = time.monotonic() + 60
    while worker_pids(cluster) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling a condition, bounded
    env = {**cli_env(), **{k: v for k, v in cluster.env.items() if k.startswith("RAY")}}
    return subprocess.Popen(bank_cli("build", str(spec), "-o", str(out), "--ray", cluster.address,
                                     *BUILD_ARGS, *extra),
                            stdout=subprocess.PIPE, stderr=open(log, "w") if log else subprocess.PIPE, env=env,
                            text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def shards(out: Path) -> list[Path]:
    return list(out.with_name(out.name + ".work").glob("*/shards/*.safetensors"))


def wait_for(condition, proc: subprocess.Popen, what: str, timeout_s: float = BUILD_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the build ended before {what}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling the condition (files appearing), bounded by the deadline


def worker_pids(cluster, busy: bool = False) -> list[int]:
    """PIDs of this cluster's builder actors: Ray titles their processes ray::_Worker, and
    ray::_Worker.keyframes (or .decode) while one runs a batch; they live in the session of their
    node's ``ray start`` (so another Ray on the machine is never counted)."""
    prefix = b"ray::_Worker." if busy else b"ray::_Worker"
    sessions = {proc.pid for proc in cluster.nodes}
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(prefix) and session_of(int(d.name)) in sessions:
                pids.append(int(d.name))
    return pids


def test_two_workers_on_two_nodes_make_the_same_bytes(cluster, specs, tmp_path):
    spec, ref = specs["slow"]
    got = finish(ray_build(cluster, spec, tmp_path / "bank", "--ray-workers", "2"))
    same_bytes(ref, tmp_path / "bank")
    workers = got["ray"]["workers"]
    assert len(workers) == 2
    assert sum(w["cells"] for w in workers) == got["made_now"] == 96
    assert not (tmp_path / "bank.work").exists()


def test_a_worker_process_killed_mid_build(cluster, specs, tmp_path):
    spec, ref = specs["slow"]
    for attempt in range(3):  # a kill that lands just as the batch ended hits an idle actor: try again
        bank = tmp_path / f"bank{attempt}"
        proc = ray_build(cluster, spec, bank, "--ray-workers", "2")
        wait_for(lambda: len(shards(bank)) >= 2 and worker_pids(cluster, busy=True), proc, "a worker busy")
        busy = worker_pids(cluster, busy=True)
        if busy:
            os.kill(busy[0], signal.SIGKILL)
        got = finish(proc)
        same_bytes(ref, bank)  # whatever the kill hit, the bank is the same
        if sum(w["failures_retried"] for w in got["ray"]["workers"]) >= 1:
            break
    assert sum(w["failures_retried"] for w in got["ray"]["workers"]) >= 1, got["ray"]
    assert got["ray"]["moved"], got["ray"]


def test_the_second_node_lost_mid_build(cluster, specs, tmp_path):
    spec, ref = specs["slow"]
    log = tmp_path / "build.log"
    proc = ray_build(cluster, spec, tmp_path / "bank", "--ray-workers", "2", log=log)
    try:
        # both workers have reported ready, and the second node's is running a batch when the node goes
        node2 = cluster.nodes[1].pid
        wait_for(lambda: log.read_text().count(" ready on ") == 2
                 and any(session_of(p) == node2 for p in worker_pids(cluster, busy=True)), proc, "node 2 busy")
        cluster.lose_node(cluster.nodes[1])
        out, _ = proc.communicate(timeout=BUILD_TIMEOUT_S)
        assert proc.returncode == 0, log.read_text()[-3000:]
        got = json.loads(out.strip().splitlines()[-1])
    finally:
        cluster.add_node()
        cluster.wait_nodes(2)
    same_bytes(ref, tmp_path / "bank")
    assert sum(w["failures_retried"] for w in got["ray"]["workers"]) >= 1, log.read_text()[-3000:]


def test_the_driver_killed_then_the_same_command_resumes(cluster, specs, tmp_path):
    spec, ref = specs["slow"]
    proc = ray_build(cluster, spec, tmp_path / "bank", "--ray-workers", "2")
    wait_for(lambda: len(shards(tmp_path / "bank")) >= 4, proc, "four shards")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    made_before = len(shards(tmp_path / "bank"))
    got = finish(ray_build(cluster, spec, tmp_path / "bank", "--ray-workers", "2"))
    assert got["made_now"] <= 96 - made_before < 96  # every shard holds at least one cell
    same_bytes(ref, tmp_path / "bank")


def test_a_model_no_worker_can_load_is_a_clear_error_naming_the_node(cluster, specs, tmp_path):
    import shutil

    spec, _ = specs["quick"]
    model = Path(load_spec(spec).model)
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    for f in (broken / "unet").glob("*.safetensors"):
        f.write_bytes(b"not weights")
    bad_spec = write_spec(tmp_path, spec.read_text().replace(str(model), str(broken)), "bad.toml")
    proc = ray_build(cluster, bad_spec, tmp_path / "bank", "--ray-workers", "2")
    out, err = proc.communicate(timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 2, err[-2000:]
    assert "could not load the model" in err and "on node" in err, err[-2000:]
    assert not (tmp_path / "bank").exists()


BLOCK_RAY = ("import sys; sys.modules['ray'] = None; from vjengine.cli import bank_main; sys.exit(bank_main())")


def test_without_ray_installed_the_flag_says_how_and_nothing_else_imports_it(specs, tmp_path):
    spec, ref = specs["quick"]
    cmd = [sys.executable, "-c", BLOCK_RAY, "build", str(spec), "-o", str(tmp_path / "bank"), *BUILD_ARGS]
    r = subprocess.run([*cmd, "--ray", "auto"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "pip install 'vjengine[ray]'" in r.stderr
    assert not (tmp_path / "bank").exists() and not (tmp_path / "bank.work").exists()
    # the same build without the flag never touches Ray (importing it would raise here)
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=BUILD_TIMEOUT_S)
    assert r.returncode == 0, r.stderr[-2000:]
    same_bytes(ref, tmp_path / "bank")


def test_workers_write_their_shards_into_a_shared_work_folder(cluster, specs, tmp_path):
    """--ray-shared-work: both nodes see this machine's disk, as nodes of a cluster see an NFS mount."""
    spec, ref = specs["quick"]
    work = tmp_path / "shared-work"
    got = finish(ray_build(cluster, spec, tmp_path / "bank", "--ray-workers", "2", "--ray-shared-work",
                           "--work-dir", str(work)))
    same_bytes(ref, tmp_path / "bank")
    assert got["made_now"] == 48
    assert not work.exists()  # packed and cleaned up like any build
