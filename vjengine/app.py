"""`vj live BANK... [--preset P] [--audio-device D] [--fullscreen] [--monitor N]`: the frame loop.

The render thread (the main thread) owns GL. Once per frame, in this order::

    dt = clock.tick(); drain commands (keys, OSC, cues); AudioEngine.poll (every new hop analysed);
    map (ShowState.update); render; swap (or encode, or nothing when headless)

Nothing in the loop raises: each failure is logged once and the last good state is kept. With no
display (or ``--headless``), the same loop renders offscreen through EGL, paced to real time, for
``--duration`` seconds, and saves the last frame to a PNG, so a headless box still shows it works.

Several banks make a set (``vj live A B C`` or a setlist TOML); ``bank`` commands switch with a
crossfade that lands on the next bar (``--quantize``). ``--record set.jsonl`` logs everything that
drives the visuals; ``vj render --replay set.jsonl`` renders it again, frame for frame.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vjengine.control.commands import Command, CommandQueue
from vjengine.demo import resolve_bank_path
from vjengine.errors import ConfigError
from vjengine.mapping.preset import PresetLibrary, load_preset, resolve_preset_ref, shipped_preset_paths
from vjengine.show.cues import CueRunner, load_cues
from vjengine.show.fx import make_effects, osc_fx_names
from vjengine.show.record import AudioRecorder, Recorder
from vjengine.show.setlist import is_setlist, load_setlist, unique_names
from vjengine.show.state import BankEntry, FrameState, ShowState

log = logging.getLogger(__name__)

PRESET_POLL_S = 0.5  # how often preset files are checked for edits (a stat each)
DEFAULT_HEADLESS_DURATION_S = 10.0


# ---------------------------------------------------------------------------------------------
# Options


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r}: must be WIDTHxHEIGHT, e.g. 1920x1080") from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise ConfigError(f"--size {text!r}: width and height must be 16..16384")
    return w, h


def add_show_arguments(parser: argparse.ArgumentParser, *, banks: bool = True) -> None:
    """Options shared by `vj live` and `vj demo`."""
    if banks:
        parser.add_argument("banks", nargs="+", metavar="BANK",
                            help="bank directories (switch with the bank command), or one setlist .toml")
    parser.add_argument("--preset", action="append", default=None, metavar="P",
                        help="preset name or .toml path (repeat to add several; the first starts). "
                             "Default: the shipped presets")
    parser.add_argument("--preset-dir", action="append", default=None, metavar="DIR",
                        help="add every .toml preset in DIR, and the ones saved there during the show")
    src = parser.add_argument_group("audio")
    src.add_argument("--audio-device", default=None, metavar="D", help="input device: name substring or index")
    src.add_argument("--audio-file", default=None, metavar="F",
                     help="play a WAV/FLAC file in real time instead of capturing")
    src.add_argument("--loop", action="store_true", help="loop --audio-file (the demo always loops)")
    src.add_argument("--samplerate", type=int, default=None, help="capture sample rate in Hz")
    src.add_argument("--blocksize", type=int, default=None, help="capture block size in frames (default 256)")
    src.add_argument("--channels", default=None, metavar="LIST",
                     help="input channels to mix, 1-based, e.g. 1,2 (default: all, mixed to mono)")
    src.add_argument("--latency-ms", type=float, default=None,
                     help="output latency compensation: beat events fire this much early")
    out = parser.add_argument_group("output")
    out.add_argument("--fullscreen", action="store_true", help="fullscreen on --monitor")
    out.add_argument("--monitor", type=int, default=None, metavar="N", help="monitor index (see `vj monitors`)")
    out.add_argument("--size", default="1280x720", help="window (or headless) size WxH (default 1280x720)")
    out.add_argument("--fit", choices=("fit", "fill", "stretch"), default="fill",
                     help="how the bank image meets the output aspect (default fill)")
    out.add_argument("--headless", action="store_true",
                     help="render offscreen (EGL) even if a display exists; implied when there is none")
    out.add_argument("--duration", type=float, default=None, metavar="S",
                     help=f"stop after S seconds (headless default {DEFAULT_HEADLESS_DURATION_S:g})")
    out.add_argument("--fps", type=float, default=60.0, help="headless frame rate (the window follows vsync)")
    out.add_argument("--screenshot", default=None, metavar="PNG",
                     help="save the last frame here (headless default: vj-last-frame.png)")
    out.add_argument("--strobe-max-hz", type=float, default=3.0,
                     help="cap on flashes per second (photosensitivity; default 3)")
    show = parser.add_argument_group("show")
    show.add_argument("--cues", default=None, metavar="C", help="cue sheet (.toml or .csv)")
    show.add_argument("--crossfade", type=float, default=None, metavar="S", help="bank/preset crossfade seconds")
    show.add_argument("--quantize", choices=("none", "beat", "bar"), default=None,
                      help="bank switches land on the next bar (default), beat, or at once")
    show.add_argument("--record", default=None, metavar="JSONL", help="log the show for `vj render --replay`")
    show.add_argument("--frame-hashes", default=None, metavar="TXT",
                      help="write a SHA-256 of every rendered frame (checks replays; reads pixels back)")
    show.add_argument("--stats", default=None, metavar="JSON", help="write frame timing and latency samples")
    try:
        from vjengine.control.osc_args import add_osc_arguments  # noqa: PLC0415
    except ImportError:  # the OSC part not installed: run without it
        return
    add_osc_arguments(parser, out=True)
    parser.add_argument("--no-osc", action="store_true", help="do not start the OSC server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_show_arguments(parser, banks=True)


# ---------------------------------------------------------------------------------------------
# Set-up: banks, presets, cues


@dataclass
class ShowSetup:
    banks: list[Any]  # opened Bank objects
    entries: list[BankEntry]
    library: PresetLibrary
    preset_index: int
    crossfade_s: float
    quantize: str
    cues: CueRunner | None
    cue_path: Path | None = None


def load_library(preset_refs: list[str] | None, extra: list[Path] = (),
                 preset_dirs: list[str] | None = None) -> tuple[PresetLibrary, int]:
    """The shipped presets, the given ones, then the watched folders' (see ``PresetLibrary.watch_dir``);
    returns the library and the starting index."""
    paths = list(shipped_preset_paths())
    start_path: Path | None = None
    for ref in preset_refs or []:
        p = resolve_preset_ref(ref)
        if start_path is None:
            start_path = p
        if all(p.resolve() != q.resolve() for q in paths):
            paths.append(p)
    for p in extra:
        if all(Path(p).resolve() != q.resolve() for q in paths):
            paths.append(Path(p))
    if not paths:
        raise ConfigError("no presets: the shipped presets folder is empty and no --preset was given")
    lib = PresetLibrary()
    for p in paths:
        lib.add(load_preset(p))
    for folder in preset_dirs or []:
        lib.watch_dir(folder)
    start = 0
    if start_path is not None:
        for i, pr in enumerate(lib.presets):
            if pr.path is not None and pr.path.resolve() == start_path.resolve():
                start = i
    return lib, start


def build_setup(bank_args: list[str], args: argparse.Namespace) -> ShowSetup:
    from vjengine.bank import open_bank  # noqa: PLC0415

    crossfade_s, quantize, cue_path = 2.0, "bar", None
    extra_presets: list[Path] = []
    if len(bank_args) == 1 and is_setlist(bank_args[0]):
        sl = load_setlist(bank_args[0])
        paths = [b.path for b in sl.banks]
        names = [b.name for b in sl.banks]
        bank_presets = [b.preset for b in sl.banks]
        crossfade_s, quantize, cue_path = sl.crossfade_s, sl.quantize, sl.cues
        extra_presets = list(sl.presets)
    else:
        paths = [resolve_bank_path(b) for b in bank_args]
        names = unique_names(paths)
        bank_presets = [None] * len(paths)
    banks = [open_bank(p) for p in paths]
    library, start = load_library(getattr(args, "preset", None), extra_presets, getattr(args, "preset_dir", None))
    for name, ref in zip(names, bank_presets):
        if ref is not None and library.find(ref) is None:
            try:
                library.add_file(resolve_preset_ref(ref))
            except ConfigError as exc:
                raise ConfigError(f"setlist bank {name!r}: preset {ref!r}: {exc}") from None
    if not getattr(args, "preset", None) and bank_presets[0] is not None:
        start = library.find(bank_presets[0]) or 0
    entries = [BankEntry.from_bank(b, n, pr) for b, n, pr in zip(banks, names, bank_presets)]
    if getattr(args, "crossfade", None) is not None:
        crossfade_s = float(args.crossfade)
    if getattr(args, "quantize", None):
        quantize = args.quantize
    if getattr(args, "cues", None):
        cue_path = Path(args.cues)
    cues = CueRunner(load_cues(cue_path)) if cue_path else None
    return ShowSetup(banks, entries, library, start, crossfade_s, quantize, cues, cue_path)


def record_header(setup: ShowSetup, show: ShowState, size: tuple[int, int], fit: str, audio: dict[str, Any],
                  strobe_max_hz: float) -> dict[str, Any]:
    presets = []
    for p in setup.library.presets:
        text = p.path.read_text(encoding="utf-8") if p.path and p.path.is_file() else None
        presets.append({"key": p.key, "name": p.name, "path": str(p.path) if p.path else None, "text": text})
    return {
        "banks": [{"name": e.name, "path": str(Path(e.path).resolve()) if e.path else None, "preset": e.preset}
                  for e in setup.entries],
        "presets": presets,
        "preset_index": show.preset_index,
        "bank_index": show.bank_index,
        "crossfade_s": show.crossfade_s,
        "quantize": show.quantize,
        "size": list(size),
        "fit": fit,
        "strobe_max_hz": strobe_max_hz,
        "audio": audio,
    }


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopStats:
    """Timing of the loop (perf_counter based, ms): the last ``keep`` frames (None: all, for --stats)."""

    keep: int | None = 3600
    frame_ms: Any = None  # work per frame (tick .. after swap)
    interval_ms: Any = None  # swap to swap
    latency_ms: Any = None  # newest audio block arrival -> the frame that used it submitted
    frames: int = 0
    _last_swap: float | None = None

    def __post_init__(self) -> None:
        for name in ("frame_ms", "interval_ms", "latency_ms"):
            setattr(self, name, collections.deque(maxlen=self.keep))
        self.stages: dict[str, collections.deque] = {}  # stage -> ms per frame (audio, map, render, present)

    def stage(self, name: str, seconds: float) -> None:
        q = self.stages.get(name)
        if q is None:
            q = self.stages[name] = collections.deque(maxlen=self.keep)
        q.append(seconds * 1000.0)

    def recent_fps(self, n: int = 60) -> float:
        recent = list(itertools.islice(reversed(self.interval_ms), n))
        return 1000.0 / (sum(recent) / len(recent)) if recent else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "frame_ms": list(self.frame_ms), "interval_ms": list(self.interval_ms),
                "latency_ms": list(self.latency_ms), "stages_ms": {k: list(v) for k, v in self.stages.items()}}


class Presenter:
    """Where frames go: a window (swap), nothing (headless), or an encoder. Subclasses override."""

    target: Any = None  # framebuffer to draw into (None: the renderer's own output)
    size: tuple[int, int] = (0, 0)

    def begin_frame(self) -> None:
        """Poll window events (keys become Commands on the queue)."""

    def present(self, renderer: Any) -> None:
        """Swap / encode / nothing."""

    def should_close(self) -> bool:
        return False

    def handle_request(self, request: str) -> None:
        """``fullscreen`` / ``hud`` toggles (``quit`` is handled by the loop)."""

    def set_hud(self, lines: list[str]) -> None:
        """Status lines for the HUD."""

    def close(self) -> None:
        pass


class FrameLoop:
    """One show, one frame at a time: ``step()`` does tick, drain, poll, map, render, present."""

    def __init__(
        self,
        *,
        clock: Any,
        queue: CommandQueue,
        show: ShowState,
        audio: Any,
        renderers: list[Any],
        presenter: Presenter,
        recorder: Recorder | None = None,
        cues: CueRunner | None = None,
        frame_hashes: Any = None,
        strobe_max_hz: float = 3.0,
        on_frame: Callable[[Any, FrameState], None] | None = None,
        reload_presets: bool = True,
        stats_history: int | None = 3600,
    ) -> None:
        self.clock = clock
        self.queue = queue
        self.show = show
        self.audio = audio
        self.renderers = renderers
        self.presenter = presenter
        self.recorder = recorder
        self.cues = cues
        self.frame_hashes = frame_hashes
        self.strobe_max_hz = strobe_max_hz
        self.on_frame = on_frame
        self.reload_presets = reload_presets
        self.stats = LoopStats(keep=stats_history)
        self.quit = False
        self._next_poll_s = PRESET_POLL_S
        self._drawn_bank: int | None = None
        self._errors: set[str] = set()
        self.last_audio: Any = None

    def _once(self, key: str, exc: BaseException) -> None:
        if key not in self._errors:
            self._errors.add(key)
            log.error("%s failed, keeping the last good state: %r", key, exc, exc_info=exc)

    def step(self) -> bool:
        """Run one live frame (tick, reload, drain, poll, cues, map, render, present); False to stop."""
        t0 = time.perf_counter()
        dt_s = self.clock.tick()
        now_s = self.clock.now_s
        try:
            self.presenter.begin_frame()
        except Exception as exc:  # noqa: BLE001
            self._once("window events", exc)
        show = self.show
        reloads: list[tuple[int, str]] = []
        if self.reload_presets and now_s >= self._next_poll_s:  # a few stats per second
            self._next_poll_s = now_s + PRESET_POLL_S
            try:
                for i in show.presets.poll():
                    p = show.presets[i]
                    reloads.append((i, p.path.read_text(encoding="utf-8") if p.path else ""))
            except Exception as exc:  # noqa: BLE001
                self._once("preset reload", exc)
        try:
            commands = self.queue.drain()
        except Exception as exc:  # noqa: BLE001
            self._once("commands", exc)
            commands = []
        t_audio = time.perf_counter()
        try:  # every new hop is analysed inside poll
            frame = self.audio.poll(now_s)
            self.last_audio = frame
        except Exception as exc:  # noqa: BLE001
            self._once("audio", exc)
            frame = self.last_audio
        if frame is None:
            from vjengine.audio.frame import AudioFrame  # noqa: PLC0415

            frame = AudioFrame.silent("no audio")
        if self.cues is not None and frame is not None:  # song time = audio stream time
            try:
                commands = commands + self.cues.due(float(getattr(frame, "time_s", now_s)), frame)
            except Exception as exc:  # noqa: BLE001
                self._once("cues", exc)
        self.stats.stage("audio", time.perf_counter() - t_audio)
        self.run_frame(dt_s, now_s, frame, commands, reloads, changed_presets=bool(reloads))
        self._account(frame, t0, time.perf_counter())
        return not self.quit

    def run_frame(self, dt_s: float, now_s: float, frame: Any, commands: list[Command],
                  reloads: list[tuple[int, str]] = (), *, changed_presets: bool = False) -> FrameState:
        """Everything after the inputs are known: apply, map, draw, record, present.

        Live calls it from :meth:`step`; a replay calls it with the recorded inputs, so both paths
        draw through exactly the same code.
        """
        show = self.show
        if changed_presets:
            show.presets_changed()
        for cmd in commands:
            show.apply(cmd, frame)
        for req in show.requests:
            if req == "quit":
                self.quit = True
            else:
                try:
                    self.presenter.handle_request(req)
                except Exception as exc:  # noqa: BLE001
                    self._once(f"request {req}", exc)
        show.requests.clear()
        t_map = time.perf_counter()
        state = show.update(frame, dt_s)
        t_draw = time.perf_counter()
        self.draw(state, dt_s)
        t_drawn = time.perf_counter()
        self.stats.stage("map", t_draw - t_map)
        self.stats.stage("render", t_drawn - t_draw)
        if self.recorder is not None:
            self.recorder.frame(dt_s, now_s, frame, list(commands), list(reloads), output={
                "bank": state.bank, "coord": list(state.coord), "mix": state.mix,
                "from_bank": state.from_bank, "from_coord": list(state.from_coord)})
        if self.frame_hashes is not None:
            try:
                rgb = self.renderers[state.bank].read_rgb()
                self.frame_hashes.write(hashlib.sha256(rgb.tobytes()).hexdigest() + "\n")
            except Exception as exc:  # noqa: BLE001
                self._once("frame hash", exc)
        t_present = time.perf_counter()
        try:
            self.presenter.present(self.renderers[state.bank])
        except Exception as exc:  # noqa: BLE001
            self._once("present", exc)
        self.stats.stage("present", time.perf_counter() - t_present)
        if self.on_frame is not None:
            try:
                self.on_frame(frame, state)
            except Exception as exc:  # noqa: BLE001
                self._once("frame hook", exc)
        if self.presenter.should_close():
            self.quit = True
        return state

    def draw(self, state: FrameState, dt_s: float) -> None:
        try:
            renderer = self.renderers[state.bank]
            if self._drawn_bank != state.bank:
                reset = getattr(renderer, "reset_trails", None)
                if callable(reset):
                    reset()
                else:  # a renderer that has not drawn for a while must not show stale trails
                    renderer._fresh = True  # noqa: SLF001
                self._drawn_bank = state.bank
            fx = make_effects(state.fx, intensity=state.intensity, blackout=state.blackout,
                              strobe_max_hz=self.strobe_max_hz)
            crossfade = None
            if state.from_bank is not None and state.mix < 1.0:
                crossfade = (self.renderers[state.from_bank], state.from_coord, 1.0 - state.mix)
            renderer.render(state.coord, fx, dt_s, self.presenter.target, crossfade=crossfade)
        except Exception as exc:  # noqa: BLE001
            self._once("render", exc)

    def _account(self, frame: Any, t0: float, t1: float) -> None:
        st = self.stats
        st.frames += 1
        st.frame_ms.append((t1 - t0) * 1000.0)
        if st._last_swap is not None:
            st.interval_ms.append((t1 - st._last_swap) * 1000.0)
        st._last_swap = t1
        hops = getattr(frame, "hops", 0)
        arrival = block_arrival_s(self.audio) if hops else None
        if arrival is not None:
            st.latency_ms.append((t1 - float(arrival)) * 1000.0)


# ---------------------------------------------------------------------------------------------
# Presenters


class HeadlessPresenter(Presenter):
    """Offscreen: frames stay in the renderer's output; paced to ``fps`` in real time when live."""

    def __init__(self, size: tuple[int, int], fps: float, *, pace: bool = True) -> None:
        self.size = size
        self.period_s = 1.0 / fps
        self.pace = pace
        self._next = time.perf_counter() + self.period_s
        self.last_renderer: Any = None

    def present(self, renderer: Any) -> None:
        self.last_renderer = renderer
        if not self.pace:
            return
        now = time.perf_counter()
        wait = self._next - now
        if wait > 0:
            time.sleep(wait)
            self._next += self.period_s
        else:  # late: do not try to catch up with a burst
            self._next = now + self.period_s


class WindowPresenter(Presenter):
    """A glfw window (vsync, HUD, keys -> Commands on the queue)."""

    def __init__(self, window: Any, show: ShowState) -> None:
        self.window = window
        self.show = show
        self.last_renderer: Any = None
        self.lines: list[str] = []
        self.input_level: float | None = None
        self._bank: int | None = None

    @property
    def target(self) -> Any:  # type: ignore[override]
        return self.window.screen

    @property
    def size(self) -> tuple[int, int]:  # type: ignore[override]
        return tuple(self.window.size)

    def begin_frame(self) -> None:
        self.window.poll()

    def present(self, renderer: Any) -> None:
        self.last_renderer = renderer
        show = self.show
        if self._bank != show.bank_index:  # arrow keys nudge the current bank's axes
            self._bank = show.bank_index
            self.window.axis_names = [a.name for a in show.axes]
        self.window.blackout_on = show.blackout  # B toggles from the state, whoever set it
        last = show.last
        self.window.draw_hud(coord=last.coord if last else None, input_level=self.input_level, lines=self.lines)
        self.window.swap()

    def should_close(self) -> bool:
        return bool(self.window.should_close)

    def handle_request(self, request: str) -> None:
        if request in ("fullscreen", "hud"):
            self.window.handle_command(Command(request, source="show"))

    def set_hud(self, lines: list[str]) -> None:
        self.lines = list(lines)

    def close(self) -> None:
        self.window.close()


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# ---------------------------------------------------------------------------------------------
# Audio


def open_audio(args: argparse.Namespace, *, demo: bool = False) -> tuple[Any, dict[str, Any]]:
    """The live AudioEngine for ``--audio-file`` / ``--audio-device``; the demo loop is the fallback
    when no input device exists (and the default source of `vj demo`)."""
    from vjengine.audio.engine import AudioEngine, open_source  # noqa: PLC0415
    from vjengine.demo import demo_audio_path  # noqa: PLC0415

    kwargs: dict[str, Any] = {}
    if args.samplerate:
        kwargs["samplerate"] = args.samplerate
    if args.blocksize:
        kwargs["blocksize"] = args.blocksize
    if getattr(args, "channels", None):
        try:
            kwargs["channels"] = tuple(int(c) for c in str(args.channels).split(","))
        except ValueError:
            raise ConfigError(f"--channels {args.channels!r}: must be channel numbers like 1,2") from None
    file = args.audio_file
    if demo and not file and args.audio_device is None:
        file = str(demo_audio_path())
    source = open_source(device=args.audio_device, file=file, demo_audio=demo_audio_path(),
                         loop=bool(file) and (demo or getattr(args, "loop", False)), **kwargs)
    engine = AudioEngine(source, latency_ms=args.latency_ms or 0.0)
    played = getattr(source, "path", None)
    info = {"file": str(Path(played).resolve()) if played else None, "device": args.audio_device,
            "samplerate": source.samplerate, "status": engine.status}
    return engine, info


def block_arrival_s(audio: Any, blocksize: int = 256) -> float | None:
    """perf_counter time at which the newest audio block reached the engine (None if unknown).

    A capture source stamps each callback; a real-time file source delivers samples as the wall clock
    passes, so its newest complete ``blocksize`` block "arrived" when its last sample became due.
    """
    source = getattr(audio, "source", None)
    if source is None:
        return None
    stamp = getattr(source, "last_arrival_s", None)
    if stamp is not None:
        return float(stamp)
    last_cb = getattr(source, "_last_cb", None)
    if last_cb:
        return time.perf_counter() - (time.monotonic() - float(last_cb))
    t0 = getattr(source, "_t0", None)
    delivered = getattr(source, "_delivered", None)
    if t0 is not None and delivered:
        blocks = delivered // blocksize
        return float(t0) + blocks * blocksize / float(source.samplerate)
    return None


# ---------------------------------------------------------------------------------------------
# Run


def _osc(args: argparse.Namespace, queue: CommandQueue, show: ShowState) -> tuple[Any, Any]:
    """Start the OSC server and OSC out when the options exist (``--no-osc`` skips the server)."""
    if not hasattr(args, "osc_port"):
        return None, None
    from vjengine.control.osc_args import out_from_args, server_from_args  # noqa: PLC0415

    server = None
    if not getattr(args, "no_osc", False):
        server = server_from_args(args, queue, axis_names=[a.name for a in show.axes], fx_params=osc_fx_names(),
                                  status_provider=show.status)
        server.start()
    return server, out_from_args(args)


def run_show(args: argparse.Namespace, setup: ShowSetup, audio: Any, audio_info: dict[str, Any]) -> int:
    """Build the show, open a window (or fall back to headless) and run the loop until quit."""
    from vjengine.clock import RealClock  # noqa: PLC0415
    from vjengine.render.renderer import Renderer  # noqa: PLC0415

    size = parse_size(args.size)
    queue = CommandQueue()
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize, audio=audio)  # type: ignore[arg-type]
    headless = args.headless or not display_available()
    window = None
    if not headless:
        try:
            from vjengine.render.window import Window  # noqa: PLC0415

            window = Window(size=size, fullscreen=args.fullscreen, monitor=args.monitor, queue=queue,
                            axis_names=[a.name for a in show.axes])
        except Exception as exc:  # noqa: BLE001
            log.warning("no window (%s); rendering headless through EGL instead", exc)
            headless = True
    if headless:
        from vjengine.render.context import headless_context  # noqa: PLC0415

        if not args.headless:
            log.warning("no display found: rendering headless (EGL) at %dx%d for %s s; the last frame goes to %s",
                        size[0], size[1], args.duration or DEFAULT_HEADLESS_DURATION_S,
                        args.screenshot or "vj-last-frame.png")
        ctx = headless_context()
        presenter: Presenter = HeadlessPresenter(size, args.fps, pace=True)
    else:
        ctx = window.ctx
        presenter = WindowPresenter(window, show)
        log.info("window %dx%d%s (F fullscreen, H HUD, 1-9 presets, space tap, arrows nudge, B blackout, "
                 "Esc twice quits)", *window.size, " fullscreen" if args.fullscreen else "")
    duration_s = args.duration if args.duration is not None else (DEFAULT_HEADLESS_DURATION_S if headless else None)
    renderers = [Renderer(ctx, b, output_size=size, fit=args.fit) for b in setup.banks]
    recorder = None
    if args.record:
        if getattr(audio, "source", None) is not None:  # the sound of the show, for the replay's mp4
            wav = Path(args.record).with_suffix(".wav")
            audio.source = AudioRecorder(audio.source, wav)
            audio_info = dict(audio_info, recorded=str(wav.resolve()))
        recorder = Recorder(args.record, record_header(setup, show, size, args.fit, audio_info, args.strobe_max_hz))
    hashes = open(args.frame_hashes, "w", encoding="utf-8") if args.frame_hashes else None  # noqa: SIM115
    server, osc_out = _osc(args, queue, show)
    if osc_out is not None:
        from vjengine.control.osc_out import out_values  # noqa: PLC0415
    clock = RealClock()
    hud_every = 6
    bank_seen = [show.bank_index]

    def on_frame(frame: Any, state: FrameState) -> None:
        if loop.stats.frames % hud_every == 0:
            extra = {"fps": _fps(loop.stats)}
            show.publish_status(frame, extra)
            presenter.set_hud(show.hud_lines() + _audio_lines(frame) + ([server.stats.hud_line()] if server else []))
            if isinstance(presenter, WindowPresenter) and frame is not None:
                presenter.input_level = float(getattr(frame, "rms", 0.0))
        if server is not None and state.bank != bank_seen[0]:
            bank_seen[0] = state.bank
            server.set_names([a.name for a in show.axes], osc_fx_names())
        if osc_out is not None and frame is not None:
            try:
                osc_out.publish(out_values(frame, coord=state.coord, axis_names=[a.name for a in show.axes],
                                           preset_name=show.current_preset.name, preset_index=show.preset_index),
                                time.perf_counter())
            except Exception as exc:  # noqa: BLE001
                loop._once("osc out", exc)  # noqa: SLF001
        for reply_to in show.status_replies:
            if server is not None and reply_to:
                try:
                    server.send_status(tuple(reply_to), show.status())
                except Exception as exc:  # noqa: BLE001
                    loop._once("status reply", exc)  # noqa: SLF001
        show.status_replies.clear()

    loop = FrameLoop(clock=clock, queue=queue, show=show, audio=audio, renderers=renderers, presenter=presenter,
                     recorder=recorder, cues=setup.cues, frame_hashes=hashes, strobe_max_hz=args.strobe_max_hz,
                     on_frame=on_frame, stats_history=None if args.stats else 3600)
    show.publish_status(None, {"fps": 0.0})
    log.info("show: %d bank(s), preset %r, %s", len(setup.banks), show.current_preset.name,
             "headless" if headless else "window")
    try:
        while loop.step():
            if duration_s is not None and clock.now_s >= duration_s:
                break
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        _stop(audio)
        if server is not None:
            server.stop()
        if osc_out is not None and hasattr(osc_out, "close"):
            osc_out.close()
        if recorder is not None:
            recorder.close()
        if hashes is not None:
            hashes.close()
        if args.stats:
            import json  # noqa: PLC0415

            Path(args.stats).write_text(json.dumps(loop.stats.to_dict()))
        shot = args.screenshot or ("vj-last-frame.png" if headless else None)
        last = getattr(presenter, "last_renderer", None)
        if shot and last is not None:
            try:
                from vjengine.render.still import write_png  # noqa: PLC0415

                write_png(Path(shot), last.read_rgb())
                log.info("last frame saved to %s", shot)
            except Exception as exc:  # noqa: BLE001
                log.error("could not save %s: %s", shot, exc)
        presenter.close()
    st = loop.stats
    if st.frames:
        log.info("%d frames, %.1f fps, frame time p99 %.1f ms", st.frames, _fps(st),
                 float(np.percentile(st.frame_ms, 99)))
    return 0


def _fps(stats: LoopStats) -> float:
    return stats.recent_fps()


def _audio_lines(frame: Any) -> list[str]:
    if frame is None:
        return []
    lock = "locked" if getattr(frame, "locked", False) else "searching"
    return [f"{getattr(frame, 'bpm', 0):.1f} BPM {lock}  level {getattr(frame, 'level', 0):.2f}  "
            f"{getattr(frame, 'input_status', '')}"]


def _stop(audio: Any) -> None:
    for name in ("stop", "close"):
        fn = getattr(audio, name, None)
        if callable(fn):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                log.warning("audio %s: %s", name, exc)
            return


def run(args: argparse.Namespace) -> int:
    setup = build_setup(args.banks, args)
    audio, info = open_audio(args)
    return run_guarded(args, setup, audio, info)


def run_guarded(args: argparse.Namespace, setup: ShowSetup, audio: Any, info: dict[str, Any]) -> int:
    """``run_show``, closing the audio source if set-up fails before the loop starts."""
    try:
        return run_show(args, setup, audio, info)
    except BaseException:
        _stop(audio)
        raise


__all__ = ["FrameLoop", "Presenter", "HeadlessPresenter", "WindowPresenter", "ShowSetup", "build_setup",
           "load_library", "add_show_arguments", "run_show", "run"]
