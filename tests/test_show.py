"""Show state: every command kind, bank crossfades on a bar, cue sheets, setlists, the set log format."""

from __future__ import annotations

import json
import re

import pytest

from _show_helpers import DEMO_AXES, BeatClock, frame
from vjengine.control.commands import KINDS, Command
from vjengine.errors import ConfigError
from vjengine.mapping import AxisInfo, PresetLibrary, preset_from_text, shipped_preset_paths
from vjengine.show.cues import CueRunner, load_cues, parse_cue_csv
from vjengine.effects import FX_CONTROLS, make_effects, osc_fx_names
from vjengine.show.record import Recorder, SetLog, frame_from_dict, frame_to_dict
from vjengine.show.setlist import load_setlist
from vjengine.show.state import BankEntry, ShowState

DIRECT = preset_from_text('name="direct"\n[[layer]]\nmode="direct"\naxes=[1]\nattack_ms=0\nrelease_ms=0\n'
                          '[fx]\nflash = { mode = "direct", feature = "beat", attack_ms = 0, release_ms = 0 }\n')
MANUAL = preset_from_text('name="manual"\nglide_ms=0\n[[layer]]\nmode="manual"\naxes=[0,1,2]\nvalue=0.25\n')


class AudioControls:
    """Stands in for the AudioEngine's control methods (tap/set_bpm/resync) and records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def tap(self):
        self.calls.append(("tap",))

    def set_bpm(self, bpm):
        self.calls.append(("bpm", bpm))

    def resync(self):
        self.calls.append(("resync",))


def show(presets=(DIRECT, MANUAL), banks=None, **kw) -> ShowState:
    banks = banks or [BankEntry("a", tuple(DEMO_AXES)), BankEntry("b", (AxisInfo("seed", 4), AxisInfo("style", 3)))]
    return ShowState(banks, PresetLibrary(list(presets)), **kw)


def cmd(kind, target="", value=None):
    return Command(kind, target, value, source="test")


def test_axis_override_release_and_nudge():
    s = show()
    s.apply(cmd("axis", "warp", 0.1))
    s.apply(cmd("axis", "0", 1.25))  # palette is cyclic: wraps
    coords = [s.update(frame(level=0.9), 0.05).coord for _ in range(40)]
    assert coords[-1][1] == pytest.approx(0.1, abs=1e-3)
    assert coords[-1][0] == pytest.approx(0.25, abs=1e-3)
    s.apply(cmd("axis_release", "warp"))
    assert [s.update(frame(level=0.9), 0.05) for _ in range(40)][-1].coord[1] == pytest.approx(0.9, abs=1e-3)
    s.apply(cmd("axis_nudge", "warp", -0.2))  # a mapped axis: shifts it
    assert s.update(frame(level=0.9), 0.05).coord[1] == pytest.approx(0.7, abs=1e-3)
    s.apply(cmd("axis", "nope", 0.5))  # unknown axis: ignored, no raise
    s.apply(cmd("axis", "warp", float("nan")))
    assert s.update(frame(level=0.9), 0.05).coord[1] == pytest.approx(0.7, abs=1e-3)


def test_manual_preset_nudges_the_manual_value():
    s = show(presets=(MANUAL,))
    assert s.update(frame(), 0.01).coord == pytest.approx((0.25, 0.25, 0.25))
    s.apply(cmd("axis_nudge", "detail", 0.5))
    s.apply(cmd("axis_nudge", "detail", 0.5))  # clamps at the end of a non-cyclic axis
    s.apply(cmd("axis_nudge", "palette", -0.5))  # wraps on the cyclic one
    assert s.update(frame(), 0.01).coord == pytest.approx((0.75, 0.25, 1.0))


def test_preset_by_name_index_and_glide():
    s = show()
    s.update(frame(level=1.0), 0.01)
    s.apply(cmd("preset", value="manual"))
    assert s.preset_index == 1
    c1 = s.update(frame(level=1.0), 0.01).coord[1]
    assert 0.25 < c1 < 1.0  # glides from 1.0 toward the manual 0.25
    s.apply(cmd("preset", value=0))
    assert s.preset_index == 0
    s.apply(cmd("preset", value="missing"))
    s.apply(cmd("preset", value=17))
    assert s.preset_index == 0


def test_fx_intensity_blackout_and_status():
    s = show()
    s.apply(cmd("fx", "feedback.amount", 0.5))
    s.apply(cmd("fx", "zoom", 1.5))  # a raw Effects field, in its units
    s.apply(cmd("intensity", value=0.5))
    st = s.update(frame(beat=True), 0.01)
    fx = make_effects(st.fx, intensity=st.intensity, blackout=st.blackout)
    assert fx.feedback == pytest.approx(0.495)
    assert fx.zoom == pytest.approx(1.5)
    assert fx.flash == pytest.approx(1.0)
    assert fx.intensity == pytest.approx(0.5)
    # /vj/intensity is the output level (a master dimmer): the audio reaction itself is unchanged
    full = show()
    full.apply(cmd("fx", "feedback.amount", 0.5))
    full.apply(cmd("fx", "zoom", 1.5))
    st_full = full.update(frame(beat=True), 0.01)
    assert st_full.coord == st.coord and dict(st_full.fx) == dict(st.fx) and st_full.intensity == 1.0
    s.apply(cmd("blackout", value=True))
    assert s.update(frame(), 0.01).blackout
    s.apply(cmd("blackout"))  # no value: toggle
    assert not s.update(frame(), 0.01).blackout
    s.apply(cmd("status", value=("127.0.0.1", 9000)))
    assert s.status_replies == [("127.0.0.1", 9000)]
    status = s.publish_status(frame())
    assert status["preset"] == "direct" and status["bank"] == "a"
    assert set(status["coord"]) == {"palette", "warp", "detail"}
    for k in ("fullscreen", "hud", "quit"):
        s.apply(cmd(k))
    assert s.requests == ["fullscreen", "hud", "quit"]


def test_tap_bpm_resync_go_to_the_audio_engine():
    audio = AudioControls()
    s = show(audio=audio)
    s.apply(cmd("tap"))
    s.apply(cmd("bpm", value=128.0))
    s.apply(cmd("resync"))
    assert audio.calls == [("tap",), ("bpm", 128.0), ("resync",)]


def _snapshot(s: ShowState) -> tuple:
    c = s.controls
    return (c.manual.tolist(), c.override.tolist(), c.offset.tolist(), s.preset_index, s.pending_bank,
            dict(s.fx_overrides), s.intensity, s.blackout, s.crossfade_s, list(s.status_replies), list(s.requests),
            list(s.audio.calls))


# kind -> (target, value, what it must change: a check on the state after it)
COMMAND_EFFECTS = {
    "axis": ("warp", 0.3, lambda s: s.controls.override[1] and s.controls.manual[1] == pytest.approx(0.3)),
    "axis_release": ("warp", None, lambda s: not s.controls.override[1]),
    "axis_nudge": ("detail", 0.1, lambda s: s.controls.offset[2] == pytest.approx(0.1)
                   or s.controls.manual[2] == pytest.approx(0.6)),
    "preset": ("", 1, lambda s: s.preset_index == 1),
    "bank": ("", "b", lambda s: s.pending_bank == 1),
    "fx": ("zoom.amount", 0.5, lambda s: s.fx_overrides == {"zoom": pytest.approx(1.5)}),
    "intensity": ("", 0.25, lambda s: s.intensity == pytest.approx(0.25)),
    "blackout": ("", True, lambda s: s.blackout),
    "tap": ("", None, lambda s: s.audio.calls == [("tap",)]),
    "bpm": ("", 128.0, lambda s: s.audio.calls == [("bpm", 128.0)]),
    "resync": ("", None, lambda s: s.audio.calls == [("resync",)]),
    "crossfade": ("", 3.0, lambda s: s.crossfade_s == pytest.approx(3.0)),
    "status": ("", ("127.0.0.1", 9001), lambda s: s.status_replies == [("127.0.0.1", 9001)]),
    "fullscreen": ("", None, lambda s: s.requests == ["fullscreen"]),
    "hud": ("", None, lambda s: s.requests == ["hud"]),
    "quit": ("", None, lambda s: s.requests == ["quit"]),
    # kinds other parts own reach the handler they registered (vjengine.sync.live in a show)
    "clock_source": ("", "link", lambda s: s.audio.calls == [("clock_source", "link")]),
    "midi_learn": ("", "/vj/tap", lambda s: s.audio.calls == [("midi_learn", "/vj/tap")]),
}


def _show_with_handlers() -> ShowState:
    s = show(audio=AudioControls())
    for kind in ("clock_source", "midi_learn"):
        s.handlers[kind] = lambda c, s=s: s.audio.calls.append((c.kind, c.value))
    return s


def test_every_command_kind_has_its_effect_on_the_state():
    assert set(COMMAND_EFFECTS) == set(KINDS), "a command kind without a checked effect"
    for kind, (target, value, changed) in COMMAND_EFFECTS.items():
        s = _show_with_handlers()
        if kind == "axis_release":
            s.apply(cmd("axis", "warp", 0.3))
        before = _snapshot(s)
        s.apply(cmd(kind, target, value))
        assert changed(s), kind
        assert _snapshot(s) != before or kind == "axis_release", kind
        s.update(frame(), 0.01)  # and the frame after it is made without raising


@pytest.mark.parametrize("kind", sorted({"axis", "axis_nudge", "fx", "intensity", "crossfade", "bpm"}))
def test_a_bad_value_changes_nothing_and_does_not_raise(kind):
    s = show(audio=AudioControls())
    target = COMMAND_EFFECTS[kind][0]
    for value in ("x", float("inf"), float("nan"), {"weird": 1}):
        before = _snapshot(s)
        s.apply(cmd(kind, target, value))
        assert _snapshot(s) == before, (kind, value)
    s.update(frame(), 0.01)


def test_bank_crossfade_lands_on_the_bar():
    s = show(crossfade_s=1.0, quantize="bar")
    clock = BeatClock(bpm=120.0, fps=50.0)  # 2 beats/s: a bar every 2 s = 100 frames
    for _ in range(30):
        s.update(clock.next(), clock.dt_s)
    s.apply(cmd("bank", value="b"))
    assert s.pending_bank == 1
    switched_at = None
    mixes = []
    for _ in range(200):
        f = clock.next()
        st = s.update(f, clock.dt_s)
        if switched_at is None and st.bank == 1:
            switched_at = (f.beat_count, f.beat_phase, f.bar)
        if st.from_bank is not None:
            mixes.append(st.mix)
            assert len(st.from_coord) == 3 and len(st.coord) == 2
    assert switched_at is not None
    beat_count, phase, bar = switched_at
    assert bar and beat_count % 4 == 0 and phase < 0.05  # on the downbeat
    assert mixes == sorted(mixes) and 0 < mixes[0] < 0.05 and mixes[-1] > 0.95
    assert len(mixes) == pytest.approx(50, abs=1)  # 1 s at 50 fps
    assert s.update(clock.next(), clock.dt_s).from_bank is None


def test_bank_switch_on_beat_and_immediately():
    s = show(crossfade_s=0.5, quantize="beat")
    clock = BeatClock(bpm=120.0, fps=50.0)
    for _ in range(10):
        s.update(clock.next(), clock.dt_s)
    s.apply(cmd("bank", value=1))
    while s.bank_index == 0:
        f = clock.next()
        s.update(f, clock.dt_s)
    assert f.beat and f.beat_phase < 0.05
    s2 = show(quantize="none")
    s2.apply(cmd("bank", value="b"))
    assert s2.bank_index == 1


def test_cue_sheet_toml_fires_at_time_and_bar(tmp_path):
    path = tmp_path / "cues.toml"
    path.write_text(
        '[[cue]]\nat = "0:01.5"\npreset = "manual"\naxes = { warp = 0.9 }\nlabel = "verse"\n'
        '[[cue]]\nbar = 3\nbank = "b"\ncrossfade = 0.0\n'
        '[[cue]]\nat = 2\nfx = { "flash.amount" = 0.5 }\nblackout = true\nintensity = 0.3\n'
    )
    cues = load_cues(path)
    runner = CueRunner(cues)
    s = show(quantize="none")
    clock = BeatClock(bpm=120.0, fps=10.0)
    fired = []
    for i in range(60):
        f = clock.next()
        t = i / 10.0
        for c in runner.due(t, f):
            fired.append((t, c.kind))
            s.apply(c, f)
        s.update(f, clock.dt_s)
    kinds_at = {k: t for t, k in fired}
    assert kinds_at["preset"] == pytest.approx(1.5)
    assert kinds_at["axis"] == pytest.approx(1.5)
    assert kinds_at["fx"] == pytest.approx(2.0)
    assert kinds_at["bank"] == pytest.approx(4.0)  # bar 3 starts after 2 bars = 8 beats = 4 s
    assert s.bank_index == 1 and s.blackout and s.intensity == pytest.approx(0.3)
    assert runner.remaining == 0


def test_cue_sheet_csv(tmp_path):
    path = tmp_path / "cues.csv"
    path.write_text("at,kind,target,value\n# comment\n0.5,preset,,manual\n1:00,axis,warp,0.25\nbar 2,blackout,,on\n")
    cues = load_cues(path)
    assert [(c.at_s, c.bar, c.commands[0].kind) for c in cues] == [
        (0.5, None, "preset"), (60.0, None, "axis"), (None, 2, "blackout")]
    assert cues[2].commands[0].value is True


@pytest.mark.parametrize("text,key", [
    ('[[cue]]\npreset = "x"\n', "cue[0]"),
    ('[[cue]]\nat = 1\nbar = 2\npreset = "x"\n', "cue[0]"),
    ('[[cue]]\nat = "soon"\npreset = "x"\n', "cue[0].at"),
    ('[[cue]]\nat = 1\nbank = "x"\nfade = 2\n', "cue[0].fade"),
    ('[[cue]]\nat = 1\naxes = { warp = 2.0 }\n', "cue[0].axes.warp"),
    ('[[cue]]\nat = 1\n', "does nothing"),
    ('[[cue]]\nbar = 0\npreset = "x"\n', "cue[0].bar"),
])
def test_cue_sheet_errors_name_file_and_key(tmp_path, text, key):
    path = tmp_path / "sheet.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_cues(path)
    assert "sheet.toml" in str(err.value) and key in str(err.value)


def test_cue_csv_errors():
    with pytest.raises(ConfigError, match="line 2.kind"):
        parse_cue_csv("at,kind,target,value\n1,explode,,1\n", "s.csv")
    with pytest.raises(ConfigError, match="line 1"):
        parse_cue_csv("time,what\n", "s.csv")
    with pytest.raises(ConfigError, match="line 2.value"):
        parse_cue_csv("at,kind,target,value\n1,intensity,,lots\n", "s.csv")


def test_setlist(tmp_path):
    (tmp_path / "banks").mkdir()
    path = tmp_path / "set.toml"
    path.write_text('crossfade_s = 4\nquantize = "beat"\ncues = "c.toml"\n'
                    '[[bank]]\npath = "banks/one"\npreset = "ambient"\n[[bank]]\npath = "/abs/two"\nname = "second"\n')
    sl = load_setlist(path)
    assert [b.name for b in sl.banks] == ["one", "second"]
    assert sl.banks[0].path == tmp_path / "banks/one" and sl.banks[0].preset == "ambient"
    assert sl.crossfade_s == 4.0 and sl.quantize == "beat" and sl.cues == tmp_path / "c.toml"
    path.write_text('[[bank]]\npath = "a"\nspeed = 2\n')
    with pytest.raises(ConfigError, match=r"set.toml: bank\[0\].speed"):
        load_setlist(path)
    path.write_text('[[bank]]\npath = "a"\n[[bank]]\npath = "x/a"\n')
    with pytest.raises(ConfigError, match=r"bank\[1\].name"):
        load_setlist(path)
    path.write_text('quantize = "phrase"\n[[bank]]\npath = "a"\n')
    with pytest.raises(ConfigError, match="quantize"):
        load_setlist(path)


def test_fx_controls_cover_the_osc_names():
    assert len(osc_fx_names()) == len(FX_CONTROLS)
    assert all("/" in n for n in osc_fx_names())
    fx = make_effects({}, {"mirror.mode": 1.0, "kaleidoscope.segments": 0.25, "strobe.rate": 1.0})
    assert fx.mirror == 3 and fx.kaleidoscope == 8 and fx.strobe_hz == 30.0 and fx.strobe_max_hz == 3.0


def test_set_log_round_trip(tmp_path):
    path = tmp_path / "set.jsonl"
    rec = Recorder(path, {"banks": [{"name": "a"}]})
    frames = [frame(level=i / 10, beats=i * 0.1, kick=i % 3 == 0, chroma=tuple(float(i) for i in range(12)))
              for i in range(10)]
    for i, f in enumerate(frames):
        cmds = [cmd("axis", "warp", 0.1 * i), cmd("status", value=("127.0.0.1", 9))] if i == 4 else []
        rec.frame(1 / 60 + i * 1e-7, i / 60, f, cmds, reloads=[(0, "name='x'")] if i == 5 else None,
                  output={"bank": 0, "coord": [0.1, 0.2]})
    rec.close()
    log = SetLog(path)
    assert log.header["banks"] == [{"name": "a"}]
    assert log.count() == 10
    got = list(log.frames())
    assert [g.audio for g in got] == frames  # bit-identical AudioFrames
    assert [g.dt_s for g in got] == [1 / 60 + i * 1e-7 for i in range(10)]
    assert [(c.kind, c.target, c.value) for c in got[4].commands] == [("axis", "warp", 0.4), ("status", "", ["127.0.0.1", 9])]
    assert got[5].reloads == ((0, "name='x'"),)
    # deltas keep the file small: unchanged fields are not repeated
    lines = path.read_text().splitlines()
    assert "input_status" in lines[1] and "input_status" not in lines[2]
    assert frame_from_dict(json.loads(json.dumps(frame_to_dict(frames[3])))) == frames[3]


def test_set_log_rejects_other_files(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"format": "something"}\n')
    with pytest.raises(ConfigError, match="not a vjengine set log"):
        SetLog(p)
    p.write_text("garbage\n")
    with pytest.raises(ConfigError, match="line 1"):
        SetLog(p)


def test_shipped_presets_in_a_show_keys_one_to_nine():
    lib = PresetLibrary.from_paths(shipped_preset_paths())
    s = ShowState([BankEntry("demo", tuple(DEMO_AXES))], lib)
    for i in range(min(9, len(lib))):
        s.apply(Command("preset", "", i, source="key"))
        assert s.preset_index == i
        st = s.update(frame(level=0.5, beats=i), 1 / 60)
        assert len(st.coord) == 3


@pytest.mark.parametrize("body,key", [
    ("at = 1\npreset = true\n", "cue[0].preset"),
    ("bar = 0\nbank = 'a'\n", "cue[0].bar"),
    ("at = 1\naxes = { warp = 2 }\n", "cue[0].axes.warp"),
    ("at = 1\ncrossfade = -1\n", "cue[0].crossfade"),
    ("at = 1\nspeed = 1\n", "cue[0].speed"),
])
def test_cue_sheet_errors_name_the_key(tmp_path, body, key):
    """Cue sheets go through the same validated reader as presets (config.build): the key is named."""
    from vjengine.show.cues import load_cues

    path = tmp_path / "sheet.toml"
    path.write_text("[[cue]]\n" + body)
    with pytest.raises(ConfigError, match=re.escape(f"sheet.toml: {key}")):
        load_cues(path)
