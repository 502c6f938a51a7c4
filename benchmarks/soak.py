"""Soak: `vj live` headless on the demo for a long time while everything that goes wrong at a gig happens.

For ``--minutes`` (30 by default, 3 with ``--quick``) it runs ``vj live`` on three copies of the demo
bank, capturing a looping audio file played into a private PulseAudio null sink (the "line-in"), and:

- fuzzes OSC: a valid stream (axes, effects, intensity, wildcards) and a hostile one (random bytes,
  malformed packets, 40-star wildcards, bundles timed 9 s ahead) at a few thousand datagrams a second;
- polls ``/vj/status`` ten times a second and times the longest silence;
- removes the line-in (unloads the null sink) and restores it, twice, timing the recovery;
- switches banks on every bar (``/vj/bank``), truncates one bank's frames file in place;
- drops a FIFO and a broken preset into the ``--preset-dir`` folder;
- loads every CPU with a competing process for the middle third of the run (``--session-load N``: N
  more, each in a session of its own, like other programs on the machine);
- ends the show with SIGTERM (as systemd or docker would) and checks it closed cleanly.

Prints a table, then one JSON line: ``crashes``, ``frame_gaps_over_100ms`` (``_no_load`` / ``_load``),
``max_gap_ms``, ``rss_growth_pct``, ``osc_dead_s_max``, ``device_recovery_s``, and more.
Targets (issue 18): 0 crashes; 0 gaps over 100 ms without load, <= 1 per minute with it; max gap
<= 250 ms; RSS growth <= 5 % over 30 minutes; OSC never dead over 0.5 s; device recovery <= 3 s.

Needs pulseaudio + pactl + paplay + the ALSA pulse plugin for the line-in part: without them it
stops at once with exit 2, saying what is missing (``--no-line-in`` plays the file directly with
``--audio-file`` instead and reports ``device_recovery_s`` as null). A show that never answers
``/vj/status`` (no EGL, no audio device) is a set-up problem, not a crash: exit 2 with its log's end.
``targets_met`` says, per target, whether this run met it (null: not measured).

    python benchmarks/soak.py [--minutes 30 | --quick] [--size 640x360] [--fps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vjengine.control.osc_wire import decode_packet, encode_bundle, encode_message, unix_s_to_timetag  # noqa: E402

BPM = 124.0
BAR_S = 4 * 60.0 / BPM
STARTUP_S = 15.0  # the first seconds of the show: three banks streaming to the GPU


# --------------------------------------------------------------------------------------- PulseAudio

class Pulse:
    """A private PulseAudio server with a null sink ``vj`` whose monitor is the default source."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.module: str | None = None

    @staticmethod
    def available() -> bool:
        return all(shutil.which(t) for t in ("pulseaudio", "pactl", "paplay"))

    def start(self) -> bool:
        runtime, home = self.work / "pulse-runtime", self.work / "pulse-home"
        runtime.mkdir(mode=0o700)
        home.mkdir()
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(home),
                        PULSE_RUNTIME_PATH=str(runtime / "pulse"))
        self.env.pop("PULSE_SERVER", None)
        self.proc = subprocess.Popen(["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n",
                                      "--disable-shm=yes", "--load=module-native-protocol-unix"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.proc.poll() is not None:
                return False
            if subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=5).returncode == 0:
                break
            time.sleep(0.1)
        else:
            return False
        self.load_sink()
        return True

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, check=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    def load_sink(self) -> None:
        self.module = self.pactl("load-module", "module-null-sink", "sink_name=vj", "rate=48000")
        self.pactl("set-default-source", "vj.monitor")
        self.pactl("set-default-sink", "vj")

    def unload_sink(self) -> None:
        if self.module:
            self.pactl("unload-module", self.module)
            self.module = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Player(threading.Thread):
    """Plays ``path`` into the null sink again and again (paplay exits when the sink goes away)."""

    def __init__(self, pulse: Pulse, path: Path, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="soak-player")
        self.pulse, self.path, self.stop = pulse, path, stop
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            self.proc = subprocess.Popen(["paplay", "-d", "vj", str(self.path)], env=self.pulse.env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while self.proc.poll() is None and not self.stop.is_set():
                self.stop.wait(0.2)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.stop.wait(0.3)


# --------------------------------------------------------------------------------------- OSC

def fuzz_datagrams(rng: random.Random, axes: list[str]) -> list[bytes]:
    """One round of mixed valid and hostile datagrams."""
    out: list[bytes] = []
    for _ in range(20):
        a = rng.choice(axes)
        out.append(encode_message(f"/vj/axis/{a}", [rng.random()]))
    out += [
        encode_message("/vj/axis/*", [rng.random()]),
        encode_message("/vj/{intensity,blackout}", [0.8 + 0.2 * rng.random()]),
        encode_message("/vj/intensity", [rng.uniform(0.6, 1.0)]),
        encode_message("/vj/fx/zoom/amount", [rng.uniform(1.0, 1.1)]),
        encode_message("/vj/axis/[a-z]*/nudge", [rng.uniform(-0.01, 0.01)]),
        encode_message("/vj/" + "*" * 40 + "x", [1.0]),  # exponential for a backtracking matcher
        encode_message("/vj/" + "*a" * 60 + "b", [1.0]),
        encode_message("/" + "?" * 300, [1.0]),  # over the pattern length cap
        encode_bundle([encode_message(f"/vj/axis/{rng.choice(axes)}", [rng.random()])],
                      unix_s_to_timetag(time.time() + 9.0)),  # timed far ahead
        encode_message("/vj/nope", [1]),
        encode_message("/vj/intensity", ["not a number"]),
        encode_message("/vj/blackout", [0]),
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
        b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", 1 << 30),
        b"/vj/tap\x00,\x00\x00",  # bad padding
    ]
    return out


class Osc(threading.Thread):
    """Fuzzer + bank switcher against one port; a second thread polls /vj/status (its own socket)."""

    def __init__(self, port: int, axes: list[str], stop: threading.Event, rate_hz: float, banks: int) -> None:
        super().__init__(daemon=True, name="soak-osc")
        self.port, self.axes, self.stop, self.rate_hz, self.banks = port, axes, stop, rate_hz, banks
        self.sent = 0
        self.status_times: list[float] = []  # monotonic times a /vj/status reply arrived
        self.inputs: list[tuple[float, str]] = []  # (monotonic, /vj/status/input)
        self.quality: list[tuple[float, float]] = []
        self.bank_switches = 0
        self.poller = threading.Thread(target=self._poll_status, daemon=True, name="soak-status")

    def start(self) -> None:
        super().start()
        self.poller.start()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        self.poller.join(timeout)

    def run(self) -> None:
        rng = random.Random(18)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dest = ("127.0.0.1", self.port)
        next_bar = time.monotonic()
        bank = 0
        batch = fuzz_datagrams(rng, self.axes)
        period = len(batch) / self.rate_hz
        next_batch = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_batch:
                for d in fuzz_datagrams(rng, self.axes):
                    try:
                        tx.sendto(d, dest)
                        self.sent += 1
                    except OSError:
                        pass
                next_batch += period
                if next_batch < now - 1.0:
                    next_batch = now
            if now >= next_bar:
                bank = (bank + 1) % self.banks
                try:
                    tx.sendto(encode_message("/vj/bank", [bank]), dest)
                    self.bank_switches += 1
                except OSError:
                    pass
                next_bar = now + BAR_S
            self.stop.wait(max(0.0, min(next_batch, next_bar) - time.monotonic()))
        tx.close()

    def _poll_status(self) -> None:
        st = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        st.bind(("127.0.0.1", 0))
        st.settimeout(0.02)
        dest = ("127.0.0.1", self.port)
        next_status = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_status:
                try:
                    st.sendto(encode_message("/vj/status"), dest)
                except OSError:
                    pass
                next_status = time.monotonic() + 0.1
            try:
                data = st.recv(65536)
            except (TimeoutError, OSError):
                continue
            t = time.monotonic()
            try:
                msgs = decode_packet(data)
            except Exception:  # noqa: BLE001
                continue
            for m in msgs:
                if m.address == "/vj/status/end":
                    self.status_times.append(t)
                elif m.address == "/vj/status/input":
                    self.inputs.append((t, str(m.args[0])))
                elif m.address == "/vj/status/quality/level":
                    self.quality.append((t, float(m.args[0])))
        st.close()


# --------------------------------------------------------------------------------------- helpers

def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_hogs(n: int, own_sessions: bool = False) -> list[subprocess.Popen]:
    """``n`` busy processes; ``own_sessions``: each in a session of its own, as another program on the
    machine would be (Linux autogroup scheduling shares the CPU between sessions first)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=own_sessions)
            for _ in range(n)]


def stop_procs(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def make_audio(work: Path, minutes: float) -> Path:
    """The demo loop repeated to a few minutes, 48 kHz, for paplay."""
    import soundfile

    from vjengine.demo import demo_audio_path

    data, sr = soundfile.read(str(demo_audio_path()), dtype="float32", always_2d=True)
    reps = max(1, int(min(minutes, 5.0) * 60 * sr / len(data)))
    path = work / "line-in.wav"
    soundfile.write(path, np.tile(data, (reps, 1)), sr)
    return path


def gap_causes(st: dict, big: np.ndarray) -> dict:
    """What the frames over 100 ms spent their time on: each gap counted under its longest part (a
    stage of the frame loop, ``between`` frames, or ``gc`` when collections took most of it), and how
    many were mostly off the CPU (the render thread preempted, or waiting on I/O or the GIL)."""
    out: dict = {"by_part": {}, "off_cpu": 0, "gc": 0}
    stages = st["stages_ms"]
    probes = st.get("probes") or []
    for k in np.flatnonzero(big):
        i = int(k) + 1  # interval_ms has no entry for the first frame
        if i >= st["frames"]:
            continue
        interval, frame_ms = st["interval_ms"][k], st["frame_ms"][i]
        parts = {name: vals[i] for name, vals in stages.items() if i < len(vals)}
        parts["between"] = max(0.0, interval - frame_ms)
        probe = probes[i] if i < len(probes) else {}
        if probe.get("gc", 0.0) > 0.5 * interval:
            out["gc"] += 1
        if "cpu" in probe and probe["cpu"] < 0.5 * frame_ms:
            out["off_cpu"] += 1
        top = max(parts, key=parts.get)
        out["by_part"][top] = out["by_part"].get(top, 0) + 1
    return out


# --------------------------------------------------------------------------------------- the run

class Missing(Exception):
    """A prerequisite of the soak is missing: main() prints it and exits 2."""


PULSE_TOOLS = ("pulseaudio", "pactl", "paplay")


def missing_prerequisites(line_in: bool) -> list[str]:
    """What the soak cannot run without, each with how to get it (empty: all there)."""
    out = []
    if line_in:
        tools = [t for t in PULSE_TOOLS if not shutil.which(t)]
        if tools:
            out.append(f"{', '.join(tools)} not found (the line-in and its removal need them: "
                       "apt-get install pulseaudio pulseaudio-utils, or bash scripts/setup.sh --dev; "
                       "--no-line-in plays the file instead and reports no device_recovery_s)")
    for module in ("soundfile", "moderngl"):
        try:
            __import__(module)
        except ImportError:
            out.append(f"python module {module} not importable (bash scripts/setup.sh --dev)")
    return out


def soak(minutes: float, size: str, fps: float, work: Path, rate_hz: float, session_load: int = 0,
         line_in: bool = True) -> dict:
    from vjengine.demo import demo_bank_path

    total_s = minutes * 60.0
    demo = demo_bank_path()
    banks = []
    for name in ("bank-a", "bank-b", "bank-c"):
        shutil.copytree(demo, work / name)
        banks.append(work / name)
    presets = work / "presets"
    presets.mkdir()
    (presets / "soak.toml").write_text('name = "soak"\n[[layer]]\nmode = "lfo"\naxes = [0, 1]\n')
    audio = make_audio(work, minutes)
    stats = work / "stats.jsonl"
    shot = work / "last.png"
    record = work / "set.jsonl"
    port = free_port()

    pulse = Pulse(work)
    use_pulse = line_in and Pulse.available()
    if use_pulse and not pulse.start():
        pulse.stop()
        raise Missing("the private PulseAudio server did not start (pulseaudio --daemonize=no -n ...); "
                      "--no-line-in plays the file instead")
    env = dict(pulse.env if use_pulse else os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "vjengine.cli", "live", *map(str, banks), "--headless", "--size", size,
           "--fps", str(fps), "--duration", str(total_s + 600), "--osc-port", str(port),
           "--preset-dir", str(presets), "--stats", str(stats), "--screenshot", str(shot),
           "--record", str(record), "--quantize", "bar"]
    cmd += ["--audio-device", "pulse"] if use_pulse else ["--audio-file", str(audio), "--loop"]
    stop = threading.Event()
    player = Player(pulse, audio, stop) if use_pulse else None
    if player is not None:
        player.start()
    log_path = work / "vj.log"
    log_fh = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    t_start = time.monotonic()
    wall_start = time.time()
    osc = Osc(port, ["palette", "warp", "detail"], stop, rate_hz, len(banks))
    events: list[tuple[float, str]] = []
    load_windows: list[tuple[float, float]] = []  # wall-clock (unix) spans with the CPU loaded
    rss: list[tuple[float, int]] = []
    recoveries: list[float | None] = []
    hogs: list[subprocess.Popen] = []
    schedule = sorted([
        (0.12, "device"), (0.20, "fifo"), (0.25, "broken"), (0.30, "truncate"),
        (1 / 3, "load_on"), (2 / 3, "load_off"), (0.80, "device"),
    ])
    crashed_at = None
    try:
        # wait for the show to answer before the clock of the soak starts counting OSC silences
        osc.start()
        while not osc.status_times and time.monotonic() - t_start < 120 and proc.poll() is None:
            time.sleep(0.1)
        if not osc.status_times:  # never ran: a set-up problem (no EGL, no audio device), not a crash mid-show
            log_fh.flush()
            tail = (work / "vj.log").read_text(errors="replace").strip().splitlines()[-15:]
            state = f"exited {proc.returncode}" if proc.poll() is not None else "no answer to /vj/status in 120 s"
            raise Missing(f"vj live did not start ({state}); its log ends:\n  " + "\n  ".join(tail))
        t_live = time.monotonic()
        next_rss = t_live
        while time.monotonic() - t_live < total_s:
            if proc.poll() is not None:
                crashed_at = time.monotonic() - t_live
                break
            now = time.monotonic()
            frac = (now - t_live) / total_s
            while schedule and frac >= schedule[0][0]:
                _, what = schedule.pop(0)
                events.append((now - t_live, what))
                if what == "device" and use_pulse:
                    pulse.unload_sink()
                    time.sleep(3.0)
                    pulse.load_sink()
                    t_back = time.monotonic()
                    ok_at = None
                    while time.monotonic() - t_back < 15.0 and proc.poll() is None:
                        recent = [(t, s) for t, s in osc.inputs if t > t_back]
                        good = [t for t, s in recent if "lost" not in s and "retry" not in s and "start" not in s]
                        if good:
                            ok_at = good[0]
                            break
                        time.sleep(0.05)
                    recoveries.append(None if ok_at is None else ok_at - t_back)
                elif what == "fifo":
                    os.mkfifo(presets / "stuck.toml")
                elif what == "broken":
                    (presets / "broken.toml").write_text('name = "broken"\n[fx]\nfeedback = 1e300\n[[layer\n')
                elif what == "truncate":
                    f = banks[2] / "frames.safetensors"
                    with open(f, "r+b") as fh:
                        fh.truncate(f.stat().st_size // 2)
                elif what == "load_on":
                    hogs = cpu_hogs(os.cpu_count() or 2) + cpu_hogs(session_load, own_sessions=True)
                    load_windows.append((time.time(), float("inf")))
                elif what == "load_off":
                    stop_procs(hogs)
                    hogs = []
                    load_windows[-1] = (load_windows[-1][0], time.time())
            if now >= next_rss:
                kb = rss_kb(proc.pid)
                if kb:
                    rss.append((now - t_live, kb))
                next_rss = now + 5.0
            time.sleep(0.05)
        # the end: SIGTERM, as a service manager would send
        t_term = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        term_s = time.monotonic() - t_term
    finally:
        stop.set()
        stop_procs(hogs)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_fh.close()
        osc.join(timeout=5)
        if player is not None:
            player.join(timeout=5)
        pulse.stop()
    if load_windows and load_windows[-1][1] == float("inf"):
        load_windows[-1] = (load_windows[-1][0], time.time())

    from vjengine.show.statslog import load_stats

    st = load_stats(stats) if stats.is_file() else None
    gaps_load = gaps_free = gaps_start = 0
    causes: dict = {}
    max_gap = 0.0
    quality_changes = 0
    max_level = 0
    if st is not None and st["interval_ms"]:
        started = st["started_unix"] or wall_start
        t = np.asarray(st["interval_t"]) + started
        iv = np.asarray(st["interval_ms"])
        skip = t < started + STARTUP_S  # start-up: banks streaming to the GPU, shader compiles (counted apart)
        loaded = np.zeros(len(t), bool)
        for a, b in load_windows:
            loaded |= (t >= a) & (t <= b + 2.0)  # and the seconds after, while the machine settles
        big = (iv > 100.0) & ~skip
        gaps_load = int((big & loaded).sum())
        gaps_free = int((big & ~loaded).sum())
        gaps_start = int(((iv > 100.0) & skip).sum())
        max_gap = float(iv[~skip].max()) if (~skip).any() else 0.0
        causes = gap_causes(st, big)
        q = np.asarray(st["quality"])
        quality_changes = int((np.diff(q) != 0).sum()) if len(q) > 1 else 0
        max_level = int(q.max()) if len(q) else 0
    dead = 0.0
    times = osc.status_times
    if times:
        end = t_live + (crashed_at if crashed_at is not None else total_s)
        marks = [t_live] + [x for x in times if t_live <= x <= end] + [end]
        dead = float(max(np.diff(marks))) if len(marks) > 1 else 0.0
    growth = None
    if len(rss) >= 4:
        warm = [kb for t, kb in rss if t >= min(60.0, total_s * 0.1)]
        if len(warm) >= 2:
            first = float(np.median(warm[:3]))
            last = float(np.median(warm[-3:]))
            growth = (last - first) / first * 100.0
    log_text = log_path.read_text(errors="replace")
    loaded_s = sum(b - a for a, b in load_windows)
    result = {
        "minutes": minutes, "size": size, "fps": fps, "session_load": session_load, "line_in": "pulseaudio null sink" if use_pulse else "file",
        "crashes": int(crashed_at is not None or rc not in (0,)),
        "exit_code": rc, "crashed_at_s": crashed_at, "sigterm_exit_s": round(term_s, 2),
        "frames": st["frames"] if st else 0, "stats_complete": bool(st and st["complete"]),
        "frame_gaps_over_100ms": gaps_free + gaps_load,
        "frame_gaps_over_100ms_no_load": gaps_free, "frame_gaps_over_100ms_load": gaps_load,
        "frame_gaps_over_100ms_startup": gaps_start, "startup_s": STARTUP_S,
        "load_minutes": round(loaded_s / 60.0, 2),
        "max_gap_ms": round(max_gap, 1),
        "rss_growth_pct": None if growth is None else round(growth, 2),
        "rss_mb_first_last": [round(rss[0][1] / 1024, 1), round(rss[-1][1] / 1024, 1)] if rss else None,
        "osc_dead_s_max": round(dead, 3), "osc_sent": osc.sent, "status_replies": len(times),
        "bank_switches": osc.bank_switches,
        "device_recovery_s": None if not recoveries or None in recoveries else round(max(recoveries), 2),
        "device_recoveries_s": [None if r is None else round(r, 2) for r in recoveries],
        "gap_causes": causes,
        "quality_changes": quality_changes, "quality_max_level": max_level,
        "last_frame_png": shot.is_file(), "record_end_marker": '"end": true' in record.read_text(errors="replace")[-200:]
        if record.is_file() else False,
        "tracebacks_in_log": log_text.count("Traceback"),
        "events": [(round(t, 1), w) for t, w in events],
    }
    result["targets_met"] = targets(result)
    return result


def targets(r: dict) -> dict:
    """Issue 18's targets, each True / False (None: not measured in this run)."""
    per_min = r["frame_gaps_over_100ms_load"] / r["load_minutes"] if r["load_minutes"] else None
    rss_ok = None if r["rss_growth_pct"] is None else r["rss_growth_pct"] <= 5.0
    return {"crashes": r["crashes"] == 0, "gaps_no_load": r["frame_gaps_over_100ms_no_load"] == 0,
            "gaps_load_per_min": None if per_min is None else per_min <= 1.0, "max_gap_ms": r["max_gap_ms"] <= 250.0,
            "rss_growth_pct": rss_ok, "osc_dead_s_max": r["osc_dead_s_max"] <= 0.5,
            "device_recovery_s": None if r["device_recovery_s"] is None else r["device_recovery_s"] <= 3.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="run length (default 30)")
    ap.add_argument("--quick", action="store_true", help="3 minutes")
    ap.add_argument("--size", default="640x360", help="output size (default 640x360)")
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--osc-rate", type=float, default=2000.0, help="fuzz datagrams per second (default 2000)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the work folder (logs, stats) here")
    ap.add_argument("--session-load", type=int, default=0, metavar="N",
                    help="while loaded, N more busy processes each in a session of its own (other programs)")
    ap.add_argument("--no-line-in", action="store_true",
                    help="play the file directly instead of a PulseAudio line-in (no device removal)")
    args = ap.parse_args()
    minutes = 3.0 if args.quick else args.minutes
    missing = missing_prerequisites(not args.no_line_in)
    if missing:
        print("soak: cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("VJ_CACHE_DIR", str(Path(tempfile.gettempdir()) / "vj-bench-cache"))
    try:
        if args.keep:
            work = Path(args.keep)
            if work.exists():
                print(f"soak: --keep {work}: already exists (give a new folder)", file=sys.stderr)
                sys.exit(2)
            work.mkdir(parents=True)
            r = soak(minutes, args.size, args.fps, work, args.osc_rate, args.session_load, not args.no_line_in)
        else:
            with tempfile.TemporaryDirectory(prefix="vj-soak-") as tmp:
                r = soak(minutes, args.size, args.fps, Path(tmp), args.osc_rate, args.session_load,
                         not args.no_line_in)
    except Missing as exc:
        print(f"soak: cannot run: {exc}", file=sys.stderr)
        sys.exit(2)
    rows = [
        ("minutes (line-in)", f"{r['minutes']:g} ({r['line_in']})"),
        ("crashes (exit code)", f"{r['crashes']} ({r['exit_code']})"),
        ("frames", r["frames"]),
        ("frame gaps > 100 ms, no load", r["frame_gaps_over_100ms_no_load"]),
        (f"frame gaps > 100 ms, CPU loaded ({r['load_minutes']} min"
         + (f", {r['session_load']} more in other sessions)" if r["session_load"] else ")"), r["frame_gaps_over_100ms_load"]),
        (f"frame gaps > 100 ms, first {STARTUP_S:g} s (banks uploading)", r["frame_gaps_over_100ms_startup"]),
        ("max gap after start-up (ms)", r["max_gap_ms"]),
        ("RSS growth (%)", r["rss_growth_pct"]),
        ("OSC dead max (s)", r["osc_dead_s_max"]),
        ("device recovery (s)", r["device_recovery_s"]),
        ("gaps by longest part; off-CPU; GC", f"{r['gap_causes'].get('by_part', {})}; {r['gap_causes'].get('off_cpu', 0)}; "
                                               f"{r['gap_causes'].get('gc', 0)}"),
        ("quality changes / deepest level", f"{r['quality_changes']} / {r['quality_max_level']}"),
        ("SIGTERM: exit s, end marker, last PNG, stats complete",
         f"{r['sigterm_exit_s']}, {r['record_end_marker']}, {r['last_frame_png']}, {r['stats_complete']}"),
        ("OSC datagrams sent / status replies / bank switches", f"{r['osc_sent']} / {r['status_replies']} / {r['bank_switches']}"),
        ("targets missed (issue 18)", ", ".join(k for k, ok in r["targets_met"].items() if ok is False) or "none"),
    ]
    width = max(len(str(a)) for a, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
