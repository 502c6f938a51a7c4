"""Resumable and safe: SIGKILL the real `vj-bank build` at several points, resume, compare bytes.

Also: a truncated or corrupted shard in the work directory is detected and made again, and the
bank that comes out opens in the live renderer (a headless EGL context in a subprocess).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _builder_fixtures import bank_cli, cli_env, require_build_extra, tiny_model, write_spec  # noqa: F401

require_build_extra()

from bank_builder.build import BuildOptions, build_bank  # noqa: E402
from bank_builder.spec import load_spec  # noqa: E402
from vjengine.bank import open_bank  # noqa: E402

BANK_FILES = ("manifest.json", "frames.safetensors", "latents.safetensors", "reports/seams.json")


def spec_text(model: Path) -> str:
    return (f'model = "{model}"\nsteps = 2\nguidance = 2.0\nsize = [32, 32]\nseed = 11\nprompt = "a neon cat"\n'
            '[[axes]]\nkind = "seed"\nseeds = [1, 2, 3]\ncount = 9\ncyclic = true\ndensify = 3\n'
            '[[axes]]\nkind = "guidance"\nrange = [1.0, 4.0]\ncount = 4\n')


def same_bytes(a: Path, b: Path) -> None:
    for name in BANK_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference_bank(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    """An uninterrupted build with the CLI's settings (1 thread, batch 1), in this process."""
    folder = tmp_path_factory.mktemp("resume-ref")
    spec_path = write_spec(folder, spec_text(tiny_model))
    import torch

    threads = torch.get_num_threads()
    try:
        build_bank(load_spec(spec_path), folder / "ref",
                   BuildOptions(batch_size=1, decode_batch_size=3, threads=1, progress=False))
    finally:
        torch.set_num_threads(threads)
    return spec_path, folder / "ref"


def _run_until(cmd: list[str], condition, timeout_s: float = 240.0) -> str:
    """Start ``cmd``; SIGKILL it as soon as ``condition()`` holds. Returns 'killed' or 'finished'."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if condition():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return "killed"
            if proc.poll() is not None:
                assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
                return "finished"
            time.sleep(0.005)
        raise AssertionError("build did not reach the kill point in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_is_byte_identical(tmp_path, reference_bank):
    spec_path, ref = reference_bank
    out = tmp_path / "bank"
    work = tmp_path / "bank.work"
    cmd = bank_cli("build", str(spec_path), "-o", str(out), "--batch-size", "1", "--decode-batch-size", "3",
                   "--threads", "1", "--no-progress")

    def shards() -> list[Path]:
        return list(work.glob("*/shards/*.safetensors"))

    # 1: killed after the first keyframe batch is on disk
    assert _run_until(cmd, lambda: len(shards()) >= 1) == "killed"
    n1 = len(shards())
    assert not out.exists()
    # 2: killed part-way through the in-betweens
    assert _run_until(cmd, lambda: any(p.name.startswith("dense_") for p in shards())) == "killed"
    assert len(shards()) > n1 and not out.exists()
    # 3: killed while packing (the partial bank exists) or, if packing was too quick, just after
    state = _run_until(cmd, lambda: out.with_name("bank.partial").exists() or out.exists())
    if out.exists():  # a bank at the final path is always complete
        assert open_bank(out).count == 36
    # 4: resume to the end; the bank is the uninterrupted one, byte for byte
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if state == "killed":
        assert result["made_now"] < 36, "the resumed build should reuse the finished batches"
    same_bytes(out, ref)
    assert not work.exists(), "the work directory is removed after a successful pack"
    assert not out.with_name("bank.partial").exists()
    print(f"third kill point: {state}")


def test_truncated_or_corrupt_shard_is_rebuilt(tmp_path, reference_bank):
    spec_path, ref = reference_bank
    spec = load_spec(spec_path)
    opts = BuildOptions(batch_size=1, decode_batch_size=3, threads=1, progress=False, keep_work=True,
                        work_dir=str(tmp_path / "work"))
    import torch

    threads = torch.get_num_threads()
    try:
        first = build_bank(spec, tmp_path / "bank", opts)
        assert first.made_now == 36
        shard_dir = next((tmp_path / "work").glob("*/shards"))
        key = sorted(shard_dir.glob("key_*.safetensors"))[1]
        dense = sorted(shard_dir.glob("dense_*.safetensors"))[0]
        data = key.read_bytes()
        key.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
        raw = bytearray(dense.read_bytes())
        raw[-5] ^= 0xFF  # one flipped byte in the frames
        dense.write_bytes(bytes(raw))
        (shard_dir / "dense_000001.safetensors.tmp123").write_bytes(b"half a write")
        again = build_bank(spec, tmp_path / "bank", opts)
    finally:
        torch.set_num_threads(threads)
    # the truncated keyframe batch (1 cell) and the corrupt in-between batch (3 cells) were made again
    assert again.made_now == 1 + 3
    same_bytes(tmp_path / "bank", ref)
    assert not list(shard_dir.glob("*.tmp*"))


RENDER_SCRIPT = r"""
import sys, numpy as np
from vjengine.bank import open_bank
from vjengine.render.context import headless_context
from vjengine.render.renderer import Renderer
bank = open_bank(sys.argv[1])
ctx = headless_context()
r = Renderer(ctx, bank, progress=False, raise_errors=True)
worst = 0
for cell in [(0, 0), (4, 2), (8, 3)]:
    coord = [c / a.size if a.cyclic else c / (a.size - 1) for c, a in zip(cell, bank.axes)]
    r.render(coord)
    got = r.read_image_rgb().astype(int)
    want = np.asarray(bank.frames[bank.index(cell)])[..., :3].astype(int)
    worst = max(worst, int(np.abs(got - want).max()))
print("WORST", worst, "TORCH" if "torch" in sys.modules else "NOTORCH")
"""


def test_built_bank_plays_in_the_live_renderer(tmp_path, reference_bank):
    _, ref = reference_bank
    r = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(ref)], capture_output=True, text=True,
                       env=cli_env(), timeout=120)
    if r.returncode != 0 and "headless OpenGL context" in r.stderr:
        pytest.skip(f"no EGL here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    worst, torch_state = r.stdout.split()[-2:]
    assert int(worst) <= 1 and torch_state == "NOTORCH"


def test_preview_sheet_and_walk(tmp_path, reference_bank):
    _, ref = reference_bank
    probe = ("import sys; from vjengine.cli import bank_main; rc = bank_main(sys.argv[1:]);"
             "print('TORCH' if 'torch' in sys.modules else 'NOTORCH'); sys.exit(rc)")
    sheet, mp4 = tmp_path / "sheet.png", tmp_path / "walk.mp4"
    r = subprocess.run([sys.executable, "-c", probe, "preview", str(ref), "-o", str(sheet), "--path", str(mp4),
                        "--seconds", "1", "--fps", "12"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "NOTORCH" in r.stdout
    from PIL import Image

    img = Image.open(sheet)
    assert img.size[0] > 9 * 32 and img.size[1] > 4 * 32
    assert mp4.stat().st_size > 1000
    import imageio_ffmpeg

    frames = imageio_ffmpeg.count_frames_and_secs(str(mp4))[0]
    assert frames == 12
    r = subprocess.run(bank_cli("preview", str(ref), "--axes", "colour"), capture_output=True, text=True,
                       env=cli_env(), timeout=120)
    assert r.returncode == 2 and "has no axis 'colour'" in r.stderr


def test_ctrl_c_says_a_rerun_resumes(tmp_path, reference_bank):
    spec_path, ref = reference_bank
    out, work = tmp_path / "bank", tmp_path / "bank.work"
    cmd = bank_cli("build", str(spec_path), "-o", str(out), "--batch-size", "1", "--decode-batch-size", "3",
                   "--threads", "1", "--no-progress")
    for _attempt in range(3):  # a starved test process may see the first shard only after the build ended
        # SIGINT back to its default in the child: a test run started in the background inherits it ignored
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 240
            while not list(work.glob("*/shards/*.safetensors")) and proc.poll() is None:
                assert time.monotonic() < deadline, "no shard was written"
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            break
        shutil.rmtree(out)  # it finished before the signal landed: not what this test is about; again
    assert proc.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err and str(work) in err and "Traceback" not in err
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["made_now"] < 36
    same_bytes(out, ref)
