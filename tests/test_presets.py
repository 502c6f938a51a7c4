"""Preset files: the shipped set, validation errors that name file and key, hot reload."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from _show_helpers import DEMO_AXES, frame
from vjengine.errors import ConfigError
from vjengine.mapping import Mapper, PresetLibrary, load_preset, resolve_preset_ref, shipped_preset_paths
from vjengine.effects import PRESET_FX_FIELDS
from vjengine.show.state import BankEntry, ShowState


def test_at_least_five_shipped_presets_all_valid_and_distinct():
    paths = shipped_preset_paths()
    assert len(paths) >= 5
    presets = [load_preset(p) for p in paths]
    assert len({p.name for p in presets}) == len(presets)
    assert len({p.key for p in presets}) == len(presets)
    modes = {layer.mode for p in presets for layer in p.layers}
    assert {"orbit", "kick_morph", "softmax", "beat_step", "lfo", "direct", "manual"} <= modes
    for p in presets:
        m = Mapper(p, DEMO_AXES)
        assert not m.manual_slots.all() or p.name == "manual", p.name  # drives the demo bank's axes


def test_resolve_preset_ref_by_stem_short_name_and_path(tmp_path):
    first = shipped_preset_paths()[0]
    assert resolve_preset_ref(first.stem) == first
    assert resolve_preset_ref(first.stem.split("-", 1)[1]) == first
    assert resolve_preset_ref(load_preset(first).name) == first
    with pytest.raises(ConfigError, match="no-such"):
        resolve_preset_ref("no-such")
    with pytest.raises(ConfigError, match="missing.toml"):
        resolve_preset_ref(str(tmp_path / "missing.toml"))


BAD = [
    ('name="x"\ncolour = 1\n', "colour", "unknown key"),
    ('name="x"\n[[layer]]\nmode="orbit"\naxes=[0,1]\nspeed=1\n', "layer[0].speed", "unknown key"),
    ('name="x"\n[[layer]]\nmode="warp"\naxes=[0]\n', "layer[0].mode", "must be one of"),
    ('name="x"\n[[layer]]\naxes=[0]\n', "layer[0].mode", "is required"),
    ('name="x"\n[[layer]]\nmode="direct"\naxes=[0]\nfeature="loudness"\n', "layer[0].feature", "unknown feature"),
    ('name="x"\n[[layer]]\nmode="direct"\naxes=[0]\ncurve=0\n', "layer[0].curve", "must be in"),
    ('name="x"\n[[layer]]\nmode="direct"\naxes=[0]\nattack_ms="fast"\n', "layer[0].attack_ms", "must be a number"),
    ('name="x"\n[[layer]]\nmode="direct"\n', "layer[0].axes", "is required"),
    ('name="x"\n[[layer]]\nmode="direct"\naxes=[7]\n', "layer[0].axes", "0..3"),
    ('name="x"\n[[layer]]\nmode="direct"\naxes=[0]\n[[layer]]\nmode="lfo"\naxes=[0]\n', "layer[1].axes", "already driven"),
    ('name="x"\n[[layer]]\nmode="orbit"\naxes=[0,1]\nshape="path"\npath=[[0.1,0.2],[0.3]]\n', "layer[0].path[1]", "2 values"),
    ('name="x"\n[[layer]]\nmode="orbit"\naxes=[0,1]\nshape="path"\npath=[[0.1,0.2],[0.3,1.5]]\n', "layer[0].path[1][1]", "must be in"),
    ('name="x"\n[[layer]]\nmode="softmax"\naxes=[0]\n', "layer[0].anchors", "is required"),
    ('name="x"\n[[layer]]\nmode="kick_morph"\naxes=[0]\ntrigger="snare"\n', "layer[0].trigger", "must be one of"),
    ('name="x"\n[[layer]]\nmode="beat_step"\naxes=[0]\nevery="minute"\n', "layer[0].every", "must be one of"),
    ('name="x"\n[fx]\nsparkle = 1\n', "fx.sparkle", "unknown effect parameter"),
    ('name="x"\n[fx]\nflash = { mode = "orbit" }\n', "fx.flash.mode", "must be one of"),
    ('name="x"\n[fx]\nzoom = { mode = "direct", feature = "rms", wobble = 2 }\n', "fx.zoom.wobble", "unknown key"),
    ('name="x"\n[fx]\nfeedback = 1e300\n', "fx.feedback", "must be in [0, 0.99]"),
    ('name="x"\n[fx]\nfeedback = -5\n', "fx.feedback", "must be in [0, 0.99]"),
    ('name="x"\n[fx]\nkaleidoscope = 9223372036854775807\n', "fx.kaleidoscope", "must be in [0, 32]"),
    ('name="x"\n[fx]\nkaleidoscope = 2.5\n', "fx.kaleidoscope", "whole number"),
    ('name="x"\n[fx]\nmirror = 4\n', "fx.mirror", "must be in [0, 3]"),
    ('name="x"\n[fx]\nflash = nan\n', "fx.flash", "must be finite"),
    ('name="x"\n[fx]\nzoom = inf\n', "fx.zoom", "must be finite"),
    ('name="x"\n[fx]\nstrobe_hz = -1\n', "fx.strobe_hz", "must be in"),
    ('name="x"\n[fx]\nzoom = { mode = "direct", feature = "rms", out_max = 40 }\n', "fx.zoom.out_min", "must be in [1, 16]"),
    ('name="x"\n[fx]\nflash = { mode = "direct", feature = "rms", out_max = 3 }\n', "fx.flash.out_max", "must be in [0, 1]"),
    ('name="x"\n[fx]\nfeedback = { mode = "lfo", center = 0.5, depth = 2 }\n', "fx.feedback", "center +- depth"),
    ('name = 3\n', "name", "non-empty string"),
    ('name="x"\nglide_ms = -1\n', "glide_ms", "ms in"),
    ('name="x"\n[[layer\n', "", "not valid TOML"),
]


@pytest.mark.parametrize("text,key,words", BAD, ids=[b[1] or "syntax" for b in BAD])
def test_validation_errors_name_file_and_key(tmp_path, text, key, words):
    path = tmp_path / "bad-preset.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_preset(path)
    msg = str(err.value)
    assert str(path) in msg
    assert key in msg
    assert words in msg


def test_fx_params_are_the_renderers_effects():
    from vjengine.effects import Effects

    assert set(PRESET_FX_FIELDS) <= set(Effects.__dataclass_fields__)
    assert {"flash", "zoom", "hue_deg", "feedback", "strobe_hz", "intensity"} <= set(PRESET_FX_FIELDS)
    assert "strobe_max_hz" not in PRESET_FX_FIELDS  # the photosensitivity cap is not a preset's business


def test_fx_ranges_are_what_the_renderer_keeps():
    """Every in-range preset value reaches the screen unclamped; just outside, the renderer would clamp."""
    from vjengine.effects import FX_RANGES, Effects

    assert set(FX_RANGES) == set(PRESET_FX_FIELDS)
    for param, (lo, hi, integer) in FX_RANGES.items():
        for value in (lo, hi):
            kept = getattr(Effects(**{param: value}).sanitized(), param)
            if param.endswith("_deg"):
                continue  # angles wrap
            assert kept == value, (param, value, kept)
        assert getattr(Effects(**{param: hi + 1}).sanitized(), param) != hi + 1 or param.endswith("_deg")


def _touch_later(path: Path, text: str) -> None:
    # make sure the mtime differs even on coarse filesystems
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


GOOD = 'name = "live"\n[[layer]]\nmode = "direct"\naxes = [0]\nfeature = "rms"\nattack_ms = 0\nrelease_ms = 0\n'


def test_hot_reload_good_bad_and_fixed(tmp_path):
    path = tmp_path / "live.toml"
    path.write_text(GOOD)
    lib = PresetLibrary.from_paths([path])
    show = ShowState([BankEntry("demo", tuple(DEMO_AXES))], lib)
    assert show.update(frame(level=0.7), 0.01).coord[0] == pytest.approx(0.7)
    assert lib.poll() == []

    _touch_later(path, GOOD.replace('feature = "rms"', 'feature = "bass"'))
    assert lib.poll() == [0]
    show.presets_changed()
    assert show.update(frame(level=0.7, bands={"bass": 0.2}), 0.01).coord[0] == pytest.approx(0.2)

    # a bad edit: the last good preset stays, the error is reported for the HUD
    _touch_later(path, GOOD.replace('feature = "rms"', 'feature = "bas"'))
    assert lib.poll() == []
    assert lib[0].layers[0].feature == "bass"
    assert any("live.toml" in e and "layer[0].feature" in e for e in lib.errors)
    assert any("PRESET ERROR" in line for line in show.hud_lines())
    assert show.update(frame(level=0.7, bands={"bass": 0.3}), 0.01).coord[0] == pytest.approx(0.3)

    # fixed: reloads and the error clears
    _touch_later(path, GOOD.replace('feature = "rms"', 'feature = "high"'))
    assert lib.poll() == [0]
    assert lib.errors == []
    show.presets_changed()
    assert show.update(frame(bands={"high": 0.9}), 0.01).coord[0] == pytest.approx(0.9)

    # deleted file: keeps the last good one too
    path.unlink()
    time.sleep(0.01)
    assert lib.poll() == []
    assert lib[0].name == "live"
    assert lib.errors


def test_a_watched_folder_adds_new_presets_once_they_validate(tmp_path):
    (tmp_path / "b-second.toml").write_text(GOOD.replace('"live"', '"second"'))
    (tmp_path / "a-first.toml").write_text(GOOD.replace('"live"', '"first"'))
    (tmp_path / "notes.txt").write_text("not a preset")
    lib = PresetLibrary.from_paths(shipped_preset_paths())
    n = len(lib)
    assert lib.watch_dir(tmp_path) == [n, n + 1]
    assert [lib[n].name, lib[n + 1].name] == ["first", "second"]  # sorted by file name
    assert lib.poll() == []

    bad = tmp_path / "c-third.toml"
    bad.write_text(GOOD.replace('"live"', '"third"').replace('feature = "rms"', 'feature = "rmss"'))
    assert lib.poll() == [] and len(lib) == n + 2
    assert any("c-third.toml" in e and "layer[0].feature" in e for e in lib.errors)
    generation = lib.generation
    assert lib.poll() == [] and lib.generation == generation  # the same bad file is not re-read

    _touch_later(bad, GOOD.replace('"live"', '"third"'))
    assert lib.poll() == [n + 2]
    assert lib[n + 2].name == "third" and lib.find("c-third") == n + 2
    assert lib.errors == []
    assert lib.poll() == []


def test_a_missing_preset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="nowhere: preset folder not found"):
        PresetLibrary().watch_dir(tmp_path / "nowhere")


def test_keys_select_presets_in_file_order():
    lib = PresetLibrary.from_paths(shipped_preset_paths())
    assert lib.find(0) == 0
    assert lib.find("1") == 1  # an index given as text (OSC strings)
    assert lib.find(lib[2].name) == 2
    assert lib.find(lib[3].key) == 3
    assert lib.find("techno-kick-morph") == lib.find("2-techno-kick-morph") == lib.find("Techno Kick Morph") == 1
    assert lib.find("nope") is None
    assert lib.find(99) is None


def _poll_in_a_thread(lib) -> list[int]:
    """poll() in a thread with a deadline: a blocking read fails the test instead of hanging it."""
    import threading

    out: list = []
    t = threading.Thread(target=lambda: out.append(lib.poll()), daemon=True)
    t.start()
    t.join(timeout=20.0)
    assert not t.is_alive(), "poll() blocked"
    return out[0]


def test_a_fifo_in_a_watched_folder_never_blocks(tmp_path):
    from vjengine.mapping import PresetLibrary

    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "a.toml").write_text(GOOD)
    lib = PresetLibrary()
    lib.watch_dir(folder)
    os.mkfifo(folder / "stuck.toml")  # nobody ever writes to it: opening it for reading would block
    (folder / "broken.toml").write_text('name = "b"\n[fx]\nfeedback = 1e300\n')
    (folder / "c.toml").write_text(GOOD.replace('"live"', '"late"'))
    assert _poll_in_a_thread(lib) == [1]
    assert [p.name for p in lib.presets] == ["live", "late"]
    errors = " ".join(lib.errors)
    assert "stuck.toml: not a regular file" in errors and "broken.toml: fx.feedback" in errors
    assert lib.text(1) == GOOD.replace('"live"', '"late"')  # the text read, for the set log
    with pytest.raises(ConfigError, match="not a regular file"):
        load_preset(folder / "stuck.toml")  # also at start-up (--preset, watch_dir)


def test_watching_reads_files_off_the_polling_thread(tmp_path, monkeypatch):
    import threading

    import vjengine.mapping.preset as preset_module

    from _osc_helpers import wait_until
    from vjengine.mapping import PresetLibrary

    folder = tmp_path / "presets"
    folder.mkdir()
    path = folder / "a.toml"
    path.write_text(GOOD)
    lib = PresetLibrary()
    lib.watch_dir(folder)
    readers: set[str] = set()
    real = preset_module.read_text_file

    def spy(path):  # records which thread reads preset files
        readers.add(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(preset_module, "read_text_file", spy)
    lib.start_watching(interval_s=0.02)
    try:
        os.mkfifo(folder / "stuck.toml")
        _touch_later(path, GOOD.replace('feature = "rms"', 'feature = "high"'))
        (folder / "b.toml").write_text(GOOD.replace('"live"', '"second"'))
        changed: list[int] = []

        def both_in() -> bool:
            changed.extend(lib.poll())
            return (set(changed) >= {0, 1} and len(lib) > 1 and bool(lib[0].layers)
                    and lib[0].layers[0].feature == "high" and lib[1].name == "second")

        assert wait_until(both_in)
        assert readers == {"vj-presets"}  # never the caller's thread
        # a later edit of the file added by the watcher is picked up too (its index is known)
        _touch_later(folder / "b.toml", GOOD.replace('"live"', '"renamed"'))
        changed.clear()

        def renamed() -> bool:
            changed.extend(lib.poll())
            return 1 in changed and lib[1].name == "renamed"

        assert wait_until(renamed)
    finally:
        lib.stop_watching()


def test_a_file_caught_mid_save_is_read_only_once_it_holds_still(tmp_path, monkeypatch):
    """An editor that saves by truncating then writing: the watcher's scan sees the empty file, the
    text lands after that scan. The empty file must never be read (it would play as an empty preset)."""
    import vjengine.mapping.preset as preset_module
    from _osc_helpers import wait_until
    from vjengine.mapping import PresetLibrary

    path = tmp_path / "a.toml"
    path.write_text(GOOD)
    lib = PresetLibrary()
    lib.watch_dir(tmp_path)
    texts_read: list[str] = []
    real_read, real_stat = preset_module.read_text_file, preset_module._stat
    save = {"state": "idle"}

    def reading(p):
        texts_read.append(real_read(p))
        return texts_read[-1]

    def stat(p):
        if save["state"] == "write":  # the next scan: the editor has written the text by now
            _touch_later(path, GOOD.replace('"live"', '"saved"'))
            save["state"] = "done"
        st = real_stat(p)
        if save["state"] == "truncated" and st[1] == 0:  # this scan saw it empty; the text lands after
            save["state"] = "write"
        return st

    monkeypatch.setattr(preset_module, "read_text_file", reading)
    monkeypatch.setattr(preset_module, "_stat", stat)
    _touch_later(path, "")  # the truncate: a scan sees the file empty
    save["state"] = "truncated"
    lib.start_watching(interval_s=0.01)
    try:
        assert wait_until(lambda: 0 in lib.poll() and lib[0].name == "saved")
        assert "" not in texts_read and lib.errors == []
    finally:
        lib.stop_watching()


def test_a_stalled_scan_is_reported_once(tmp_path, caplog, monkeypatch):
    import threading

    import vjengine.mapping.preset as preset_module
    from _osc_helpers import wait_until
    from vjengine.mapping import PresetLibrary

    path = tmp_path / "a.toml"
    path.write_text(GOOD)
    reading, release = threading.Event(), threading.Event()
    real = preset_module.read_text_file

    def hung_share(p):  # the watcher's read hangs, as on a network share that stopped answering
        reading.set()
        release.wait(30.0)
        return real(p)

    now = [1000.0]  # an injected clock: the test decides how long the read has hung
    lib = PresetLibrary()
    lib.watch_dir(tmp_path)
    monkeypatch.setattr(preset_module, "read_text_file", hung_share)
    lib.start_watching(interval_s=0.01, clock=lambda: now[0])
    try:
        _touch_later(path, GOOD.replace('feature = "rms"', 'feature = "high"'))
        assert reading.wait(60.0)
        with caplog.at_level("ERROR"):
            assert lib.poll() == []  # hung for no time yet: nothing to say
            now[0] += 10.0
            assert lib.poll() == [] and lib.poll() == []
        assert sum("have not answered" in r.getMessage() for r in caplog.records) == 1
        release.set()
        assert wait_until(lambda: 0 in lib.poll()) and lib[0].layers[0].feature == "high"
    finally:
        release.set()
        lib.stop_watching()
