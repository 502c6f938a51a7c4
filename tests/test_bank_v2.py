"""Bank format version 2: BC1/BC7 block frames, the low tier, checksums, `vj-bank compress`, and the
bad-input errors of each (exit 2, file and problem named, nothing half-written)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from vjengine.bank import Axis, codecs, open_bank, validate_bank, write_bank
from vjengine.bank.format import CHECKSUMS_FILE, FRAMES_FILE, LATENTS_FILE, LOW_FILE, MANIFEST, find_bad_frames
from vjengine.errors import BankError

AXES = (Axis("prompt", (0.0, 0.5, 1.0)), Axis("seed", ("a", "b", "c", "d"), cyclic=True))


def smooth_frames(n=12, size=32, channels=3):
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((n, size, size, channels), np.uint8)
    for i in range(n):
        out[i, ..., 0] = 128 + 100 * np.sin(x / 7 + i)
        out[i, ..., 1] = 128 + 100 * np.cos(y / 5 + 0.5 * i)
        out[i, ..., 2] = (x + y + 9 * i) % 256
        if channels == 4:
            out[i, ..., 3] = 255
    return out


def _make(path, codec="raw", latents=True):
    frames = smooth_frames()
    lat = np.random.default_rng(1).standard_normal((12, 4, 2)).astype(np.float16) if latents else None
    write_bank(path, AXES, frames, lat, made_by={"tool": "test"}, codec=codec)
    return frames


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-9))


@pytest.mark.parametrize("codec, min_psnr", [("bc1", 30.0), ("bc7", 36.0)])
def test_block_codec_round_trip(tmp_path, codec, min_psnr):
    frames = _make(tmp_path / "b", codec)
    bank = validate_bank(tmp_path / "b")
    m = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert m["version"] == 2 and m["codec"] == codec
    info = codecs.CODEC_INFO[codec]
    assert bank.codec == codec and bank.blocks.shape == (12, 8, 8, info.block_bytes)
    # frames.safetensors holds the block data as-is: 4 or 8 bits per pixel
    assert bank.blocks.nbytes * 8 == 12 * 32 * 32 * info.bits_per_pixel
    decoded = np.asarray(bank.frames)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(bank.frames[5], codecs.decode(bank.blocks[5], codec, 32, 32, 3))
    assert _psnr(decoded, frames) >= min_psnr


def test_every_v2_bank_has_a_low_tier_and_checksums(tmp_path):
    frames = _make(tmp_path / "b")
    bank = open_bank(tmp_path / "b")
    assert bank.version == 2 and bank.low_size == (8, 8)
    assert bank.low.shape == (12, 2, 2, 8)
    np.testing.assert_array_equal(bank.low[7], codecs.make_low(frames[7], (8, 8)))
    low = codecs.decode(bank.low[7], "bc1", 8, 8, 3).astype(np.float64)
    assert low.mean() == pytest.approx(frames[7].mean(), abs=8)  # a small copy of the frame
    assert sorted(bank.checksums) == ["frames", "latents", "low"]
    assert int(bank.checksums["frames"][3]) == codecs.crc32(frames[3])
    assert not find_bad_frames(bank)


def test_low_tier_is_at_most_128_px_and_a_multiple_of_4():
    assert codecs.low_tier_size(512, 512) == (128, 128)
    assert codecs.low_tier_size(1024, 576) == (128, 72)
    assert codecs.low_tier_size(64, 32) == (16, 8)
    assert codecs.low_tier_size(7, 5) == (4, 4)


def _flip(path, offset_from_end_fraction=0.5, nbytes=1, value=None):
    data = bytearray(path.read_bytes())
    pos = int(len(data) * offset_from_end_fraction)
    for k in range(nbytes):
        data[pos + k] = value if value is not None else data[pos + k] ^ 0x10
    path.write_bytes(bytes(data))
    return pos


def _frame_at(bank_path, file, tensor, pos):
    from vjengine.bank.format import _read_safetensors_header

    start, header = _read_safetensors_header(bank_path / file)
    begin = header[tensor]["data_offsets"][0]
    shape = header[tensor]["shape"]
    per = int(np.prod(shape[1:])) * (4 if header[tensor]["dtype"] == "U32" else 1) \
        * (2 if header[tensor]["dtype"] == "F16" else 1)
    return (pos - start - begin) // per


@pytest.mark.parametrize("codec", ["raw", "bc1", "bc7"])
def test_bit_flip_in_frames_is_named_by_index_and_cell(tmp_path, codec):
    _make(tmp_path / "b", codec)
    pos = _flip(tmp_path / "b" / FRAMES_FILE, 0.6)
    index = _frame_at(tmp_path / "b", FRAMES_FILE, "frames", pos)
    open_bank(tmp_path / "b")  # opening reads no frames
    cell = open_bank(tmp_path / "b").cell(index)
    with pytest.raises(BankError, match=rf"1 bad frame\(s\): {index} \(cell prompt={cell[0]}, seed={cell[1]}\)"):
        validate_bank(tmp_path / "b")


def test_100kb_of_ff_in_the_middle_of_the_frames_fails_validate(tmp_path):
    frames = smooth_frames(n=12, size=128)
    write_bank(tmp_path / "b", AXES, frames)
    f = tmp_path / "b" / FRAMES_FILE
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 100_000] = b"\xff" * 100_000
    f.write_bytes(bytes(data))
    with pytest.raises(BankError, match=r"checksum mismatch: 4 bad frame\(s\): 5 .*, 6 .*, 7 .*, 8 \(cell prompt=2, seed=0\)"):
        validate_bank(tmp_path / "b")


def test_bit_flips_in_latents_and_low_tier_are_found(tmp_path):
    _make(tmp_path / "b", "bc1")
    pos = _flip(tmp_path / "b" / LATENTS_FILE, 0.7)
    i = _frame_at(tmp_path / "b", LATENTS_FILE, "latents", pos)
    pos = _flip(tmp_path / "b" / LOW_FILE, 0.3)
    j = _frame_at(tmp_path / "b", LOW_FILE, "low", pos)
    with pytest.raises(BankError, match=rf"bad low-tier frame\(s\): {j} .*bad latent\(s\): {i} "):
        validate_bank(tmp_path / "b")


def test_bit_flip_in_the_checksum_table_is_found(tmp_path):
    _make(tmp_path / "b", "bc1")
    _flip(tmp_path / "b" / CHECKSUMS_FILE, 0.9)
    bank = open_bank(tmp_path / "b")  # opens: live survives it (the table is not trusted)
    assert bank.checksum_problem and "checksum table is damaged" in bank.checksum_problem
    with pytest.raises(BankError, match="checksums.safetensors: the checksum table is damaged"):
        validate_bank(tmp_path / "b")


def _downgrade_to_v1(path):
    m = json.loads((path / MANIFEST).read_text())
    for key in ("codec", "low", "checksums"):
        m.pop(key)
    m["version"] = 1
    m["files"] = {"frames": m["files"]["frames"], "latents": m["files"]["latents"]}
    (path / MANIFEST).write_text(json.dumps(m))
    (path / LOW_FILE).unlink()
    (path / CHECKSUMS_FILE).unlink()


def test_version_1_banks_still_open_and_validate(tmp_path):
    frames = _make(tmp_path / "b")
    _downgrade_to_v1(tmp_path / "b")
    bank = validate_bank(tmp_path / "b")
    assert bank.version == 1 and bank.codec == "raw" and bank.low is None and bank.checksums is None
    np.testing.assert_array_equal(bank.frames, frames)
    out = _vj_bank("validate", "--no-progress", str(tmp_path / "b"))
    assert out.returncode == 0 and "version 1: no checksums" in out.stdout


def _vj_bank(*args):
    code = "import sys; from vjengine.cli import bank_main; sys.exit(bank_main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def _edit(path, **changes):
    m = json.loads((path / MANIFEST).read_text())
    m.update(changes)
    (path / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / FRAMES_FILE).write_bytes((p / FRAMES_FILE).read_bytes()[:-100]),
         r"frames.safetensors: truncated or corrupt"),
        (lambda p: _edit(p, frame={"width": 36, "height": 32, "channels": 3}),
         r"frames.safetensors: bc1 block data has shape \[12, 8, 8, 8\].*block size does not match the frame size"),
        (lambda p: _edit(p, frame={"width": 30, "height": 32, "channels": 3}), r"multiple of 4"),
        (lambda p: _edit(p, codec="bc9"), r"codec 'bc9' is not one of raw, bc1, bc7"),
        (lambda p: save_file({"frames": np.zeros(11, np.uint32), "low": np.zeros(12, np.uint32),
                              "latents": np.zeros(12, np.uint32)}, str(p / CHECKSUMS_FILE)),
         r"checksums.safetensors: checksum table 'frames' has uint32 \[11\].*wrong length"),
        (lambda p: (p / LOW_FILE).write_bytes((p / LOW_FILE).read_bytes()[:-50]), r"low.safetensors: truncated"),
    ],
)
def test_bad_compressed_banks_exit_2_naming_file_and_problem(tmp_path, damage, message):
    _make(tmp_path / "b", "bc1")
    damage(tmp_path / "b")
    with pytest.raises(BankError, match=message):
        open_bank(tmp_path / "b")
    out = _vj_bank("validate", "--no-progress", str(tmp_path / "b"))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_compress_command_converts_and_is_atomic(tmp_path):
    frames = _make(tmp_path / "raw")
    (tmp_path / "raw" / "reports").mkdir()
    (tmp_path / "raw" / "reports" / "seams.json").write_text("{}")
    out = _vj_bank("compress", str(tmp_path / "raw"), "--codec", "bc1", "-o", str(tmp_path / "c1"))
    assert out.returncode == 0, out.stderr
    assert "6.0x smaller than raw" in out.stdout
    bank = validate_bank(tmp_path / "c1")
    assert bank.codec == "bc1" and (tmp_path / "c1" / "reports" / "seams.json").is_file()
    np.testing.assert_array_equal(bank.latents, open_bank(tmp_path / "raw").latents)
    assert _psnr(np.asarray(bank.frames), frames) > 30
    assert bank.made_by["converted"]["from_codec"] == "raw" and bank.made_by["tool"] == "test"
    # a bc1 bank converts on to bc7 (decoded, re-encoded)
    assert _vj_bank("compress", str(tmp_path / "c1"), "--codec", "bc7", "-o", str(tmp_path / "c7"),
                    "--no-progress").returncode == 0
    assert open_bank(tmp_path / "c7").codec == "bc7"

    # a damaged source: exit 2 naming the frame; the older bank at OUT is untouched, nothing partial
    before = (tmp_path / "c1" / FRAMES_FILE).read_bytes()
    pos = _flip(tmp_path / "raw" / FRAMES_FILE, 0.5)
    index = _frame_at(tmp_path / "raw", FRAMES_FILE, "frames", pos)
    bad = _vj_bank("compress", str(tmp_path / "raw"), "--codec", "bc1", "-o", str(tmp_path / "c1"))
    assert bad.returncode == 2 and f"frame {index} (cell" in bad.stderr and "Traceback" not in bad.stderr
    assert (tmp_path / "c1" / FRAMES_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1", "c7", "raw"]


def test_compress_refuses_frames_that_are_not_whole_blocks(tmp_path):
    write_bank(tmp_path / "odd", (Axis("x", (0, 1)),), np.zeros((2, 5, 7, 3), np.uint8))
    bad = _vj_bank("compress", str(tmp_path / "odd"), "--codec", "bc7", "-o", str(tmp_path / "out"))
    assert bad.returncode == 2 and "multiple of 4" in bad.stderr and "7x5" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd"]


def test_bc1_refuses_rgba(tmp_path):
    write_bank(tmp_path / "rgba", (Axis("x", (0, 1)),), smooth_frames(2, 8, 4))
    with pytest.raises(BankError, match="bc1 keeps no alpha"):
        write_bank(tmp_path / "c", (Axis("x", (0, 1)),), smooth_frames(2, 8, 4), codec="bc1")
    bank = open_bank(write_bank(tmp_path / "c7", (Axis("x", (0, 1)),), smooth_frames(2, 8, 4), codec="bc7"))
    assert bank.channels == 4 and bank.frames[1].shape == (8, 8, 4)


def _work_folder(bank_path, frames, latents, per_shard=5):
    """The build's work folder as bank_builder's store writes it: checksummed shards of cells."""
    from bank_builder.store import WorkDir

    with WorkDir(bank_path.with_name(bank_path.name + ".work"), "0123456789abcdef0123", {"spec": "test"}) as work:
        for s in range(0, len(frames), per_shard):
            cells = list(range(s, min(len(frames), s + per_shard)))
            work.write_shard(f"batch{s:03d}", {"frames": frames[cells], "latents": latents[cells]}, {"cells": cells})


@pytest.mark.parametrize("codec", ["raw", "bc1"])
def test_repair_remakes_just_the_bad_cells_from_the_work_folder(tmp_path, codec):
    frames = smooth_frames()
    lat = np.random.default_rng(1).standard_normal((12, 4, 2)).astype(np.float16)
    path = write_bank(tmp_path / "b", AXES, frames, lat, codec=codec)
    good = {f: (path / f).read_bytes() for f in (FRAMES_FILE, LATENTS_FILE, LOW_FILE, CHECKSUMS_FILE)}
    _flip(path / FRAMES_FILE, 0.4)
    _flip(path / LATENTS_FILE, 0.8)
    _flip(path / LOW_FILE, 0.9)
    # without a work folder: exit 2 naming the cells and where it looked; the bank is untouched
    bad = _vj_bank("repair", "--no-progress", str(path))
    assert bad.returncode == 2 and "cannot repair frame(s)" in bad.stderr and "no work folder at" in bad.stderr
    assert "Traceback" not in bad.stderr
    _work_folder(path, frames, lat)
    out = _vj_bank("repair", "--no-progress", str(path))
    assert out.returncode == 0, out.stderr
    assert "repaired" in out.stdout and "1 frames" in out.stdout and "1 latents" in out.stdout and "1 low" in out.stdout
    validate_bank(path)
    for f, data in good.items():  # bit for bit what was built
        assert (path / f).read_bytes() == data, f
    again = _vj_bank("repair", "--no-progress", str(path))
    assert again.returncode == 0 and "nothing to repair" in again.stdout


def test_repair_ignores_a_work_folder_of_another_build(tmp_path):
    frames = smooth_frames()
    lat = np.zeros((12, 4, 2), np.float16)
    path = write_bank(tmp_path / "b", AXES, frames, lat)
    _flip(path / FRAMES_FILE, 0.4)
    _work_folder(path, 255 - frames, lat)  # other frames, same cells
    bad = _vj_bank("repair", "--no-progress", str(path))
    assert bad.returncode == 2 and "does not hold them" in bad.stderr
