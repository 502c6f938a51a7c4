"""MIDI in with real ports: a JACK dummy server, a test controller (a virtual JACK MIDI output) and
the engine's MIDI port (with JACK: in its worker process, as `vj live --midi-api jack` runs it) + MidiController
feeding a real CommandQueue and ShowState."""

from __future__ import annotations

import collections
import math
import threading
import time

import pytest

pytest.importorskip("mido", reason="the midi extra is not installed")
pytest.importorskip("rtmidi", reason="the midi extra is not installed")

from _jackd import Sender, jack_server, wait_until  # noqa: E402
from _show_helpers import DEMO_AXES, frame  # noqa: E402

from vjengine.control.commands import CommandQueue  # noqa: E402
from vjengine.control.midi import MidiController, show_values  # noqa: E402
from vjengine.control.midi_worker import MidiWorkerPort, open_port  # noqa: E402
from vjengine.control.midi_map import load_map, loads_map  # noqa: E402
from vjengine.errors import ConfigError  # noqa: E402
from vjengine.mapping import PresetLibrary, shipped_preset_paths  # noqa: E402
from vjengine.show.state import BankEntry, ShowState  # noqa: E402

pytestmark = pytest.mark.usefixtures("demo_bank_made")  # `vj demo` subprocesses find it made

MAP = """
[[bind]]
cc = 21
address = "/vj/axis/warp"
range = [0.2, 0.8]
takeover = "jump"

[[bind]]
cc = 22
channel = 2
address = "/vj/intensity"
curve = "exp"
takeover = "jump"

[[bind]]
note = 36
address = "/vj/tap"

[[bind]]
note = 37
address = "/vj/blackout"

[[bind]]
note = 38
address = "/vj/preset"
value = 2

[[bind]]
pitchbend = true
address = "/vj/fx/zoom/amount"
takeover = "jump"

[[bind]]
cc = 23
address = "/vj/clock/source"
range = [0, 3]
"""


@pytest.fixture()
def jack():  # a server per test: a test's clients never outlive it into the next one
    with jack_server() as name:
        yield name


class Rig:
    def __init__(self, text: str, tmp_path=None, client: str = "ctl") -> None:
        self.queue = CommandQueue()
        path = None
        if tmp_path is not None:
            path = tmp_path / "map.toml"
            path.write_text(text)
            m = load_map(path)
        else:
            m = loads_map(text)
        self.sender = Sender(client, "out")
        self.ctl = MidiController(m, self.queue, map_path=path)
        self.port = open_port(client, self.ctl.handle, api="jack", rescan_s=0.1)  # JACK: the worker process
        assert self.port.wait_for(lambda p: p.connected, 60.0), self.port.status_line()
        self.got: list = []
        self.live()

    def live(self) -> None:
        """Wait until JACK delivers: an unbound probe CC (channel 16) arrives (the connection a port open
        makes takes effect a cycle or two later)."""
        seen = self.ctl.stats["unbound"]
        if not self.sender.until_delivered(lambda: self.sender.cc(119, 0, channel=16),
                                           lambda: self.ctl.stats["unbound"] > seen):
            raise AssertionError(f"no MIDI arrives from {self.sender.name}")

    def commands(self, n: int, timeout: float = 5.0) -> list:
        wait_until(lambda: self._drain() >= n, timeout)
        return self.got

    def _drain(self) -> int:
        self.got += self.queue.drain()
        return len(self.got)

    def close(self) -> None:
        self.port.stop()
        try:
            self.sender.close()
        except Exception:  # noqa: BLE001
            pass


def _show() -> ShowState:
    return ShowState([BankEntry("demo", tuple(DEMO_AXES))], PresetLibrary.from_paths(shipped_preset_paths()))


def test_controls_drive_their_addresses_through_the_show(jack):
    rig = Rig(MAP)
    try:
        s = rig.sender
        s.cc(21, 127)
        s.cc(22, 64, channel=2)
        s.cc(22, 127, channel=1)  # channel 1: not bound
        s.note(36)
        s.note(37)
        s.note_off(37)
        s.note(38)
        s.send(0xE0, 0x00, 0x60)  # pitch bend: 0x3000 of 0x3FFF
        s.cc(23, 127)  # clock source index 3: midi
        cmds = rig.commands(7)
        kinds = [(c.kind, c.target) for c in cmds]
        assert kinds == [("axis", "warp"), ("intensity", ""), ("tap", ""), ("blackout", ""), ("preset", ""),
                         ("fx", "zoom.amount"), ("clock_source", "")], kinds
        assert all(c.source == "midi" for c in cmds)
        assert cmds[0].value == pytest.approx(0.8)  # the top of the binding's range
        assert cmds[1].value == pytest.approx((64 / 127) ** 2)  # exp curve
        assert cmds[3].value is True and cmds[4].value == 2 and cmds[6].value == 3
        assert cmds[5].value == pytest.approx(0x3000 / 16383, abs=1e-4)
        show = _show()
        for c in cmds[:6]:
            show.apply(c, frame())
        slot = show.axis_slot("warp")
        assert show.controls.override[slot] and show.controls.manual[slot] == pytest.approx(0.8)
        assert show.intensity == pytest.approx((64 / 127) ** 2)
        assert show.blackout is True and show.preset_index == 2
        assert show.fx_overrides["zoom"] == pytest.approx(1.0 + 0x3000 / 16383, abs=1e-4)
        # a second press of the toggle turns blackout off again
        s.note(37)
        more = rig.commands(8)
        assert more[-1].kind == "blackout" and more[-1].value is False, (rig.port.messages, rig.ctl.stats, more)
    finally:
        rig.close()


def test_learn_writes_the_map_and_the_binding_works(jack, tmp_path):
    rig = Rig('[[bind]]\ncc = 1\naddress = "/vj/intensity"\n', tmp_path, client="learnctl")
    try:
        assert rig.ctl.arm("/vj/axis/detail")
        rig.sender.cc(40, 10, channel=3)  # the control moved while armed: bound, not applied
        assert wait_until(lambda: rig.ctl.saves >= 1)
        saved = load_map(tmp_path / "map.toml")
        got = {(b.control, b.channel, b.address) for b in saved.bindings}
        assert got == {(("cc", 1), None, "/vj/intensity"), (("cc", 40), 3, "/vj/axis/detail")}
        assert rig.ctl.armed is None
        rig.sender.cc(40, 127, channel=3)
        cmds = rig.commands(1)
        assert [(c.kind, c.target, c.value) for c in cmds] == [("axis", "detail", 1.0)]
        assert not rig.ctl.arm("/vj/nonsense")  # an unknown address is refused, nothing armed
        assert rig.ctl.armed is None
    finally:
        rig.close()


def test_soft_takeover_waits_for_the_knob_to_meet_the_value(jack):
    rig = Rig('[[bind]]\ncc = 7\naddress = "/vj/axis/warp"\n', client="pickctl")
    try:
        show = _show()
        slot = show.axis_slot("warp")
        show.controls.manual[slot] = 0.7
        show.controls.override[slot] = True
        rig.ctl.publish_values(show_values(show, frame(), rig.ctl.addresses))
        for v in (10, 20, 30):  # the knob is at 0.1..0.25: far from 0.7, ignored
            rig.sender.cc(7, v)
        assert wait_until(lambda: rig.ctl.stats["waiting"] >= 3)
        assert rig.queue.drain() == []
        assert "takeover /vj/axis/warp" in rig.ctl.hud_line()
        rig.sender.cc(7, 95)  # crosses 0.7 (0.24 -> 0.75): picked up
        rig.sender.cc(7, 100)
        cmds = rig.commands(2)
        assert [round(c.value * 127) for c in cmds] == [95, 100]
    finally:
        rig.close()


def test_unplugged_controller_is_rebound(jack):
    rig = Rig('[[bind]]\ncc = 5\naddress = "/vj/intensity"\ntakeover = "jump"\n', client="plugctl")
    try:
        rig.sender.close()
        assert rig.port.wait_for(lambda p: not p.connected, 60.0)
        assert rig.port.lost == 1
        rig.sender = Sender("plugctl", "out")  # plugged back in
        assert rig.port.wait_for(lambda p: p.connected, 60.0)
        assert rig.port.opens == 2
        rig.live()
        rig.sender.cc(5, 127)
        cmds = rig.commands(1)
        assert cmds and cmds[0].kind == "intensity" and cmds[0].value == 1.0
    finally:
        rig.close()


def test_a_port_list_that_glitches_for_a_scan_keeps_the_port_open(jack):
    """Seen in a loaded run: one JACK list lacked our open port, the port was closed and reopened, and
    ten MIDI clocks were lost on the way. A list without it (once), or one that cannot be had, now
    changes nothing; a port gone from two lists in a row is gone (test_unplugged_controller_is_rebound)."""
    from vjengine.control.midi_port import MidiPort

    class GlitchyPort(MidiPort):
        glitches: list = []  # what the next lists do: "empty" or "raise"

        def list_ports(self):
            if self.glitches:
                kind = self.glitches.pop(0)
                if kind == "raise":
                    raise RuntimeError("MidiInJack::initialize: JACK server not running?")
                return []
            return super().list_ports()

    got: list = []
    sender = Sender("glitchctl", "out")
    port = GlitchyPort("glitchctl", lambda m, t: got.append(m), api="jack", rescan_s=0.1).start()
    try:
        assert port.wait_for(lambda p: p.connected, 60.0)
        for kind in ("empty", "raise", "empty"):
            before = port.scans
            port.glitches.append(kind)
            assert wait_until(lambda: port.scans >= before + 2, 60.0)  # the glitch, then a good list
        assert port.lost == 0 and port.opens == 1 and port.connected
        assert sender.until_delivered(lambda: sender.cc(1, 64), lambda: bool(got))
    finally:
        port.stop()
        sender.close()


def test_garbage_and_sysex_floods_do_not_stop_control(jack):
    rig = Rig('[[bind]]\ncc = 9\naddress = "/vj/intensity"\ntakeover = "jump"\n', client="junkctl")
    try:
        s = rig.sender
        for junk in ([0x05, 0x99, 0x01], [0xB0], [0xF4, 1, 2], [0xF7], [0x80, 200, 300 % 256]):
            s.send(*junk)
        assert wait_until(lambda: rig.port.garbage >= 5), rig.port.garbage  # counted, dropped
        sysex = [0xF0, 0x7E] + [i % 128 for i in range(200)] + [0xF7]
        s.send_many([sysex] * 500)
        # the test sender's own JACK buffer drops part of a flood; the engine must still take the next CC
        s.until_delivered(lambda: s.cc(9, 127), lambda: rig._drain() >= 1)
        assert [(c.kind, c.value) for c in rig.got][:1] == [("intensity", 1.0)]
        assert rig.ctl.stats["sysex"] >= 1  # SysEx seen and ignored
        assert rig.port._thread.is_alive()
    finally:
        rig.close()


def test_a_port_excluded_after_start_is_never_taken_by_the_worker(jack):
    """`vj live` opens MIDI clock out after its inputs and then excludes it: the exclusion must reach
    the worker process and hold, even for a port that matches and appears first."""
    got: list = []
    port = MidiWorkerPort("wex", lambda m, t: got.append(m), api="jack", rescan_s=0.1).start()
    own = other = None
    try:
        port.exclude_port("wexa:out")
        # a state the worker sends after reading its control pipe: the exclusion is in force from here
        assert port.wait_for(lambda p: p.states >= 1, 60.0), port.status_line()
        own = Sender("wexa", "out")  # ours (say, clock out): it matches, and it is there first
        other = Sender("wexb", "out")
        assert port.wait_for(lambda p: p.connected, 60.0), port.status_line()
        assert port.port_name == "wexb:out"
        assert other.until_delivered(lambda: other.cc(1, 64), lambda: bool(got))
    finally:
        port.stop()
        for s in (own, other):
            if s is not None:
                s.close()


def test_a_worker_sent_sigterm_closes_its_port_and_another_takes_over(jack, caplog, monkeypatch):
    """systemd stops a service by signalling its whole process group. The worker then closes its JACK
    port and exits 0 (a worker killed inside a JACK client can leave jackd unable to take new clients):
    the server still takes the new worker's clients, and the controller is read again."""
    import signal

    monkeypatch.setattr("vjengine.control.midi_worker.RESTART_S", 0.2)
    caplog.set_level("INFO", logger="vjengine.control.midi")
    got: list = []
    sender = Sender("termctl", "out")
    port = MidiWorkerPort("termctl", lambda m, t: got.append(m), api="jack", rescan_s=0.1).start()
    try:
        assert port.wait_for(lambda p: p.connected, 60.0)
        first = port.process
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0  # a clean exit, not a death by signal
        assert wait_until(lambda: port.restarts == 1 and port.connected, 60.0), port.status_line()
        assert sender.until_delivered(lambda: sender.cc(1, 64), lambda: bool(got))
        assert "the MIDI worker ended (exit 0)" in caplog.text
    finally:
        port.stop()
        sender.close()


def test_a_worker_that_dies_is_restarted_and_one_that_hangs_is_reported_then_killed(monkeypatch, caplog):
    """The MIDI worker process, with no JACK server to reach (so no JACK client is ever killed: a
    SIGKILLed JACK MIDI client can wedge jackd 2 for every other client). Killed: it is started again.
    Frozen (SIGSTOP, as one stuck in a JACK call holding its GIL): the status line says so, and stop()
    kills it instead of waiting for it."""
    import os
    import signal

    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"vjtest-none-{os.getpid()}")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    monkeypatch.setattr("vjengine.control.midi_worker.RESTART_S", 0.2)
    caplog.set_level("INFO", logger="vjengine.control.midi")
    port = MidiWorkerPort("nothing", lambda m, t: None, api="jack", rescan_s=0.1, stop_timeout_s=1.0).start()
    try:
        assert port.wait_for(lambda p: p.states >= 1, 60.0)
        assert port.status_line() == "MIDI in waiting for 'nothing'"
        first = port.process
        first.kill()
        assert wait_until(lambda: port.restarts == 1 and port.process is not first, 60.0)
        seen = port.states
        assert port.wait_for(lambda p: p.states > seen, 60.0)  # the new worker answers
        assert "the MIDI worker ended (exit -9)" in caplog.text
        os.kill(port.process.pid, signal.SIGSTOP)
        assert wait_until(lambda: "NOT ANSWERING" in port.status_line(), 60.0, poll_s=0.05), port.status_line()
        hung = port.process
        port.stop()
        assert hung.poll() == -signal.SIGKILL
        assert "did not close its port within 1 s" in caplog.text
        assert port.restarts == 1  # a stop is not a death: nothing started after it
        # libjack printed its "cannot connect" lines on every rescan (30 and more here): each distinct
        # line reaches the log once a minute per worker, not once a rescan
        relayed = collections.Counter(r.getMessage() for r in caplog.records if " worker: " in r.getMessage())
        assert relayed and max(relayed.values()) <= 2, relayed.most_common(3)
    finally:
        if port.process is not None and port.process.poll() is None:
            port.process.kill()
            port.process.wait()


def test_jack_midi_falls_back_to_a_thread_where_no_worker_can_start(monkeypatch, caplog):
    """Windows has no pass_fds (Popen raises ValueError): the port runs in the show process, as before."""
    import os
    import subprocess

    from vjengine.control import midi_worker
    from vjengine.control.midi_port import MidiPort

    def no_fds(*args, **kwargs):
        raise ValueError("pass_fds is not supported on Windows")

    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"vjtest-none-{os.getpid()}")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    monkeypatch.setattr(subprocess, "Popen", no_fds)
    port = midi_worker.open_port("nothing", lambda m, t: None, api="jack", rescan_s=0.1)
    try:
        assert type(port) is MidiPort and port._thread.is_alive()
        assert "no MIDI worker process here (pass_fds is not supported on Windows)" in caplog.text
    finally:
        port.stop()


def test_jack_midi_beside_audio_on_jack_plays_and_sends_our_clock(jack, tmp_path, python_exe):
    """`vj demo` plays its loop (124 BPM) through PortAudio's JACK host API with `--midi-in` and
    `--midi-clock-out` on JACK too. python-rtmidi opening JACK clients in the show process deadlocked
    here (the process hung for good), so this was refused; both ports live in MIDI worker processes
    now. The show opens them, gear reads our clock at the loop's tempo, and the show ends cleanly."""
    import subprocess

    from vjengine.sync.midi_clock import MidiClockIn

    if not _portaudio_plays_through_jack(python_exe):
        pytest.skip("PortAudio here does not play through JACK")
    ctl = Sender("jaudctl", "out")
    clk = MidiClockIn()
    gear = MidiWorkerPort("vjclockj", clk.handle, api="jack", rescan_s=0.1).start()
    proc = subprocess.Popen([python_exe, "-m", "vjengine.cli", "demo", "--headless", "--duration", "120", "--no-osc",
                             "--midi-in", "jaudctl", "--midi-clock-out", "virtual:vjclockj", "--midi-api", "jack"],
                            stderr=open(tmp_path / "show.log", "w"), stdout=subprocess.DEVNULL, cwd=tmp_path)  # noqa: SIM115
    try:
        assert gear.wait_for(lambda p: p.connected, 120.0), gear.status_line()
        # four beats of clock at the loop's tempo (the show's tracker locks first, then clock out runs)
        wait_until(lambda: clk.ticks >= 24 * 8 and abs(clk.bpm - 124.0) < 2.0 or proc.poll() is not None, 90.0)
        assert clk.ticks >= 24 * 8 and abs(clk.bpm - 124.0) < 2.0, (clk.ticks, clk.bpm, proc.poll())
    finally:
        proc.terminate()  # SIGTERM ends the show cleanly
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            gear.stop()
            ctl.close()
    err = (tmp_path / "show.log").read_text(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    assert "to the speakers through JACK" in err, err[-3000:]  # the audio really went through JACK
    assert "MIDI in: listening on jaudctl:out" in err and "MIDI clock out: vjclockj" in err, err[-3000:]


def _portaudio_plays_through_jack(python_exe: str) -> bool:
    """Asked in a process of its own: PortAudio initialised here would outlive this JACK server."""
    import subprocess

    probe = subprocess.run([python_exe, "-c", "import sounddevice as sd; print(sd.query_devices(kind='output')"
                            "['hostapi'] == [i for i, a in enumerate(sd.query_hostapis()) if 'JACK' in a['name']][0])"],
                           capture_output=True, text=True, timeout=60)
    return probe.stdout.strip() == "True"


@pytest.mark.parametrize("text, key, what", [
    ('[[bind]]\ncc = 1\naddress = "/vj/nowhere"\n', "bind[0].address", "unknown address"),
    ('[[bind]]\ncc = 200\naddress = "/vj/intensity"\n', "bind[0].cc", "must be in [0, 127]"),
    ('[[bind]]\ncc = 1\naddress = "/vj/intensity"\n[[bind]]\ncc = 1\nchannel = 2\naddress = "/vj/tap"\n',
     "bind[1]", "already bound by bind[0]"),
    ('[[bind]]\ncc = 1\nnote = 2\naddress = "/vj/intensity"\n', "bind[0]", "exactly one of"),
    ('[[bind]]\ncc = 1\naddress = "/vj/bpm"\nrange = [0, 400]\n', "bind[0].range", "within 20..300"),
    ('[[bind]]\nnote = 1\naddress = "/vj/preset"\n', "bind[0].value", "is required"),
    ('[[bind]]\ncc = 1\naddress = "/vj/status"\n', "bind[0].address", "cannot be bound"),
    ('[[bind]]\ncc = 1\naddress = "/vj/intensity"\ncurve = "cubic"\n', "bind[0].curve", "must be one of"),
    ('[[bind]]\ncc = 1\nchannel = 17\naddress = "/vj/intensity"\n', "bind[0].channel", "must be in [1, 16]"),
    ('devise = "APC"\n', "devise", "unknown key"),
])
def test_bad_maps_name_the_file_and_key(tmp_path, text, key, what):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_map(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}: ") and what in msg, msg


def test_vj_live_with_a_bad_map_exits_2_naming_file_and_key(tmp_path, python_exe):
    import subprocess

    bad = tmp_path / "apc.toml"
    bad.write_text('device = "APC"\n[[bind]]\ncc = 300\naddress = "/vj/intensity"\n')
    proc = subprocess.run([python_exe, "-m", "vjengine.cli", "demo", "--headless", "--duration", "1", "--no-osc",
                           "--midi-map", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bad}: bind[0].cc: must be in [0, 127], got 300" in proc.stderr


def test_a_killed_jack_server_leaves_nothing_in_dev_shm():
    """A jackd SIGKILLed under a test leaves its socket, semaphores and ~100 MB segments in /dev/shm;
    the fixture removes them, and the next server starts under a fresh name."""
    import os
    import re
    import signal
    import subprocess

    from _jackd import SHM

    with jack_server() as name:
        pid = int(subprocess.run(["pgrep", "-f", f"jackd .*-n {name} "], capture_output=True, text=True,
                                 timeout=10).stdout.split()[0])
        with open(f"/proc/{pid}/maps") as f:
            segments = {line.split()[-1] for line in f if re.search(r"/dev/shm/jack-\d+-\d+$", line.strip())}
        own = [n for n in os.listdir(SHM) if name in n]
        assert segments and own, (segments, own)
        os.kill(pid, signal.SIGKILL)  # the fixture's Popen reaps it
        assert all(os.path.exists(p) for p in segments)  # a killed jackd leaves them behind
    left = [n for n in os.listdir(SHM) if name in n] + [p for p in segments if os.path.exists(p)]
    assert left == [], left
    with open(os.path.join(SHM, "jack-shm-registry"), "rb") as f:
        assert name.encode() not in f.read()  # its registry slot is free again (there are only 8)
    with jack_server() as again:
        assert again != name


@pytest.mark.parametrize("args, named", [
    (["--link", "follow", "--link-quantum", "40"], "--link-quantum 40.0: must be 1..16 beats"),
    (["--clock", "link"], "--clock link: needs --link follow"),
    (["--clock", "midi"], "--clock midi: needs --midi-clock-in DEVICE"),
    (["--midi-clock-out", "no-such-synth", "--midi-api", "jack"], "--midi-clock-out 'no-such-synth': no MIDI output"),
])
def test_vj_live_with_bad_sync_options_exits_2_naming_them(jack, tmp_path, python_exe, args, named):
    """Each bad tempo/MIDI option: one line naming it, exit 2, before any frame (a JACK server is up, so
    the MIDI output really is looked for and not found). Silent (--no-play): with a JACK server up,
    PortAudio would play through JACK, which --midi-api jack refuses (see the test below)."""
    import subprocess

    if "--link" in args:
        pytest.importorskip("link", reason="the link extra is not installed")
    proc = subprocess.run([python_exe, "-m", "vjengine.cli", "demo", "--headless", "--duration", "1", "--no-osc",
                           "--no-play", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr, proc.stderr[-2000:]
    assert "show:" not in proc.stderr  # stopped before the show started
