"""`vj render`: a song (or a recorded set) rendered offline to an h264 mp4 with the song's audio.

``vj render SONG [--bank B ...] [--preset P] -o out.mp4 [--size WxH] [--fps N] [--cues C]``
runs the live analysis and mapping driven by a fixed-step clock (frame n sees exactly the audio up
to ``n / fps`` s), renders headless through EGL and pipes frames to imageio-ffmpeg's bundled ffmpeg
(libx264 + AAC of the song). Without ``--bank`` it uses the built-in demo bank; without
``--preset`` the first shipped preset.

``vj render --replay set.jsonl -o set.mp4`` renders a ``vj live --record`` log: the same frames,
commands, preset edits and frame times go through the same :class:`~vjengine.frameloop.FrameLoop`, so
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

from vjengine.config import parse_size, parse_toml
from vjengine.control.commands import CommandQueue
from vjengine.errors import ConfigError, VJError
from vjengine.frameloop import FrameHashes, FrameLoop, Presenter
from vjengine.mapping.preset import PresetLibrary, parse_preset
from vjengine.show.degrade import LEVELS
from vjengine.show.setup import ShowSetup, build_setup
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
    parser.add_argument("--end", type=float, default=None, metavar="S",
                        help="stop this many seconds into the song (with --start: an excerpt)")
    parser.add_argument("--preview", action="store_true",
                        help="first render OUTPUT.preview.mp4 at low resolution (a quarter of the size, 24 fps)")
    parser.add_argument("--preview-only", action="store_true", help="render only the low-resolution preview")
    parser.add_argument("--lyrics", default=None, metavar="LRC",
                        help="timed lyrics (.lrc or .csv time,line[,style,negative]): walk the bank's lyric axis")
    parser.add_argument("--lyrics-axis", default=None, metavar="NAME", help="the axis --lyrics walks (default lyrics)")
    parser.add_argument("--sections", default=None, metavar="TXT",
                        help="sections.txt for cues that name sections (default: found from the song)")
    from vjengine.audio.analyzer import add_beat_tracker_argument  # noqa: PLC0415

    add_beat_tracker_argument(parser)
    parser.add_argument("--stems", default=None, metavar="SEP",
                        help="separate the song first and give each stem's level as a feature (stem_drums, ...): "
                             "hpss (no model) or demucs:MODEL.th (the stems extra, weights you downloaded)")
    parser.add_argument("--refine", default=None, metavar="SPEC",
                        help="refine the video with SD img2img (a refine spec TOML; needs the build extra)")
    parser.add_argument("--quality", type=float, default=7.0, help="h264 quality 0..10 (default 7)")
    parser.add_argument("--strobe-max-hz", type=float, default=3.0, help="cap on flashes per second (default 3)")
    parser.add_argument("--gpu-budget-mb", type=float, default=None, metavar="MB",
                        help="GPU memory for the banks' frames (a larger bank streams; every frame is still "
                             "drawn at full resolution)")
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
    """The audio engine in push mode: ``poll(now_s)`` analyses every sample up to ``now_s``.

    ``stems`` (name -> samples, from a :class:`~vjengine.audio.hpss.Separator`): each stem runs its
    own analysis and its level replaces the frame's ``stems`` mapping (features ``stem_<name>``)."""

    def __init__(self, samples: np.ndarray, samplerate: int, stems: dict[str, np.ndarray] | None = None,
                 beat_tracker: str = "dsp") -> None:
        from vjengine.audio.analyzer import AnalysisConfig, Analyzer  # noqa: PLC0415
        from vjengine.audio.engine import AudioEngine  # noqa: PLC0415

        self.samples = samples
        self.samplerate = samplerate
        self.fed = 0
        self.engine = AudioEngine.offline(samplerate, config=AnalysisConfig(beat_tracker=beat_tracker))
        self.stems = stems or {}
        self._stem_analyzers = {name: Analyzer(samplerate) for name in self.stems}

    def poll(self, now_s: float) -> Any:
        upto = min(len(self.samples), int(round(now_s * self.samplerate)))
        fed = self.fed
        if upto > fed:
            self.engine.feed(self.samples[fed:upto])
            self.fed = upto
        frame = self.engine.poll(now_s)
        if not self.stems:
            return frame
        import dataclasses  # noqa: PLC0415
        from types import MappingProxyType  # noqa: PLC0415

        levels = {}
        for name, an in self._stem_analyzers.items():
            if upto > fed:
                an.process(self.stems[name][fed:upto])
            levels[name] = an.snapshot().level
        return dataclasses.replace(frame, stems=MappingProxyType(levels))


# ---------------------------------------------------------------------------------------------
# Encoding: ffmpeg in its own process, fed from a writer thread so GL and x264 overlap


class EncoderPresenter(Presenter):
    """Reads each rendered frame back (RGBA) and queues it for ffmpeg (h264, yuv420p, AAC audio).

    Draw into the compositor's own output (``target`` None): that is the framebuffer read here.
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

    def present(self, compositor: Any) -> None:
        if self._error is not None:
            raise VJError(f"{self.path}: ffmpeg failed: {self._error}")
        fbo = compositor.output
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


def _open_gl(banks: list[Any], size: tuple[int, int], fit: str,
             gpu_budget_mb: float | None = None) -> tuple[Any, Any, list[Any]]:
    """A headless context, the output's compositor (every shader variant compiled) and each bank's
    frames on the GPU (a compressed bank streams, but every frame is drawn sharp: ``wait_full``)."""
    from vjengine.render.compositor import Compositor  # noqa: PLC0415
    from vjengine.render.context import headless_context  # noqa: PLC0415
    from vjengine.render.residency import frame_source  # noqa: PLC0415

    ctx = headless_context()
    compositor = Compositor(ctx, output_size=size, fit=fit)
    share = None if gpu_budget_mb is None else gpu_budget_mb / max(1, len(banks))
    textures = [frame_source(ctx, b, gpu_budget_mb=share, wait_full=True) for b in banks]
    for tex in textures:
        compositor.warm_up(tex)
    return ctx, compositor, textures


def _hooks(path: str | None) -> tuple[Any, list[Any]]:
    hashes = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
    return hashes, ([FrameHashes(hashes)] if hashes is not None else [])


def _close_render(bar: Any, hashes: Any, presenter: Any, compositor: Any, textures: list[Any], ctx: Any) -> None:
    """Finish an offline render in order: progress bar, hash file, encoder (muxes), then GL."""
    if bar is not None:
        bar.close()
    if hashes is not None:
        hashes.close()
    presenter.close()
    compositor.release()
    for t in textures:
        t.release()
    ctx.release()


# ---------------------------------------------------------------------------------------------
# Song render


def partial_path(output: str | Path) -> Path:
    """Where a video is written until it is complete (same folder and suffix, hidden name)."""
    out = Path(output)
    return out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")


class AtomicOutput:
    """``with AtomicOutput(out) as tmp:`` write ``tmp``; renamed onto ``out`` only if the block succeeds,
    removed otherwise (also on Ctrl-C), so a partial video never sits under the output name."""

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        self.tmp = partial_path(output)

    def __enter__(self) -> Path:
        if not self.output.parent.is_dir():
            raise ConfigError(f"{self.output}: folder {self.output.parent} does not exist")
        self.tmp.unlink(missing_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.tmp.is_file():
            self.tmp.replace(self.output)
        else:
            self.tmp.unlink(missing_ok=True)


def song_span(args: argparse.Namespace) -> tuple[float, float | None]:
    """(start, duration or None) from --start, --duration and --end; ConfigError when they disagree."""
    start = float(args.start or 0.0)
    if start < 0:
        raise ConfigError(f"--start {start:g}: must be >= 0")
    end = getattr(args, "end", None)
    if end is None:
        return start, args.duration
    if args.duration is not None:
        raise ConfigError("give --duration or --end, not both")
    if end <= start:
        raise ConfigError(f"--end {end:g} must be after --start {start:g}")
    return start, end - start


def song_cues(args: argparse.Namespace, setup: ShowSetup, start_s: float) -> Any:
    """The cue runner for a song render: the sheet's cues plus --lyrics, sections resolved, and every
    timed cue moved to the excerpt's clock (stream time 0 is --start in the song)."""
    from vjengine.show.cues import Cue, CueRunner, needs_sections, resolve_sections  # noqa: PLC0415

    cues = list(setup.cues.cues) if setup.cues is not None else []
    if args.lyrics:
        from vjengine.show.lyrics import LYRICS_AXIS, load_lyrics, lyric_cues  # noqa: PLC0415

        axis = args.lyrics_axis or LYRICS_AXIS
        missing = [e.name for b, e in zip(setup.banks, setup.entries) if axis not in [a.name for a in b.axes]]
        if missing:
            raise ConfigError(f"--lyrics: bank {missing[0]!r} has no axis {axis!r} (build one with "
                              f"`vj-bank build --lyrics`, or name the axis with --lyrics-axis)")
        cues += lyric_cues(load_lyrics(args.lyrics), axis=axis, source=args.lyrics)
    if needs_sections(cues):
        from vjengine.audio.sections import find_sections, read_sections  # noqa: PLC0415

        if args.sections:
            sections = read_sections(args.sections)
        else:
            full, sr = read_song(args.song)
            from vjengine.audio.analyze import analyze_samples  # noqa: PLC0415

            log.info("finding the song's sections for the cue sheet")
            sections = find_sections(full, sr, analyze_samples(full, sr).beat_times)
        cues = resolve_sections(cues, sections)
    if start_s > 0:
        cues = [Cue(c.commands, max(0.0, c.at_s - start_s), c.bar, c.label, c.line, c.section, c.occurrence, c.source)
                if c.at_s is not None else c for c in cues]
    return CueRunner(cues) if cues else None


def render_song(args: argparse.Namespace) -> int:
    start_s, duration_s = song_span(args)
    size = parse_size(args.size or "1920x1080")
    fps = float(args.fps or 60.0)
    if not (1.0 <= fps <= 240.0):
        raise ConfigError(f"--fps {fps:g}: must be 1..240")
    if args.stems:
        from vjengine.audio.hpss import open_separator  # noqa: PLC0415

        open_separator(args.stems)  # a missing package or model file: say so before rendering anything
    refine = None
    if args.refine:
        from bank_builder.refine import load_refine_spec  # noqa: PLC0415

        bank0 = args.bank[0] if args.bank and Path(args.bank[0]).is_dir() else None
        refine = load_refine_spec(args.refine, default_bank=bank0)
    output = Path(args.output)
    if args.preview or args.preview_only:
        w = max(64, (size[0] // 4) // 2 * 2)
        psize = (w, max(64, int(round(w * size[1] / size[0])) // 2 * 2))
        preview = output.with_name(f"{output.stem}.preview{output.suffix or '.mp4'}")
        with AtomicOutput(preview) as tmp:
            _render_song_to(args, tmp, psize, min(fps, 24.0), start_s, duration_s)
        log.info("preview: %s (%dx%d)", preview, *psize)
        if args.preview_only:
            return 0
    if refine is None:
        with AtomicOutput(output) as tmp:
            _render_song_to(args, tmp, size, fps, start_s, duration_s)
        return 0
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from bank_builder.refine import refine_video, work_dir_for  # noqa: PLC0415

    # the rough render and the refined pieces stay until the output is complete: a killed run
    # started again with the same arguments redoes only what is missing
    work = work_dir_for(output)
    work.mkdir(parents=True, exist_ok=True)
    same = {k: v for k, v in sorted(vars(args).items()) if k not in ("refine", "no_progress", "output", "command",
                                                                     "func", "preview", "preview_only")}
    key = hashlib.sha256(json.dumps(same, default=str).encode()).hexdigest()[:12]
    rough = work / f"rough-{key}{output.suffix or '.mp4'}"
    if not rough.is_file():
        with AtomicOutput(rough) as rtmp:
            _render_song_to(args, rtmp, size, fps, start_s, duration_s)
    with AtomicOutput(output) as tmp:
        refine_video(refine, rough, tmp, song=args.song, start_s=start_s, duration_s=duration_s,
                     progress=not args.no_progress, work_dir=work)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _render_song_to(args: argparse.Namespace, out_path: Path, size: tuple[int, int], fps: float, start_s: float,
                    duration_s: float | None) -> None:
    from vjengine.clock import FixedStepClock  # noqa: PLC0415

    samples, sr = read_song(args.song, start_s, duration_s)
    n_frames = max(1, int(math.floor(len(samples) / sr * fps + 1e-9)))
    if args.bank:
        bank_args = list(args.bank)
    else:
        from vjengine.demo import demo_bank_path  # noqa: PLC0415

        bank_args = [str(demo_bank_path())]
    setup: ShowSetup = build_setup(bank_args, args)
    cues = song_cues(args, setup, start_s)
    show = ShowState(setup.entries, setup.library, preset=setup.preset_index, crossfade_s=setup.crossfade_s,
                     quantize=setup.quantize)  # type: ignore[arg-type]
    ctx, compositor, textures = _open_gl(setup.banks, size, args.fit or "fill", getattr(args, "gpu_budget_mb", None))
    stems = None
    if getattr(args, "stems", None):
        from vjengine.audio.hpss import open_separator  # noqa: PLC0415

        separator = open_separator(args.stems)
        log.info("separating %s into %s", args.song, ", ".join(separator.stems))
        stems = separator.separate(samples, sr)
    audio = PushAudio(samples, sr, stems, getattr(args, "beat_tracker", "dsp"))
    bar = _progress(n_frames, not args.no_progress, Path(args.output).name)
    audio_path: str | None = None
    tmp_dir = None
    if not args.no_audio:
        audio_path = args.song
        if start_s > 0 or duration_s is not None:  # mux exactly the rendered part of the original
            import tempfile  # noqa: PLC0415

            tmp_dir = tempfile.TemporaryDirectory(prefix="vj-render-")
            audio_path = str(Path(tmp_dir.name) / "song.wav")
            write_song_part(args.song, audio_path, start_s, len(samples) / sr)
    presenter = EncoderPresenter(out_path, size, fps, audio_path=audio_path, quality=args.quality, progress=bar,
                                 duration_s=n_frames / fps)
    hashes, hooks = _hooks(args.frame_hashes)
    loop = FrameLoop(clock=FixedStepClock(fps), queue=CommandQueue(), show=show, audio=audio, compositor=compositor,
                     banks=textures, presenter=presenter, cues=cues, output_hooks=hooks,
                     strobe_max_hz=args.strobe_max_hz, reload_presets=False)
    t0 = time.perf_counter()
    try:
        for _ in range(n_frames):
            loop.step()
    finally:
        _close_render(bar, hashes, presenter, compositor, textures, ctx)
        if tmp_dir is not None:
            tmp_dir.cleanup()
    wall = time.perf_counter() - t0
    log.info("%s: %d frames at %g fps (%.2f s of video) in %.1f s (%.1f frames/s)", args.output, n_frames, fps,
             n_frames / fps, wall, n_frames / wall if wall > 0 else 0.0)


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
    lib.forget_files()  # the recorded text is authoritative
    return lib


def render_replay(args: argparse.Namespace) -> int:
    with AtomicOutput(args.output) as tmp:
        return _render_replay_to(args, tmp)


def _render_replay_to(args: argparse.Namespace, out_path: Path) -> int:
    from vjengine.bank import open_bank  # noqa: PLC0415

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
    ctx, compositor, textures = _open_gl(banks, size, args.fit or h.get("fit", "fill"),
                                         getattr(args, "gpu_budget_mb", None))
    if args.duration is not None:
        total = min(total, int(args.duration * fps))
    audio_info = h.get("audio") or {}
    audio_file = audio_info.get("recorded") or audio_info.get("file")
    if audio_file and not Path(audio_file).is_file():
        log.warning("recorded audio file %s not found: the video will be silent", audio_file)
        audio_file = None
    bar = _progress(total, not args.no_progress, Path(args.output).name)
    presenter = EncoderPresenter(out_path, size, fps, audio_path=None if args.no_audio else audio_file,
                                 quality=args.quality, progress=bar, duration_s=total / fps)
    hashes, hooks = _hooks(args.frame_hashes)
    loop = FrameLoop(clock=_ReplayClock(), queue=CommandQueue(), show=show, audio=None, compositor=compositor,
                     banks=textures, presenter=presenter, output_hooks=hooks,
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
            if rf.output is not None:  # the quality level the live show drew this frame at
                loop.apply_level(LEVELS[min(max(int(rf.output.get("q", 0) or 0), 0), len(LEVELS) - 1)],
                                 announce=False)
            state = loop.run_frame(rf.dt_s, rf.now_s, rf.audio, cmds, changed_presets=bool(rf.reloads))
            if rf.output is not None and not diverged:
                if rf.output.get("bank") != state.bank or not np.allclose(rf.output.get("coord", []), state.coord,
                                                                          atol=1e-12, rtol=0):
                    diverged = rf.index + 1
                    log.warning("replay differs from the recording from frame %d on (recorded %r, now %r)",
                                rf.index, rf.output, {"bank": state.bank, "coord": state.coord})
            n += 1
    finally:
        _close_render(bar, hashes, presenter, compositor, textures, ctx)
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


__all__ = ["read_song", "PushAudio", "EncoderPresenter", "render_song", "render_replay"]
