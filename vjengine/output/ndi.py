"""``ndi://NAME``: an NDI source (RGBA, alpha kept) through cyndilib, which bundles the NDI runtime.

NDI finds sources by mDNS; where multicast does not reach (some Wi-Fi, containers), NDI's own
configuration file (``ndi-config.v1.json`` in ``$NDI_CONFIG_DIR``, ``"networks": {"ips": ...}``)
lists the hosts to ask. Receivers come and go by themselves: the sender keeps running.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from vjengine.errors import ConfigError
from vjengine.output.sink import OutFrame, Sink

NEEDS = "pip install 'vjengine[ndi]' (the cyndilib NDI binding, which bundles the NDI runtime)"


def import_cyndilib():
    try:
        from cyndilib.sender import Sender  # noqa: PLC0415
        from cyndilib.video_frame import VideoSendFrame  # noqa: PLC0415
        from cyndilib.wrapper.ndi_structs import FourCC  # noqa: PLC0415
    except Exception as exc:  # ImportError, or the runtime library failing to load
        raise ConfigError(f"ndi:// needs the NDI binding ({type(exc).__name__}: {exc}); {NEEDS}") from exc
    return Sender, VideoSendFrame, FourCC


class NdiSink(Sink):
    kind = "ndi"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self._sender = None
        self.connections = 0
        self.unwatched = 0  # frames not encoded: no receiver
        self._polled = 0

    def check(self) -> None:
        import_cyndilib()

    def open(self) -> None:
        Sender, VideoSendFrame, FourCC = import_cyndilib()
        w, h = self.size
        with self.children_normal():  # NDI's network threads start here
            sender = Sender(self.spec.name, clock_video=False)
            vf = VideoSendFrame()
            vf.set_resolution(w, h)
            vf.set_fourcc(FourCC.RGBA)
            vf.set_frame_rate(Fraction(self.fps).limit_denominator(1001))
            sender.set_video_frame(vf)
            sender.open()
        self._sender = sender
        self._buf = np.empty((h, w, 4), np.uint8)

    def send(self, frame: OutFrame) -> None:
        # NDI compresses every frame written, watched or not (4 ms of CPU a 1280x720 frame here, a
        # quarter of a core at 60 fps): with no receiver it is not written, like the page's
        # stream with no viewer. The count is asked every frame then (a receiver that connects gets
        # the next one), every 30th while someone watches.
        self._polled += 1
        if self.connections == 0 or self._polled % 30 == 1:
            self._count()
        if self.connections == 0:
            self.unwatched += 1
            return
        np.copyto(self._buf, frame.rgba)  # top row first, contiguous
        if not self._sender.write_video(self._buf.reshape(-1)):
            raise RuntimeError("NDI refused the frame")

    def idle(self) -> None:
        self._count()

    def _count(self) -> None:
        if self._sender is not None:
            self.connections = int(self._sender.get_num_connections(0.0))
            self.state = f"live, {self.connections} receiver(s)"

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

    def status(self) -> dict:
        out = super().status()
        out["receivers"] = self.connections
        out["unwatched"] = self.unwatched
        return out
