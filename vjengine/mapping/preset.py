"""Mapping presets: TOML files in ``presets/`` (or anywhere), validated at load, hot-reloaded.

A preset::

    name = "chill orbit"
    description = "slow drift; the level sets the speed"
    seed = 7                 # randomness of kick_morph / random beat_step (replayable)
    glide_ms = 80            # how fast manual/OSC axis values are followed
    switch_ms = 800          # crossfade of coordinates when this preset takes over

    [[layer]]                # one per group of axes; axes by index (0..3) or by bank axis name
    mode = "orbit"
    axes = [1, 2]
    shape = "circle"
    speed_hz = 0.08

    [fx]                     # effect parameters: a number, or a table with mode direct/lfo/const
    feedback = 0.3
    flash = { mode = "direct", feature = "beat", attack_ms = 0, release_ms = 180, out_max = 0.5 }

Unknown keys, unknown features, bad ranges and axes driven twice are :class:`ConfigError` naming
the file and the key. :class:`PresetLibrary` keeps the ordered list the keys 1-9 select, and
reloads a file when it changes on disk: a bad edit keeps the last good preset and reports the error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vjengine.bank.format import MAX_AXES
from vjengine.config import build, fail, join_key, parse_toml
from vjengine.effects import FX_RANGES, PRESET_FX_FIELDS
from vjengine.errors import ConfigError
from vjengine.mapping.modes import FX_MODE_SPECS, MODE_SPECS, RENAMED_KEYS

log = logging.getLogger(__name__)


def _check_fx_range(param: str, spec: Any, source: Any, key: str) -> None:
    """Refuse a preset [fx] value outside the parameter's range (instead of clamping it silently)."""
    rng = FX_RANGES.get(param)
    if rng is None:
        return
    lo, hi, integer = rng
    what = f"[{lo:g}, {hi:g}]" + (" (a whole number)" if integer else "")

    def check(value: float, k: str) -> None:
        if not lo <= value <= hi or (integer and value != int(value)):
            raise fail(source, k, f"must be in {what}, got {value!r}")

    mode = getattr(spec, "mode", "const")
    if mode == "const":
        check(spec.value, key)
    elif mode == "lfo":
        low = max(spec.center - abs(spec.depth), spec.out_min)
        high = min(spec.center + abs(spec.depth), spec.out_max)
        for value, k in ((low, "center"), (high, "depth")):
            if not lo <= value <= hi:
                raise fail(source, join_key(key, k), f"center +- depth (clipped to out_min..out_max) must stay "
                           f"in {what}, reaches {value!r}")
    else:
        check(spec.out_min, join_key(key, "out_min"))
        check(spec.out_max, join_key(key, "out_max"))


@dataclass(frozen=True)
class Preset:
    name: str
    layers: tuple[Any, ...] = ()
    fx: dict[str, Any] = field(default_factory=dict)  # param -> spec (const/direct/lfo)
    description: str = ""
    seed: int = 0
    glide_ms: float = 80.0
    switch_ms: float = 800.0
    path: Path | None = None

    @property
    def key(self) -> str:
        """The name used to select it: the file stem, or the name for presets built in code."""
        return self.path.stem if self.path else self.name


_TOP_KEYS = {"name", "description", "seed", "glide_ms", "switch_ms", "layer", "fx"}


def _mode_table(table: Any, specs: dict[str, type], source: Any, key: str) -> Any:
    if not isinstance(table, dict):
        raise fail(source, key, f"must be a table, got {table!r}")
    mode = table.get("mode")
    if mode is None:
        raise fail(source, join_key(key, "mode"), f"is required (one of {', '.join(specs)})")
    if mode not in specs:
        raise fail(source, join_key(key, "mode"), f"must be one of {', '.join(specs)}, got {mode!r}")
    renamed = {RENAMED_KEYS.get(k, k): v for k, v in table.items()}
    return build(specs[mode], renamed, source, key)


def parse_preset(data: dict[str, Any], source: str | Path, path: Path | None = None) -> Preset:
    """A :class:`Preset` from a parsed TOML document; every error names ``source`` and the key."""
    unknown = sorted(set(k.replace("-", "_") for k in data) - _TOP_KEYS)
    if unknown:
        raise fail(source, unknown[0], f"unknown key (known keys: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name", path.stem if path else None)
    if not isinstance(name, str) or not name.strip():
        raise fail(source, "name", "must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail(source, "description", "must be a string")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise fail(source, "seed", f"must be an integer, got {seed!r}")
    timings = {}
    for k, default in (("glide_ms", 80.0), ("switch_ms", 800.0)):
        v = data.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 60000:
            raise fail(source, k, f"must be a number of ms in [0, 60000], got {v!r}")
        timings[k] = float(v)

    raw_layers = data.get("layer", [])
    if not isinstance(raw_layers, list):
        raise fail(source, "layer", "must be an array of tables ([[layer]])")
    layers = []
    driven: dict[Any, int] = {}
    for i, table in enumerate(raw_layers):
        key = f"layer[{i}]"
        spec = _mode_table(table, MODE_SPECS, source, key)
        if not spec.axes:
            raise fail(source, join_key(key, "axes"), "is required: the axes this layer drives (indices or names)")
        if len(spec.axes) > MAX_AXES:
            raise fail(source, join_key(key, "axes"), f"at most {MAX_AXES} axes, got {len(spec.axes)}")
        for a in spec.axes:
            if isinstance(a, int) and not 0 <= a < MAX_AXES:
                raise fail(source, join_key(key, "axes"), f"axis index must be 0..{MAX_AXES - 1}, got {a}")
            if a in driven:
                raise fail(source, join_key(key, "axes"), f"axis {a!r} is already driven by layer[{driven[a]}]")
            driven[a] = i
        layers.append(spec)

    raw_fx = data.get("fx", {})
    if not isinstance(raw_fx, dict):
        raise fail(source, "fx", "must be a table")
    known_fx = PRESET_FX_FIELDS
    fx: dict[str, Any] = {}
    for param, value in raw_fx.items():
        key = f"fx.{param}"
        if param not in known_fx:
            raise fail(source, key, f"unknown effect parameter (known: {', '.join(known_fx)})")
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)):
            spec = build(FX_MODE_SPECS["const"], {"mode": "const", "value": value}, source, key)
        else:
            spec = _mode_table(value, FX_MODE_SPECS, source, key)
            if getattr(spec, "axes", ()):
                raise fail(source, join_key(key, "axes"), "effects have no axes")
        _check_fx_range(param, spec, source, key)
        fx[param] = spec
    return Preset(
        name=name.strip(), layers=tuple(layers), fx=fx, description=description, seed=seed, path=path, **timings
    )


def load_preset(path: str | Path) -> Preset:
    """Load and validate one preset file (a FIFO or device there is an error, never a hang)."""
    path = Path(path)
    return parse_preset(parse_toml(read_text_file(path), path), path, path)


def preset_from_text(text: str, source: str = "<preset>") -> Preset:
    return parse_preset(parse_toml(text, source), source)


@dataclass
class _Entry:
    path: Path | None
    preset: Preset
    mtime_ns: int = 0
    size: int = 0
    error: str | None = None


class PresetLibrary:
    """The ordered presets of a show (keys 1-9 pick the first nine), with hot reload.

    ``poll()`` (call it a few times a second from the render thread: it only stats files) reloads
    changed files, and appends ``*.toml`` files that appear in a watched folder (:meth:`watch_dir`).
    A file that stops validating keeps its last good version; the error is kept in ``errors`` for
    the HUD and logged once per change. A new file that does not validate is not added until it does.
    """

    def __init__(self, presets: list[Preset] | None = None) -> None:
        self._entries: list[_Entry] = []
        self._dirs: list[Path] = []
        self._refused: dict[Path, tuple[tuple[int, int], str]] = {}  # new files that did not validate
        self.generation = 0  # bumps when any preset changes
        self._watcher: _Watcher | None = None
        self._texts: dict[int, str] = {}
        for p in presets or []:
            self.add(p)

    def watch_dir(self, folder: str | Path) -> list[int]:
        """Add every ``*.toml`` in ``folder`` (sorted by name) and pick up new ones on ``poll()``.

        Raises :class:`ConfigError` naming the folder if it is not one, or naming the file if one
        of its presets does not validate. Returns the indices added.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"{folder}: preset folder not found")
        self._dirs.append(folder)
        return [self.add_file(path) for path in sorted(folder.glob("*.toml"))]

    def put(self, index: int, preset: Preset) -> None:
        """Replace preset ``index``, or append it when ``index`` is the next free one (replay)."""
        if index == len(self._entries):
            self.add(preset)
        else:
            self._entries[index].preset = preset
        self.generation += 1

    @classmethod
    def from_paths(cls, paths: list[Path]) -> "PresetLibrary":
        lib = cls()
        for p in paths:
            lib.add_file(p)
        return lib

    def add(self, preset: Preset) -> int:
        st = _stat(preset.path) if preset.path else (0, 0)
        self._entries.append(_Entry(preset.path, preset, *st))
        return len(self._entries) - 1

    def add_file(self, path: str | Path) -> int:
        path = Path(path)
        for i, e in enumerate(self._entries):
            if e.path is not None and e.path.resolve() == path.resolve():
                return i
        return self.add(load_preset(path))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Preset:
        return self._entries[index].preset

    @property
    def presets(self) -> list[Preset]:
        return [e.preset for e in self._entries]

    @property
    def errors(self) -> list[str]:
        return [e.error for e in self._entries if e.error] + [err for _, err in self._refused.values()]

    def find(self, ref: str | int) -> int | None:
        """Index of a preset by 0-based index (int or digits), file stem (with or without its ``N-``
        order prefix) or name, case-insensitive; None if there is none."""
        if isinstance(ref, bool):
            return None
        if isinstance(ref, (int, float)):
            i = int(ref)
            return i if 0 <= i < len(self._entries) else None
        ref_s = str(ref).strip().lower()
        for i, e in enumerate(self._entries):
            key = e.preset.key.lower()
            short = key.split("-", 1)[1] if "-" in key and key.split("-", 1)[0].isdigit() else key
            if ref_s in (key, short, e.preset.name.lower()):
                return i
        if ref_s.lstrip("-").isdigit():
            return self.find(int(ref_s))
        return None

    def poll(self) -> list[int]:
        """Apply files changed on disk; returns the indices whose preset changed.

        With :meth:`start_watching` the files are read on a watcher thread and this only applies what
        it found (no file I/O, never blocks: the render thread calls it). Without, it scans here.
        """
        watcher = self._watcher
        if watcher is not None:
            watcher.check_stalled()
            results = watcher.take()
            changed = self._apply(results)
            if results:
                watcher.refresh()  # the indices of what was just added
            return changed
        return self._apply(self._scan())

    def start_watching(self, interval_s: float = 0.5, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Read preset files on a background thread from now on (see :meth:`poll`); ``clock`` times
        a scan that hangs (a test injects its own). A changed file is read once two scans in a row
        find it the same, so a reload comes one to two intervals after the save, never mid-save."""
        if self._watcher is None:
            self._watcher = _Watcher(self._scan_state, self._scan, interval_s, clock)
            self._watcher.start()

    def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def forget_files(self) -> None:
        """Never read a file again (a replay: the recorded text is authoritative)."""
        self.stop_watching()
        for e in self._entries:
            e.path = None
        self._dirs.clear()

    def text(self, index: int) -> str:
        """The text of preset ``index`` as last read from its file ("" for presets built in code)."""
        return self._texts.get(index, "")

    def _scan_state(self) -> tuple[list[tuple[int, Path, tuple[int, int]]], list[Path], set[Path]]:
        entries = [(i, e.path, (e.mtime_ns, e.size)) for i, e in enumerate(self._entries) if e.path is not None]
        return entries, list(self._dirs), {p.resolve() for _, p, _ in entries}

    def _scan(self, state=None, seen: dict[Path, tuple[int, int]] | None = None,
              settling: dict[Path, tuple[int, int]] | None = None) -> list[tuple]:
        """The file I/O of a poll: stat, read and parse what changed. Returns results for _apply.

        With ``settling`` (the watcher's), a changed file is read only once a scan finds the size and
        mtime the scan before found: an editor that saves by truncating then writing (VS Code does)
        is never caught between the two, which would play an empty preset for one scan.
        """
        entries, dirs, known = state if state is not None else self._scan_state()
        seen = {} if seen is None else seen
        results: list[tuple] = []
        for i, path, st0 in entries:
            st = _stat(path)
            if st == seen.get(path, st0) or not _settled(path, st, settling):
                continue
            seen[path] = st
            try:
                text = read_text_file(path)
                results.append(("reload", i, st, parse_preset(parse_toml(text, path), path, path), text))
            except ConfigError as exc:
                results.append(("error", i, st, str(exc)))
            except Exception as exc:  # noqa: BLE001 - never let a reload take the show down
                results.append(("error", i, st, f"{path}: {exc}"))
        for folder in dirs:
            try:
                found = sorted(folder.glob("*.toml"))
            except OSError:
                continue
            for path in found:
                key = path.resolve()
                if key in known:
                    continue
                st = _stat(path)
                if seen.get(key) == st or not _settled(key, st, settling):
                    continue  # still the same bad file, or still being written
                seen[key] = st
                try:
                    text = read_text_file(path)
                    results.append(("new", key, st, parse_preset(parse_toml(text, path), path, path), text))
                    known.add(key)
                except ConfigError as exc:
                    results.append(("refused", key, st, str(exc)))
                except Exception as exc:  # noqa: BLE001
                    results.append(("refused", key, st, f"{path}: {exc}"))
        return results

    def _apply(self, results: list[tuple]) -> list[int]:
        changed = []
        for result in results:
            kind = result[0]
            if kind == "reload":
                _, i, st, preset, text = result
                e = self._entries[i]
                e.mtime_ns, e.size = st
                e.preset = preset
                self._texts[i] = text
                log.info("preset %s reloaded%s", e.path, "; error cleared" if e.error else "")
                e.error = None
                changed.append(i)
            elif kind == "error":
                _, i, st, msg = result
                e = self._entries[i]
                e.mtime_ns, e.size = st
                if msg != e.error:
                    log.error("preset not reloaded, keeping the last good one: %s", msg)
                e.error = msg
            elif kind == "new":
                _, key, st, preset, text = result
                if any(x.path is not None and x.path.resolve() == key for x in self._entries):
                    continue
                self._refused.pop(key, None)
                index = self.add(preset)
                self._entries[index].mtime_ns, self._entries[index].size = st
                self._texts[index] = text
                changed.append(index)
                log.info("preset %s added (%d presets now)", preset.path, len(self._entries))
            elif kind == "refused":
                _, key, st, msg = result
                if self._refused.get(key, (None, None))[1] != msg:
                    log.error("new preset not added: %s", msg)
                self._refused[key] = (st, msg)
        if changed:
            self.generation += 1
        return changed


class _Watcher:
    """Runs the library's scan every ``interval_s`` on its own thread; the render thread takes the
    results. A scan stuck in the file system (a hung network share) is reported once by ``poll``."""

    STALL_S = 5.0

    def __init__(self, scan_state: Callable[[], Any], scan: Callable[..., list[tuple]], interval_s: float,
                 clock: Callable[[], float]) -> None:
        import threading  # noqa: PLC0415

        self.scan_state = scan_state  # the library's: what to look at (render thread)
        self.scan = scan  # the library's: the file I/O (watcher thread)
        self.clock = clock
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._results: list[tuple] = []
        self._seen: dict[Path, tuple[int, int]] = {}
        self._settling: dict[Path, tuple[int, int]] = {}  # changed files, read once they hold still
        self._state: Any = None
        self._stop = threading.Event()
        self.scan_started: float | None = None
        self._stall_logged = False
        self._thread = threading.Thread(target=self._run, name="vj-presets", daemon=True)

    def start(self) -> None:
        self._state = self.scan_state()
        self._thread.start()

    def _run(self) -> None:
        from vjengine.priority import lower_this_thread  # noqa: PLC0415

        lower_this_thread()  # the render thread comes first
        while not self._stop.wait(self.interval_s):
            with self._lock:
                state = self._state
            entries, dirs, known = state
            self.scan_started = self.clock()
            try:
                results = self.scan((entries, dirs, set(known)), self._seen, self._settling)
            except Exception as exc:  # noqa: BLE001
                log.error("preset watcher: %s", exc)
                results = []
            self.scan_started = None
            for r in results:  # what this scan found is known from now on
                if r[0] == "new":
                    known.add(r[1])
            if results:
                with self._lock:
                    self._results.extend(results)

    def take(self) -> list[tuple]:
        """The results found since the last call (render thread; never blocks for long)."""
        with self._lock:
            results, self._results = self._results, []
        return results

    def refresh(self) -> None:
        with self._lock:
            self._state = self.scan_state()

    def check_stalled(self) -> None:
        started = self.scan_started
        if started is not None and self.clock() - started > self.STALL_S:
            if not self._stall_logged:
                self._stall_logged = True
                log.error("preset files have not answered for %.0f s (a hung network share?); the show goes on "
                          "with the presets it has", self.clock() - started)
        elif started is None:
            self._stall_logged = False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def read_text_file(path: Path, max_bytes: int = 1 << 20) -> str:
    """A regular file's text, opened so that a FIFO or device cannot block (O_NONBLOCK, then fstat):
    anything but a regular file, or one over ``max_bytes``, is a :class:`ConfigError` naming it."""
    import stat as stat_mod  # noqa: PLC0415

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file (a FIFO, socket or device?); ignored")
        if st.st_size > max_bytes:
            raise ConfigError(f"{path}: {st.st_size} bytes, more than a preset may have ({max_bytes})")
        data = os.read(fd, max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def _settled(path: Path, st: tuple[int, int], settling: dict[Path, tuple[int, int]] | None) -> bool:
    """True when ``path`` may be read: no settling asked for, or the last scan found it as it is now."""
    if settling is None:
        return True
    if settling.get(path) == st:
        del settling[path]
        return True
    settling[path] = st
    return False


def _stat(path: Path | None) -> tuple[int, int]:
    if path is None:
        return (0, 0)
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return (-1, -1)


def shipped_preset_paths() -> list[Path]:
    """The presets shipped with vjengine, in key order (file names sort them: 1-..., 2-...)."""
    from vjengine.resources import presets_dir  # noqa: PLC0415

    return sorted(presets_dir().glob("*.toml"))


def resolve_preset_ref(ref: str) -> Path:
    """A ``--preset`` argument: a path to a TOML file, or the stem/name of a shipped preset."""
    p = Path(ref)
    if p.suffix == ".toml" or os.sep in ref:
        if not p.is_file():
            raise ConfigError(f"{ref}: preset file not found")
        return p
    for path in shipped_preset_paths():
        if ref in (path.stem, path.stem.split("-", 1)[-1]):
            return path
    for path in shipped_preset_paths():
        try:
            if load_preset(path).name.lower() == ref.lower():
                return path
        except ConfigError:
            continue
    names = ", ".join(p.stem for p in shipped_preset_paths())
    raise ConfigError(f"--preset {ref!r}: no such preset file or shipped preset (shipped: {names})")
