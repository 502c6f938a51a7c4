"""A bank's frames on the GPU: one or more GL_TEXTURE_2D_ARRAYs.

Frames go to array ``i // layers_per_array`` at layer ``i % layers_per_array``. A bank is split over
several arrays when it has more frames than GL_MAX_ARRAY_TEXTURE_LAYERS or when one array would take
more than the memory budget (``memory_budget_mb`` bounds the size of each single texture allocation;
the whole bank stays resident). Rows are stored top row first, so texel ``(x, y)`` of a layer is pixel
``[y, x]`` of the bank frame.

Two ways to upload: ``"eager"`` uploads everything before returning (a tqdm bar shows it);
``"stream"`` allocates the arrays and uploads nothing yet: the frames a blend needs are made resident
first (``layers_for``) and the rest stream in a few milliseconds per frame (``tick``), so the first
frame of a large bank appears at once instead of after the whole upload.

Live (``background_reads``), the reads run on a :class:`~vjengine.bank.reader.FrameReader` thread and
the render thread only uploads what was read: a frame the blend needs waits at most
``residency.MUST_WAIT_S`` for its read (a stalled disk then leaves that layer as it is), and the rest
stream in as reads finish. Offline render and replay read in line.

The compositor uses only ``width``, ``height``, ``sizes``, ``cyclic``, ``split``, ``layers_for`` and
``tick`` (:class:`vjengine.render.compositor.FrameSource`): a residency scheme that keeps only part
of a bank on the GPU can replace everything behind them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import moderngl
import numpy as np

from vjengine.errors import BankError, DeviceError
from vjengine.render.context import max_array_layers

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET_MB = 1024.0
UPLOAD_MODES = ("eager", "stream")
_UPLOAD_CHUNK_BYTES = 32 << 20
_STREAM_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class Layout:
    """How ``count`` frames are split: ``layers_per_array`` frames per array, ``arrays`` arrays."""

    count: int
    layers_per_array: int

    @property
    def arrays(self) -> int:
        return -(-self.count // self.layers_per_array)

    def locate(self, index: int) -> tuple[int, int]:
        """(array number, layer) of frame ``index``."""
        return divmod(int(index), self.layers_per_array)


def plan_layout(count: int, frame_bytes: int, max_layers: int, memory_budget_mb: float) -> Layout:
    """Split ``count`` frames of ``frame_bytes`` each so no array exceeds ``max_layers`` or the budget.

    An array holds at least one frame, whatever the budget.
    """
    if count < 1:
        raise ValueError(f"a bank needs at least one frame, got {count}")
    by_budget = int(memory_budget_mb * (1 << 20)) // max(1, frame_bytes)
    per_array = max(1, min(count, max_layers, by_budget))
    return Layout(count=count, layers_per_array=per_array)


class BankTextures:
    """The frames of one bank in texture arrays (see the module docstring).

    ``ctx``: the GL context; ``bank``: an opened :class:`vjengine.bank.Bank`; ``memory_budget_mb``:
    the most one texture array may take; ``progress``: a tqdm bar while uploading; ``upload``:
    ``"eager"`` or ``"stream"``. ``upload_s`` is the time spent uploading so far (seconds) and
    ``complete`` whether every frame is resident.
    """

    def __init__(self, ctx: moderngl.Context, bank, *, memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                 progress: bool = True, upload: str = "eager", background_reads: bool = False) -> None:
        if upload not in UPLOAD_MODES:
            raise ValueError(f"upload must be one of {UPLOAD_MODES}, got {upload!r}")
        self.ctx = ctx
        self.bank = bank
        self.width, self.height, self.channels = bank.width, bank.height, bank.channels
        self.sizes = tuple(bank.sizes)
        self.cyclic = tuple(bank.cyclic)
        if self.channels not in (3, 4):
            raise ValueError(f"bank {bank.path}: frames need 3 or 4 channels, got {self.channels}")
        self.frame_bytes = self.width * self.height * self.channels
        self.layout = plan_layout(bank.count, self.frame_bytes, max_array_layers(ctx), memory_budget_mb)
        self.arrays: list[moderngl.TextureArray] = []
        self.resident = np.zeros(bank.count, dtype=bool)
        self.upload_s = 0.0
        self._next = 0  # streaming: the first frame that may still be missing
        self._progress = progress
        self._bar = None
        self.failed: str | None = None  # why the rest of the bank cannot be read (the file changed under us)
        self._reader = None
        if background_reads and upload == "stream":
            from vjengine.bank.reader import FrameReader  # noqa: PLC0415

            self._reader = FrameReader(self._read, name=str(bank.path.name), max_queued=16, max_done=8)
        try:
            self._allocate()
            if upload == "eager":
                self._upload_range(0, bank.count, _UPLOAD_CHUNK_BYTES)
        except Exception:
            self.release()
            raise

    @property
    def nbytes(self) -> int:
        return self.layout.count * self.frame_bytes

    @property
    def complete(self) -> bool:
        return self._next >= self.layout.count

    @property
    def split(self) -> bool:
        """Whether the frames span more than one texture array."""
        return self.layout.arrays > 1

    def layers_for(self, indices: Iterable[int]) -> list[tuple[moderngl.TextureArray, int]]:
        """Make these frames resident now; ``[(texture_array, layer), ...]`` in the same order."""
        indices = [int(i) for i in indices]
        self.ensure(indices)
        return [self.locate(i) for i in indices]

    def tick(self, budget_s: float) -> None:
        """Per drawn frame: stream missing frames for about ``budget_s`` seconds."""
        if not self.complete:
            self.upload_some(budget_s)

    def _allocate(self) -> None:
        w, h, c = self.width, self.height, self.channels
        per = self.layout.layers_per_array
        for a in range(self.layout.arrays):
            layers = min(per, self.layout.count - a * per)
            try:
                tex = self.ctx.texture_array((w, h, layers), c, alignment=1)
            except moderngl.Error as exc:
                raise DeviceError(
                    f"bank {self.bank.path}: the GPU refused a {w}x{h}x{layers} texture array "
                    f"({layers * w * h * c / 1e6:.0f} MB): {exc}; lower memory_budget_mb") from exc
            tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
            tex.repeat_x = tex.repeat_y = False
            self.arrays.append(tex)

    def _read(self, key: tuple[int, int]) -> np.ndarray:
        """Frames ``first..first+count-1`` from the file (any thread)."""
        first, count = key
        read = getattr(self.bank, "read_frames", None)  # plain reads: a file changed under us is an error, not SIGBUS
        return read(first, count) if read is not None else np.ascontiguousarray(self.bank.frames[first: first + count])

    def _write(self, first: int, count: int) -> None:
        """Read and upload frames first..first+count-1 (all in one array)."""
        try:
            block = self._read((first, count))
        except BankError as exc:
            self._give_up(exc)
            return
        self._put(first, block)

    def _put(self, first: int, block: np.ndarray) -> None:
        """Upload read frames from ``first`` on (all in one array)."""
        count = len(block)
        if self.resident[first: first + count].all():
            return
        a, layer = self.layout.locate(first)
        self.arrays[a].write(block, viewport=(0, 0, layer, self.width, self.height, count), alignment=1)
        self.resident[first: first + count] = True
        if self._progress:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.nbytes, unit="B", unit_scale=True, unit_divisor=1024,
                                 desc=f"uploading {self.bank.path.name}", leave=False)
            self._bar.update(block.nbytes)

    def _give_up(self, exc: BankError) -> None:
        """The bank file changed under us: keep the frames already on the GPU, read nothing more (the
        rest stay black), say so once. The show goes on."""
        if self.failed is None:
            self.failed = str(exc)
            have = int(self.resident.sum())
            log.error("%s; keeping the %d of %d frames already on the GPU (the others show black) and reading "
                      "no more of this bank", exc, have, self.layout.count)
        self.resident[:] = True  # nothing more will be read
        self._next = self.layout.count

    def _upload_range(self, start: int, stop: int, chunk_bytes: int, deadline: float | None = None) -> None:
        """Upload the missing frames in start..stop-1 in chunks, until done or past ``deadline``."""
        t0 = time.perf_counter()
        per = self.layout.layers_per_array
        chunk = max(1, chunk_bytes // self.frame_bytes)
        i = start
        while i < stop:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            if self.resident[i]:
                i += 1
                continue
            end = min(stop, i + chunk, (i // per + 1) * per)  # one array per write
            missing = np.flatnonzero(self.resident[i:end])
            if len(missing):
                end = i + int(missing[0])
            self._write(i, end - i)
            i = end
        self.upload_s += time.perf_counter() - t0
        while self._next < self.layout.count and self.resident[self._next]:
            self._next += 1
        if self.complete:
            self._finish()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        err = self.ctx.error
        if err != "GL_NO_ERROR":
            raise DeviceError(f"bank {self.bank.path}: GL error {err} while uploading frames")
        if self.failed is not None:
            return
        log.info("uploaded %s: %d frames in %d array(s), %.0f MB in %.2f s", self.bank.path, self.layout.count,
                 self.layout.arrays, self.nbytes / 1e6, self.upload_s)

    def ensure(self, indices: Iterable[int]) -> None:
        """Make these frames resident now (streaming mode; a no-op once complete). With background
        reads, each waits for its read at most ``MUST_WAIT_S`` (not at all once the disk is stuck)."""
        if self.complete:
            return
        t0 = time.perf_counter()
        for i in indices:
            i = int(i)
            if self.resident[i]:
                continue
            if self._reader is None:
                self._write(i, 1)
                continue
            from vjengine.render.residency import MUST_WAIT_S  # noqa: PLC0415

            key = (i, 1)
            self._reader.request(key, urgent=True)
            if not self._reader.stuck():
                self._reader.wait_for(key, MUST_WAIT_S)
            got = self._reader.take_key(key)
            if got is not None:
                self._accept(key, *got)
        self.upload_s += time.perf_counter() - t0
        while self._next < self.layout.count and self.resident[self._next]:
            self._next += 1
        if self.complete:
            self._finish()

    def upload_some(self, budget_s: float) -> bool:
        """Stream missing frames for about ``budget_s`` seconds; returns ``complete``."""
        if self.complete:
            return True
        deadline = time.perf_counter() + budget_s
        if self._reader is None:
            self._upload_range(self._next, self.layout.count, _STREAM_CHUNK_BYTES, deadline=deadline)
            return self.complete
        t0 = time.perf_counter()
        while time.perf_counter() < deadline and not self.complete:  # upload what was read
            done = self._reader.take(1)
            if not done:
                break
            self._accept(done[0][0], done[0][1], done[0][2])
        self.upload_s += time.perf_counter() - t0
        self._request_more()
        while self._next < self.layout.count and self.resident[self._next]:
            self._next += 1
        if self.complete:
            self._finish()
        return self.complete

    def _accept(self, key: tuple[int, int], ok: bool, value) -> None:
        if not ok:  # the file changed under us, or the disk failed: keep what is on the GPU
            self._give_up(value if isinstance(value, BankError) else BankError(f"{self.bank.path}: {value}"))
            return
        self._put(key[0], value)

    def _request_more(self) -> None:
        """Ask the reader for the next missing chunks (a few ahead)."""
        per = self.layout.layers_per_array
        chunk = max(1, _STREAM_CHUNK_BYTES // self.frame_bytes)
        i = self._next
        while i < self.layout.count and self._reader.busy < 4 and not self._reader.stuck():
            if self.resident[i]:
                i += 1
                continue
            end = min(self.layout.count, i + chunk, (i // per + 1) * per)
            have = np.flatnonzero(self.resident[i:end])
            if len(have):
                end = i + int(have[0])
            if not self._reader.pending((i, end - i)) and not self._reader.request((i, end - i)):
                return
            i = end

    def locate(self, index: int) -> tuple[moderngl.TextureArray, int]:
        """The array holding frame ``index`` and the layer in it."""
        a, layer = self.layout.locate(index)
        return self.arrays[a], layer

    def release(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for tex in self.arrays:
            tex.release()
        self.arrays = []
