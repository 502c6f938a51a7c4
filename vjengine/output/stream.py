"""``srt://HOST:PORT`` and ``udp://HOST:PORT``: H.264 in MPEG-TS, encoded by the ffmpeg that
imageio-ffmpeg ships, fed raw RGBA on its standard input by the sink's thread.

SRT defaults to caller mode (the receiver listens, e.g. OBS's media source with
``srt://0.0.0.0:PORT?mode=listener``); ``?mode=listener`` makes vjengine the listener instead.
When the receiver goes away ffmpeg exits; the sink starts it again until the receiver is back.
UDP has no connection: datagrams go out whether anyone listens or not.

Latency: x264 with no B-frames, no look-ahead and sliced threads (``-tune zerolatency``), a key frame
every half second, the muxer flushing every packet with no mux delay and writing each video PES
packet's length (a demuxer otherwise holds a frame until the next one starts: one frame period more
at every receiver, measured 100 ms at 10 fps). ffmpeg queues frames between
its stages (several per stage) whenever its encoder falls behind, which added most of a second on a
busy machine; so the sink follows ffmpeg's progress reports (``-progress``, every 10 ms) and writes
a frame only while fewer than ``MAX_IN_FLIGHT`` written frames are not yet encoded. Otherwise it
waits, and then takes the newest frame from its mailbox: a frame it cannot encode in time is dropped
(and counted) before it enters ffmpeg, never queued behind others. An ffmpeg that encodes nothing
for ``STALL_S`` while frames wait (blocked on a receiver that went away, waiting for input to notice)
is stopped and started again, like one that exited; before its first frame it gets ``START_S`` (its
start, x264 and the output included, can take seconds on a loaded machine). Blocked is told from
starved by /proc: an ffmpeg that used ``WORKING_CPU_S`` of CPU since the last look, or has a thread
waiting for a CPU (runnable), is working, only short of CPU (its priority is below the show's), and
gets another ``STALL_S``; one that did neither (blocked, or stopped) is restarted. ``HUNG_S`` without an encoded frame
restarts it whatever its CPU time (one spinning without output).
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
import time
from fractions import Fraction

from vjengine.errors import ConfigError
from vjengine.output.sink import TIMINGS_KEPT, OutFrame, Sink

MAX_IN_FLIGHT = 2  # frames written to ffmpeg and not yet encoded: one encoding, one waiting
PROGRESS_PERIOD_S = 0.01
STALL_S = 5.0  # ffmpeg encoding nothing this long with frames waiting is stuck: start it again
START_S = 30.0  # the same before its first encoded frame
WORKING_CPU_S = 0.02  # CPU time ffmpeg used since the last look that says it works, only starved (2 ticks)
HUNG_S = 120.0  # no frame encoded this long is stuck, however much CPU ffmpeg uses
_CLK_TCK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def activity(pid: int) -> tuple[float, bool] | None:
    """Process ``pid``'s CPU time (user plus system, all its threads) and whether one of its threads
    is runnable now (state R: running, or waiting for a CPU), from /proc; None when it is gone or
    there is no /proc (then the watchdog goes by encoded frames alone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None
    runnable = False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[:1] == [b"R"]:
                        runnable = True
                        break
            except (OSError, IndexError):
                continue  # a thread that just ended
    except OSError:
        pass
    return cpu_s, runnable


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
        self._progress = threading.Condition()
        self._written = 0  # frames written to this ffmpeg
        self._encoded = 0  # frames it reported encoded
        self._numbers: collections.deque[int] = collections.deque()  # written, not yet encoded
        self._moved_s = 0.0  # when ffmpeg last encoded a frame, or was seen working (CPU time)
        self._encoded_s = 0.0  # when it last encoded a frame (or started)
        self._cpu_s: float | None = None  # its CPU time when last looked at ...
        self._cpu_look_s = 0.0  # ... at this time
        self.encoded_at: collections.deque[tuple[int, float]] = collections.deque(maxlen=TIMINGS_KEPT)

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
        return [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-xerror",
                "-stats_period", f"{PROGRESS_PERIOD_S:g}", "-progress", "pipe:1",
                # Time stamps are the wall clock at arrival, kept to 1/90000 s: at 1/fps (the input's
                # default time base) two frames less than a period apart got one time stamp and the
                # muxer threw the second away, a hole in the H.264 stream until the next key frame.
                # (x264 is told the nominal rate for its rate control; no probing of the raw input).
                "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{w}x{h}", "-framerate", "90000",
                "-use_wallclock_as_timestamps", "1", "-probesize", "32", "-analyzeduration", "0", "-i", "pipe:0",
                "-vf", "vflip", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-x264-params", f"fps={Fraction(fps).limit_denominator(1001)}",
                "-threads", "2", "-g", str(max(1, round(fps / 2))), "-bf", "0", "-pix_fmt", "yuv420p",
                "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps // 2}k",
                "-fps_mode", "passthrough", "-enc_time_base", "1:90000", "-flush_packets", "1", "-muxdelay", "0",
                "-omit_video_pes_length", "0", "-f", "mpegts", self.target()]

    def open(self) -> None:
        self._err.clear()
        with self._progress:
            self._written = self._encoded = 0
            self._numbers.clear()
            self._moved_s = self._encoded_s = time.perf_counter()  # ffmpeg's last progress (or its start)
        with self.children_normal():  # ffmpeg does the encoding: a lower nice, not SCHED_IDLE
            self._proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, bufsize=0)
        threading.Thread(target=self._drain, args=(self._proc,), daemon=True, name="vj-out-ffmpeg-log").start()
        threading.Thread(target=self._follow, args=(self._proc,), daemon=True, name="vj-out-ffmpeg-progress").start()
        self.state = "connecting" if self.spec.scheme == "srt" else "live"

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self._err.append(line.decode(errors="replace").strip())

    def _follow(self, proc: subprocess.Popen) -> None:
        """Read ffmpeg's progress reports (``frame=N``: N frames encoded so far)."""
        for line in proc.stdout:
            if not line.startswith(b"frame="):
                continue
            try:
                count = int(line[6:])
            except ValueError:
                continue
            now = time.perf_counter()
            with self._progress:
                if self._proc is not proc:
                    return
                while self._encoded < count and self._numbers:
                    self._encoded += 1
                    self._moved_s = self._encoded_s = now
                    self.encoded_at.append((self._numbers.popleft(), now))
                self._progress.notify_all()
        with self._progress:  # ffmpeg ended: nobody waits for it any more
            self._progress.notify_all()

    def wait_ready(self, timeout_s: float) -> bool:
        proc = self._proc
        with self._progress:
            if self._progress.wait_for(
                    lambda: self._written - self._encoded < MAX_IN_FLIGHT or proc is None or proc.poll() is not None,
                    timeout_s):
                return True
            limit_s = STALL_S if self._encoded else START_S
            now = time.perf_counter()
            if self._cpu_look_s < self._moved_s and proc is not None:  # frames wait: CPU from here on
                seen = activity(proc.pid)
                self._cpu_s, self._cpu_look_s = (seen[0] if seen else None), now
            if now - self._moved_s <= limit_s:
                return False
            hung = now - self._encoded_s > HUNG_S
            if not hung and self._working(proc, now):
                return False  # starved of CPU, not stuck: it gets another limit_s
            # e.g. blocked sending to an SRT receiver that went away: it may wait for more input
            # to notice, and gets none from here, so it is stopped and started again
            raise RuntimeError(f"ffmpeg encoded nothing for {now - self._encoded_s:.0f} s "
                               f"({'and does not run' if not hung else 'though it runs'}; {self._why()})")

    def _working(self, proc: subprocess.Popen | None, now: float) -> bool:
        """Whether ffmpeg used CPU since the last look or has a thread waiting for one (called with
        ``_progress`` held, once a limit has passed; the first look is within a wait of its last
        encoded frame): if so, the limit starts again from now."""
        seen = None if proc is None else activity(proc.pid)
        if seen is None:
            return False
        cpu, runnable = seen
        before, self._cpu_s, self._cpu_look_s = self._cpu_s, cpu, now
        if runnable or (before is not None and cpu - before >= WORKING_CPU_S - 1e-9):
            self._moved_s = now
            return True
        return False

    def send(self, frame: OutFrame) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"ffmpeg exited ({self._why()})")
        with self._progress:
            self._written += 1
            self._numbers.append(frame.number)
        try:
            proc.stdin.write(memoryview(frame.bottom_up).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            raise RuntimeError(f"ffmpeg stopped reading ({self._why()})") from exc
        if self.state != "live" and self._encoded:
            self.state = "live"

    def _why(self) -> str:
        return " / ".join(self._err) or "no message"

    @property
    def ffmpeg_pid(self) -> int | None:
        proc = self._proc
        return None if proc is None else proc.pid

    def status(self) -> dict:
        out = super().status()
        out["encoding"] = self._written - self._encoded  # frames inside ffmpeg
        return out

    def close(self) -> None:
        with self._progress:
            proc, self._proc = self._proc, None
            self._progress.notify_all()
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
