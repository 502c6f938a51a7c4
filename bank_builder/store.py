"""The resumable work directory: one checksummed shard per finished batch, written atomically.

Layout: ``<work_root>/<spec digest[:16]>/`` holds ``spec.json`` (what this work is for), a ``lock``
file (one build at a time), and ``shards/<name>.safetensors``. A shard is written to a temporary
file, fsynced, renamed into place and the directory fsynced, so after a kill -9 a shard is either
complete or absent. Each shard carries a SHA-256 of its arrays in its header; a shard that is
truncated, unreadable or fails the checksum is deleted on read and its batch is made again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bank_builder.errors import WorkDirError
from vjengine.bank.format import fsync_dir, is_disk_full, no_space_message

log = logging.getLogger("bank_builder")

_SHARDS = "shards"
_SUFFIX = ".safetensors"


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class WorkDir:
    """The per-spec work directory of one build. Use as a context manager (holds the lock)."""

    def __init__(self, root: str | os.PathLike[str], digest: str, description: dict[str, Any]) -> None:
        self.root = Path(root)
        self.path = self.root / digest[:16]
        self.shards = self.path / _SHARDS
        self.description = description
        self._lock_fh = None

    def __enter__(self) -> "WorkDir":
        try:
            self.shards.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkDirError(f"{self.path}: cannot create the work directory ({exc})") from None
        self._lock_fh = open(self.path / "lock", "a+")
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise WorkDirError(f"{self.path}: another build of this spec is running (work directory locked)") from None
        spec_file = self.path / "spec.json"
        if not spec_file.exists():
            self._write_atomic(spec_file, (json.dumps(self.description, indent=2, sort_keys=True) + "\n").encode())
        for stale in self.shards.glob("*.tmp*"):
            stale.unlink(missing_ok=True)  # a write interrupted before its rename
        others = [p.name for p in self.root.iterdir() if p.is_dir() and p != self.path]
        if others:
            log.info("work directory %s also holds older work for other specs: %s (delete it when done)",
                     self.root, ", ".join(sorted(others)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def shard_path(self, name: str) -> Path:
        return self.shards / (name + _SUFFIX)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # nothing half-written stays behind
            if is_disk_full(exc):
                raise WorkDirError(no_space_message(path, len(data))) from None
            raise WorkDirError(f"{path}: cannot write ({exc.strerror or exc})") from None
        os.replace(tmp, path)
        fsync_dir(path.parent)

    def write_shard(self, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> Path:
        """Write one shard atomically with its checksum; returns its path."""
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        header = {"sha256": arrays_digest(arrays), "meta": json.dumps(meta or {}, sort_keys=True)}
        path = self.shard_path(name)
        self._write_atomic(path, save(arrays, metadata=header))
        return path

    def read_shard(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The shard's arrays and meta, or None if it is absent. A damaged shard is deleted (None)."""
        from safetensors import safe_open

        path = self.shard_path(name)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="numpy") as f:
                header = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
            if arrays_digest(arrays) != header.get("sha256"):
                raise ValueError("checksum mismatch")
            meta = json.loads(header.get("meta", "{}"))
        except Exception as exc:  # truncated, garbage, checksum: all mean "make it again"
            log.warning("shard %s is damaged (%s); it will be made again", path, exc)
            path.unlink(missing_ok=True)
            return None
        return arrays, meta

    def remove(self, root_too: bool = True) -> None:
        """Delete this spec's work (after a successful pack, or a failure before its first shard), and
        the root if it is then empty (``root_too``)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if root_too:
            try:
                self.root.rmdir()
            except OSError:
                pass
