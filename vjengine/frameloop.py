"""The frame loop: one show, one frame at a time, the same code live and replayed.

The render thread (the main thread) owns GL. Once per frame, in this order (each a timed stage)::

    inputs:  dt = clock.tick(); window events; preset files re-read; commands drained
    audio:   AudioEngine.poll (every new hop analysed); cues due at the song time
    map:     commands applied; ShowState.update -> FrameState
    render:  compositor.render(a=(bank, coord), b=(faded-from bank, coord, mix), fx, dt, target)
    hooks:   each output hook (compositor, state): frame hashes, readback sinks, ...
    present: swap / encode / nothing

Nothing in the loop raises: each failure is logged once (:class:`~vjengine.logonce.LogOnce`) and
the last good state is kept. ``step()`` runs a live frame; a replay calls ``run_frame(...)`` with
the recorded inputs, so both draw through exactly the same code.

Output hooks are callables ``hook(compositor, state)`` run after the frame is drawn and before it
is presented: ``compositor.frame_target`` holds the frame (``compositor.read_rgb()`` reads it back).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vjengine.control.commands import Command, CommandQueue
from vjengine.effects import DEFAULT_STROBE_MAX_HZ, make_effects
from vjengine.logonce import LogOnce
from vjengine.show.state import FrameState, ShowState

log = logging.getLogger(__name__)

PRESET_POLL_S = 0.5  # how often preset files are checked for edits (a stat each)
# A streamed bank is told where the mapping is heading every HEADING_EVERY frames: the mapper looks
# ahead at HEADING_TIMES (about 1 ms), frame by frame until the next look (a jump due before then
# must not fall between two points: the frames just before it were missed), then every 50 ms to 0.5 s
# (the frames further along take longer than that to load).
HEADING_EVERY = 6
HEADING_TIMES = tuple(k / 60.0 for k in range(1, HEADING_EVERY + 2)) + tuple(k / 20.0 for k in range(3, 11))
STAGES = ("inputs", "audio", "map", "render", "hooks", "present")

OutputHook = Callable[[Any, FrameState], None]


class GcTimer:
    """Seconds the interpreter spent in garbage collection so far (any thread: a collection holds
    the GIL, so the render thread waits for it wherever it runs). Installed once per process."""

    _installed: "GcTimer | None" = None

    def __init__(self) -> None:
        self.total_s = 0.0
        self.collections = 0
        self._start: float | None = None

    @classmethod
    def install(cls) -> "GcTimer":
        if cls._installed is None:
            cls._installed = cls()
            gc.callbacks.append(cls._installed)  # called as gc's callback
        return cls._installed

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.total_s += time.perf_counter() - self._start
            self.collections += 1
            self._start = None


@dataclass
class LoopStats:
    """Timing of the loop (perf_counter based, ms): the last ``keep`` frames (None: all, for --stats).

    ``frame_ms``: work per frame (tick .. after present); ``interval_ms``: present to present;
    ``latency_ms``: newest audio block arrival -> the frame that used it presented; ``stages``: ms
    per frame of each of :data:`STAGES`.
    """

    keep: int | None = 3600
    frames: int = 0
    frame_ms: collections.deque = field(init=False)
    interval_ms: collections.deque = field(init=False)
    latency_ms: collections.deque = field(init=False)
    stages: dict[str, collections.deque] = field(init=False)
    last_present_s: float | None = None

    def __post_init__(self) -> None:
        self.frame_ms = collections.deque(maxlen=self.keep)
        self.interval_ms = collections.deque(maxlen=self.keep)
        self.latency_ms = collections.deque(maxlen=self.keep)
        self.stages = {name: collections.deque(maxlen=self.keep) for name in STAGES}

    def stage(self, name: str, seconds: float) -> None:
        self.stages[name].append(seconds * 1000.0)

    def frame(self, t0: float, t1: float, arrival_s: float | None) -> None:
        """One frame done: started at ``t0``, presented at ``t1`` (perf_counter seconds)."""
        self.frames += 1
        self.frame_ms.append((t1 - t0) * 1000.0)
        if self.last_present_s is not None:
            self.interval_ms.append((t1 - self.last_present_s) * 1000.0)
        self.last_present_s = t1
        if arrival_s is not None:
            self.latency_ms.append((t1 - float(arrival_s)) * 1000.0)

    def recent_fps(self, n: int = 60) -> float:
        recent = list(itertools.islice(reversed(self.interval_ms), n))
        return 1000.0 / (sum(recent) / len(recent)) if recent else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "frame_ms": list(self.frame_ms), "interval_ms": list(self.interval_ms),
                "latency_ms": list(self.latency_ms), "stages_ms": {k: list(v) for k, v in self.stages.items()}}


class Presenter:
    """Where frames go: a window (swap), nothing (headless), or an encoder. Subclasses override."""

    target: Any = None  # framebuffer to draw into (None: the compositor's own output)
    size: tuple[int, int] = (0, 0)

    def begin_frame(self) -> None:
        """Poll window events (keys become Commands on the queue)."""

    def present(self, compositor: Any) -> None:
        """Swap / encode / nothing."""

    def should_close(self) -> bool:
        return False

    def handle_request(self, request: str) -> None:
        """``fullscreen`` / ``hud`` toggles (``quit`` is handled by the loop)."""

    def set_hud(self, lines: list[str]) -> None:
        """Status lines for the HUD."""

    def close(self) -> None:
        pass


class FrameHashes:
    """An output hook writing a SHA-256 of every frame's pixels, one per line (checks replays).

    By default each line is written as the frame is drawn (offline renders: exact, and nothing is
    live). ``background=True`` (a live show) keeps the disk off the render thread: the frame's pixels
    go to a ``vj-hashes`` :class:`~vjengine.linewriter.LineWriter` thread that hashes and writes them
    (hashlib lets go of the GIL, so the hashing runs beside the next frame). At most ``max_frames``
    frames' pixels wait; past that the render thread hashes the frame itself and hands over only the
    line, so a busy CPU costs no hashes, while a stalled disk ends the file (logged once) after
    ``max_backlog`` lines, never the show. Call :meth:`close` at the end (it closes ``file``).
    """

    def __init__(self, file: Any, *, background: bool = False, max_frames: int = 3, max_backlog: int = 18_000,
                 close_timeout_s: float = 5.0) -> None:
        self.file = file
        self.max_frames = int(max_frames)
        self.frames = 0  # frames handed over
        self._sent_pixels = 0  # frames handed over as pixels (render thread) ...
        self._hashed = 0  # ... and hashed by the writer (writer thread): each counter has one writer
        self._writer = None
        if background:
            from vjengine.linewriter import LineWriter  # noqa: PLC0415

            name = getattr(file, "name", "frame hashes")
            self._writer = LineWriter(file, name="vj-hashes", encode=self._line, label=f"--frame-hashes {name}",
                                      on_fail=lambda why: log.error(
                                          "--frame-hashes %s stopped at frame %d: %s; the show goes on", name,
                                          self.frames, why),
                                      max_backlog=max_backlog, close_timeout_s=close_timeout_s)

    @staticmethod
    def digest(pixels: Any) -> str:
        import numpy as np  # noqa: PLC0415

        return hashlib.sha256(memoryview(np.ascontiguousarray(pixels)).cast("B")).hexdigest()

    def _line(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        self._hashed += 1
        return self.digest(item)

    @property
    def failed(self) -> bool:
        return self._writer is not None and self._writer.failed

    def __call__(self, compositor: Any, state: FrameState) -> None:
        if self._writer is None:
            self.file.write(self.digest(compositor.read_rgb()) + "\n")
            self.frames += 1
            return
        if self._writer.failed:
            return
        pixels = compositor.read_rgb()  # a copy: the GL readback is the render thread's part
        if self._sent_pixels - self._hashed < self.max_frames:
            item: Any = pixels
            self._sent_pixels += 1
        else:  # the writer is behind: only the line waits, not another frame's pixels
            item = self.digest(pixels)
        if self._writer.put(item):
            self.frames += 1
        elif item is pixels:
            self._sent_pixels -= 1

    def close(self) -> None:
        """Every line written and the file closed (a background writer: waits at most its close timeout)."""
        if self._writer is not None:
            self._writer.close()
        else:
            self.file.close()


class FrameLoop:
    """One show, one frame at a time (see the module docstring).

    ``compositor``: the output's :class:`~vjengine.render.compositor.Compositor`; ``banks``: each
    bank's frames on the GPU (``BankTextures``), indexed like the show's banks; ``output_hooks``:
    called after each frame is drawn; ``on_frame(audio_frame, state)``: after it is presented.
    """

    def __init__(
        self,
        *,
        clock: Any,
        queue: CommandQueue,
        show: ShowState,
        audio: Any,
        compositor: Any,
        banks: Sequence[Any],
        presenter: Presenter,
        recorder: Any = None,
        cues: Any = None,
        output_hooks: Sequence[OutputHook] = (),
        strobe_max_hz: float = DEFAULT_STROBE_MAX_HZ,
        on_frame: Callable[[Any, FrameState], None] | None = None,
        reload_presets: bool = True,
        stats_history: int | None = 3600,
        governor: Any = None,
        stats_writer: Any = None,
    ) -> None:
        self.clock = clock
        self.queue = queue
        self.show = show
        self.audio = audio
        self.compositor = compositor
        self.banks = list(banks)
        self.presenter = presenter
        self.recorder = recorder
        self.cues = cues
        self.output_hooks = list(output_hooks)
        self.strobe_max_hz = strobe_max_hz
        self.on_frame = on_frame
        self.reload_presets = reload_presets
        self.stats = LoopStats(keep=stats_history)
        self.once = LogOnce(log)
        self.quit = False
        self.last_audio: Any = None
        self._heading_countdown = 0
        self._next_poll_s = PRESET_POLL_S
        self.governor = governor  # vjengine.show.degrade.Governor: degrade before dropping (live only)
        self.stats_writer = stats_writer  # vjengine.show.statslog.StatsWriter (--stats)
        self.costly_effects = True  # False while the governor has trails off
        self._level_index = 0
        # where a slow frame's time went (--stats): collections and the render thread's CPU time
        self.gc_timer = GcTimer.install() if stats_writer is not None else None

    def check_presets_next_frame(self) -> None:
        """Look for preset file edits on the next frame rather than within ``PRESET_POLL_S``."""
        self._next_poll_s = 0.0

    def failed(self, what: str, exc: BaseException) -> None:
        """Log a failure of one part of the frame once; the loop carries on with its last good state."""
        self.once(what, "%s failed, keeping the last good state: %r", what, exc, exc=exc)

    def step(self) -> bool:
        """Run one live frame; False once the show should stop."""
        t0 = time.perf_counter()
        cpu0 = time.thread_time()  # the render thread's own CPU time: a slow frame off the CPU was made to wait
        gc0 = self.gc_timer.total_s if self.gc_timer is not None else 0.0
        dt_s = self.clock.tick()
        now_s = self.clock.now_s
        try:
            self.presenter.begin_frame()
        except Exception as exc:  # noqa: BLE001
            self.failed("window events", exc)
        reloads: list[tuple[int, str]] = []
        if self.reload_presets and now_s >= self._next_poll_s:  # a few stats per second
            self._next_poll_s = now_s + PRESET_POLL_S
            try:
                for i in self.show.presets.poll():
                    reloads.append((i, self.show.presets.text(i)))
            except Exception as exc:  # noqa: BLE001
                self.failed("preset reload", exc)
        try:
            commands = self.queue.drain()
        except Exception as exc:  # noqa: BLE001
            self.failed("commands", exc)
            commands = []
        t_audio = time.perf_counter()
        self.stats.stage("inputs", t_audio - t0)
        try:  # every new hop is analysed inside poll
            frame = self.audio.poll(now_s)
            self.last_audio = frame
        except Exception as exc:  # noqa: BLE001
            self.failed("audio", exc)
            frame = self.last_audio
        if frame is None:
            from vjengine.audio.frame import AudioFrame  # noqa: PLC0415

            frame = AudioFrame.silent("no audio")
        if self.cues is not None:  # song time = audio stream time
            try:
                commands = commands + self.cues.due(float(getattr(frame, "time_s", now_s)), frame)
            except Exception as exc:  # noqa: BLE001
                self.failed("cues", exc)
        self.stats.stage("audio", time.perf_counter() - t_audio)
        self.run_frame(dt_s, now_s, frame, commands, reloads, changed_presets=bool(reloads))
        arrival = None
        if getattr(frame, "hops", 0):
            arrival = getattr(self.audio, "last_arrival_s", None)
        t1 = time.perf_counter()
        previous_present = self.stats.last_present_s
        self.stats.frame(t0, t1, arrival)
        if self.governor is not None or self.stats_writer is not None:
            probes = None
            if self.stats_writer is not None:
                probes = {"cpu": (time.thread_time() - cpu0) * 1000.0,
                          "gc": ((self.gc_timer.total_s if self.gc_timer is not None else 0.0) - gc0) * 1000.0}
            self._timing(t0, t1, previous_present, arrival, probes)
        return not self.quit

    def _timing(self, t0: float, t1: float, previous_present: float | None, arrival: float | None,
                probes: dict[str, float] | None = None) -> None:
        """Feed the frame-rate governor and the --stats stream (never raises)."""
        try:
            stages = {name: q[-1] for name, q in self.stats.stages.items() if q}
            interval_s = None if previous_present is None else t1 - previous_present
            # busy: what the frame kept the render thread doing, not waiting for vsync or pacing
            busy_s = max(0.0, (t1 - t0) - stages.get("present", 0.0) / 1000.0)
            if self.governor is not None and interval_s is not None:
                self.apply_level(self.governor.update(t1, interval_s, busy_s))
            if self.stats_writer is not None:
                self.stats_writer.frame(t1, None if interval_s is None else interval_s * 1000.0, (t1 - t0) * 1000.0,
                                        None if arrival is None else (t1 - float(arrival)) * 1000.0,
                                        self._level_index, stages, probes)
        except Exception as exc:  # noqa: BLE001
            self.failed("frame timing", exc)

    def apply_level(self, level: Any, *, announce: bool = True) -> None:
        """Pull the compositor's levers for a governor level (render scale, taps) and the effects'."""
        if level.index == self._level_index:
            return
        (log.warning if announce else log.debug)("frame rate: %s -> quality level %d (%s)",
                    "degrading" if level.index > self._level_index else "restoring", level.index, level.describe())
        self._level_index = level.index
        self.compositor.set_render_scale(level.render_scale)
        self.compositor.max_k = level.max_taps
        self.costly_effects = level.costly_effects

    def run_frame(self, dt_s: float, now_s: float, frame: Any, commands: list[Command],
                  reloads: Sequence[tuple[int, str]] = (), *, changed_presets: bool = False) -> FrameState:
        """Everything after the inputs are known: apply, map, draw, hooks, record, present."""
        show = self.show
        t_map = time.perf_counter()
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
                    self.failed(f"request {req}", exc)
        show.requests.clear()
        state = show.update(frame, dt_s)
        t_draw = time.perf_counter()
        self.draw(state, dt_s)
        t_hooks = time.perf_counter()
        for hook in self.output_hooks:
            try:
                hook(self.compositor, state)
            except Exception as exc:  # noqa: BLE001
                self.failed(f"output hook {getattr(hook, '__name__', type(hook).__name__)}", exc)
        if self.recorder is not None:
            try:
                self.recorder.frame(dt_s, now_s, frame, list(commands), list(reloads), output={
                    "bank": state.bank, "coord": list(state.coord), "mix": state.mix,
                    "from_bank": state.from_bank, "from_coord": list(state.from_coord),
                    "q": self._level_index})  # the governor's level this frame was drawn at (replays use it)
            except Exception as exc:  # noqa: BLE001
                self.failed("set log", exc)
        t_present = time.perf_counter()
        try:
            self.presenter.present(self.compositor)
        except Exception as exc:  # noqa: BLE001
            self.failed("present", exc)
        t_done = time.perf_counter()
        self.stats.stage("map", t_draw - t_map)
        self.stats.stage("render", t_hooks - t_draw)
        self.stats.stage("hooks", t_present - t_hooks)
        self.stats.stage("present", t_done - t_present)
        if self.on_frame is not None:
            try:
                self.on_frame(frame, state)
            except Exception as exc:  # noqa: BLE001
                self.failed("frame hook", exc)
        if self.presenter.should_close():
            self.quit = True
        return state

    def draw(self, state: FrameState, dt_s: float) -> None:
        """The frame through the compositor: the shown bank, and the faded-from one while a crossfade runs."""
        try:
            fx = make_effects(state.fx, intensity=state.intensity, blackout=state.blackout,
                              strobe_max_hz=self.strobe_max_hz)
            if not self.costly_effects and fx.feedback > 0.0:
                fx = dataclasses.replace(fx, feedback=0.0)  # trails cost a full-size blend and a tap
            b = None
            if state.from_bank is not None and state.mix < 1.0:
                b = (self.banks[state.from_bank], state.from_coord, 1.0 - state.mix)
            self.compositor.render(a=(self.banks[state.bank], state.coord), b=b, fx=fx, dt_s=dt_s,
                                   target=self.presenter.target)
        except Exception as exc:  # noqa: BLE001
            self.failed("render", exc)
        try:
            self.load_ahead(state)
            self.steer_prefetch(state)
        except Exception as exc:  # noqa: BLE001
            self.failed("loading ahead", exc)

    def steer_prefetch(self, state: FrameState) -> None:
        """Every few frames, tell a streamed bank where the mapping is heading (the mapper looked ahead
        ``HEADING_TIMES``), so it loads frames along that path, jumps included, before they are drawn."""
        source = self.banks[state.bank]
        if not hasattr(source, "set_heading") or self.last_audio is None:
            return
        self._heading_countdown -= 1
        if self._heading_countdown > 0:
            return
        self._heading_countdown = HEADING_EVERY
        source.set_heading(self.show.heading(self.last_audio, HEADING_TIMES))

    def load_ahead(self, state: FrameState) -> None:
        """Frames of the bank the show is about to switch to (a pending quantised switch, or a bank cue
        due within a few seconds or two bars), loaded around the current coordinate within the upload
        budget, so the switch lands on full-resolution frames rather than the low tier."""
        pending = getattr(self.show, "pending_bank", None)
        targets = [] if pending is None else [pending]
        if self.cues is not None:
            frame = self.last_audio
            song_s = float(getattr(frame, "time_s", 0.0)) if frame is not None else 0.0
            targets += [self.show.find_bank(ref) for ref in self.cues.upcoming_banks(song_s, frame)]
        for i in targets:
            if i is None or i in (state.bank, state.from_bank) or not 0 <= i < len(self.banks):
                continue
            source = self.banks[i]
            if hasattr(source, "prefetch_at"):  # a streamed bank (a resident one has every frame)
                source.prefetch_at(state.coord)
                source.tick(self.compositor.stream_budget_s)
            return  # the soonest one only: the budget is per frame
