"""Video out in a live show: ``--out`` sinks and the ``--operator`` preview behind one output hook.

:class:`VideoOut` parses and checks every ``--out`` URL before anything opens (a bad one is a
:class:`ConfigError`, exit 2), feeds the :class:`OutputHub` from the frame loop's output hooks (the
frame as drawn, before any HUD), and gives the show's status its ``outputs`` and the HUD its lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vjengine.output.hub import OutputHub
from vjengine.output.sinks import open_sinks

log = logging.getLogger(__name__)

OPERATOR_PREVIEW = (768, 432)
OPERATOR_FPS = 30.0


def operator_preview_size(output_size: tuple[int, int]) -> tuple[int, int]:
    """The operator's preview: the output's aspect inside OPERATOR_PREVIEW, even sizes."""
    w, h = output_size
    scale = min(OPERATOR_PREVIEW[0] / w, OPERATOR_PREVIEW[1] / h, 1.0)
    return max(16, int(w * scale)) & ~1, max(16, int(h * scale)) & ~1


class VideoOut:
    """The output hook ``hook(compositor, state)`` for every ``--out`` sink (and the operator's preview)."""

    def __init__(self, urls: Sequence[str], *, queue: Any = None,
                 status_provider: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.sinks = open_sinks(urls, queue=queue, status_provider=status_provider)
        self.hub = OutputHub(self.sinks)
        self.__name__ = "video out"

    def start(self, ctx: Any, output_size: tuple[int, int]) -> None:
        self.hub.start(ctx, output_size)

    def __call__(self, compositor: Any, state: Any) -> None:
        target = compositor.frame_target or compositor.output
        self.hub.on_frame(target)

    def status(self) -> list[dict[str, Any]]:
        return self.hub.status()

    def hud_lines(self) -> list[str]:
        return self.hub.hud_lines()

    def close(self) -> None:
        self.hub.close()
