"""The bank on disk: a manifest plus safetensors files, opened memory-mapped.

This module is the only code that reads or writes bank files; the builder writes through
:class:`BankWriter`. Layout of a bank directory::

    manifest.json        format, version, axes, frame size, count, codec, file names, how it was made
    frames.safetensors   tensor "frames", row-major over the axes: codec "raw": uint8 [N, H, W, C],
                         C = 3 or 4; codec "bc1"/"bc7": GPU block data uint8 [N, H/4, W/4, 8|16]
    latents.safetensors  optional tensor "latents": float16/float32 [N, ...]
    low.safetensors      (version 2) tensor "low": every frame at 1/4 size, <= 128 px, BC1 blocks [N, h/4, w/4, 8]
    checksums.safetensors (version 2) uint32 CRC-32 per frame: tensors "frames", "low", "latents"
    reports/             optional: anything a tool wants to keep beside the bank (seam report, ...)

Version 1 banks (raw frames, no low tier, no checksums) still open, play and validate.

Safetensors is written here directly (an 8-byte header length, a JSON header, then the raw data)
so that a bank larger than memory can be filled frame by frame through a memmap; the files are read
back and checked with the ``safetensors`` library itself.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vjengine.bank import codecs
from vjengine.errors import BankError

FORMAT_NAME = "vjengine-bank"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
FRAMES_FILE = "frames.safetensors"
LATENTS_FILE = "latents.safetensors"
LOW_FILE = "low.safetensors"
CHECKSUMS_FILE = "checksums.safetensors"
REPORTS_DIR = "reports"
MAX_AXES = 4
MAX_MANIFEST_BYTES = 64 << 20  # a manifest holds axes and a build spec: kilobytes, not gigabytes

_ST_DTYPES = {"U8": np.uint8, "U32": np.uint32, "F16": np.float16, "F32": np.float32}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
_LATENT_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: its name, its values (numbers or labels), and whether it wraps."""

    name: str
    values: tuple[Any, ...]
    cyclic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))

    @property
    def size(self) -> int:
        return len(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "cyclic": self.cyclic}


class Bank:
    """An opened bank. ``frames`` and ``latents`` are read-only memmaps: opening copies nothing.

    A memmap read of a file that was truncated after it was mapped kills the process with SIGBUS, so
    code that must survive the file changing under it (the live show) reads with :meth:`read_frames`
    instead: plain reads from a descriptor opened with the bank, checked against the file's size and
    modification time at open, which raise :class:`BankError` when the file changed.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], axes: tuple[Axis, ...],
                 frames: np.ndarray, latents: np.ndarray | None, *, codec: str = "raw",
                 blocks: np.ndarray | None = None, low: np.ndarray | None = None,
                 low_size: tuple[int, int] | None = None,
                 checksums: dict[str, np.ndarray] | None = None, checksum_problem: str | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.axes = axes
        self.frames = frames            # raw: memmap [N, H, W, C]; block codec: codecs.DecodedFrames
        self.latents = latents
        self.codec = codec              # "raw", "bc1" or "bc7"
        self.blocks = blocks            # block codec: memmap [N, H/4, W/4, B]; raw: None
        self.low = low                  # low tier: BC1 memmap [N, h/4, w/4, 8] or None (version 1)
        self.low_size = low_size        # (w, h) of the low tier
        self.checksums = checksums      # {"frames": uint32 [N], "low": ..., "latents": ...} or None
        self.checksum_problem = checksum_problem  # why the table cannot be trusted (None: fine)
        self._stored_file = _CheckedFile.of(frames if blocks is None else blocks)
        self._low_file = _CheckedFile.of(low)

    def read_frames(self, first: int, count: int = 1) -> np.ndarray:
        """A private copy of frames ``first .. first+count-1`` ([count, H, W, C] uint8, decoded when
        block-compressed), read without the memory map. Raises :class:`BankError` naming the file if
        it changed since the bank was opened (truncated, rewritten in place, size or mtime differ)."""
        stored = self.read_stored(first, count)
        if self.blocks is None:
            return stored
        return np.stack([codecs.decode(b, self.codec, self.width, self.height, self.channels) for b in stored])

    def read_stored(self, first: int, count: int = 1) -> np.ndarray:
        """Like :meth:`read_frames` but the stored bytes (raw pixels or block data), undecoded: what
        the checksums cover and what a GPU-native upload sends."""
        first, count = int(first), int(count)
        if count < 0 or first < 0 or first + count > self.count:
            raise IndexError(f"frames {first}..{first + count - 1} outside 0..{self.count - 1}")
        stored_arr = self.frames if self.blocks is None else self.blocks
        if self._stored_file is None:  # not file backed (empty bank): nothing can change under us
            return np.array(stored_arr[first:first + count])
        return self._stored_file.read(first, count)

    def read_low(self, first: int, count: int = 1) -> np.ndarray:
        """Low-tier frames ``first .. first+count-1`` (BC1 blocks), read like :meth:`read_stored`:
        without the memory map, :class:`BankError` if the file changed since the bank was opened."""
        first, count = int(first), int(count)
        if self.low is None:
            raise BankError(f"{self.path}: the bank has no low tier")
        if count < 0 or first < 0 or first + count > self.count:
            raise IndexError(f"low-tier frames {first}..{first + count - 1} outside 0..{self.count - 1}")
        if self._low_file is None:
            return np.array(self.low[first:first + count])
        return self._low_file.read(first, count)

    def close(self) -> None:
        """Close the descriptors the plain reads use (the memmaps stay until garbage collected)."""
        for f in (self._stored_file, self._low_file):
            if f is not None:
                f.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def version(self) -> int:
        return int(self.manifest.get("version", 1))

    def stored(self, index: int) -> np.ndarray:
        """Frame ``index`` as stored (raw pixels or block data): what its checksum covers."""
        return self.frames[index] if self.blocks is None else self.blocks[index]

    def frame_ok(self, index: int, data: np.ndarray | None = None) -> bool:
        """Whether frame ``index`` (or ``data``, its stored bytes) matches its checksum (True without one)."""
        table = None if self.checksums is None else self.checksums.get("frames")
        if table is None:
            return True
        return codecs.crc32(self.stored(index) if data is None else data) == int(table[index])

    def low_ok(self, index: int) -> bool:
        table = None if self.checksums is None else self.checksums.get("low")
        if table is None or self.low is None:
            return True
        return codecs.crc32(self.read_low(index)[0]) == int(table[index])

    @property
    def stored_frame_bytes(self) -> int:
        """Bytes of one stored frame (raw pixels or blocks)."""
        arr = self.frames if self.blocks is None else self.blocks
        return int(np.prod(arr.shape[1:]))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def cyclic(self) -> tuple[bool, ...]:
        return tuple(a.cyclic for a in self.axes)

    @property
    def count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def channels(self) -> int:
        return int(self.frames.shape[3])

    @property
    def made_by(self) -> dict[str, Any]:
        return dict(self.manifest.get("made_by") or {})

    def index(self, cell: Sequence[int]) -> int:
        return int(np.ravel_multi_index(tuple(int(c) for c in cell), self.sizes))

    def cell(self, index: int) -> tuple[int, ...]:
        return tuple(int(c) for c in np.unravel_index(int(index), self.sizes))

    def __repr__(self) -> str:
        axes = ", ".join(f"{a.name}[{a.size}{', cyclic' if a.cyclic else ''}]" for a in self.axes)
        codec = "" if self.codec == "raw" else f" {self.codec}"
        return (f"Bank({str(self.path)!r}, {self.count} frames {self.width}x{self.height}x{self.channels}{codec}, "
                f"{axes})")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _CheckedFile:
    """Plain reads of rows of a memmapped tensor, from a descriptor opened with the bank: a file
    truncated or rewritten since then is a :class:`BankError`, never a SIGBUS (as a map read would be)."""

    def __init__(self, array: np.memmap) -> None:
        self.filename, self.shape, self.offset = array.filename, array.shape, int(array.offset)
        try:
            self.fd: int | None = os.open(self.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise BankError(f"{self.filename}: cannot open ({exc.strerror or exc})") from None
        self.identity = _identity(os.fstat(self.fd))

    @classmethod
    def of(cls, array: np.ndarray | None) -> "_CheckedFile | None":
        ok = isinstance(array, np.memmap) and getattr(array, "filename", None)
        return cls(array) if ok else None

    def read(self, first: int, count: int) -> np.ndarray:
        if self.fd is None:
            raise BankError(f"{self.filename}: the bank was closed")
        st = os.fstat(self.fd)
        if _identity(st) != self.identity:
            raise BankError(f"{self.filename}: the file changed on disk since the bank was opened "
                            f"({self.identity[2]} -> {st.st_size} bytes); reopen the bank")
        out = np.empty((count, *self.shape[1:]), dtype=np.uint8)
        view = memoryview(out).cast("B")
        row = int(np.prod(self.shape[1:], dtype=np.int64))
        pos, offset = 0, self.offset + first * row
        while pos < view.nbytes:  # pread never faults: a short file reads short
            n = os.preadv(self.fd, [view[pos:]], offset + pos)
            if n <= 0:
                raise BankError(f"{self.filename}: the file is shorter than its header says (truncated on disk "
                                f"after the bank was opened); reopen the bank")
            pos += n
        return out

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


# --- safetensors, the raw layout -------------------------------------------------------------

def _safetensors_header(tensors: dict[str, tuple[np.dtype, tuple[int, ...]]],
                        metadata: dict[str, str] | None) -> tuple[bytes, dict[str, tuple[int, int]]]:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for name, (dtype, shape) in tensors.items():
        nbytes = int(np.dtype(dtype).itemsize * math.prod(shape))
        header[name] = {"dtype": _ST_NAMES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [pos, pos + nbytes]}
        offsets[name] = (pos, pos + nbytes)
        pos += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw, offsets


def _safetensors_size(name: str, dtype: np.dtype, shape: tuple[int, ...],
                      metadata: dict[str, str] | None = None) -> int:
    head, offsets = _safetensors_header({name: (np.dtype(dtype), shape)}, metadata)
    return len(head) + offsets[name][1]


def _create_safetensors(path: Path, name: str, dtype: np.dtype, shape: tuple[int, ...],
                        metadata: dict[str, str] | None = None) -> np.memmap:
    """Preallocate a one-tensor safetensors file and return a writable memmap of its data."""
    return _create_safetensors_multi(path, {name: (np.dtype(dtype), shape)}, metadata)[name]


def _create_safetensors_multi(path: Path, tensors: dict[str, tuple[np.dtype, tuple[int, ...]]],
                              metadata: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Preallocate a safetensors file of several tensors; writable memmaps of each, by name.

    The blocks are reserved on disk first (``posix_fallocate``): a sparse file filled through a map
    would die of SIGBUS when the disk fills; this way a full disk is a :class:`BankError` up front.
    """
    tensors = {k: (np.dtype(d), tuple(int(x) for x in shp)) for k, (d, shp) in tensors.items()}
    head, offsets = _safetensors_header(tensors, metadata)
    total = max((end for _, end in offsets.values()), default=0)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.flush()
        reserve_space(fh.fileno(), path, len(head) + total)
    out: dict[str, np.ndarray] = {}
    for name, (dtype, shape) in tensors.items():
        begin, end = offsets[name]
        if end == begin:
            out[name] = np.zeros(shape, dtype=dtype)  # nothing to map
        else:
            out[name] = np.memmap(path, dtype=dtype, mode="r+", offset=len(head) + begin, shape=shape)
    return out


def _read_safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BankError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 * 1024 * 1024):
            raise BankError(f"{path}: corrupt safetensors header (declares {n} header bytes, file has {size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BankError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise BankError(f"{path}: corrupt safetensors header (not a JSON object)")
    return 8 + n, header


def _open_safetensors(path: Path, name: str) -> np.ndarray:
    """Memory-map one tensor, after the safetensors library has checked the file."""
    return _open_safetensors_multi(path, (name,))[name]


def _open_safetensors_multi(path: Path, names: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Memory-map the tensors ``names`` (and ``optional`` ones when present), after the safetensors
    library has checked the file; any other tensor is an error."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise BankError(f"{path}: missing file")
    data_start, header = _read_safetensors_header(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            keys = list(f.keys())
    except SafetensorError as exc:
        size = path.stat().st_size
        raise BankError(f"{path}: truncated or corrupt safetensors file ({size} bytes): {exc}") from None
    missing = [n for n in names if n not in keys]
    extra = [k for k in keys if k not in names and k not in optional]
    if missing or extra:
        want = list(names) + [f"{o} (optional)" for o in optional]
        raise BankError(f"{path}: expected tensor(s) {want}, found {keys}")
    out: dict[str, np.ndarray] = {}
    for name in keys:
        info = header[name]
        dtype = _ST_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise BankError(f"{path}: tensor {name!r} has dtype {info.get('dtype')}, "
                            f"expected one of {sorted(_ST_DTYPES)}")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        if end == begin:
            out[name] = np.zeros(shape, dtype=dtype)
        else:
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=shape)
    return out


# --- manifest -------------------------------------------------------------------------------

def _axes_from_manifest(manifest: dict[str, Any], where: Path) -> tuple[Axis, ...]:
    raw = manifest.get("axes")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_AXES:
        raise BankError(f"{where}: 'axes' must be a list of 1 to {MAX_AXES} axes, got {raw!r:.80}")
    axes = []
    for i, a in enumerate(raw):
        if not isinstance(a, dict):
            raise BankError(f"{where}: axes[{i}] must be an object")
        unknown = set(a) - {"name", "values", "cyclic"}
        if unknown:
            raise BankError(f"{where}: axes[{i}] has unknown keys {sorted(unknown)}")
        name, values, cyclic = a.get("name"), a.get("values"), a.get("cyclic", False)
        if not isinstance(name, str) or not name:
            raise BankError(f"{where}: axes[{i}].name must be a non-empty string")
        if not isinstance(values, list) or not values:
            raise BankError(f"{where}: axes[{i}].values ({name!r}) must be a non-empty list")
        if not isinstance(cyclic, bool):
            raise BankError(f"{where}: axes[{i}].cyclic ({name!r}) must be true or false")
        axes.append(Axis(name, tuple(values), cyclic))
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise BankError(f"{where}: axis names must be unique, got {names}")
    return tuple(axes)


def _check_axes(axes: Sequence[Axis]) -> None:
    if not 1 <= len(axes) <= MAX_AXES:
        raise BankError(f"a bank has 1 to {MAX_AXES} axes, got {len(axes)}")
    names = [a.name for a in axes]
    if len(set(names)) != len(names) or not all(names):
        raise BankError(f"axis names must be unique and non-empty, got {names}")
    for a in axes:
        if a.size < 1:
            raise BankError(f"axis {a.name!r} has no values")


def _plain_file_name(value: Any, mpath: Path, key: str, *, required: bool) -> str | None:
    """A file name inside the bank directory: no directories, no '..', no absolute path."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BankError(f"{mpath}: {key} must be a file name (a string), got {type(value).__name__}")
    bad = (not value or value in (".", "..") or value.startswith(".") or len(value) > 255
           or any(c in value for c in "/\\\0") or value == MANIFEST or value == REPORTS_DIR
           or any(ord(c) < 32 for c in value))
    if bad:
        raise BankError(f"{mpath}: {key} must be a plain file name inside the bank directory, got {value[:80]!r}")
    return value


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise BankError(f"{path}: not a bank directory (does not exist or is not a directory)")
    if not mpath.is_file():
        raise BankError(f"{mpath}: missing file (a bank directory needs {MANIFEST})")
    try:
        size = mpath.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BankError(f"{mpath}: manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES} a bank may have")
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BankError(f"{mpath}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BankError(f"{mpath}: not valid JSON (nested too deeply)") from None
    except OSError as exc:
        raise BankError(f"{mpath}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BankError(f"{mpath}: not a {FORMAT_NAME} manifest (format is {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") not in READ_VERSIONS:
        raise BankError(f"{mpath}: unknown version {manifest.get('version')!r} "
                        f"(this vjengine reads versions {', '.join(map(str, READ_VERSIONS))})")
    return manifest


def open_bank(path: str | os.PathLike[str], *, check_latents: bool = False) -> Bank:
    """Open and check a bank without copying its data. Raises :class:`BankError`."""
    path = Path(path)
    try:
        return _open_bank(path, check_latents)
    except OSError as exc:  # unreadable file, permission, I/O error: still one clear line
        where = exc.filename or path
        raise BankError(f"{where}: cannot read ({exc.strerror or exc})") from None


def _open_bank(path: Path, check_latents: bool) -> Bank:
    manifest = read_manifest(path)
    mpath = path / MANIFEST
    axes = _axes_from_manifest(manifest, mpath)
    sizes = [a.size for a in axes]
    frame = manifest.get("frame")
    if not isinstance(frame, dict) or not all(isinstance(frame.get(k), int) and frame.get(k) > 0
                                               for k in ("width", "height", "channels")):
        raise BankError(f"{mpath}: 'frame' must give positive integer width, height and channels")
    if frame["channels"] not in (3, 4):
        raise BankError(f"{mpath}: frame.channels must be 3 or 4, got {frame['channels']}")
    count = manifest.get("count")
    if count != math.prod(sizes):
        raise BankError(f"{mpath}: axis sizes {sizes} multiply to {math.prod(sizes)} but count is {count!r}")
    version = manifest["version"]
    codec = manifest.get("codec", "raw") if version >= 2 else "raw"
    if not isinstance(codec, str) or codec not in codecs.CODECS:
        raise BankError(f"{mpath}: codec {codec!r} is not one of {', '.join(codecs.CODECS)}")
    files = manifest.get("files")
    if files is None:
        files = {}
    if not isinstance(files, dict):
        raise BankError(f"{mpath}: 'files' must be an object naming the frames (and latents) files, "
                        f"got {type(files).__name__}")
    known = ("frames", "latents") + (("low", "checksums") if version >= 2 else ())
    unknown = set(files) - set(known)
    if unknown:
        raise BankError(f"{mpath}: files has unknown keys {sorted(unknown)} (known: {', '.join(known)})")
    frames_name = _plain_file_name(files.get("frames", FRAMES_FILE), mpath, "files.frames", required=True)
    latents_name = _plain_file_name(files.get("latents"), mpath, "files.latents", required=False)
    low_name = _plain_file_name(files.get("low"), mpath, "files.low", required=False)
    checksums_name = _plain_file_name(files.get("checksums"), mpath, "files.checksums", required=False)
    named = [n for n in (frames_name, latents_name, low_name, checksums_name) if n]
    if len(set(named)) != len(named):
        raise BankError(f"{mpath}: two entries of files name the same file ({named})")
    expected = {MANIFEST, *named}
    for entry in path.iterdir():
        if entry.name.startswith(".") or (entry.name == REPORTS_DIR and entry.is_dir()):
            continue
        if entry.name not in expected:
            raise BankError(f"{entry}: unexpected file in bank (expected only {sorted(expected)} and {REPORTS_DIR}/)")

    stored = _open_safetensors(path / frames_name, "frames")
    if stored.dtype != np.uint8:
        raise BankError(f"{path / frames_name}: frames must be uint8, got {stored.dtype}")
    blocks = None
    if codec == "raw":
        want = (count, frame["height"], frame["width"], frame["channels"])
        if stored.shape != want:
            raise BankError(f"{path / frames_name}: frames have shape {list(stored.shape)}, the manifest says {list(want)} [N, H, W, C]")
        frames = stored
    else:
        try:
            bshape = codecs.block_shape(codec, frame["width"], frame["height"])
        except BankError as exc:
            raise BankError(f"{mpath}: {exc}") from None
        want = (count, *bshape)
        if stored.shape != want:
            raise BankError(
                f"{path / frames_name}: {codec} block data has shape {list(stored.shape)}, but {count} frames of "
                f"{frame['width']}x{frame['height']} need {list(want)} [N, H/4, W/4, bytes per block]: "
                "the block size does not match the frame size")
        blocks = stored
        frames = codecs.DecodedFrames(blocks, codec, frame["width"], frame["height"], frame["channels"])

    latents = None
    if latents_name:
        latents = _open_safetensors(path / latents_name, "latents")
        if latents.dtype.name not in _LATENT_DTYPES:
            raise BankError(f"{path / latents_name}: latents must be float16 or float32, got {latents.dtype}")
        if latents.ndim < 2 or latents.shape[0] != count:
            raise BankError(f"{path / latents_name}: latents have shape {list(latents.shape)}, expected [{count}, ...]")
        if check_latents:
            _check_finite(latents, path / latents_name)

    low = low_size = None
    if low_name:
        info = manifest.get("low")
        if not isinstance(info, dict) or not all(isinstance(info.get(k), int) and info.get(k) > 0
                                                  for k in ("width", "height")):
            raise BankError(f"{mpath}: 'low' must give the low tier's positive integer width and height")
        if info.get("codec", codecs.LOW_TIER_CODEC) != codecs.LOW_TIER_CODEC:
            raise BankError(f"{mpath}: low.codec must be {codecs.LOW_TIER_CODEC!r}, got {info.get('codec')!r}")
        low = _open_safetensors(path / low_name, "low")
        try:
            lshape = (count, *codecs.block_shape(codecs.LOW_TIER_CODEC, info["width"], info["height"]))
        except BankError as exc:
            raise BankError(f"{mpath}: low tier: {exc}") from None
        if low.dtype != np.uint8 or low.shape != lshape:
            raise BankError(f"{path / low_name}: low tier has shape {list(low.shape)} {low.dtype}, expected "
                            f"{list(lshape)} uint8 (BC1 blocks of {info['width']}x{info['height']})")
        low_size = (info["width"], info["height"])

    checksums = problem = None
    if checksums_name:
        names = ("frames",) + (("low",) if low_name else ()) + (("latents",) if latents_name else ())
        checksums = _open_safetensors_multi(path / checksums_name, names)
        for name, table in checksums.items():
            if table.dtype != np.uint32 or table.shape != (count,):
                raise BankError(f"{path / checksums_name}: checksum table {name!r} has {table.dtype} "
                                f"{list(table.shape)}, expected uint32 [{count}] (one CRC-32 per frame): "
                                "a checksum table of the wrong length")
        declared = (manifest.get("checksums") or {}).get("table_crc32")
        actual = _table_crc(checksums)
        if declared != actual:
            problem = (f"{path / checksums_name}: the checksum table is damaged (its CRC-32 is {actual:08x}, "
                       f"the manifest says {declared if not isinstance(declared, int) else format(declared, '08x')})")
    return Bank(path, manifest, axes, frames, latents, codec=codec, blocks=blocks, low=low, low_size=low_size,
                checksums=checksums, checksum_problem=problem)


def _table_crc(tables: dict[str, np.ndarray]) -> int:
    crc = 0
    for name in sorted(tables):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(memoryview(np.ascontiguousarray(tables[name])).cast("B"), crc)
    return crc & 0xFFFFFFFF


def _check_finite(latents: np.ndarray, where: Path) -> None:
    step = max(1, (64 << 20) // max(1, latents[0].nbytes))  # scan ~64 MB at a time
    for start in range(0, latents.shape[0], step):
        chunk = np.asarray(latents[start:start + step])
        if not np.isfinite(chunk).all():
            bad = start + int(np.argmax(~np.isfinite(chunk).reshape(chunk.shape[0], -1).all(axis=1)))
            raise BankError(f"{where}: non-finite values (NaN or inf) in latents of frame {bad}")


def validate_bank(path: str | os.PathLike[str], *, progress: bool = False) -> Bank:
    """Everything :func:`open_bank` checks, plus a full scan: the latents for NaN and inf and, in a
    version 2 bank, every frame, low-tier frame and latent against its checksum. The error names each
    bad frame's index and grid cell."""
    bank = open_bank(path, check_latents=True)
    if bank.checksums is None:
        return bank
    if bank.checksum_problem:
        raise BankError(bank.checksum_problem)
    bad = find_bad_frames(bank, progress=progress)
    if bad:
        parts = []
        for kind in ("frames", "low", "latents"):
            idx = bad.get(kind, [])
            if not idx:
                continue
            shown = ", ".join(f"{i} (cell {_cell_text(bank, i)})" for i in idx[:8])
            more = f" and {len(idx) - 8} more" if len(idx) > 8 else ""
            parts.append(f"{len(idx)} bad {_KIND_TEXT[kind]}: {shown}{more}")
        raise BankError(f"{bank.path}: checksum mismatch: " + "; ".join(parts)
                        + f" (vj-bank repair {bank.path} re-makes them from the build's work folder)")
    return bank


_KIND_TEXT = {"frames": "frame(s)", "low": "low-tier frame(s)", "latents": "latent(s)"}


def _cell_text(bank: Bank, index: int) -> str:
    return ", ".join(f"{a.name}={c}" for a, c in zip(bank.axes, bank.cell(index)))


def find_bad_frames(bank: Bank, *, progress: bool = False) -> dict[str, list[int]]:
    """Indices whose stored data does not match the checksum table, by kind ("frames", "low",
    "latents"); empty when all match or the bank has no checksums."""
    if bank.checksums is None:
        return {}
    sources = {"frames": bank.frames if bank.blocks is None else bank.blocks, "low": bank.low,
               "latents": bank.latents}
    bad: dict[str, list[int]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=bank.count, unit="frame", desc=f"checking {bank.name}", leave=False)
    step = 64
    for start in range(0, bank.count, step):
        stop = min(bank.count, start + step)
        for kind, table in bank.checksums.items():
            data = sources[kind]
            chunk = np.asarray(data[start:stop])
            for k in range(stop - start):
                if codecs.crc32(chunk[k]) != int(table[start + k]):
                    bad.setdefault(kind, []).append(start + k)
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    return bad


# --- disk space ---

def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g}"


def _device_of(path: Path) -> str:
    """The device (and mount point) holding ``path``, for an error message."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    device = ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 1 and fields[1] == str(p):
                    device = fields[0]  # the last mount on a point is the one in effect
    except OSError:
        pass
    return f"{device} ({p})" if device else str(p)


def no_space_message(path: str | os.PathLike[str], need_bytes: int) -> str:
    """``PATH: no space left on DEVICE (MOUNT), need N GB (M GB free)``: the disk-full error text."""
    path = Path(path)
    probe = path if path.exists() else path.parent
    try:
        free = f", {_gb(shutil.disk_usage(probe).free)} GB free"
    except OSError:
        free = ""
    return f"{path}: no space left on {_device_of(path)}, need {_gb(need_bytes)} GB{free}"


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def reserve_space(fd: int, path: Path, nbytes: int) -> None:
    """Allocate ``nbytes`` of disk blocks for the open file ``fd`` now, or raise :class:`BankError`
    (``no space left on DEVICE, need N GB``). The file then has size ``nbytes``."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if is_disk_full(exc):
            raise BankError(no_space_message(path, nbytes)) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise BankError(f"{path}: cannot reserve {_gb(nbytes)} GB ({exc.strerror or exc})") from None
        # a file system without fallocate: at least refuse what cannot fit, then make the file
        try:
            if shutil.disk_usage(path.parent).free < nbytes:
                raise BankError(no_space_message(path, nbytes))
        except OSError:
            pass
        os.ftruncate(fd, nbytes)


# --- writing --------------------------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ENCODE_THREADS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class _EncodingFrames:
    """``BankWriter.frames`` of a block-compressed bank: assigning a frame (uint8 [H, W, C]) or a
    slice of frames encodes it into the block memmap; reading one decodes it."""

    def __init__(self, blocks: np.ndarray, codec: str, width: int, height: int, channels: int) -> None:
        self.blocks = blocks
        self.codec = codec
        self._view = codecs.DecodedFrames(blocks, codec, width, height, channels)
        self.shape = self._view.shape
        self.dtype = self._view.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return self._view[key]

    def __setitem__(self, key, value) -> None:
        value = np.asarray(value)
        if isinstance(key, (int, np.integer)):
            self._put(int(key), value)
            return
        idx = np.arange(self.shape[0])[key]
        frames = np.broadcast_to(value, (len(idx), *self.shape[1:]))
        if len(idx) > 1 and ENCODE_THREADS > 1:
            # etcpak releases the GIL while it encodes: a slice of frames uses every core (BC7 at
            # 512x512 is ~0.3 s a frame on one core, so a 10,000-frame bank is hours single-threaded)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(ENCODE_THREADS, len(idx))) as pool:
                for i, blocks in zip(idx, pool.map(self._encoded, (frames[n] for n in range(len(idx))))):
                    self.blocks[int(i)] = blocks
            return
        for n, i in enumerate(idx):
            self._put(int(i), frames[n])

    def _encoded(self, frame: np.ndarray) -> np.ndarray:
        return codecs.encode(np.broadcast_to(np.asarray(frame, dtype=np.uint8), self.shape[1:]), self.codec)

    def _put(self, i: int, frame: np.ndarray) -> None:
        self.blocks[i] = self._encoded(frame)


class BankWriter:
    """Write a bank in place of ``path``, atomically.

    The files are preallocated in ``<path>.partial/`` and filled through ``frames`` / ``latents``
    memmaps. ``commit()`` flushes and fsyncs them, writes the low tier and the checksum table, then
    the manifest, and only then renames the directory to ``path`` (replacing an older bank there).
    Leaving the ``with`` block without ``commit()`` deletes the partial directory, so a half-written
    bank is never at ``path``.

    ``codec``: "raw" (``frames`` is a uint8 memmap [N, H, W, C]) or "bc1" / "bc7" (``frames`` encodes
    each frame assigned to it into GPU block data; ``blocks`` is the memmap of that data).
    """

    def __init__(self, path: str | os.PathLike[str], axes: Sequence[Axis], width: int, height: int,
                 channels: int = 3, *, latent_shape: Sequence[int] | None = None,
                 latent_dtype: str = "float16", made_by: dict[str, Any] | None = None,
                 codec: str = "raw", progress: bool = False) -> None:
        axes = tuple(axes)
        _check_axes(axes)
        codecs.check_codec(codec)
        if channels not in (3, 4):
            raise BankError(f"channels must be 3 or 4, got {channels}")
        if width < 1 or height < 1:
            raise BankError(f"frame size must be positive, got {width}x{height}")
        if latent_shape is not None and latent_dtype not in _LATENT_DTYPES:
            raise BankError(f"latent dtype must be float16 or float32, got {latent_dtype}")
        if codec == "bc1" and channels == 4:
            raise BankError("bc1 keeps no alpha: an RGBA bank needs --codec bc7 (or raw)")
        bshape = codecs.block_shape(codec, width, height) if codec != "raw" else None
        self.path = Path(path)
        self.axes = axes
        self.codec = codec
        self.progress = progress
        self.width, self.height, self.channels = int(width), int(height), int(channels)
        self.count = math.prod(a.size for a in axes)
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)
        meta = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION)}
        frames_shape = (self.count, height, width, channels) if bshape is None else (self.count, *bshape)
        latents_shape = None if latent_shape is None else (self.count, *(int(s) for s in latent_shape))
        need = _safetensors_size("frames", np.dtype(np.uint8), frames_shape, meta) + (
            0 if latents_shape is None else _safetensors_size("latents", np.dtype(latent_dtype), latents_shape, meta))
        self.low_size = codecs.low_tier_size(width, height)
        low_shape = (self.count, *codecs.block_shape(codecs.LOW_TIER_CODEC, *self.low_size))
        need += _safetensors_size("low", np.dtype(np.uint8), low_shape, meta) + 12 * self.count
        self.frames = self.latents = self.blocks = None
        try:
            self.partial.mkdir(parents=True)
            free = shutil.disk_usage(self.partial).free
            if free < need:  # say so before writing anything
                raise BankError(no_space_message(self.partial, need))
            stored = _create_safetensors(self.partial / FRAMES_FILE, "frames", np.dtype(np.uint8),
                                         frames_shape, meta)
            if bshape is None:
                self.frames = stored
            else:
                self.blocks = stored
                self.frames = _EncodingFrames(stored, codec, width, height, channels)
            if latents_shape is not None:
                self.latents = _create_safetensors(self.partial / LATENTS_FILE, "latents",
                                                   np.dtype(latent_dtype), latents_shape, meta)
        except BaseException as exc:
            self.frames = self.latents = self.blocks = None
            shutil.rmtree(self.partial, ignore_errors=True)
            if is_disk_full(exc):
                raise BankError(no_space_message(self.partial, need)) from None
            if isinstance(exc, OSError):
                raise BankError(f"{self.partial}: cannot write the bank ({exc.strerror or exc})") from None
            raise
        self.manifest: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "axes": [a.to_json() for a in axes],
            "frame": {"width": int(width), "height": int(height), "channels": int(channels)},
            "count": self.count,
            "codec": codec,
            "files": {"frames": FRAMES_FILE, "latents": LATENTS_FILE if latent_shape is not None else None,
                      "low": LOW_FILE, "checksums": CHECKSUMS_FILE},
            "low": {"width": self.low_size[0], "height": self.low_size[1], "codec": codecs.LOW_TIER_CODEC},
            "checksums": {"algorithm": "crc32"},
            "made_by": dict(made_by or {}),
        }
        self.committed = False

    @property
    def reports_dir(self) -> Path:
        """A folder inside the partial bank for reports that move into place with it."""
        d = self.partial / REPORTS_DIR
        d.mkdir(exist_ok=True)
        return d

    def _write_low_and_checksums(self) -> None:
        """The low tier (every frame box-filtered to ``low_size``, BC1) and the CRC-32 table."""
        meta = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION)}
        lw, lh = self.low_size
        low = _create_safetensors(self.partial / LOW_FILE, "low", np.dtype(np.uint8),
                                  (self.count, *codecs.block_shape(codecs.LOW_TIER_CODEC, lw, lh)), meta)
        tables = {"frames": (np.uint32, (self.count,)), "low": (np.uint32, (self.count,))}
        if self.latents is not None:
            tables["latents"] = (np.uint32, (self.count,))
        sums = {k: np.zeros(shape, dtype) for k, (dtype, shape) in tables.items()}
        stored = self.frames if self.blocks is None else self.blocks
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.count, unit="frame", desc="low tier + checksums", leave=False)
        for i in range(self.count):
            data = np.asarray(stored[i])
            sums["frames"][i] = codecs.crc32(data)
            pixels = data if self.blocks is None else codecs.decode(data, self.codec, self.width, self.height, 3)
            low[i] = codecs.make_low(pixels, self.low_size)
            sums["low"][i] = codecs.crc32(low[i])
            if self.latents is not None:
                sums["latents"][i] = codecs.crc32(self.latents[i])
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        if isinstance(low, np.memmap):
            low.flush()
        del low
        out = _create_safetensors_multi(self.partial / CHECKSUMS_FILE, tables, meta)
        for k, v in sums.items():
            out[k][:] = v
            if isinstance(out[k], np.memmap):
                out[k].flush()
        self.manifest["checksums"]["table_crc32"] = _table_crc(sums)

    def commit(self) -> Path:
        if self.latents is not None and not np.isfinite(np.asarray(self.latents, dtype=np.float32)).all():
            raise BankError(f"{self.partial / LATENTS_FILE}: non-finite latents; refusing to commit the bank")
        for arr in (self.frames, self.blocks, self.latents):
            if isinstance(arr, np.memmap):
                arr.flush()
        try:
            self._write_low_and_checksums()
        except OSError as exc:
            if is_disk_full(exc):
                raise BankError(no_space_message(self.partial, 12 * self.count)) from None
            raise BankError(f"{self.partial}: cannot write the low tier or checksums ({exc.strerror or exc})") from None
        for name in (FRAMES_FILE, LATENTS_FILE, LOW_FILE, CHECKSUMS_FILE):
            f = self.partial / name
            if f.exists():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        tmp = self.partial / (MANIFEST + ".tmp")
        text = json.dumps(self.manifest, indent=2, default=_json_default) + "\n"
        try:
            tmp.write_text(text, encoding="utf-8")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise BankError(no_space_message(tmp, len(text.encode()))) from None
            raise BankError(f"{tmp}: cannot write the manifest ({exc.strerror or exc})") from None
        os.replace(tmp, self.partial / MANIFEST)
        fsync_dir(self.partial)
        self.frames = self.latents = self.blocks = None  # drop the maps before the rename
        old = self.path.with_name(self.path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        fsync_dir(self.path.parent)
        if old.exists():
            shutil.rmtree(old)
        self.committed = True
        return self.path

    def abort(self) -> None:
        self.frames = self.latents = self.blocks = None
        if self.partial.exists():
            shutil.rmtree(self.partial)

    def __enter__(self) -> BankWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.abort()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a bank manifest")


def write_bank(path: str | os.PathLike[str], axes: Sequence[Axis], frames: np.ndarray,
               latents: np.ndarray | None = None, made_by: dict[str, Any] | None = None,
               codec: str = "raw") -> Path:
    """Write a whole bank from arrays in one call (atomically, like :class:`BankWriter`)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise BankError(f"frames must be uint8 [N, H, W, C], got {frames.dtype} {list(frames.shape)}")
    n, h, w, c = frames.shape
    expected = math.prod(len(a.values) for a in axes)
    if n != expected:
        raise BankError(f"{n} frames given but the axes {[a.size for a in axes]} need {expected}")
    latent_shape = None if latents is None else np.asarray(latents).shape[1:]
    latent_dtype = "float16" if latents is None else np.asarray(latents).dtype.name
    with BankWriter(path, axes, w, h, c, latent_shape=latent_shape, latent_dtype=latent_dtype,
                    made_by=made_by, codec=codec) as writer:
        writer.frames[:] = frames
        if latents is not None:
            writer.latents[:] = latents
        return writer.commit()
