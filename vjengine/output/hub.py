"""The render thread's side of video out: which sinks are due, one readback per size, hand-over.

Per frame, after the show is drawn and before anything (HUD) goes over it, the frame loop calls
``OutputHub.on_frame(fbo)``. It never raises and never waits on a sink: a sink is due when its own
frame period has passed; the due sinks of each size share one :class:`Readback`; the frames read back
the frame before (on a software renderer: this frame's) are offered to their sinks' mailboxes (see
:class:`vjengine.output.sink.Sink`).
Local consumers (the operator window) register with ``add_local`` and get the newest frame through
``latest(size)`` on the render thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from vjengine.output.sink import OutFrame, Sink

log = logging.getLogger(__name__)


class OutputHub:
    """Feeds ``sinks`` from the GL context ``ctx`` (call ``start`` once the output size is known)."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks = list(sinks)
        self.ctx = None
        self.frames = 0
        self.failures = 0
        self._readbacks: dict[tuple[int, int], Any] = {}
        self._next_due: dict[int, float] = {}
        self._local: dict[tuple[int, int], float] = {}  # size -> fps of local consumers
        self._latest: dict[tuple[int, int], OutFrame] = {}
        self._logged = False
        # On a software renderer the scaling pass is CPU work at the render thread's priority
        # (llvmpipe's threads: 2.6 ms for 1280x720 to 640x360 here, against 0.35 ms to read the
        # whole frame): a sink whose size divides the source's by a whole number then gets the whole
        # frame and shrinks it on its own thread, below the render thread (and the readback is shared).
        self.scale_in_sinks = False

    def __bool__(self) -> bool:
        return bool(self.sinks or self._local)

    def start(self, ctx: Any, output_size: tuple[int, int]) -> OutputHub:
        from vjengine.render.context import is_software_renderer  # noqa: PLC0415

        self.ctx = ctx
        info = getattr(ctx, "info", None) or {}
        self.scale_in_sinks = is_software_renderer(str(info.get("GL_RENDERER", "")))
        for sink in self.sinks:
            sink.start(output_size)
            log.info("out %s: %dx%d at %g fps", sink.spec.label, *sink.size, sink.fps)
        return self

    def add_local(self, size: tuple[int, int], fps: float = 60.0) -> None:
        """A consumer on the render thread (the operator window) wants frames of ``size``."""
        self._local[(int(size[0]), int(size[1]))] = float(fps)

    def latest(self, size: tuple[int, int]) -> OutFrame | None:
        return self._latest.get((int(size[0]), int(size[1])))

    def _due(self, key: int, fps: float, now_s: float) -> bool:
        period = 1.0 / fps
        due_s = self._next_due.get(key, 0.0)
        if now_s < due_s - 0.4 * period:  # early by less than that: on time (jitter)
            return False
        self._next_due[key] = max(due_s + period, now_s + 0.5 * period)
        return True

    def on_frame(self, source: Any, number: int | None = None, drawn_s: float | None = None,
                 source_size: tuple[int, int] | None = None) -> None:
        """Read back ``source`` (a framebuffer) for the sinks that are due; hand over last frame's reads."""
        if self.ctx is None or not self:
            return
        now_s = time.perf_counter() if drawn_s is None else drawn_s
        number = self.frames if number is None else number
        self.frames += 1
        try:
            groups: dict[tuple[int, int], list[Any]] = {}
            whole = tuple(source_size or source.viewport[2:]) if self.scale_in_sinks else None
            if whole:
                from vjengine.output.readback import shrink_factor  # noqa: PLC0415
            for i, sink in enumerate(self.sinks):
                if self._due(i, sink.fps, now_s):
                    size = whole if whole and shrink_factor(whole, sink.size) else sink.size
                    groups.setdefault(size, []).append(sink)
            for j, (size, fps) in enumerate(self._local.items()):
                if self._due(-1 - j, fps, now_s):
                    groups.setdefault(size, []).append(None)
            for size, takers in groups.items():
                rb = self._readbacks.get(size)
                if rb is None:
                    from vjengine.output.readback import Readback  # noqa: PLC0415

                    rb = self._readbacks[size] = Readback(self.ctx, size)
                rb.submit(source, (number, now_s, tuple(takers)), source_size=source_size)
            self._deliver(groups)
        except Exception as exc:  # noqa: BLE001  (a broken readback must not stop the show)
            self._failed(exc)

    def _deliver(self, submitted) -> None:
        for size, rb in self._readbacks.items():
            keep = 1 if size in submitted and not rb.immediate else 0
            for arr, (n, t, takers) in rb.collect(keep=keep):
                frame = OutFrame(arr, n, t, time.perf_counter())
                for sink in takers:
                    if sink is None:
                        self._latest[size] = frame
                    else:
                        sink.offer(frame)

    def flush(self) -> None:
        """Hand over every frame still in flight (the last frame before a pause or the end)."""
        try:
            self._deliver(())
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if not self._logged:
            self._logged = True
            log.error("video out readback failed (%s: %s); the show goes on", type(exc).__name__, exc)

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self.sinks]

    def hud_lines(self) -> list[str]:
        return [s.hud_line() for s in self.sinks]

    def close(self) -> None:
        if self.ctx is not None:
            self.flush()
        for sink in self.sinks:
            try:
                sink.stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("out %s: stop failed: %s", sink.spec.label, exc)
        for rb in self._readbacks.values():
            try:
                rb.release()
            except Exception:  # noqa: BLE001
                pass
        self._readbacks.clear()
        self._latest.clear()
