"""`vj live BANK... [--preset P] [--audio-device D] [--fullscreen] [--monitor N]`: a show on a screen.

:class:`LiveShow` wires the parts: the show's set-up (:mod:`vjengine.show.setup`), the audio
engine, a window or a headless context (:mod:`vjengine.presenters`), one compositor for the output
and each bank's textures, OSC in and out, the set log, and the frame loop
(:mod:`vjengine.frameloop`) that runs until quit. With no display (or ``--headless``), the loop
renders offscreen through EGL, paced to real time, for ``--duration`` seconds, and saves the last
frame to a PNG, so a headless box still shows it works.

Several banks make a set (``vj live A B C`` or a setlist TOML); ``bank`` commands switch with a
crossfade that lands on the next bar (``--quantize``). ``--record set.jsonl`` logs everything that
drives the visuals; ``vj render --replay set.jsonl`` renders it again, frame for frame.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vjengine.config import parse_size
from vjengine.control.commands import CommandQueue
from vjengine.effects import osc_fx_names
from vjengine.errors import ConfigError, DeviceError
from vjengine.frameloop import FrameHashes, FrameLoop, Presenter
from vjengine.linewriter import open_for_writing
from vjengine.live_options import DEFAULT_HEADLESS_DURATION_S, add_show_arguments
from vjengine.presenters import HeadlessPresenter, WindowPresenter, display_available
from vjengine.show.record import AudioRecorder, Recorder
from vjengine.show.setup import ShowSetup, build_setup, record_header
from vjengine.show.state import FrameState, ShowState

log = logging.getLogger(__name__)

HUD_EVERY = 6  # frames between HUD / status updates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_show_arguments(parser, banks=True)


def open_audio(args: argparse.Namespace, *, demo: bool = False) -> tuple[Any, dict[str, Any]]:
    """The live AudioEngine for ``--audio-file`` / ``--audio-device``; the demo loop is the fallback
    when no input device exists (and the default source of `vj demo`). A file is played to the
    speakers with ``--play`` (by default for `vj demo` when an output device exists)."""
    from vjengine.audio.analyzer import AnalysisConfig  # noqa: PLC0415
    from vjengine.audio.engine import AudioEngine, open_source  # noqa: PLC0415
    from vjengine.audio.sources import has_output_device  # noqa: PLC0415
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
    asked = getattr(args, "play", None)
    play = asked if asked is not None else demo and has_output_device()
    loop = bool(file) and (demo or getattr(args, "loop", False))
    try:
        source = open_source(device=args.audio_device, file=file, demo_audio=demo_audio_path(), loop=loop,
                             monitor=bool(play), **kwargs)
    except DeviceError as exc:
        if asked or not play:  # --play asked for, or not about playing at all: the user's to fix
            raise
        log.warning("%s; the demo plays silently (--no-play)", exc)
        source = open_source(device=args.audio_device, file=file, demo_audio=demo_audio_path(), loop=loop, **kwargs)
    if getattr(source, "monitor", False):
        via = getattr(source, "host_api", None)
        log.info("playing %s to the speakers%s; the picture follows what is heard (%.0f ms output latency)",
                 Path(source.path).name, f" through {via}" if via else "", source.output_latency_s * 1000.0)
    engine = AudioEngine(source, config=AnalysisConfig(beat_tracker=getattr(args, "beat_tracker", "dsp")),
                         latency_ms=args.latency_ms or 0.0)
    played = getattr(source, "path", None)
    info = {"file": str(Path(played).resolve()) if played else None, "device": args.audio_device,
            "samplerate": source.samplerate, "status": engine.status}
    return engine, info


def audio_hud_lines(frame: Any) -> list[str]:
    """The beat clock for the HUD, with the keys that correct it (beat 1 wrong: R, or /vj/resync)."""
    if frame is None:
        return []
    lock = "locked" if getattr(frame, "locked", False) else "searching"
    beat = f"beat {int(getattr(frame, 'beat_in_bar', 0)) + 1}/{int(getattr(frame, 'beats_per_bar', 4))}"
    return [f"{getattr(frame, 'bpm', 0):.1f} BPM {lock}  {beat}  level {getattr(frame, 'level', 0):.2f}  "
            f"{getattr(frame, 'input_status', '')}",
            "R (or /vj/resync): the beat now is 1   space: tap tempo"]


def stop_audio(audio: Any) -> None:
    fn = getattr(audio, "close", None)
    if callable(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            log.warning("audio close: %s", exc)


def _stderr_is_terminal() -> bool:
    import sys  # noqa: PLC0415

    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class LiveShow:
    """One `vj live` / `vj demo` run: ``open()`` builds everything, ``run()`` loops until quit,
    ``close()`` releases it in order (audio, OSC, logs, screenshot, window)."""

    def __init__(self, args: argparse.Namespace, setup: ShowSetup, audio: Any, audio_info: dict[str, Any]) -> None:
        from vjengine.sync.live import SyncParts  # noqa: PLC0415

        self.args = args
        self.setup = setup
        self.audio_info = audio_info
        self.size = parse_size(args.size)
        self.queue = CommandQueue()
        self.audio = audio
        self.sync = SyncParts(args, self.queue)  # a bad --midi-map stops here (exit 2), before any window
        self.audio = audio = self.sync.wrap(audio)  # the beat clock's router (audio, tap, Link, MIDI clock)
        self.show = ShowState(setup.entries, setup.library, preset=setup.preset_index,
                              crossfade_s=setup.crossfade_s, quantize=setup.quantize, audio=audio)  # type: ignore[arg-type]
        self.headless = bool(args.headless or not display_available())
        self.presenter: Presenter | None = None
        self.compositor: Any = None
        self.textures: list[Any] = []
        self.recorder: Recorder | None = None
        self.hashes: Any = None
        self.server: Any = None
        self.osc_out: Any = None
        self.loop: FrameLoop | None = None
        self.video: Any = None  # --out sinks and the --operator preview (vjengine.output.live)
        self._bank_seen = self.show.bank_index
        self.governor: Any = None
        self.stats_writer: Any = None
        self.stop_requested: str | None = None  # the signal that asked the show to end
        self.sync.register(self.show)

    # --- set-up ------------------------------------------------------------------------------

    def _open_output(self) -> Any:
        """The presenter and its GL context: a window, or headless through EGL when asked for or when
        there is no display and no screen was asked for. A window, monitor or fullscreen that was
        asked for and cannot be had is a :class:`DeviceError` (exit 2), never a silent headless run."""
        args = self.args
        screen = args.fullscreen or args.monitor is not None
        if args.headless and screen:
            raise ConfigError("--headless renders offscreen: it cannot go with --fullscreen or --monitor")
        if self.headless and screen:
            raise DeviceError(f"{'--fullscreen' if args.fullscreen else f'--monitor {args.monitor}'} needs a display, "
                              "and none is set (DISPLAY / WAYLAND_DISPLAY); run on the desktop session, or use "
                              "--headless to render offscreen")
        if not self.headless:
            from vjengine.render.window import Window  # noqa: PLC0415

            window = Window(size=self.size, fullscreen=args.fullscreen, monitor=args.monitor, queue=self.queue,
                            axis_names=[a.name for a in self.show.axes])
            self.presenter = WindowPresenter(window, self.show, **self._operator(window))
            log.info("window %dx%d%s (F fullscreen, H HUD, 1-9 presets, space tap, R resync: this beat is the "
                     "one, arrows nudge, B blackout, Esc twice quits)", *window.size,
                     " fullscreen" if args.fullscreen else "")
            return window.ctx
        from vjengine.render.context import headless_context  # noqa: PLC0415

        if getattr(args, "operator", False):
            log.warning("--operator needs a display: no operator window in a headless show")
        if not args.headless:
            log.warning("no display found: rendering headless (EGL) at %dx%d for %s s; the last frame goes to %s",
                        self.size[0], self.size[1], args.duration or DEFAULT_HEADLESS_DURATION_S,
                        args.screenshot or "vj-last-frame.png")
        self.presenter = HeadlessPresenter(self.size, args.fps, pace=True)
        return headless_context()

    def _operator(self, window: Any) -> dict[str, Any]:
        """``--operator``: the second window, previewing the show through the output hub."""
        if not getattr(self.args, "operator", False) or self.video is None:
            return {}
        from vjengine.output.live import OPERATOR_FPS, operator_preview_size  # noqa: PLC0415
        from vjengine.output.operator import OperatorView  # noqa: PLC0415

        size = operator_preview_size(self.size)
        try:
            view = OperatorView(queue=self.queue, axis_names=[a.name for a in self.show.axes], preview_size=size,
                                fps=OPERATOR_FPS, projector=window)
        except Exception as exc:  # noqa: BLE001
            log.warning("no operator window (%s); the HUD stays on the projector window", exc)
            window.make_current()
            return {}
        hub = self.video.hub
        hub.add_local(size, OPERATOR_FPS)
        log.info("operator window: preview %dx%d, HUD, beat lights (H toggles its HUD)", *size)
        return {"operator": view, "preview": lambda: hub.latest(size)}

    def _open_osc(self) -> None:
        """The OSC server and OSC out when the options exist (``--no-osc`` skips the server)."""
        args = self.args
        if not hasattr(args, "osc_port"):
            return
        from vjengine.control.osc_args import out_from_args, server_from_args  # noqa: PLC0415

        if not getattr(args, "no_osc", False):
            self.server = server_from_args(args, self.queue, axis_names=[a.name for a in self.show.axes],
                                           fx_params=osc_fx_names(), status_provider=self.show.status)
            self.server.start()
        self.osc_out = out_from_args(args)

    def open(self) -> None:
        from vjengine.clock import RealClock  # noqa: PLC0415
        from vjengine.render.compositor import Compositor  # noqa: PLC0415
        from vjengine.render.residency import default_budget_mb, frame_source  # noqa: PLC0415

        args = self.args
        if getattr(args, "out", None) or getattr(args, "operator", False):
            from vjengine.output.live import VideoOut  # noqa: PLC0415

            # every --out URL parsed and checked before a window opens (ConfigError: exit 2)
            self.video = VideoOut(args.out or [], queue=self.queue, status_provider=self.show.status)
        ctx = self._open_output()
        self.compositor = Compositor(ctx, output_size=self.size, fit=args.fit)
        budget = getattr(args, "gpu_budget_mb", None)
        streaming = [b for b in self.setup.banks if budget is not None or b.codec != "raw"]
        if budget is None and streaming:
            budget, where = default_budget_mb(ctx)
            log.info("GPU budget for frames: %.0f MB (%s; --gpu-budget-mb sets it)", budget, where)
        share = None if budget is None else budget / len(streaming)  # the set's streaming banks share it
        # a progress bar writes to stderr in this thread: only on a terminal (a pipe nobody reads, a
        # supervisor's, would hold the show's start; the "uploaded" log line goes through the log queue)
        bars = _stderr_is_terminal()
        self.textures = [frame_source(ctx, b, gpu_budget_mb=share if b in streaming else None, progress=bars, live=True)
                         for b in self.setup.banks]
        for tex in self.textures:  # every shader variant now, not mid-show
            self.compositor.warm_up(tex)
            if hasattr(tex, "reset_stats"):  # the show's figures start with its first frame
                tex.reset_stats()
        hooks = []
        if args.record:
            audio_info = self.audio_info
            if getattr(self.audio, "source", None) is not None:  # the sound of the show, for the replay's mp4
                wav = Path(args.record).with_suffix(".wav")
                self.audio.source = AudioRecorder(self.audio.source, wav)
                audio_info = dict(audio_info, recorded=str(wav.resolve()))
            self.recorder = Recorder(args.record, record_header(self.setup, self.show, self.size, args.fit,
                                                                audio_info, args.strobe_max_hz))
        if args.frame_hashes:
            fh = open_for_writing(args.frame_hashes, "--frame-hashes")  # the hook closes it
            self.hashes = FrameHashes(fh, background=True)  # hashed and written off the render thread
            hooks.append(self.hashes)
        if self.video is not None:
            self.video.start(ctx, self.size)
            hooks.append(self.video)
        self._open_osc()
        if not getattr(args, "no_degrade", False):
            from vjengine.show.degrade import Governor  # noqa: PLC0415

            self.governor = Governor(args.fps if self.headless else getattr(self.presenter, "refresh_hz", 60.0) or 60.0)
        if args.stats:
            from vjengine.show.statslog import StatsWriter  # noqa: PLC0415

            self.stats_writer = StatsWriter(args.stats)
        self.show.presets.start_watching()  # preset files are read on their own thread from now on
        self.loop = FrameLoop(clock=RealClock(), queue=self.queue, show=self.show, audio=self.audio,
                              compositor=self.compositor, banks=self.textures, presenter=self.presenter,
                              recorder=self.recorder, cues=self.setup.cues, output_hooks=hooks,
                              strobe_max_hz=args.strobe_max_hz, on_frame=self.after_frame,
                              governor=self.governor, stats_writer=self.stats_writer)
        if self.stop_requested:
            self.loop.quit = True
        self.show.publish_status(None, {"fps": 0.0})
        start_analysis = getattr(self.audio, "start_thread", None)
        if callable(start_analysis):  # reading and analysing audio off the render thread from now on
            start_analysis()
        # What exists now (banks, shaders, modules) lives for the whole show: out of the collector's
        # sight, so a full collection mid-show walks only what the show made since, not everything.
        gc.collect()
        gc.freeze()
        log.info("show: %d bank(s), preset %r, %s", len(self.setup.banks), self.show.current_preset.name,
                 "headless" if self.headless else "window")

    # --- per frame ---------------------------------------------------------------------------

    def after_frame(self, frame: Any, state: FrameState) -> None:
        """HUD and status every few frames, OSC names on a bank switch, OSC out, status replies."""
        loop, show, server = self.loop, self.show, self.server
        try:
            self.sync.after_frame(show, frame)
        except Exception as exc:  # noqa: BLE001
            loop.failed("midi values", exc)
        if loop.stats.frames % HUD_EVERY == 0:
            extra: dict[str, Any] = {"fps": loop.stats.recent_fps()}
            if self.governor is not None:
                extra["quality"] = self.governor.status()
            video_lines: list[str] = []
            if self.video is not None:
                extra.update(self._page_status(frame))
                video_lines = self.video.hud_lines()
            extra.update(self.sync.status())  # the clock's source, MIDI learn (the page arms it)
            show.publish_status(frame, extra)
            frames_line = getattr(self.textures[state.bank], "hud_line", None) if self.textures else None
            self.presenter.set_hud(show.hud_lines() + audio_hud_lines(frame)
                                   + ([frames_line()] if frames_line else [])  # resident/total, low tier
                                   + ([server.stats.hud_line()] if server else [])
                                   + self.sync.hud_lines()
                                   + ([self.governor.hud_line()] if self.governor is not None else []) + video_lines)
            if isinstance(self.presenter, WindowPresenter):
                self.presenter.learn = self.sync.learn_line()  # the operator view's learn row
                if frame is not None:
                    self.presenter.input_level = float(getattr(frame, "rms", 0.0))
        if isinstance(self.presenter, WindowPresenter):
            self.presenter.frame = frame
        if server is not None and state.bank != self._bank_seen:
            self._bank_seen = state.bank
            server.set_names([a.name for a in show.axes], osc_fx_names())
        if self.osc_out is not None and frame is not None:
            from vjengine.control.osc_out import out_values  # noqa: PLC0415

            try:
                self.osc_out.publish(out_values(frame, coord=state.coord, axis_names=[a.name for a in show.axes],
                                                preset_name=show.current_preset.name,
                                                preset_index=show.preset_index), time.perf_counter())
            except Exception as exc:  # noqa: BLE001
                loop.failed("osc out", exc)
        for reply_to in show.status_replies:
            if server is not None and reply_to:
                try:
                    server.send_status(tuple(reply_to), show.status())
                except Exception as exc:  # noqa: BLE001
                    loop.failed("status reply", exc)
        show.status_replies.clear()

    def _page_status(self, frame: Any) -> dict[str, Any]:
        """What the status adds with video out: each sink's state, and for the operator page the
        preset and bank names and the beat (``/vj/status`` carries them too)."""
        show = self.show
        out: dict[str, Any] = {"outputs": self.video.status(),
                               "presets": [p.name for p in show.presets.presets],
                               "banks": [b.name for b in show.banks]}
        if frame is not None:
            out.update(level=float(getattr(frame, "level", 0.0)), beat_phase=float(getattr(frame, "beat_phase", 0.0)),
                       bar_phase=float(getattr(frame, "bar_phase", 0.0)),
                       beats_per_bar=int(getattr(frame, "beats_per_bar", 4) or 4))
        return out

    def run(self) -> None:
        args = self.args
        duration_s = args.duration if args.duration is not None else (
            DEFAULT_HEADLESS_DURATION_S if self.headless else None)
        loop = self.loop
        try:
            while not self.stop_requested and loop.step():
                if duration_s is not None and loop.clock.now_s >= duration_s:
                    break
        except KeyboardInterrupt:
            log.info("interrupted")

    def request_stop(self, signal_name: str) -> None:
        """SIGTERM / SIGHUP / SIGINT: end after the frame in progress (see vjengine.shutdown)."""
        self.stop_requested = signal_name
        if self.loop is not None:
            self.loop.quit = True

    # --- tear-down ---------------------------------------------------------------------------

    def close(self) -> None:
        args = self.args
        self.show.presets.stop_watching()
        self.sync.close()
        stop_audio(self.audio)
        if self.server is not None:
            self.server.stop()
        if self.osc_out is not None and hasattr(self.osc_out, "close"):
            self.osc_out.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.hashes is not None:
            self.hashes.close()
        if self.stats_writer is not None:
            self.stats_writer.close({"residency": [t.status() for t in (self.textures or []) if hasattr(t, "status")]})
        if self.video is not None:
            self.video.close()
        shot = args.screenshot or ("vj-last-frame.png" if self.headless else None)
        if shot and self.loop is not None and self.loop.stats.frames:
            try:
                from vjengine.render.still import write_png  # noqa: PLC0415

                write_png(Path(shot), self.compositor.read_rgb())
                log.info("last frame saved to %s", shot)
            except Exception as exc:  # noqa: BLE001
                log.error("could not save %s: %s", shot, exc)
        if self.presenter is not None:
            self.presenter.close()
        st = self.loop.stats if self.loop is not None else None
        if st is not None and st.frames:
            log.info("%d frames, %.1f fps, frame time p99 %.1f ms", st.frames, st.recent_fps(),
                     float(np.percentile(st.frame_ms, 99)))


# after a stop signal or the end of the loop, a show not closed this long is stuck: its stacks are
# dumped and it exits 1 (a normal close takes a few seconds even on a loaded machine; systemd's own
# limit is 90 s). VJ_STOP_DEADLINE_S changes it (a supervisor with a shorter limit; the tests).
STOP_DEADLINE_S = 30.0


def stop_deadline_s() -> float:
    text = os.environ.get("VJ_STOP_DEADLINE_S", "")
    try:
        value = float(text) if text else STOP_DEADLINE_S
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600.0:  # also NaN
        log.warning("VJ_STOP_DEADLINE_S=%r: not a number of seconds within 0.1..3600; using %.0f",
                    text, STOP_DEADLINE_S)
        return STOP_DEADLINE_S
    return value


def run_show(args: argparse.Namespace, setup: ShowSetup, audio: Any, audio_info: dict[str, Any]) -> int:
    """Build the show, open a window (or go headless) and run the loop until quit. The audio is
    closed whatever happens."""
    from vjengine.priority import raise_render_priority, restore_session_priority  # noqa: PLC0415
    from vjengine.shutdown import GracefulStop, arm_stop_deadline, cancel_stop_deadline  # noqa: PLC0415

    log.info("render thread priority: %s", raise_render_priority())  # threads started from here inherit it
    deadline_s = stop_deadline_s()
    try:
        live = LiveShow(args, setup, audio, audio_info)
    except BaseException:
        stop_audio(audio)
        restore_session_priority()
        raise
    try:
        with GracefulStop(on_stop=live.request_stop, deadline_s=deadline_s):
            live.open()
            live.run()
    finally:
        arm_stop_deadline(deadline_s)  # however the show ended, closing it cannot hang the process
        try:
            live.close()
        finally:
            cancel_stop_deadline()
            restore_session_priority()  # the terminal's session outlives the show
    if live.stop_requested:
        log.info("%s: the show ended cleanly", live.stop_requested)
    return 0


def run(args: argparse.Namespace) -> int:
    from vjengine.logqueue import LogOffThread  # noqa: PLC0415

    with LogOffThread():  # a stderr nobody reads never stalls a frame (or the set-up before it)
        setup = build_setup(args.banks, args)
        if setup.cues is not None:
            from vjengine.show.cues import require_resolved  # noqa: PLC0415

            require_resolved(setup.cues.cues)  # live has no song to find sections in
        audio, info = open_audio(args)
        return run_show(args, setup, audio, info)


__all__ = ["LiveShow", "open_audio", "run_show", "run", "add_arguments"]
