"""``v4l2:///dev/videoN`` (Linux, a v4l2loopback device) and ``obs://`` (the OBS virtual camera on
Windows and macOS), through pyvirtualcam: any program that takes a webcam gets the show."""

from __future__ import annotations

import os
import sys

import numpy as np

from vjengine.errors import ConfigError
from vjengine.output.sink import OutFrame, Sink

NEEDS = "pip install 'vjengine[vcam]' (pyvirtualcam)"


def import_pyvirtualcam():
    try:
        import pyvirtualcam  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"virtual camera output needs pyvirtualcam ({exc}); {NEEDS}") from exc
    return pyvirtualcam


class VcamSink(Sink):
    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.kind = spec.scheme
        self._cam = None

    def check(self) -> None:
        url = self.spec.label
        if self.spec.scheme == "v4l2":
            if not sys.platform.startswith("linux"):
                raise ConfigError(f"--out {url!r}: v4l2 devices are Linux only; use obs:// on Windows or macOS")
            if not os.path.exists(self.spec.path):
                raise ConfigError(f"--out {url!r}: no device {self.spec.path}; load v4l2loopback first "
                                  "(Debian: apt-get install v4l2loopback-dkms && "
                                  "modprobe v4l2loopback exclusive_caps=1)")
            if not os.access(self.spec.path, os.W_OK):
                raise ConfigError(f"--out {url!r}: {self.spec.path} is not writable by this user "
                                  "(add yourself to the video group)")
        elif sys.platform not in ("win32", "darwin"):
            raise ConfigError(f"--out {url!r}: the OBS virtual camera is for Windows and macOS; "
                              "on Linux use v4l2:///dev/videoN with v4l2loopback")
        import_pyvirtualcam()

    def open(self) -> None:
        pvc = import_pyvirtualcam()
        w, h = self.size
        if self.spec.scheme == "v4l2":
            self._cam = pvc.Camera(w, h, self.fps, device=self.spec.path, backend="v4l2loopback",
                                   fmt=pvc.PixelFormat.RGB)
        else:
            self._cam = pvc.Camera(w, h, self.fps, backend="obs", fmt=pvc.PixelFormat.RGB)
        self._rgb = np.empty((h, w, 3), np.uint8)

    def send(self, frame: OutFrame) -> None:
        np.copyto(self._rgb, frame.rgba[:, :, :3])
        self._cam.send(self._rgb)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            cam.close()
