"""Build a bank from a spec: keyframes, adaptive keyframes, in-betweens, then one atomic pack.

Phases (each batch becomes one checksummed shard in the work directory as soon as it is done, so
a build killed at any point resumes where it stopped; batches are cut the same way every run, so a
resumed build is byte-identical to an uninterrupted one):

1. ``key``: the uniform keyframe sub-grid, full pipeline, batched (one batch shares a strength).
2. ``adapt``: optional extra keyframes where neighbouring keyframes differ most (``adaptive``).
3. ``dense``: every other cell is the nested slerp of its keyframes' latents, decoded only.
4. pack: the shards are copied into a :class:`vjengine.bank.BankWriter`, the seam report is written
   into the bank's ``reports/``, and ``commit()`` renames the bank into place atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bank_builder.interpolate import nested_slerp
from bank_builder.plan import GridPlan, KeySets, batch_key, cell_params
from bank_builder.seams import seam_report, summarize, write_seam_report
from bank_builder.spec import BankSpec
from bank_builder.store import WorkDir

log = logging.getLogger("bank_builder")

TOOL_NAME = "vjengine bank_builder"
BUILD_FORMAT = 2  # bump when the way cells are made changes (invalidates old work directories)


@dataclass(frozen=True)
class BuildOptions:
    """How to run a build (not what to build: that is the spec). None of these change a cell's bytes on
    the CPU; on a GPU a batched build agrees with an exact one to float rounding."""

    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = None          # keyframes per UNet batch (default: from free GPU memory; 4 on the CPU)
    decode_batch_size: int | None = None   # in-betweens per decode batch (default: 2 x batch_size)
    compile_unet: bool = False
    threads: int | None = None
    work_dir: str | None = None            # default: <output>.work beside the bank
    keep_work: bool = False
    progress: bool = True
    exact: bool | None = None              # one cell per model call (default: on the CPU only)
    ray: str | None = None                 # "auto" or a cluster address: batches run on Ray actors (ray_build)
    ray_workers: int | None = None         # Ray actors (default: one per GPU, else one per CPU slot)
    ray_shared_work: bool = False          # every node can write the work folder: workers write their shards
    shuffle_seed: int | None = None        # make batches in a shuffled order (tests: order invariance)


@dataclass
class BuildResult:
    path: Path
    keyframes: int
    inbetweens: int
    made_now: int                           # cells computed by this run (the rest came from shards)
    seams: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    batch_size: int = 0
    retries: int = 0                        # batches halved after running out of memory
    workers: dict[str, Any] = field(default_factory=dict)   # per-worker summary of a --ray build


def default_work_dir(output: Path) -> Path:
    return output.with_name(output.name + ".work")


def _batches(cells: Sequence[int], size: int, key: Callable[[int], Any] = lambda i: 0) -> list[list[int]]:
    """Cut ``cells`` into batches of at most ``size`` that share ``key`` (kept in the given order)."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for c in cells:
        groups[key(c)].append(c)
    out = []
    for k in sorted(groups, key=repr):
        g = groups[k]
        out.extend(g[i:i + size] for i in range(0, len(g), size))
    return out


def shard_name(phase: str, cells: Sequence[int]) -> str:
    """A shard is named by its cells, not by its batch number, so batches of any size (a resume with
    another --batch-size, a halved batch after an out-of-memory, another machine) never collide."""
    digest = hashlib.sha1(",".join(map(str, cells)).encode()).hexdigest()[:10]
    return f"{phase}_{min(cells):09d}_{digest}"


class _Builder:
    def __init__(self, spec: BankSpec, output: Path, options: BuildOptions) -> None:
        self.spec, self.output, self.options = spec, output, options
        self.plan = GridPlan(spec)
        self._generator = None
        self.latents: dict[int, np.ndarray] = {}   # keyframe latents (float32), by flat index
        self.frames: dict[int, np.ndarray] = {}    # uniform keyframe frames, for the adaptive step
        self.done: set[int] = set()                # cells some shard already holds
        self.made_now = 0
        self.retries = 0
        self.bar = None
        self.timings_s: dict[str, float] = defaultdict(float)
        self.scaling_factor: float | None = None
        self.model_info: dict[str, Any] | None = None  # family, attention, ... (kept in the keyframe shards)
        self.rng = np.random.default_rng(options.shuffle_seed) if options.shuffle_seed is not None else None
        self.runner = None  # a RayRunner makes the batches elsewhere; None: in this process

    # the model is loaded only when some cell actually needs it (a resume after the last shard skips it)
    @property
    def generator(self):
        if self._generator is None:
            from bank_builder.pipeline import Generator

            o = self.options
            log.info("loading %s", self.spec.model)
            self._generator = Generator(self.spec, device=o.device, dtype=o.dtype, compile_unet=o.compile_unet,
                                        threads=o.threads, exact=o.exact)
            self.scaling_factor = self._generator.scaling_factor
        return self._generator

    @property
    def loaded_generator(self):
        """The model if some cell needed it already (None: not loaded, and not loaded by asking)."""
        return self._generator

    def device_kind(self) -> str:
        if self.options.device != "auto":
            return self.options.device.split(":")[0]
        from bank_builder.pipeline import pick_device

        return pick_device("auto").split(":")[0]

    def batch_sizes(self, device_kind: str) -> tuple[int, int]:
        b = self.options.batch_size
        if b is None:
            if self._generator is not None and device_kind == "cuda":
                b = self._generator.suggest_batch_size(cell_params(self.spec, self.plan.cell(0)))
            else:
                b = 8 if device_kind in ("cuda", "mps") else 4
        return b, self.options.decode_batch_size or 2 * b

    def show_workers(self, alive: int, total: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"workers {alive}/{total}", refresh=False)

    def _tick(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def index(self, work: WorkDir, keep_frames: bool) -> None:
        """Read every finished shard (checksums verified; a damaged one is deleted and made again)."""
        for shard in sorted(work.shards.glob("*.safetensors")):
            got = work.read_shard(shard.stem)
            if got is None:
                continue
            arrays, meta = got
            cells = [int(c) for c in meta.get("cells", [])]
            if len(cells) != len(arrays["frames"]):
                log.warning("shard %s does not match its cell list; it will be made again", shard)
                shard.unlink(missing_ok=True)
                continue
            self.done.update(cells)
            if meta.get("scaling_factor") is not None:
                self.scaling_factor = meta["scaling_factor"]
            if meta.get("model") is not None:
                self.model_info = meta["model"]
            if shard.stem.startswith(("key_", "adapt_")):
                for k, i in enumerate(cells):
                    self.latents[i] = np.asarray(arrays["latents"][k], dtype=np.float32)
                    if keep_frames and shard.stem.startswith("key_"):
                        self.frames[i] = np.asarray(arrays["frames"][k])

    def _order(self, cells: Sequence[int]) -> list[int]:
        cells = list(cells)
        if self.rng is not None:
            self.rng.shuffle(cells)
        return cells

    def run_keyframes(self, work: WorkDir, phase: str, cells: Sequence[int], batch: int, keep_frames: bool) -> None:
        params = {i: cell_params(self.spec, self.plan.cell(i)) for i in cells if i not in self.done}
        group = lambda i: batch_key(self.spec, params[i])
        chunks = _batches(self._order(params), batch, group)
        if self.rng is not None:
            self.rng.shuffle(chunks)
        if self.runner is not None:  # batches come back in any order; each is stored as its shard
            for chunk, latents, frames, scaling, info in self.runner.keyframes(chunks, work, phase):
                self._store_keyframes(work, phase, chunk, latents, frames, scaling, info, keep_frames)
            return
        for chunk in chunks:
            self._make_keyframes(work, phase, chunk, params, keep_frames)

    def _make_keyframes(self, work: WorkDir, phase: str, chunk: list[int], params, keep_frames: bool) -> None:
        from bank_builder.errors import OutOfMemoryError

        gen = self.generator
        try:
            latents = gen.generate([params[i] for i in chunk])
            frames = gen.decode(latents)
        except OutOfMemoryError:
            if len(chunk) == 1:
                raise
            self.retries += 1
            half = len(chunk) // 2
            log.warning("out of memory on a batch of %d keyframes: making it as %d + %d", len(chunk), half,
                        len(chunk) - half)
            self._make_keyframes(work, phase, chunk[:half], params, keep_frames)
            self._make_keyframes(work, phase, chunk[half:], params, keep_frames)
            return
        self._store_keyframes(work, phase, chunk, latents, frames, gen.scaling_factor, gen.model_info(), keep_frames)

    def _store_keyframes(self, work: WorkDir, phase: str, chunk: list[int], latents: np.ndarray, frames: np.ndarray,
                         scaling: float | None, model_info: dict[str, Any] | None, keep_frames: bool) -> None:
        t0 = time.perf_counter()
        if not work.shard_path(shard_name(phase, chunk)).exists():  # a worker on shared storage wrote it already
            work.write_shard(shard_name(phase, chunk), {"latents": latents.astype(np.float32), "frames": frames},
                             {"cells": chunk, "scaling_factor": scaling, "model": model_info})
        self.model_info = model_info
        self.scaling_factor = scaling
        self.timings_s["write"] += time.perf_counter() - t0
        self.made_now += len(chunk)
        self.done.update(chunk)
        for k, i in enumerate(chunk):
            self.latents[i] = np.asarray(latents[k], dtype=np.float32)
            if keep_frames:
                self.frames[i] = np.asarray(frames[k])
        self._tick(len(chunk))

    def inbetween_latent(self, index: int, keys: KeySets) -> np.ndarray:
        corners, fractions = self.plan.sources(index, keys)
        return nested_slerp([self.latents[c] for c in corners], fractions).astype(np.float32)

    def run_inbetweens(self, work: WorkDir, cells: Sequence[int], keys: KeySets, batch: int) -> None:
        chunks = _batches(self._order(c for c in cells if c not in self.done), batch)
        if self.rng is not None:
            self.rng.shuffle(chunks)
        if self.runner is not None:
            def jobs():  # the slerps are cheap and stay here; only the decoding goes to the workers
                for chunk in chunks:
                    t0 = time.perf_counter()
                    latents = np.stack([self.inbetween_latent(i, keys) for i in chunk])
                    self.timings_s["slerp"] += time.perf_counter() - t0
                    yield chunk, latents

            for chunk, latents, frames in self.runner.decode(jobs(), work):
                self._store_inbetweens(work, chunk, latents, frames)
            return
        for chunk in chunks:
            self._make_inbetweens(work, chunk, keys)

    def _make_inbetweens(self, work: WorkDir, chunk: list[int], keys: KeySets) -> None:
        from bank_builder.errors import OutOfMemoryError

        t0 = time.perf_counter()
        latents = np.stack([self.inbetween_latent(i, keys) for i in chunk])
        self.timings_s["slerp"] += time.perf_counter() - t0
        try:
            frames = self.generator.decode(latents)
        except OutOfMemoryError:
            if len(chunk) == 1:
                raise
            self.retries += 1
            half = len(chunk) // 2
            log.warning("out of memory decoding %d in-betweens: decoding them as %d + %d", len(chunk), half,
                        len(chunk) - half)
            self._make_inbetweens(work, chunk[:half], keys)
            self._make_inbetweens(work, chunk[half:], keys)
            return
        self._store_inbetweens(work, chunk, latents, frames)

    def _store_inbetweens(self, work: WorkDir, chunk: list[int], latents: np.ndarray, frames: np.ndarray) -> None:
        t0 = time.perf_counter()
        if not work.shard_path(shard_name("dense", chunk)).exists():  # a worker on shared storage wrote it already
            work.write_shard(shard_name("dense", chunk), {"latents": latents, "frames": frames}, {"cells": chunk})
        self.timings_s["write"] += time.perf_counter() - t0
        self.made_now += len(chunk)
        self.done.update(chunk)
        self._tick(len(chunk))


def made_by(spec: BankSpec, options: BuildOptions, device_kind: str, batch: int, decode_batch: int,
            keys: KeySets, extra: dict[str, Any]) -> dict[str, Any]:
    import vjengine

    versions: dict[str, str] = {"python": platform.python_version(), "numpy": np.__version__,
                                "vjengine": getattr(vjengine, "__version__", "unknown")}
    try:
        from bank_builder.pipeline import library_versions

        versions.update(library_versions())
    except Exception:  # packing a finished work directory does not need torch
        pass
    return {
        "tool": TOOL_NAME,
        "build_format": BUILD_FORMAT,
        "spec_file": Path(spec.source).name,
        "spec": spec.to_json(),
        "spec_sha256": spec.digest(),
        # what changes the bytes only: batch sizes, order, resumes and --compile do not (see BuildOptions)
        "build": {"device": device_kind, "dtype": options.dtype},
        "keyframes": {a.name: list(k) for a, k in zip(spec.axes, keys)},
        "versions": versions,
        **extra,
    }


def _check_output(output: Path) -> None:
    """Refuse to replace anything at ``output`` that is not a bank (the final rename replaces it)."""
    from vjengine.bank import read_manifest
    from vjengine.errors import BankError

    from bank_builder.errors import WorkDirError

    if not output.exists():
        return
    if not output.is_dir():
        raise WorkDirError(f"{output}: exists and is not a bank directory; choose another --output")
    if not any(output.iterdir()):
        return
    try:
        read_manifest(output)
    except BankError:
        raise WorkDirError(f"{output}: exists and is not a bank (no vjengine manifest); the build would replace it, "
                           "so choose another --output or remove it yourself") from None


def build_bank(spec: BankSpec, output: str | Path, options: BuildOptions | None = None, *,
               spec_text: str | None = None) -> BuildResult:
    """Build (or resume building) the bank ``spec`` describes at ``output``; returns what was done.

    The model is loaded (and every model, LoRA and size error raised) before any cell is made; a
    build that fails before its first shard leaves no work directory behind. With ``options.ray`` the
    batches run on Ray workers, which read the spec from ``spec_text`` (TOML; default: the spec's file).
    """
    options = options or BuildOptions()
    output = Path(output)
    _check_output(output)
    b = _Builder(spec, output, options)
    if options.ray:
        from bank_builder.ray_build import RayRunner

        b.runner = RayRunner(spec, options.ray, spec_text=spec_text, workers=options.ray_workers, device=options.device,
                             dtype=options.dtype, threads=options.threads, compile_unet=options.compile_unet,
                             exact=options.exact, shared_work=options.ray_shared_work, on_status=b.show_workers)
        device_kind = b.runner.device_kind
    else:
        device_kind = b.device_kind()
    work_root = Path(options.work_dir) if options.work_dir else default_work_dir(output)
    identity = {"build_format": BUILD_FORMAT, "spec": spec.to_json(), "device": device_kind, "dtype": options.dtype}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    root_existed = work_root.exists()
    work = WorkDir(work_root, digest, identity)
    path_existed = work.path.exists()
    with work:
        try:
            return _build(b, work, device_kind)
        except BaseException:
            if not path_existed and not any(work.shards.glob("*.safetensors")):
                work.remove(root_too=not root_existed)
            raise
        finally:
            if b.runner is not None:
                b.runner.close()


def _build(b: _Builder, work: WorkDir, device_kind: str) -> BuildResult:
    from vjengine.bank import Axis, BankWriter

    spec, options, output, plan = b.spec, b.options, b.output, b.plan
    t_start = time.perf_counter()
    uniform_cells = plan.keyframe_cells(plan.uniform_keys)
    has_adaptive = any(a.adaptive for a in spec.axes)
    log.info("work directory %s", work.path)
    b.index(work, keep_frames=has_adaptive)
    if len(b.done) < spec.count and b.runner is None:
        gen = b.generator  # load now: model errors come before any work, and before the progress bar
    batch, decode_batch = b.batch_sizes(device_kind)
    if b.loaded_generator is not None and options.compile_unet and len(b.done) < spec.count:
        log.info("torch.compile warm-up (not counted as progress)")
        gen.warm_up(cell_params(spec, plan.cell(uniform_cells[0])), batch)
    if options.progress:
        from tqdm import tqdm

        b.bar = tqdm(total=spec.count, initial=len(b.done), unit="frame", desc="vj-bank build", dynamic_ncols=True)
    try:
        b.run_keyframes(work, "key", uniform_cells, batch, keep_frames=has_adaptive)
        keys = plan.uniform_keys
        if has_adaptive:
            keys = plan.refine(lambda i: b.frames[i])
            extra_cells = sorted(set(plan.keyframe_cells(keys)) - set(uniform_cells))
            b.run_keyframes(work, "adapt", extra_cells, batch, keep_frames=False)
            b.frames.clear()
        dense = plan.dense_cells(keys)
        b.run_inbetweens(work, dense, keys, decode_batch)
    finally:
        if b.bar is not None:
            b.bar.close()

    # pack: copy every shard into the bank, in the same order every time
    t0 = time.perf_counter()
    latent_shape = next(iter(b.latents.values())).shape
    axes = [Axis(a.name, a.values(), a.cyclic) for a in spec.axes]
    n_key = len(plan.keyframe_cells(keys))
    with BankWriter(output, axes, spec.width, spec.height, 3, latent_shape=latent_shape,
                    latent_dtype=spec.latent_dtype, codec=spec.codec) as writer:
        filled = np.zeros(spec.count, dtype=bool)
        for shard in sorted(work.shards.glob("*.safetensors")):
            got = work.read_shard(shard.stem)
            if got is None:
                raise RuntimeError(f"{shard} went bad after it was checked; run the build again")
            arrays, meta = got
            cells = [int(i) for i in meta["cells"]]
            writer.frames[cells] = arrays["frames"]  # a block codec encodes the shard's frames on every core
            writer.latents[cells] = arrays["latents"].astype(spec.latent_dtype)
            filled[cells] = True
        if not filled.all():
            missing = np.flatnonzero(~filled)[:5].tolist()
            raise RuntimeError(f"work directory {work.path} is missing cells {missing}...; run the build again")
        b.timings_s["pack"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        report = seam_report(writer.frames, spec.sizes, [a.cyclic for a in spec.axes], [a.name for a in spec.axes])
        write_seam_report(report, writer.reports_dir)
        b.timings_s["seams"] += time.perf_counter() - t0
        extra: dict[str, Any] = {
            "latents": {"space": "unet (scaled: decode latents / scaling_factor)",
                        "scaling_factor": b.scaling_factor, "dtype": spec.latent_dtype},
            "seams": summarize(report),
        }
        if b.model_info is not None:
            extra["model"] = b.model_info
        writer.manifest["made_by"] = made_by(spec, options, device_kind, batch, decode_batch, keys, extra)
        writer.commit()
    if not options.keep_work:
        work.remove()

    timings = dict(b.timings_s)
    if b.loaded_generator is not None:
        timings.update({k: v for k, v in b.loaded_generator.timings_s.items()})
    return BuildResult(path=output, keyframes=n_key, inbetweens=spec.count - n_key, made_now=b.made_now,
                       seams=report, timings_s=timings, elapsed_s=time.perf_counter() - t_start,
                       batch_size=batch, retries=b.retries + (b.runner.retries if b.runner is not None else 0),
                       workers=b.runner.summary() if b.runner is not None else {})
