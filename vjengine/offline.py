"""`vj render`: a song (or a recorded set) rendered offline to an h264 mp4 with the song's audio.

``vj render SONG [--bank B ...] [--preset P] -o out.mp4 [--size WxH] [--fps N] [--cues C]``
runs the live analysis and mapping driven by a fixed-step clock (frame n sees exactly the audio up
to ``n / fps`` s), renders headless through EGL and pipes frames to imageio-ffmpeg's bundled ffmpeg
(libx264 + AAC of the song). Without ``--bank`` it uses the built-in demo bank; without
``--preset`` the first shipped preset.

``vj render --replay set.jsonl -o set.mp4`` renders a ``vj live --record`` log: the same frames,
commands, preset edits and frame times go through the same :class:`~vjengine.app.FrameLoop`, so
each recorded frame becomes one video frame with the same pixels (at the recorded size).
"""

from __future__ import annotations

import argparse
import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vjengine.app import FrameLoop, Presenter, ShowSetup, build_setup, load_library, parse_size
from vjengine.control.commands import CommandQueue
from vjengine.errors import ConfigError, VJError
from vjengine.mapping.preset import PresetLibrary, parse_preset
from vjengine.config import parse_toml
from vjengine.show.record import SetLog
from vjengine.show.state import BankEntry, ShowState

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("song", nargs="?", default=None, help="audio file (WAV/FLAC/...) to render to")
    parser.add_argument("-o", "--output", required=True, help="output .mp4")
    parser.add_argument("--bank", action="append", default=None, metavar="B",
                        help="bank directory or setlist .toml (repeat for a set; default: the demo bank)")
    parser.add_argument("--preset", action="append", default=None, metavar="P", help="preset name or .toml path")
    parser.add_argument("--cues", default=None, metavar="C", help="cue sheet (.toml or .csv)")
    parser.add_argument("--replay", default=None, metavar="JSONL", help="render a `vj live --record` log instead")
    parser.add_argument("--size", default=None, help="output WxH (default 1920x1080; a replay: its recorded size)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frames per second (default 60; a replay: the rate it was recorded at)")
    parser.add_argument("--fit", choices=("fit", "fill", "stretch"), default=None, help="aspect handling (default fill)")
    parser.add_argument("--crossfade", type=float, default=None, metavar="S", help="bank/preset crossfade seconds")
    parser.add_argument("--quantize", choices=("none", "beat", "bar"), default=None)
    parser.add_argument("--start", type=float, default=0.0, metavar="S", help="start this many seconds into the song")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="render at most S seconds")
    parser.add_argument("--quality", type=float, default=7.0, help="h264 quality 0..10 (default 7)")
    parser.add_argument("--strobe-max-hz", type=float, default=3.0, help="cap on flashes per second (default 3)")
    parser.add_argument("--frame-hashes", default=None, metavar="TXT", help="write a SHA-256 of every frame")
    parser.add_argument("--no-audio", action="store_true", help="do not mux the song's audio")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------
# Audio: the live analysis fed exactly the samples up to each frame's time


def read_song(path: str | Path, start_s: float = 0.0, duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples (the live file source's mix) from ``start_s`` for ``duration_s``, and the rate."""
    from vjengine.audio.sources import load_audio  # noqa: PLC0415

    mono, sr = load_audio(path)
    a = int(round(max(0.0, start_s) * sr))
    b = len(mono) if duration_s is None else min(len(mono), a + int(round(duration_s * sr)))
    if b <= a:
        raise ConfigError(f"{path}: nothing to render between {start_s:g} s and the end ({len(mono) / sr:.2f} s)")
    return mono[a:b], int(sr)


def write_song_part(src: str | Path, dst: str | Path, start_s: float, seconds: float) -> None:
    """Copy ``seconds`` of ``src`` from ``start_s`` (all channels) to a float WAV for muxing."""
    import soundfile  # noqa: PLC0415

    info = soundfile.info(str(src))
    a = int(round(start_s * info.samplerate))
    data, sr = soundfile.read(str(src), start=a, frames=int(round(seconds * info.samplerate)), dtype="float32",
                              always_2d=True)
    soundfile.write(str(dst), data, sr, subtype="FLOAT")


class PushAudio:
    """The audio engine in push mode: ``poll(now_s)`` analyses every sample up to ``now_s``."""

    def __init__(self, samples: np.ndarray, samplerate: int) -> None:
        from vjengine.audio.engine import AudioEngine  # noqa: PLC0415

        self.samples = samples
        self.samplerate = samplerate
        self.fed = 0
        self.engine = AudioEngine.offline(samplerate)

    def poll(self, now_s: float) -> Any:
        upto = min(len(self.samples), int(round(now_s * self.samplerate)))
        if upto > self.fed:
            self.engine.feed(self.samples[self.fed:upto])
            self.fed = upto
        return self.engine.poll(now_s)


# ---------------------------------------------------------------------------------------------
# Encoding: ffmpeg in its own process, fed from a writer thread so GL and x264 overlap


class EncoderPresenter(Presenter):
    """Reads each rendered frame back (RGBA) and queues it for ffmpeg (h264, yuv420p, AAC audio).

    Draw into the renderer's own output (``target`` None): that is the framebuffer read here.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, *, audio_path: str | None = None,
                 quality: float = 7.0, progress: Any = None, duration_s: float | None = None) -> None:
        import imageio_ffmpeg  # noqa: PLC0415

        self.size = size
        self.path = Path(path)
        self.progress = progress
        # Frames go in as the GL framebuffer holds them (RGBA, bottom row first): ffmpeg flips and
        # converts far cheaper than a numpy copy on the render thread (~15 ms at 720p).
        input_params: list[str] = []
        output_params = ["-vf", "vflip", "-movflags", "+faststart"]
        if audio_path and duration_s:
            # the audio may run longer or shorter than the video: the video's length decides
            output_params += ["-t", f"{duration_s:.6f}"]
        audio_params = {}
        if audio_path:
            audio_params = {"audio_path": str(audio_path), "audio_codec": "aac"}
        self._writer = imageio_ffmpeg.write_frames(
            str(self.path), size, fps=fps, codec="libx264", quality=quality, macro_block_size=2,
            pix_fmt_in="rgba", input_params=input_params, output_params=output_params,
            ffmpeg_log_level="error", **audio_params)
        self._writer.send(None)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=6)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vj-encode", daemon=True)
        self._thread.start()
        self.frames = 0

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                self._writer.send(item)
            except BaseException as exc:  # noqa: BLE001
                self._error = exc

    def present(self, renderer: Any) -> None:
        if self._error is not None:
            raise VJError(f"{self.path}: ffmpeg failed: {self._error}")
        fbo = renderer.output
        data = fbo.read(viewport=fbo.viewport, components=4, alignment=1)
        self._queue.put(data)
        self.frames += 1
        if self.progress is not None:
            self.progress.update(1)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._writer.close()
        except Exception as exc:  # noqa: BLE001
            self._error = self._error or exc
        if self._error is not None:
            raise VJError(f"{self.path}: ffmpeg failed: {self._error}")


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, smoothing=0.1)


def _close_render(bar: Any, hashes: Any, presenter: Any, renderers: list[Any], ctx: Any) -> None:
    """Finish an offline render in order: progress bar, hash file, encoder (muxes), then GL."""
    if bar is not None:
        bar.close()
    if hashes is not None:
        hashes.close()
    presenter.close()
    for r in renderers:
        r.release()
    ctx.release()


# ---------------------------------------------------------------------------------------------
# Song render


def render_song(args: argparse.Namespace) -> int:
    from vjengine.clock import FixedStepClock  # noqa: PLC0415
    from vjengine.render.context import headless_context  # noqa: PLC0415
    from vjengine.render.renderer import Renderer  # noqa: PLC0415

    size = parse_size(args.size or "1920x1080")
    fps = float(args.fps or 60.0)
    if not (1.0 <= fps <= 240.0):
        raise ConfigError(f"--fps {fps:g}: must be 1..240")
    samples, sr = read_song(args.song, args.start, args.duration)
    n_frames = max(1, int(math.floor(len(samples) / sr * fps + 1e-9)))
    if args.bank:
        bank_args = list(args.bank)
    else:
        from vjengine.demo import demo_bank_path  # noqa: PLC0415

        bank_args = [str(demo_bank_path())]
    setup: ShowSetup = build_setup(bank_args, args)
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize)  # type: ignore[arg-type]
    ctx = headless_context()
    fit = args.fit or "fill"
    renderers = [Renderer(ctx, b, output_size=size, fit=fit, progress=False) for b in setup.banks]
    audio = PushAudio(samples, sr)
    bar = _progress(n_frames, not args.no_progress, Path(args.output).name)
    audio_path: str | None = None
    tmp_dir = None
    if not args.no_audio:
        audio_path = args.song
        if args.start > 0 or args.duration is not None:  # mux exactly the rendered part
            import tempfile  # noqa: PLC0415

            tmp_dir = tempfile.TemporaryDirectory(prefix="vj-render-")
            audio_path = str(Path(tmp_dir.name) / "song.wav")
            write_song_part(args.song, audio_path, args.start, len(samples) / sr)
    presenter = EncoderPresenter(args.output, size, fps, audio_path=audio_path, quality=args.quality, progress=bar,
                                 duration_s=n_frames / fps)
    hashes = open(args.frame_hashes, "w", encoding="utf-8") if args.frame_hashes else None  # noqa: SIM115
    loop = FrameLoop(clock=FixedStepClock(fps), queue=CommandQueue(), show=show, audio=audio, renderers=renderers,
                     presenter=presenter, cues=setup.cues, frame_hashes=hashes, strobe_max_hz=args.strobe_max_hz,
                     reload_presets=False)
    t0 = time.perf_counter()
    try:
        for _ in range(n_frames):
            loop.step()
    finally:
        _close_render(bar, hashes, presenter, renderers, ctx)
        if tmp_dir is not None:
            tmp_dir.cleanup()
    wall = time.perf_counter() - t0
    log.info("%s: %d frames at %g fps (%.2f s of video) in %.1f s (%.1f frames/s)", args.output, n_frames, fps,
             n_frames / fps, wall, n_frames / wall if wall > 0 else 0.0)
    return 0


# ---------------------------------------------------------------------------------------------
# Replay


# Commands that do not change the picture in a replay (the recorded audio frames already carry the
# effect of tap/bpm/resync on the beat clock).
NOT_VISUAL = frozenset({"status", "fullscreen", "hud", "quit", "tap", "bpm", "resync"})


class _ReplayClock:
    def __init__(self) -> None:
        self.now_s = 0.0


def replay_library(header: dict[str, Any], source: Path) -> PresetLibrary:
    """The presets exactly as they were when the set was recorded (their text is in the header)."""
    lib = PresetLibrary()
    for i, entry in enumerate(header.get("presets", [])):
        text = entry.get("text")
        where = f"{source} (recorded preset {entry.get('key') or i})"
        if text is None:
            raise ConfigError(f"{where}: the log holds no text for this preset")
        path = Path(entry["path"]) if entry.get("path") else None
        lib.add(parse_preset(parse_toml(text, where), where, path))
    # the recorded text is authoritative: never reload from disk
    for e in lib._entries:  # noqa: SLF001
        e.path = None
    return lib


def render_replay(args: argparse.Namespace) -> int:
    from vjengine.bank import open_bank  # noqa: PLC0415
    from vjengine.render.context import headless_context  # noqa: PLC0415
    from vjengine.render.renderer import Renderer  # noqa: PLC0415

    setlog = SetLog(args.replay)
    h = setlog.header
    size = parse_size(args.size) if args.size else tuple(h.get("size", (1920, 1080)))
    total = setlog.count()
    recorded_s = setlog.duration_s()
    recorded_fps = total / recorded_s if recorded_s > 0 else 60.0
    fps = float(args.fps) if args.fps else round(recorded_fps, 3)
    if args.fps and abs(args.fps - recorded_fps) > 0.02 * recorded_fps:
        log.warning("the set was recorded at %.2f frames/s; at --fps %g the video runs %s than the show "
                    "(frames are replayed one for one)", recorded_fps, args.fps,
                    "faster" if args.fps > recorded_fps else "slower")
    banks = []
    for b in h.get("banks", []):
        if not b.get("path"):
            raise ConfigError(f"{args.replay}: bank {b.get('name')!r} has no path in the log")
        banks.append(open_bank(b["path"]))
    if not banks:
        raise ConfigError(f"{args.replay}: the log names no banks")
    entries = [BankEntry.from_bank(bk, b["name"], b.get("preset")) for bk, b in zip(banks, h["banks"])]
    lib = replay_library(h, Path(args.replay))
    show = ShowState(entries, lib, preset=int(h.get("preset_index", 0)), bank=int(h.get("bank_index", 0)),
                     crossfade_s=float(h.get("crossfade_s", 2.0)), quantize=h.get("quantize", "bar"))
    ctx = headless_context()
    fit = args.fit or h.get("fit", "fill")
    renderers = [Renderer(ctx, b, output_size=size, fit=fit, progress=False) for b in banks]
    if args.duration is not None:
        total = min(total, int(args.duration * fps))
    audio_info = h.get("audio") or {}
    audio_file = audio_info.get("recorded") or audio_info.get("file")
    if audio_file and not Path(audio_file).is_file():
        log.warning("recorded audio file %s not found: the video will be silent", audio_file)
        audio_file = None
    bar = _progress(total, not args.no_progress, Path(args.output).name)
    presenter = EncoderPresenter(args.output, size, fps, audio_path=None if args.no_audio else audio_file,
                                 quality=args.quality, progress=bar, duration_s=total / fps)
    hashes = open(args.frame_hashes, "w", encoding="utf-8") if args.frame_hashes else None  # noqa: SIM115
    loop = FrameLoop(clock=_ReplayClock(), queue=CommandQueue(), show=show, audio=None, renderers=renderers,
                     presenter=presenter, frame_hashes=hashes,
                     strobe_max_hz=float(h.get("strobe_max_hz", args.strobe_max_hz)), reload_presets=False)
    diverged = 0
    n = 0
    try:
        for rf in setlog.frames():
            if n >= total:
                break
            for index, text in rf.reloads:
                try:
                    where = f"{args.replay} frame {rf.index} preset {index}"
                    lib.put(index, parse_preset(parse_toml(text, where), where))  # an edit, or a new file
                except (VJError, IndexError) as exc:
                    log.warning("recorded preset edit not applied: %s", exc)
            cmds = [c for c in rf.commands if c.kind not in NOT_VISUAL]
            state = loop.run_frame(rf.dt_s, rf.now_s, rf.audio, cmds, changed_presets=bool(rf.reloads))
            if rf.output is not None and not diverged:
                if rf.output.get("bank") != state.bank or not np.allclose(rf.output.get("coord", []), state.coord,
                                                                          atol=1e-12, rtol=0):
                    diverged = rf.index + 1
                    log.warning("replay differs from the recording from frame %d on (recorded %r, now %r)",
                                rf.index, rf.output, {"bank": state.bank, "coord": state.coord})
            n += 1
    finally:
        _close_render(bar, hashes, presenter, renderers, ctx)
    log.info("%s: replayed %d frames%s", args.output, n, "" if not diverged else f" (diverged at frame {diverged - 1})")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.replay:
        if args.song:
            raise ConfigError("give either SONG or --replay, not both")
        return render_replay(args)
    if not args.song:
        raise ConfigError("vj render needs SONG (an audio file) or --replay set.jsonl")
    return render_song(args)


__all__ = ["read_song", "PushAudio", "EncoderPresenter", "render_song", "render_replay", "load_library"]
