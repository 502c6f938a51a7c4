"""``srt://HOST:PORT`` and ``udp://HOST:PORT``: H.264 in MPEG-TS, encoded by the ffmpeg that
imageio-ffmpeg ships, fed raw RGBA on its standard input by the sink's thread.

SRT defaults to caller mode (the receiver listens, e.g. OBS's media source with
``srt://0.0.0.0:PORT?mode=listener``); ``?mode=listener`` makes vjengine the listener instead.
When the receiver goes away ffmpeg exits; the sink starts it again until the receiver is back.
UDP has no connection: datagrams go out whether anyone listens or not.
"""

from __future__ import annotations

import collections
import subprocess
import threading

from vjengine.errors import ConfigError
from vjengine.output.sink import OutFrame, Sink


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg  # noqa: PLC0415

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"srt:// and udp:// need ffmpeg from imageio-ffmpeg ({exc}); "
                          "pip install imageio-ffmpeg") from exc


class TsSink(Sink):
    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.kind = spec.scheme
        self._proc: subprocess.Popen | None = None
        self._err: collections.deque[str] = collections.deque(maxlen=5)

    def check(self) -> None:
        ffmpeg_exe()

    def target(self) -> str:
        s = self.spec
        host = f"[{s.host}]" if ":" in s.host else s.host
        if s.scheme == "udp":
            return f"udp://{host}:{s.port}?pkt_size=1316"
        mode = s.params.get("mode", "caller")
        latency_us = int(float(s.params.get("latency", 40)) * 1000)
        if mode == "listener":
            host = host if s.host not in ("", "0.0.0.0") else "0.0.0.0"
        return f"srt://{host}:{s.port}?mode={mode}&latency={latency_us}&transtype=live&pkt_size=1316"

    def command(self) -> list[str]:
        w, h = self.size
        fps = self.fps
        kbps = int(float(self.spec.params.get("bitrate", 0)) or max(1000, w * h * fps * 0.1 / 1000))
        return [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
                "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{w}x{h}", "-framerate", f"{fps:g}",
                "-use_wallclock_as_timestamps", "1", "-i", "pipe:0",
                "-vf", "vflip", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-threads", "2", "-g", str(max(1, round(fps / 2))), "-bf", "0", "-pix_fmt", "yuv420p",
                "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps // 2}k",
                "-fps_mode", "passthrough", "-flush_packets", "1", "-muxdelay", "0",
                "-f", "mpegts", self.target()]

    def open(self) -> None:
        self._err.clear()
        self._proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, bufsize=0)
        threading.Thread(target=self._drain, args=(self._proc,), daemon=True, name="vj-out-ffmpeg-log").start()
        self.state = "connecting" if self.spec.scheme == "srt" else "live"

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self._err.append(line.decode(errors="replace").strip())

    def send(self, frame: OutFrame) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"ffmpeg exited ({self._why()})")
        try:
            proc.stdin.write(memoryview(frame.bottom_up).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            raise RuntimeError(f"ffmpeg stopped reading ({self._why()})") from exc
        if self.state != "live":
            self.state = "live"

    def _why(self) -> str:
        return " / ".join(self._err) or "no message"

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2.0)
