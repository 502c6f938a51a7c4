"""One bank drawn by a compositor of its own: the short way for `vj still`, tests and benchmarks.

A show has several banks and one compositor per output (:mod:`vjengine.render.compositor`); this
pairs one :class:`~vjengine.render.textures.BankTextures` with one
:class:`~vjengine.render.compositor.Compositor` for code that only ever draws one bank.
"""

from __future__ import annotations

from collections.abc import Sequence

import moderngl
import numpy as np

from vjengine.effects import Effects
from vjengine.render.compositor import Compositor
from vjengine.render.residency import frame_source
from vjengine.render.textures import DEFAULT_MEMORY_BUDGET_MB


class Renderer:
    """``bank``'s frames and a compositor to draw them.

    ``output_size``: (width, height) of the offscreen output used when ``render`` gets no target
    (default: the bank's size); ``fit``, ``scale_filter``, ``raise_errors``, ``stream_budget_ms``: as
    for :class:`Compositor`; the frames come from :func:`~vjengine.render.residency.frame_source`
    (``gpu_budget_mb``, ``wait_full``: a streaming ``ResidentFrames``; else ``memory_budget_mb``,
    ``progress``, ``upload``: ``BankTextures``, ``upload`` defaulting to "stream").
    """

    def __init__(self, ctx: moderngl.Context, bank, *, output_size: tuple[int, int] | None = None,
                 fit: str = "fit", memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                 progress: bool = True, raise_errors: bool = False, upload: str = "stream",
                 stream_budget_ms: float = 4.0, scale_filter: str = "linear", gpu_budget_mb: float | None = None,
                 wait_full: bool = False, native: bool | None = None) -> None:
        self.ctx = ctx
        self.gpu_budget_mb = gpu_budget_mb
        self.wait_full = wait_full
        self.native = native  # block-compressed frames as-is on the GPU: None = where the driver samples them well
        self.memory_budget_mb = memory_budget_mb
        self.progress = progress
        self.upload = upload
        self.compositor = Compositor(ctx, output_size=output_size or (bank.width, bank.height), fit=fit,
                                     scale_filter=scale_filter, raise_errors=raise_errors,
                                     stream_budget_ms=stream_budget_ms)
        self.textures = None
        self.bank = None
        try:
            self.set_bank(bank)
        except Exception:
            self.compositor.release()
            raise

    def set_bank(self, bank) -> None:
        """Upload ``bank``, replacing the current one."""
        new = frame_source(self.ctx, bank, gpu_budget_mb=self.gpu_budget_mb, wait_full=self.wait_full,
                           progress=self.progress, upload=self.upload, memory_budget_mb=self.memory_budget_mb,
                           native=self.native)
        if self.textures is not None:
            self.textures.release()
        self.textures, self.bank = new, bank
        self.compositor.reset_trails()

    def render(self, coord: Sequence[float], fx: Effects | None = None, dt_s: float = 1 / 60,
               target: moderngl.Framebuffer | None = None) -> None:
        """Draw the bank at ``coord`` (see :meth:`Compositor.render`)."""
        self.compositor.render(a=(self.textures, coord), fx=fx, dt_s=dt_s, target=target)

    def set_render_scale(self, scale: float) -> None:
        self.compositor.set_render_scale(scale)

    @property
    def max_k(self) -> int | None:
        return self.compositor.max_k

    @max_k.setter
    def max_k(self, value: int | None) -> None:
        self.compositor.max_k = value

    @property
    def image(self) -> moderngl.Texture | None:
        return self.compositor.image

    def warm_up(self) -> None:
        self.compositor.warm_up(self.textures)

    def resize(self, output_size: tuple[int, int]) -> None:
        self.compositor.resize(output_size)

    @property
    def failures(self) -> int:
        return self.compositor.failures

    @property
    def output(self) -> moderngl.Framebuffer:
        return self.compositor.output

    @property
    def output_size(self) -> tuple[int, int]:
        return self.compositor.output_size

    def read_rgb(self) -> np.ndarray:
        return self.compositor.read_rgb()

    def read_image_rgb(self) -> np.ndarray:
        return self.compositor.read_image_rgb()

    def release(self) -> None:
        """Free the bank's textures and the compositor."""
        self.compositor.release()
        if self.textures is not None:
            self.textures.release()
            self.textures = None
