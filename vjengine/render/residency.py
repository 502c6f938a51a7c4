"""Streaming residency: a bank of any size on the GPU within a memory budget.

:class:`ResidentFrames` is a frame source for the compositor (the same small interface as
:class:`~vjengine.render.textures.BankTextures`: ``width``, ``height``, ``sizes``, ``cyclic``,
``split``, ``layers_for(indices)``, ``tick(budget_s)``). It keeps:

- the **low tier** of a version 2 bank (every frame at <= 128 px, BC1) resident for the whole show,
  uploaded at open (10,000 frames: 80 MB, under a second);
- an **LRU cache of full-resolution frames** in texture arrays of a fixed number of slots, sized from
  the GPU budget (``gpu_budget_mb``, by default from the driver's memory info where it reports it).

``layers_for`` answers at once: a resident frame from its slot, a missing one from the low tier (and
queues it). ``tick`` uploads queued frames, then prefetches along where the blend is heading (the
mapping's own look ahead, ``set_heading``; else the velocity of the taps' grid position), within a
per-frame time budget. Offline render and replay pass
``wait_full=True``: a missing frame is uploaded before ``layers_for`` returns, so they stay frame-exact.

Block-compressed frames go to the GPU as-is (``glCompressedTexSubImage3D`` through PyOpenGL on the
moderngl context: moderngl has no compressed texture arrays) where the driver samples them well; where
it would decode per texel fetch in software (BC7 on llvmpipe), they are decoded on the CPU as they are
uploaded, into an RGBA8 cache (``path`` says which). Every uploaded frame is checked against the
bank's checksum: a bad frame is logged once and drawn as its nearest good neighbour from then on.

Live, every read (a frame, a low-tier chunk: the ``pread``, the checksum, a CPU decode) runs on the
bank's :class:`~vjengine.bank.reader.FrameReader` thread; the render thread only requests, waits at
most its sync budget (``MUST_WAIT_S`` for a frame nothing can stand in for), and uploads what was read.
A stalled disk then costs sharpness, never a frame. With ``wait_full`` (offline) reads happen in line.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import moderngl
import numpy as np

from vjengine.bank import codecs
from vjengine.bank.grid import axis_position, strides
from vjengine.bank.reader import FrameReader
from vjengine.errors import BankError, DeviceError
from vjengine.logonce import LogOnce
from vjengine.render.context import is_software_renderer, max_array_layers

log = logging.getLogger(__name__)

DEFAULT_GPU_BUDGET_MB = 1024.0
# Live, a frame with nothing to stand in for it (the bank fits its budget, or its low-tier frame is not
# up yet) waits this long for its read; a stalled disk after that draws what is on the GPU.
MUST_WAIT_S = 0.25
LOW_CHUNK = 256  # low-tier frames per read
JUMP_CELLS = 4.0  # a move of more cells than this in one step is a jump, not a heading
HEADING_FRESH_S = 0.3  # how long a heading from set_heading steers prefetch
_REQUIRED_EXTENSIONS = {
    "bc1": ("GL_EXT_texture_compression_s3tc", "GL_EXT_texture_compression_dxt1"),
    "bc7": ("GL_ARB_texture_compression_bptc", "GL_EXT_texture_compression_bptc"),
}
# Software renderers (render.context.is_software_renderer) decode some block formats per texel fetch
# (BPTC on llvmpipe: ~200x slower than RGBA8 in a 4-tap blend). S3TC they decode cheaply.
# Measured on llvmpipe, 1920x1080 out of 512x512 taps: BC1 sampled as-is costs 1.1x RGBA8 at K=4 but
# 2.3x at K=16, BC7 ~200x; decoded on the CPU at upload both cost what raw does.
_SLOW_IN_SOFTWARE = ("bc1", "bc7")
_NVX_CURRENT_AVAILABLE_KB = 0x9049
_ATI_TEXTURE_FREE_MEMORY = 0x87FC


def upload_path(codec: str, extensions: Iterable[str], renderer: str, *, bank: str = "bank",
                native: bool | None = None) -> str:
    """How frames of ``codec`` reach this GPU: "raw" (plain RGBA8), "native" (block data as-is) or
    "cpu" (decoded on the CPU at upload, into RGBA8: where the driver decodes blocks in software per
    texel fetch). ``native``: True forces the block data as-is wherever the driver has the codec
    (tests), False forces "cpu". Raises :class:`DeviceError` naming the codec and the conversion when
    the driver lacks the codec entirely."""
    if codec == "raw":
        return "raw"
    exts = set(extensions)
    if not any(e in exts for e in _REQUIRED_EXTENSIONS[codec]):
        raise DeviceError(
            f"{bank}: this GPU ({renderer}) cannot sample {codec} textures (no {_REQUIRED_EXTENSIONS[codec][0]}); "
            f"convert the bank: vj-bank compress {bank} --codec {'bc1' if codec != 'bc1' else 'raw'} -o OUT "
            "(or --codec raw)")
    if native is not None:
        return "native" if native else "cpu"
    if is_software_renderer(renderer) and codec in _SLOW_IN_SOFTWARE:
        return "cpu"
    return "native"


def default_budget_mb(ctx: moderngl.Context) -> tuple[float, str]:
    """A GPU budget for frames: half the free video memory the driver reports (NVIDIA, AMD), else
    ``DEFAULT_GPU_BUDGET_MB``; and where the figure came from."""
    from OpenGL import GL

    exts = set(ctx.extensions)
    try:
        if "GL_NVX_gpu_memory_info" in exts:
            kb = int(GL.glGetIntegerv(_NVX_CURRENT_AVAILABLE_KB))
            return max(64.0, kb / 1024 / 2), "half of GL_NVX_gpu_memory_info's free memory"
        if "GL_ATI_meminfo" in exts:
            kb = int(np.asarray(GL.glGetIntegerv(_ATI_TEXTURE_FREE_MEMORY)).ravel()[0])
            return max(64.0, kb / 1024 / 2), "half of GL_ATI_meminfo's free texture memory"
    except Exception:  # a driver that lists the extension but fails the query
        pass
    return DEFAULT_GPU_BUDGET_MB, "default (the driver reports no memory info)"


def _gl():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl" if not os.environ.get("DISPLAY") else "glx")
    from OpenGL import GL
    from OpenGL.raw.GL.VERSION.GL_1_3 import glCompressedTexImage3D, glCompressedTexSubImage3D

    return GL, glCompressedTexImage3D, glCompressedTexSubImage3D


class FrameArray:
    """One GL_TEXTURE_2D_ARRAY of ``layers`` frames of ``size``: block-compressed (``gl_format``, made
    through PyOpenGL on moderngl's texture object) or RGBA8. ``use(unit)`` binds it like a moderngl
    texture."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], layers: int, *, codec: str | None,
                 linear: bool = False) -> None:
        self.size, self.layers, self.codec = size, layers, codec
        w, h = size
        if codec is None:
            self.tex = ctx.texture_array((w, h, layers), 4, alignment=1)
            self.layer_bytes = w * h * 4
        else:
            info = codecs.CODEC_INFO[codec]
            self.layer_bytes = (w // 4) * (h // 4) * info.block_bytes
            self.tex = ctx.texture_array((4, 4, 1), 4)  # a name to re-specify as compressed storage
            GL, image3d, _ = _gl()
            GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.tex.glo)
            image3d(GL.GL_TEXTURE_2D_ARRAY, 0, info.gl_format, w, h, layers, 0, self.layer_bytes * layers, None)
            err = GL.glGetError()
            if err:
                self.tex.release()
                raise DeviceError(f"the GPU refused a {w}x{h}x{layers} {codec} texture array "
                                  f"({self.layer_bytes * layers / 1e6:.0f} MB, GL error 0x{err:x}); lower --gpu-budget-mb")
        f = moderngl.LINEAR if linear else moderngl.NEAREST
        self.tex.filter = (f, f)
        self.tex.repeat_x = self.tex.repeat_y = False

    @property
    def nbytes(self) -> int:
        return self.layer_bytes * self.layers

    def write(self, layer: int, data: np.ndarray) -> None:
        """Upload ``data`` (blocks [n, H/4, W/4, B] or RGBA8 pixels [n, H, W, 4]) at ``layer``."""
        data = np.ascontiguousarray(data)
        n = data.shape[0]
        w, h = self.size
        if self.codec is None:
            self.tex.write(data, viewport=(0, 0, layer, w, h, n), alignment=1)
            return
        GL, _, sub3d = _gl()
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.tex.glo)
        sub3d(GL.GL_TEXTURE_2D_ARRAY, 0, 0, 0, layer, w, h, n, codecs.CODEC_INFO[self.codec].gl_format,
              data.nbytes, data.ctypes.data_as(ctypes.c_void_p))

    def use(self, location: int = 0) -> None:
        self.tex.use(location)

    def read(self, layer: int) -> np.ndarray:
        """One layer as RGBA8 [H, W, 4] (the driver's decode): for tests."""
        GL, _, _ = _gl()
        w, h = self.size
        out = np.empty((self.layers, h, w, 4), np.uint8)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.tex.glo)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glGetTexImage(GL.GL_TEXTURE_2D_ARRAY, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, out.ctypes.data_as(ctypes.c_void_p))
        return out[layer]

    def release(self) -> None:
        self.tex.release()


def _to_rgba(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[-1] == 4:
        return pixels
    out = np.empty((*pixels.shape[:-1], 4), np.uint8)
    out[..., :3] = pixels
    out[..., 3] = 255
    return out


class ResidentFrames:
    """The frames of one bank within a GPU budget (see the module docstring).

    ``gpu_budget_mb``: the most the bank's frames may take on the GPU (low tier included; None: from
    the driver's memory info); ``wait_full``: upload a missing frame before returning (offline);
    ``prefetch_s``: how far ahead along the current heading to prefetch; ``sync_budget_ms``: how long
    ``layers_for`` may spend uploading the current frame's misses before it falls back to the low
    tier (the rest come in ``tick``); ``clock`` (seconds) times the heading. Raises
    :class:`DeviceError` (exit 2) when the codec is not supported or the budget cannot hold one blend.
    """

    def __init__(self, ctx: moderngl.Context, bank, *, gpu_budget_mb: float | None = None,
                 wait_full: bool = False, prefetch_s: float = 0.5, sync_budget_ms: float = 3.0,
                 progress: bool = False, native: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._t_created = time.perf_counter()
        self._clock = clock  # times the blend's heading (a test injects its own)
        self.first_frame_s: float | None = None  # open_s plus the first layers_for
        self.ctx = ctx
        self.bank = bank
        self.width, self.height, self.channels = bank.width, bank.height, bank.channels
        self.sizes = tuple(bank.sizes)
        self.cyclic = tuple(bank.cyclic)
        self.count = bank.count
        self.wait_full = wait_full
        self._reader: FrameReader | None = None  # live: reads on a thread of their own (see the module docstring)
        self._low_requested = False
        self.prefetch_s = prefetch_s
        self.sync_budget_s = max(0.0, sync_budget_ms) / 1000.0
        self.path = upload_path(bank.codec, ctx.extensions, ctx.info.get("GL_RENDERER", "?"), bank=str(bank.path),
                                native=native)
        if gpu_budget_mb is None:
            gpu_budget_mb, self.budget_source = default_budget_mb(ctx)
        else:
            self.budget_source = "--gpu-budget-mb"
        self.budget_bytes = int(gpu_budget_mb * (1 << 20))
        self._cache_codec = bank.codec if self.path == "native" else None
        if self._cache_codec is None:
            self.frame_bytes = self.width * self.height * 4
        else:
            self.frame_bytes = int(np.prod(codecs.block_shape(bank.codec, self.width, self.height)))
        self.max_layers = max_array_layers(ctx)
        self.trust_checksums = bank.checksums is not None and not bank.checksum_problem
        if bank.checksum_problem:
            log.warning("%s; frames are not checked in this show", bank.checksum_problem)

        # the low tier: every frame, small, for the whole show
        self.low_arrays: list[FrameArray] = []
        self.low_bytes = 0
        low_native = "GL_EXT_texture_compression_s3tc" in set(ctx.extensions)
        if bank.low is not None:
            lw, lh = bank.low_size
            per_low = (lw // 4) * (lh // 4) * 8 if low_native else lw * lh * 4
            self.low_bytes = per_low * self.count
        taps = 1 << len(self.sizes)
        need = self.low_bytes + taps * self.frame_bytes
        if self.budget_bytes < need:
            raise DeviceError(
                f"bank {bank.path}: --gpu-budget-mb {gpu_budget_mb:g} cannot hold one blend: it needs at least "
                f"{need / (1 << 20):.2f} MB ({taps} frames of {self.frame_bytes / (1 << 20):.3f} MB"
                + (f" plus the low tier's {self.low_bytes / (1 << 20):.2f} MB" if self.low_bytes else "") + ")")
        self.slots = int(min(self.count, (self.budget_bytes - self.low_bytes) // self.frame_bytes))
        if self.slots == self.count:
            # the whole bank fits: a miss is only ever the first use of a frame, uploaded at once (as
            # BankTextures streams); the low tier never stands in, so a replay matches the show exactly
            self.wait_full = True
        self.arrays: list[FrameArray] = []
        self.bad = np.zeros(self.count, dtype=bool)
        self.slot_of = np.full(self.count, -1, dtype=np.int64)
        self.frame_in = np.full(self.slots, -1, dtype=np.int64)
        self._lru: OrderedDict[int, None] = OrderedDict()  # resident frame indices, oldest first
        self._free = list(range(self.slots - 1, -1, -1))
        self._pending: OrderedDict[int, float] = OrderedDict()  # missed frame -> time first missed
        self._prefetch: list[int] = []
        self._ahead_at: tuple[int, ...] | None = None
        self._ahead: list[int] = []  # frames asked for ahead of a switch to this bank (prefetch_at), nearest last
        self._fill = 0  # idle filling: the next frame index to try
        self._low_done = 0  # low-tier frames uploaded so far (in index order)
        self._near: set[int] = set()  # the newest quarter of the LRU: prefetch does not evict it
        self._protected: set[int] = set()
        self._last_centre: np.ndarray | None = None
        self._last_t: float | None = None
        self._velocity = np.zeros(len(self.sizes))
        self._heading: list[tuple[float, ...]] = []  # where the mapping says it is going (set_heading)
        self._heading_t: float | None = None
        self._heading_cells: list[int] | None = None
        self._once = LogOnce(log)  # each kind of problem logged once
        self.upload_s = 0.0
        self.uploads = 0
        self.frames_drawn = 0
        self.frames_low = 0      # frames in which any tap came from the low tier
        self.last_low_taps = 0
        self.miss_to_sharp_ms: list[float] = []
        self.miss_frames: list[int] = []  # the drawn-frame count when each miss turned sharp
        self.low_history = bytearray()  # per layers_for call: 1 if any tap came from the low tier
        self.resident_bytes_peak = 0
        t0 = time.perf_counter()
        # the cache arrays are made when a slot in them is first used: allocating a GB of texture up
        # front took llvmpipe seconds, and the first frame needs only the first array
        self.arrays = [None] * -(-self.slots // self.max_layers)
        try:
            if bank.low is not None:
                # the low tier streams in over the first frames (tick), before any prefetch: opening reads
                # only the manifest and checksum table, and the first frame loads its own frames
                self._make_low_arrays(low_native)
        except Exception:
            self.release()
            raise
        self.low_ids = frozenset(id(a) for a in self.low_arrays)  # a tap on one samples a smaller image
        if not wait_full:
            self._reader = FrameReader(self._read_job, name=str(bank.path.name))
        self.open_s = time.perf_counter() - t0
        log.info("%s: frames %s; up to %d of %d resident (%.0f of %.0f MB budget, %s), low tier %.0f MB; "
                 "ready in %.2f s", bank.path.name, {"native": f"{bank.codec}, sampled by the GPU as-is",
                                                      "cpu": f"{bank.codec}, decoded on the CPU at upload",
                                                      "raw": "raw"}[self.path],
                 self.slots, self.count, self.resident_bytes_max / (1 << 20), gpu_budget_mb, self.budget_source,
                 self.low_bytes / (1 << 20), self.open_s)

    # --- the low tier ------------------------------------------------------------------------

    def _make_low_arrays(self, native: bool) -> None:
        """Allocate the low tier's arrays; ``tick`` fills them (``_low_done`` frames so far, in index order)."""
        lw, lh = self.bank.low_size
        per = self.max_layers
        self._low_native = native
        for a in range(-(-self.count // per)):
            n = min(per, self.count - a * per)
            self.low_arrays.append(FrameArray(self.ctx, (lw, lh), n, codec="bc1" if native else None, linear=True))

    def _upload_low_chunk(self, n: int = LOW_CHUNK) -> None:
        """Read and upload the next ``n`` low-tier frames now (checked against their checksums)."""
        first = self._low_done
        self._write_low(first, self._read_low(first, self._low_stop(first, n)))

    def _low_stop(self, first: int, n: int = LOW_CHUNK) -> int:
        a = first // self.max_layers
        return min(self.count, first + n, (a + 1) * self.max_layers)  # one array per write

    def _read_low(self, first: int, stop: int) -> tuple[np.ndarray, list[int]]:
        """Low-tier frames ``first..stop-1`` ready to upload, and those failing their checksum."""
        bank = self.bank
        lw, lh = bank.low_size
        try:  # plain reads, never the map: a low tier changed on disk is an error here, not a SIGBUS
            blocks = bank.read_low(first, stop - first)
        except (BankError, OSError) as exc:
            self._warn_once("low-read", f"{bank.path}: cannot read the low tier ({exc}); full frames stand in "
                                        "where it is missing")
            blocks = np.zeros((stop - first, *bank.low.shape[1:]), np.uint8)
            data = blocks if self._low_native else np.zeros((stop - first, lh, lw, 4), np.uint8)
            return data, list(range(first, stop))
        table = bank.checksums.get("low") if self.trust_checksums else None
        bad = [] if table is None else [first + k for k in range(len(blocks))
                                        if codecs.crc32(blocks[k]) != int(table[first + k])]
        data = blocks if self._low_native else np.stack([codecs.decode(b, "bc1", lw, lh, 4) for b in blocks])
        return data, bad

    def _write_low(self, first: int, read: tuple[np.ndarray, list[int]]) -> None:
        data, bad = read
        for i in bad:
            self._warn_once("low", f"{self.bank.path}: low-tier frame {i} fails its checksum "
                                   "(logged once); its full frame is loaded instead when it is missing")
            self.bad_low(i)
        a, layer = divmod(first, self.max_layers)
        self.low_arrays[a].write(layer, data)
        self._low_done = first + len(data)

    def load_low_tier(self) -> None:
        """Upload the rest of the low tier now (it otherwise streams in ``tick``)."""
        while self.low_arrays and self._low_done < self.count:
            self._upload_low_chunk(4096)

    def bad_low(self, index: int) -> None:
        self._bad_low = getattr(self, "_bad_low", set())
        self._bad_low.add(int(index))

    # --- the compositor's interface ----------------------------------------------------------

    def _array(self, a: int) -> FrameArray:
        if self.arrays[a] is None:
            n = min(self.max_layers, self.slots - a * self.max_layers)
            self.arrays[a] = FrameArray(self.ctx, (self.width, self.height), n, codec=self._cache_codec)
        return self.arrays[a]

    @property
    def split(self) -> bool:
        return len(self.arrays) + len(self.low_arrays) > 1


    @property
    def resident(self) -> int:
        return len(self._lru)

    @property
    def resident_bytes(self) -> int:
        """Bytes of frames on the GPU now: the filled slots and the low tier."""
        return len(self._lru) * self.frame_bytes + self.low_bytes

    @property
    def resident_bytes_max(self) -> int:
        return self.slots * self.frame_bytes + self.low_bytes

    @property
    def low_tier_share(self) -> float:
        """The fraction of drawn frames so far in which any tap came from the low tier."""
        return self.frames_low / max(1, self.frames_drawn)

    @property
    def reader_busy(self) -> bool:
        """Live: reads asked for and not yet uploaded (queued, in flight, or read and waiting for a tick)."""
        return self._reader is not None and self._reader.busy > 0

    @property
    def complete(self) -> bool:
        return self.resident == self.count

    def status(self) -> dict:
        """For --stats: where frames come from, what is resident, how often the low tier stood in."""
        return {"bank": self.bank.name, "path": self.path, "codec": self.bank.codec, "resident": self.resident,
                "total": self.count, "slots": self.slots, "resident_mb": self.resident_bytes / (1 << 20),
                "resident_mb_max": self.resident_bytes_peak / (1 << 20), "budget_mb": self.budget_bytes / (1 << 20),
                "low_tier_mb": self.low_bytes / (1 << 20), "low_tier_pct": 100.0 * self.low_tier_share,
                "low_tier_ready": self._low_done / max(1, self.count),
                "bad_frames": int(self.bad.sum()), "uploads": self.uploads, "upload_s": self.upload_s,
                "open_s": self.open_s, "first_frame_s": self.first_frame_s,
                "miss_to_sharp_ms": [round(x, 2) for x in self.miss_to_sharp_ms], "miss_frames": self.miss_frames,
                "low_frames": self.low_history.decode("ascii") if self.low_history else ""}

    def reset_stats(self) -> None:
        """Forget the draws so far (the warm-up's): the show's figures start with its first frame."""
        self.frames_drawn = self.frames_low = self.last_low_taps = 0
        self.low_history = bytearray()
        self.miss_to_sharp_ms = []
        self.miss_frames = []

    def hud_line(self) -> str:
        """One HUD line: ``frames 812/10000 resident · bc1 on GPU · low tier 3% (now 1 tap)``."""
        where = {"native": f"{self.bank.codec} on GPU", "cpu": f"{self.bank.codec} CPU-decoded", "raw": "raw"}[self.path]
        now = f" (now {self.last_low_taps} tap{'s' if self.last_low_taps != 1 else ''})" if self.last_low_taps else ""
        bad = f" · {int(self.bad.sum())} bad" if self.bad.any() else ""
        return (f"frames {self.resident}/{self.count} resident · {where} · "
                f"low tier {100.0 * self.low_tier_share:.0f}%{now}{bad}")

    def layers_for(self, indices: Iterable[int]) -> list[tuple[object, int]]:
        """Where each frame can be sampled now: ``[(array, layer), ...]`` in order. A frame not
        resident comes from the low tier (and is queued), unless ``wait_full`` (or the bank has no low
        tier): then it is uploaded first."""
        indices = [self._substitute(int(i)) for i in indices]
        self._protected = set(indices)
        self._note_position(indices)
        out = []
        low_taps = 0
        now = time.perf_counter()
        sync_until = now + self.sync_budget_s
        for i in indices:
            if self.slot_of[i] < 0:
                must = self.wait_full or i >= self._low_done or i in getattr(self, "_bad_low", ())
                if self._reader is None:
                    if must or time.perf_counter() < sync_until:
                        self._pending.setdefault(i, now)
                        self._load(i)
                else:
                    self._pending.setdefault(i, now)
                    self._read_now(i, MUST_WAIT_S if must else sync_until - time.perf_counter())
                i = self._substitute(i)  # the upload may have found it bad
            slot = int(self.slot_of[i])
            if slot >= 0:
                self._lru.move_to_end(i)
                a, layer = divmod(slot, self.max_layers)
                out.append((self._array(a), layer))
            else:
                self._pending.setdefault(i, now)
                self._pending.move_to_end(i, last=False)
                a, layer = divmod(i, self.max_layers)
                out.append((self.low_arrays[a], layer))
                low_taps += 1
        self.frames_drawn += 1
        self.frames_low += low_taps > 0
        self.last_low_taps = low_taps
        self.low_history.append(49 if low_taps else 48)  # "1" / "0"
        self.resident_bytes_peak = max(self.resident_bytes_peak, self.resident_bytes)
        if self.first_frame_s is None:  # open (low tier up) plus this first draw's uploads
            self.first_frame_s = self.open_s + (time.perf_counter() - now)
        return out

    def prefetch_at(self, coord: Iterable[float]) -> None:
        """Load ahead the frames around ``coord`` (0..1 per axis; missing axes at 0.5, extra ones
        ignored): the show is about to switch to this bank there (a pending bank switch, a cue). The
        frames come in the following ``tick`` calls, within their budgets; nothing is evicted for them
        that a drawn blend uses."""
        c = [float(x) for x in coord][: len(self.sizes)]
        c += [0.5] * (len(self.sizes) - len(c))
        lo = [axis_position(x, int(n), bool(cyc))[0] for x, n, cyc in zip(c, self.sizes, self.cyclic)]
        if tuple(lo) == self._ahead_at:
            return  # asked every frame: plan again only when the cell changes
        self._ahead_at = tuple(lo)
        order: list[int] = []
        st = strides(self.sizes)
        for ring in (0, 1):  # the blend's own corners first, then one cell around them
            for offset in np.ndindex(*([2 + 2 * ring] * len(self.sizes))):
                idx = self._cell_index([lo[d] + offset[d] - ring for d in range(len(self.sizes))], st)
                if idx is not None and idx not in order:
                    order.append(idx)
        self._ahead = [i for i in reversed(order) if self.slot_of[i] < 0 and not self.bad[i]]

    def set_heading(self, coords: Iterable[Iterable[float]]) -> None:
        """Where the blend is going over the next moments (the mapper looked ahead, nearest first):
        prefetch follows this path, jumps included, instead of extrapolating the velocity, for
        ``HEADING_FRESH_S``."""
        self._heading = [tuple(float(x) for x in c) for c in coords]
        self._heading_t = self._clock()
        self._heading_cells = None  # its frames, found once (~1 ms) for the plans until the next one
        self._prefetch = []  # plan again along it

    def tick(self, budget_s: float) -> None:
        """Per drawn frame: upload missed frames, then prefetch, for about ``budget_s`` seconds."""
        deadline = time.perf_counter() + max(0.0, budget_s)
        if self._reader is not None:
            self._tick_reader(deadline)
            return
        while self._pending and time.perf_counter() < deadline:
            i, _ = next(iter(self._pending.items()))
            if not self._load(i):
                break
        while self.low_arrays and self._low_done < self.count and time.perf_counter() < deadline:
            self._upload_low_chunk()
        while self._ahead and not self._pending and time.perf_counter() < deadline:
            i = self._ahead.pop()
            if self.slot_of[i] < 0 and not self.bad[i]:
                if not self._load(i, prefetch=True):
                    self._ahead.clear()
                    break
        if not self._pending and time.perf_counter() < deadline:
            if not self._prefetch:
                self._plan_prefetch()
            self._near = self._recent() if not self._free else set()
            while self._prefetch and time.perf_counter() < deadline:
                i = self._prefetch.pop()
                if self.slot_of[i] < 0 and not self.bad[i]:
                    if not self._load(i, prefetch=True):
                        self._prefetch.clear()
                        break
        # idle with free slots (a bank that fits, or the start of a show): fill them in index order
        while not self._pending and self._free and time.perf_counter() < deadline:
            while self._fill < self.count and (self.slot_of[self._fill] >= 0 or self.bad[self._fill]):
                self._fill += 1
            if self._fill >= self.count:
                break
            self._load(self._fill, prefetch=True)

    # --- uploads -----------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        self._once.warning(key, "%s", message)

    def _slot(self, prefetch: bool) -> int | None:
        if self._free:
            return self._free.pop()
        for victim in self._lru:  # oldest first; never one the current blend uses
            if victim not in self._protected:
                if prefetch and victim in self._near:
                    return None  # the cache holds only what is in use or near: prefetch no further
                slot = int(self.slot_of[victim])
                del self._lru[victim]
                self.slot_of[victim] = -1
                self.frame_in[slot] = -1
                return slot
        return None

    def _recent(self) -> set[int]:
        # the newest quarter of the cache counts as "near": prefetch never evicts it
        n = max(1 << len(self.sizes), len(self._lru) // 4)
        return set(list(self._lru)[-n:])

    def _load(self, i: int, prefetch: bool = False) -> bool:
        """Read and upload frame ``i`` now into a slot (evicting the least recently used); False if none
        is free."""
        try:
            data = self._read_frame(i)
        except (BankError, OSError) as exc:
            return self._accept(i, False, exc, prefetch)
        return self._accept(i, True, data, prefetch)

    def _read_frame(self, i: int) -> np.ndarray | None:
        """Frame ``i`` as its upload wants it (None: it fails its checksum). Any thread."""
        stored = self.bank.read_stored(i, 1)
        if self.trust_checksums and not self.bank.frame_ok(i, stored[0]):
            return None
        if self.path == "native":
            return stored
        if self.path == "cpu":
            return _to_rgba(codecs.decode(stored[0], self.bank.codec, self.width, self.height, 4))[None]
        return _to_rgba(stored)

    def _accept(self, i: int, ok: bool, data, prefetch: bool = False) -> bool:
        """Upload a read frame ``i`` (``ok`` False: ``data`` is the read's exception); False when no
        slot is free (it stays pending if it was missed)."""
        if self.slot_of[i] >= 0:
            self._pending.pop(i, None)
            return True
        if not ok:
            self._warn_once("read", f"{self.bank.path}: cannot read frame {i}: {data}; drawing its neighbours")
            self._mark_bad(i)
            return True
        if data is None:
            cell = ", ".join(f"{a.name}={c}" for a, c in zip(self.bank.axes, self.bank.cell(i)))
            self._warn_once(f"bad{i}", f"{self.bank.path}: frame {i} (cell {cell}) fails its checksum; "
                                       "drawing its nearest good neighbour instead (vj-bank validate lists every bad frame)")
            self._mark_bad(i)
            return True
        t0 = time.perf_counter()
        slot = self._slot(prefetch)
        if slot is None:
            return False
        missed_at = self._pending.pop(i, None)
        a, layer = divmod(slot, self.max_layers)
        self._array(a).write(layer, data)
        self.slot_of[i] = slot
        self.frame_in[slot] = i
        self._lru[i] = None
        self.resident_bytes_peak = max(self.resident_bytes_peak, self.resident_bytes)
        self.uploads += 1
        now = time.perf_counter()
        self.upload_s += now - t0
        if missed_at is not None:
            self.miss_to_sharp_ms.append((now - missed_at) * 1000.0)
            self.miss_frames.append(self.frames_drawn)
        return True

    # --- reads on the reader thread (live) ---------------------------------------------------

    def _read_job(self, key: tuple) -> object:
        if key[0] == "low":
            return self._read_low(key[1], key[2])
        return self._read_frame(key[1])

    def _read_now(self, i: int, wait_s: float) -> None:
        """A frame the blend needs now: ask for it first, and wait up to ``wait_s`` for it (never for a
        reader that is stuck on a stalled disk)."""
        reader = self._reader
        key = ("f", i)
        reader.request(key, urgent=True)
        if wait_s > 0 and not reader.stuck():
            reader.wait_for(key, wait_s)
        got = reader.take_key(key)
        if got is not None:
            self._accept(i, *got)

    def _collect(self, deadline: float) -> None:
        """Upload what the reader has read, until ``deadline``: the frames a blend missed first (they
        must not wait behind a queue of prefetched ones), then the rest in the order they were read."""
        for i in list(self._pending)[:8]:
            got = self._reader.take_key(("f", i))
            if got is not None:
                self._accept(i, *got)
        while time.perf_counter() < deadline:
            done = self._reader.take(4)
            if not done:
                return
            for key, ok, value in done:
                if key[0] == "low":
                    self._low_requested = False
                    if ok:
                        self._write_low(key[1], value)
                    else:  # the low tier cannot be read: frames come full or not at all
                        self._warn_once("lowread", f"{self.bank.path}: cannot read the low tier ({value}); "
                                                   "missing frames are drawn black until they load")
                        self._low_done = self.count
                    continue
                i = key[1]
                prefetch = i not in self._pending
                if not self._accept(i, ok, value, prefetch) and prefetch:
                    self._prefetch.clear()  # the cache holds only what is near: prefetch no further
                    self._ahead.clear()

    def _tick_reader(self, deadline: float) -> None:
        reader = self._reader
        self._collect(deadline)
        if reader.stuck():
            return
        for i in reversed(list(self._pending)[:8]):  # the newest miss ends up first in the queue
            reader.request(("f", i), urgent=True)  # before any prefetch already queued
        if self.low_arrays and self._low_done < self.count and not self._low_requested:
            self._low_requested = reader.request(("low", self._low_done, self._low_stop(self._low_done)))
        if reader.busy >= reader.max_queued // 2:
            return  # misses were asked for first (urgent); prefetch goes on behind them, or misses beget misses
        while self._ahead and reader.room():  # a bank switch coming: its frames first
            i = self._ahead.pop()
            if self.slot_of[i] < 0 and not self.bad[i]:
                reader.request(("f", i))
        if not self._prefetch:
            self._plan_prefetch()
        self._near = self._recent() if not self._free else set()
        while self._prefetch and reader.room():
            i = self._prefetch.pop()
            if self.slot_of[i] < 0 and not self.bad[i]:
                reader.request(("f", i))
        # idle with free slots (a bank that fits, or the start of a show): fill them in index order
        while reader.busy == 0 and len(self._free) > reader.busy and reader.room():
            while self._fill < self.count and (self.slot_of[self._fill] >= 0 or self.bad[self._fill]
                                               or reader.pending(("f", self._fill))):
                self._fill += 1
            if self._fill >= self.count:
                break
            reader.request(("f", self._fill))

    def _mark_bad(self, i: int) -> None:
        self.bad[i] = True
        self._pending.pop(i, None)

    def _substitute(self, i: int) -> int:
        """``i``, or when it is bad, the nearest good frame one cell away (then two, ...)."""
        if not self.bad[i]:
            return i
        cell = np.array(self.bank.cell(i))
        for dist in range(1, max(self.sizes)):
            for d, n in enumerate(self.sizes):
                for step in (-dist, dist):
                    c = cell.copy()
                    c[d] += step
                    if self.cyclic[d]:
                        c[d] %= n
                    elif not 0 <= c[d] < n:
                        continue
                    j = self.bank.index(c)
                    if not self.bad[j]:
                        return j
        return i

    # --- prefetch ----------------------------------------------------------------------------

    def _note_position(self, indices: list[int]) -> None:
        cells = np.array([self.bank.cell(i) for i in indices], dtype=np.float64)
        centre = cells.mean(axis=0)
        now = self._clock()
        if self._last_centre is not None and self._last_t is not None and now > self._last_t:
            delta = centre - self._last_centre
            for d, n in enumerate(self.sizes):
                if self.cyclic[d]:  # the short way round
                    delta[d] = (delta[d] + n / 2) % n - n / 2
            if np.any(np.abs(delta) > JUMP_CELLS):
                self._velocity = np.zeros(len(self.sizes))  # a jump is no heading: start again from rest
            else:
                v = delta / (now - self._last_t)
                self._velocity = 0.7 * self._velocity + 0.3 * v
        if self._last_centre is None or np.any(np.abs(centre - self._last_centre) > 0):
            self._prefetch = []  # moved: plan again from here
        self._last_centre, self._last_t = centre, now

    def _cell_index(self, cell: list[int], st) -> int | None:
        """The frame index of a grid cell, wrapping cyclic axes; None off the edge of the others."""
        idx = 0
        for d, n in enumerate(self.sizes):
            v = int(cell[d])
            if self.cyclic[d]:
                v %= n
            elif not 0 <= v < n:
                return None
            idx += v * int(st[d])
        return idx

    def _heading_order(self) -> list[int]:
        """The frames along the mapping's heading, nearest first. Where two points of it are a few
        cells apart the way between is filled in (a fast glide) in steps of at most a cell, and each
        step takes every cell a blend could sample on any way from its start to its end (the
        prediction holds the audio, so which of two nearby cell edges is crossed first is a guess).
        Where two points are far apart it is a jump: the cells up to one step past the point before
        it and from one step before the point after."""
        order: list[int] = []
        seen: set[int] = set()
        st = strides(self.sizes)
        prev: np.ndarray | None = None
        step = None  # the last move between points that was no jump
        scale = np.array([max(1, n - (0 if cyc else 1)) for n, cyc in zip(self.sizes, self.cyclic)], np.float64)
        ndim = len(self.sizes)

        def cells_of(q: np.ndarray) -> list[tuple[int, int]]:
            return [axis_position(float(q[d]) if d < len(q) else 0.5, int(n), bool(cyc))[:2]
                    for d, (n, cyc) in enumerate(zip(self.sizes, self.cyclic))]

        def walk(a: np.ndarray, delta: np.ndarray | None = None) -> None:
            """From ``a`` along ``delta`` in steps of at most a cell (``delta`` None: ``a`` alone)."""
            last = cells_of(a)
            box(last, last)
            if delta is None:
                return
            n = max(1, int(np.ceil(float(np.max(np.abs(delta) * scale)))))
            for k in range(1, n + 1):
                here = cells_of(a + delta * (k / n))
                box(last, here)
                last = here

        def box(c0: list[tuple[int, int]], c1: list[tuple[int, int]]) -> None:
            axes = [sorted({*c0[d], *c1[d]}) for d in range(ndim)]
            for cell in itertools.product(*axes):
                idx = self._cell_index(list(cell), st)
                if idx is not None and idx not in seen:
                    seen.add(idx)
                    order.append(idx)

        for point in self._heading:
            p = np.array(point[:ndim], np.float64)
            if prev is None or len(p) != len(prev):
                walk(p)
            else:
                delta = p - prev
                for d, cyc in enumerate(self.cyclic[: len(delta)]):
                    if cyc:
                        delta[d] = (delta[d] + 0.5) % 1.0 - 0.5
                if float(np.max(np.abs(delta) * scale[: len(delta)])) <= JUMP_CELLS:
                    step = delta
                    walk(prev, delta)
                elif step is not None:
                    walk(prev, step)
                    walk(p - step, step)
                else:
                    walk(p)
            prev = p
        return order

    def _plan_prefetch(self) -> None:
        """Frames around where the blend will be over the next ``prefetch_s``, nearest first (popped
        from the end): along the mapping's heading while it is fresh, else along the velocity."""
        if self._heading and self._heading_t is not None and self._clock() - self._heading_t < HEADING_FRESH_S:
            if self._heading_cells is None:
                self._heading_cells = self._heading_order()
            order = self._heading_cells
        else:
            order = self._velocity_order()
        # never more than half the cache ahead: a heading longer than that would evict its own frames
        self._prefetch = [i for i in reversed(order[: max(1 << len(self.sizes), self.slots // 2)]) if self.slot_of[i] < 0]

    def _velocity_order(self) -> list[int]:
        """The cells along the velocity over the next ``prefetch_s``, nearest first."""
        if self._last_centre is None:
            return []
        order: list[int] = []
        seen: set[int] = set()
        st = strides(self.sizes)
        steps = 8
        for k in range(1, steps + 1):
            c = self._last_centre + self._velocity * (self.prefetch_s * k / steps)
            lo = np.floor(c).astype(np.int64)
            for corner in range(1 << len(self.sizes)):
                idx = self._cell_index([lo[d] + ((corner >> d) & 1) for d in range(len(self.sizes))], st)
                if idx is not None and idx not in seen:
                    seen.add(idx)
                    order.append(idx)
        return order

    def release(self) -> None:
        if self._reader is not None:
            self._reader.close()
        for a in [*self.arrays, *self.low_arrays]:
            if a is not None:
                a.release()
        self.arrays, self.low_arrays = [], []
        self.low_ids = frozenset()


def frame_source(ctx: moderngl.Context, bank, *, gpu_budget_mb: float | None = None, wait_full: bool = False,
                 streaming: bool = False, progress: bool = False, upload: str = "stream",
                 memory_budget_mb: float | None = None, native: bool | None = None, live: bool = False):
    """The frames of ``bank`` for a compositor: :class:`ResidentFrames` for a block-compressed bank,
    whenever a GPU budget is given, or when ``streaming`` (the live show); otherwise the whole bank
    resident (:class:`~vjengine.render.textures.BankTextures`, as before version 2; ``live``: its
    reads on a thread of their own)."""
    if streaming or gpu_budget_mb is not None or bank.codec != "raw":
        return ResidentFrames(ctx, bank, gpu_budget_mb=gpu_budget_mb, wait_full=wait_full, progress=progress,
                              native=native)
    from vjengine.render.textures import DEFAULT_MEMORY_BUDGET_MB, BankTextures

    return BankTextures(ctx, bank, progress=progress, upload=upload, background_reads=live and not wait_full,
                        memory_budget_mb=memory_budget_mb or DEFAULT_MEMORY_BUDGET_MB)
