"""Hostile and changing banks: manifests that point outside the bank or are malformed (exit 2, one
line), frames read safely when the file changes under an open bank, and a full disk while writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from vjengine.bank import Axis, BankWriter, open_bank, write_bank
from vjengine.bank.format import FRAMES_FILE, MANIFEST
from vjengine.errors import BankError

AXES = (Axis("prompt", (0.0, 0.5, 1.0)), Axis("seed", ("a", "b"), cyclic=True))


def _make(path: Path) -> np.ndarray:
    frames = np.random.default_rng(1).integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    write_bank(path, AXES, frames)
    return frames


def _edit(path: Path, **changes) -> None:
    m = json.loads((path / MANIFEST).read_text())
    m.update(changes)
    (path / MANIFEST).write_text(json.dumps(m))


def _vj_bank(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from vjengine.cli import bank_main; sys.exit(bank_main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/frames.safetensors",
                                  "..", ".", "", ".hidden", "a\\b", "manifest.json", "x\x00y"])
def test_manifest_may_name_only_plain_files_in_the_bank(tmp_path, name):
    bank = tmp_path / "b"
    _make(bank)
    # a real safetensors file outside the bank: a naive reader would open it
    (tmp_path / "outside.safetensors").write_bytes((bank / FRAMES_FILE).read_bytes())
    _edit(bank, files={"frames": name, "latents": None})
    with pytest.raises(BankError, match=r"files\.frames must be a plain file name") as info:
        open_bank(bank)
    assert "root:" not in str(info.value)  # nothing of /etc/passwd leaks into the message


def test_latents_outside_the_bank_refused_and_cli_exits_2(tmp_path):
    bank = tmp_path / "b"
    _make(bank)
    _edit(bank, files={"frames": FRAMES_FILE, "latents": "/etc/passwd"})
    res = _vj_bank("info", str(bank))
    assert res.returncode == 2, res.stderr
    assert "files.latents" in res.stderr and "Traceback" not in res.stderr and "root:" not in res.stderr


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: _edit(p, files=["frames.safetensors"]), r"'files' must be an object"),
        (lambda p: _edit(p, files={"frames": 7}), r"files\.frames must be a file name .*got int"),
        (lambda p: _edit(p, files={"frames": FRAMES_FILE, "extra": "x"}), r"files has unknown keys"),
        (lambda p: _edit(p, files={"frames": FRAMES_FILE, "latents": FRAMES_FILE}), r"name the same file"),
        (lambda p: (p / MANIFEST).write_text('{"format": "vjengine-bank", "version": 1, "axes": '
                                             + "[" * 200000 + "]" * 200000 + "}"), r"not valid JSON"),
        (lambda p: (p / MANIFEST).write_text("[" * 100000 + "]" * 100000), r"not valid JSON|not a vjengine"),
        (lambda p: _edit(p, axes=[[[[[[1]]]]]]), r"axes\[0\] must be an object"),
        (lambda p: (p / MANIFEST).write_bytes(b"\xff\xfe{}"), r"not valid JSON"),
    ],
)
def test_malformed_manifests_are_one_clear_error(tmp_path, damage, message):
    bank = tmp_path / "b"
    _make(bank)
    damage(bank)
    with pytest.raises(BankError, match=message):
        open_bank(bank)
    res = _vj_bank("validate", str(bank))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "manifest.json" in res.stderr, res.stderr


def test_unreadable_manifest_is_exit_2(tmp_path):
    bank = tmp_path / "b"
    _make(bank)
    (bank / MANIFEST).unlink()
    (bank / MANIFEST).mkdir()  # a directory where the file should be: reading it fails with EISDIR
    with pytest.raises(BankError, match="manifest.json"):
        open_bank(bank)


# --- a bank changing under an open one ----------------------------------------------------------------

def test_read_frames_matches_the_map(tmp_path):
    frames = _make(tmp_path / "b")
    bank = open_bank(tmp_path / "b")
    np.testing.assert_array_equal(bank.read_frames(0, 6), frames)
    np.testing.assert_array_equal(bank.read_frames(4, 1)[0], frames[4])
    with pytest.raises(IndexError):
        bank.read_frames(5, 2)


_CHILD = r"""
import os, sys
from vjengine.bank import open_bank
from vjengine.errors import BankError
bank = open_bank(sys.argv[1])
f = os.path.join(sys.argv[1], "frames.safetensors")
size = os.path.getsize(f)
with open(f, "r+b") as fh:
    fh.truncate(int(sys.argv[2]))
try:
    bank.read_frames(0, bank.count)
except BankError as exc:
    print("BankError:", exc)
    sys.exit(0)
print("read without error")
sys.exit(1)
"""


@pytest.mark.parametrize("keep", [0, 200])
def test_truncated_under_an_open_bank_is_a_bank_error_not_sigbus(tmp_path, keep):
    _make(tmp_path / "b")
    # in a child: a SIGBUS there must show as a failed test, not kill pytest
    res = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "b"), str(keep)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert "frames.safetensors" in res.stdout and "changed on disk" in res.stdout


def test_rewritten_in_place_same_size_is_noticed_and_a_replaced_file_is_not(tmp_path):
    frames = _make(tmp_path / "b")
    bank = open_bank(tmp_path / "b")
    f = tmp_path / "b" / FRAMES_FILE
    # replaced by rename (how the writer does it): the open bank keeps reading its own, intact file
    tmp = f.with_name("new.tmp")
    tmp.write_bytes(f.read_bytes()[:100])
    os.replace(tmp, f)
    np.testing.assert_array_equal(bank.read_frames(0, 6), frames)
    # rewritten in place: same size, new modification time
    g = tmp_path / "b2"
    _make(g)
    bank2 = open_bank(g)
    st = (g / FRAMES_FILE).stat()
    with open(g / FRAMES_FILE, "r+b") as fh:
        fh.seek(st.st_size - 10)
        fh.write(b"\x00" * 10)
    os.utime(g / FRAMES_FILE, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(BankError, match="changed on disk"):
        bank2.read_frames(0, 1)


# --- disk full ---------------------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MB tmpfs (needs root, as the CI runs): a disk that fills."""
    mnt = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_bank_writer_on_a_full_disk_says_so_and_leaves_nothing(small_fs):
    axes = (Axis("x", tuple(range(10))),)
    with pytest.raises(BankError, match=r"no space left on tmpfs .*need 0\.00334 GB") as info:  # frames, latents, low tier, checksums
        BankWriter(small_fs / "big", axes, 1000, 100, 3, latent_shape=(4, 64, 64))
    assert "need" in str(info.value)
    assert list(small_fs.iterdir()) == []  # no partial directory left behind


def test_bank_writer_reserves_its_blocks_up_front(small_fs, tmp_path):
    # a sparse file filled through a map dies of SIGBUS when the disk fills; reserved blocks cannot
    with BankWriter(tmp_path / "b", (Axis("x", tuple(range(8))),), 100, 100, 3) as w:
        f = w.partial / FRAMES_FILE
        st = f.stat()
        assert st.st_blocks * 512 >= st.st_size >= 8 * 100 * 100 * 3
    # and a reservation that does not fit is the clear error, whatever the free-space check said
    from vjengine.bank.format import reserve_space

    (small_fs / "hog").write_bytes(b"\x01" * (1500 * 1024))
    with open(small_fs / "f", "wb") as fh, pytest.raises(BankError, match=r"f: no space left on tmpfs .*need 0\.001 GB"):
        reserve_space(fh.fileno(), small_fs / "f", 1_000_000)


def test_cli_build_pack_on_full_disk_exit_2(small_fs):
    """write_bank (the pack path's BankWriter) through a subprocess: exit 2 and one line, no SIGBUS."""
    code = ("import sys, numpy as np; from vjengine.bank import Axis, write_bank\n"
            "from vjengine.errors import VJError\n"
            "try:\n"
            "    write_bank(sys.argv[1], (Axis('x', tuple(range(80))),), np.zeros((80, 100, 100, 3), np.uint8))\n"
            "except VJError as e:\n"
            "    print(e, file=sys.stderr); sys.exit(e.exit_code)\n")
    res = subprocess.run([sys.executable, "-c", code, str(small_fs / "b")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "no space left on" in res.stderr and "GB" in res.stderr


def test_builder_shard_on_full_disk_is_the_same_clear_error(small_fs):
    from bank_builder.errors import WorkDirError
    from bank_builder.store import WorkDir

    with WorkDir(small_fs / "work", "0123456789abcdef0123", {"spec": 1}) as work:
        work.write_shard("small", {"frames": np.zeros((2, 8, 8, 3), np.uint8)})
        with pytest.raises(WorkDirError, match=r"big\.safetensors: no space left on tmpfs .*need 0\.003\d* GB"):
            work.write_shard("big", {"frames": np.zeros((10, 100, 1000, 3), np.uint8)})
        assert sorted(p.name for p in work.shards.iterdir()) == ["small.safetensors"]  # no temp file left
        assert work.read_shard("small") is not None
