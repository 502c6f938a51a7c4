"""``syphon://NAME`` (macOS, syphon-python) and ``spout://NAME`` (Windows, SpoutGL): texture sharing
with VJ software on the same machine. The sink's thread uploads the read-back frame to the shared
texture (Syphon: a Metal texture; Spout: SpoutGL's ``sendImage``). Neither runs on Linux, where
``check`` says what is needed."""

from __future__ import annotations

import sys

import numpy as np

from vjengine.errors import ConfigError
from vjengine.output.sink import OutFrame, Sink

GL_RGBA = 0x1908


class SyphonSink(Sink):
    kind = "syphon"

    def check(self) -> None:
        if sys.platform != "darwin":
            raise ConfigError(f"--out {self.spec.label!r}: Syphon is macOS only (on Windows use spout://, "
                              "elsewhere ndi://)")
        try:
            import syphon  # noqa: F401, PLC0415
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"--out {self.spec.label!r} needs syphon-python ({exc}); "
                              "pip install 'vjengine[syphon]'") from exc

    def open(self) -> None:
        import syphon  # noqa: PLC0415
        from syphon.utils.raw import create_mtl_texture  # noqa: PLC0415

        self._server = syphon.SyphonMetalServer(self.spec.name)
        self._texture = create_mtl_texture(self._server.device, *self.size)
        self._buf = np.empty((self.size[1], self.size[0], 4), np.uint8)

    def send(self, frame: OutFrame) -> None:
        from syphon.utils.numpy import copy_image_to_mtl_texture  # noqa: PLC0415

        np.copyto(self._buf, frame.rgba)
        copy_image_to_mtl_texture(self._buf, self._texture)
        self._server.publish_frame_texture(self._texture)

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.stop()
            self._server = None


class SpoutSink(Sink):
    kind = "spout"

    def check(self) -> None:
        if sys.platform != "win32":
            raise ConfigError(f"--out {self.spec.label!r}: Spout is Windows only (on macOS use syphon://, "
                              "elsewhere ndi://)")
        try:
            import SpoutGL  # noqa: F401, PLC0415
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"--out {self.spec.label!r} needs SpoutGL ({exc}); pip install 'vjengine[spout]'") from exc

    def open(self) -> None:
        import SpoutGL  # noqa: PLC0415

        self._sender = SpoutGL.SpoutSender()
        self._sender.setSenderName(self.spec.name)
        self._buf = np.empty((self.size[1], self.size[0], 4), np.uint8)

    def send(self, frame: OutFrame) -> None:
        np.copyto(self._buf, frame.rgba)
        if not self._sender.sendImage(self._buf, self.size[0], self.size[1], GL_RGBA, False, 0):
            raise RuntimeError("Spout refused the frame")

    def close(self) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.releaseSender()
            self._sender = None
