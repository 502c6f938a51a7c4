"""`vj render ... --refine SPEC`: an SD img2img pass over a rendered video (the build extra).

Every Nth frame (N in frames, or in beats of the song: ``every = "1/4 beat"`` is a sixteenth note)
is a keyframe: it goes through diffusers' ``StableDiffusionImg2ImgPipeline`` at low strength with the
prompt, and the frames between are the slerp of the two keyframes' latents, decoded by the model's
VAE, so the result stays smooth. Modes (``mode``):

- ``refine``: the keyframe's init is the rendered frame.
- ``feedback``: the init is the previous refined keyframe, zoomed by ``zoom`` (the first one: the
  rendered frame); the picture grows out of itself, as the lyric-video projects do.
- ``spectrum``: the init is a constant-Q spectrum image of the audio around the keyframe (log-spaced
  bands, ``spectrum_octaves`` octaves from C1, the last ``spectrum_window_s`` seconds), coloured.

Resumable like the builder: each keyframe's latent and each finished segment (an h264 chunk of the
frames from one keyframe to the next) are written atomically under ``OUTPUT.refine-work/<digest>/``;
after a kill, the same command redoes only what is missing, then joins the chunks and the rendered
video's audio into the output. Progress (tqdm) counts frames, with an ETA.

Spec (TOML; every error names the file, line and key)::

    model = "runwayml/stable-diffusion-v1-5"   # local diffusers folder, .safetensors, or cached hub id
    prompt = "oil painting, thick brush strokes"   # default: the rendered bank's prompt (or bank = "path")
    negative_prompt = ""
    strength = 0.3        # low: keep the picture, add the model's detail
    steps = 20            # scheduler steps at strength 1 (img2img runs strength x steps)
    guidance = 7.0
    every = "1 beat"      # or "4 frames", "1/4 beat"
    mode = "refine"       # refine | feedback | spectrum
    zoom = 1.03           # feedback: zoom per keyframe
    seed = 0
    size = [768, 432]     # optional: work at this size (multiples of 8), frames scaled back
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bank_builder import BUILD_EXTRA_HINT
from bank_builder.errors import BuildExtraMissing, ModelNotFoundError, SpecError
from vjengine.config import load_toml

log = logging.getLogger("bank_builder")

MODES = ("refine", "feedback", "spectrum")
_KEYS = {"model", "prompt", "negative_prompt", "strength", "steps", "guidance", "every", "mode", "zoom", "seed",
         "size", "bank", "spectrum_octaves", "spectrum_window_s", "device", "dtype"}
_EVERY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\d+\s*/\s*\d+)\s*(beats?|frames?)\s*$")
REFINE_FORMAT = 1


@dataclass(frozen=True)
class RefineSpec:
    source: str
    model: str
    prompt: str
    negative_prompt: str = ""
    strength: float = 0.3
    steps: int = 20
    guidance: float = 7.0
    every_frames: int | None = None
    every_beats: float | None = None
    mode: str = "refine"
    zoom: float = 1.03
    seed: int = 0
    size: tuple[int, int] | None = None
    spectrum_octaves: int = 7
    spectrum_window_s: float = 2.0
    device: str = "auto"
    dtype: str = "auto"

    def digest(self) -> str:
        d = asdict(self)
        d.pop("source")
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _line_of(text: str, key: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return n
    return 0


def load_refine_spec(path: str | Path, *, default_bank: str | Path | None = None) -> RefineSpec:
    """Validate a refine spec; :class:`SpecError` names the file, line and key (exit 2). Without
    ``prompt`` or ``bank`` the prompt is the one ``default_bank`` (the rendered bank) was built with."""
    path = Path(path)
    table = load_toml(path)
    text = path.read_text(encoding="utf-8")

    def fail(key: str, message: str) -> SpecError:
        line = _line_of(text, key)
        return SpecError(f"{path}: " + (f"line {line}: " if line else "") + f"{key}: {message}")

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    model = table.get("model")
    if not isinstance(model, str) or not model.strip():
        raise fail("model", "required: a local diffusers folder, a .safetensors/.ckpt file or a cached hub id")
    local = (path.parent / model) if not Path(model).is_absolute() else Path(model)
    hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) is not None and not local.exists()
    if not hub_id:
        if not local.exists():
            raise fail("model", f"not found: {local} (download the model first; refine never downloads)")
        model = str(local.resolve())
    elif not _in_hub_cache(model):
        raise fail("model", f"{model!r} is not in the local Hugging Face cache (refine never downloads: "
                            f"`huggingface-cli download {model}` on a machine online, or give a local folder)")
    prompt = table.get("prompt")
    if prompt is None and "bank" in table:
        prompt = _bank_prompt(path.parent / str(table["bank"]), fail)
    elif prompt is None and default_bank is not None:
        prompt = _bank_prompt(Path(default_bank), fail)
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("prompt" if "prompt" in table else "model", "needs a prompt (or bank = a bank made from a spec)")

    def num(key: str, default: float, lo: float, hi: float, integer: bool = False) -> Any:
        v = table.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            raise fail(key, f"must be {'an integer' if integer else 'a number'}, got {v!r}")
        if not (lo <= v <= hi) or not math.isfinite(float(v)):
            raise fail(key, f"must be in [{lo:g}, {hi:g}], got {v!r}")
        return int(v) if integer else float(v)

    every = table.get("every", "1 beat")
    every_frames = every_beats = None
    if isinstance(every, int) and not isinstance(every, bool):
        every = f"{every} frames"
    m = _EVERY_RE.match(every) if isinstance(every, str) else None
    if not m:
        raise fail("every", f"must be like \"4 frames\", \"1 beat\" or \"1/4 beat\", got {every!r}")
    amount = float(Fraction(m.group(1).replace(" ", "")))
    if m.group(2).startswith("frame"):
        if amount != int(amount) or amount < 1:
            raise fail("every", "frames must be a whole number >= 1")
        every_frames = int(amount)
    else:
        if not (1 / 16 <= amount <= 64):
            raise fail("every", "beats must be in [1/16, 64]")
        every_beats = amount
    mode = table.get("mode", "refine")
    if mode not in MODES:
        raise fail("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    size = table.get("size")
    if size is not None:
        if (not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                     for v in size)
                or any(v < 8 or v % 8 for v in size)):
            raise fail("size", f"must be [width, height], multiples of 8, got {size!r}")
        size = (size[0], size[1])
    neg = table.get("negative_prompt", "")
    if not isinstance(neg, str):
        raise fail("negative_prompt", "must be a string")
    for key in ("device", "dtype"):
        if key in table and not isinstance(table[key], str):
            raise fail(key, "must be a string")
    return RefineSpec(
        source=str(path), model=model, prompt=prompt, negative_prompt=neg,
        strength=num("strength", 0.3, 0.01, 1.0), steps=num("steps", 20, 1, 200, True),
        guidance=num("guidance", 7.0, 0.0, 30.0), every_frames=every_frames, every_beats=every_beats, mode=mode,
        zoom=num("zoom", 1.03, 1.0, 2.0), seed=num("seed", 0, 0, 2**31 - 1, True), size=size,
        spectrum_octaves=num("spectrum_octaves", 7, 1, 9, True),
        spectrum_window_s=num("spectrum_window_s", 2.0, 0.1, 30.0),
        device=table.get("device", "auto"), dtype=table.get("dtype", "auto"))


def _in_hub_cache(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise BuildExtraMissing(f"--refine needs torch and diffusers: {BUILD_EXTRA_HINT} ({exc})") from None
    found = try_to_load_from_cache(model, "model_index.json")
    return isinstance(found, str)


def _bank_prompt(bank: Path, fail) -> str:
    from vjengine.bank import read_manifest  # noqa: PLC0415
    from vjengine.errors import BankError  # noqa: PLC0415

    try:
        made_by = read_manifest(bank).get("made_by") or {}
    except BankError as exc:
        raise fail("bank", str(exc)) from None
    spec = made_by.get("spec") or {}
    prompt = spec.get("prompt") or next((a["prompts"][0] for a in spec.get("axes", []) if a.get("prompts")), None)
    if not prompt:
        raise fail("bank", f"{bank} does not record the prompt it was made with; give prompt = ...")
    return str(prompt)


# ---------------------------------------------------------------------------------------------- planning


def keyframes(n_frames: int, fps: float, spec: RefineSpec, beat_times: list[float] | None = None) -> list[int]:
    """Keyframe indices: every N frames, or the frames nearest every ``every_beats`` beats of the
    song's beat grid (extended at the tempo before the first and after the last beat); always the
    first and the last frame."""
    if n_frames <= 0:
        return []
    if spec.every_frames is not None:
        keys = set(range(0, n_frames, spec.every_frames))
    else:
        beats = np.asarray(beat_times or [], dtype=np.float64)
        if len(beats) < 2:  # no steady beat: 120 BPM
            beats = np.arange(0.0, n_frames / fps + 0.5, 0.5)
        period = float(np.median(np.diff(beats)))
        step = period * spec.every_beats
        t0 = beats[0] - math.floor(beats[0] / step) * step
        times = np.arange(t0, n_frames / fps, step)
        keys = {int(round(t * fps)) for t in times}
    keys |= {0, n_frames - 1}
    return sorted(k for k in keys if 0 <= k < n_frames)


# ---------------------------------------------------------------------------------------------- images


def zoom_image(img: np.ndarray, zoom: float) -> np.ndarray:
    """Centre crop by ``1 / zoom`` and scale back (bilinear): the feedback mode's slow zoom."""
    if zoom <= 1.0:
        return img
    h, w = img.shape[:2]
    ys = (np.arange(h) + 0.5 - h / 2) / zoom + h / 2 - 0.5
    xs = (np.arange(w) + 0.5 - w / 2) / zoom + w / 2 - 0.5
    return _sample(img, ys, xs)


def _sample(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy = np.clip(ys - y0, 0, 1)[:, None, None]
    fx = np.clip(xs - x0, 0, 1)[None, :, None]
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - fx) + f[y0][:, x1] * fx
    bot = f[y1][:, x0] * (1 - fx) + f[y1][:, x1] * fx
    return np.clip(top * (1 - fy) + bot * fy + 0.5, 0, 255).astype(np.uint8)


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    ys = (np.arange(height) + 0.5) * h / height - 0.5
    xs = (np.arange(width) + 0.5) * w / width - 0.5
    return _sample(img, ys, xs)


def cq_spectrum(samples: np.ndarray, samplerate: int, *, octaves: int = 7, bins_per_octave: int = 12,
                columns: int = 64) -> np.ndarray:
    """A constant-Q-style spectrum ``[octaves * bins_per_octave, columns]`` in dB (0 = loudest): STFT
    power summed into log-spaced bands (one per semitone from C1, 32.7 Hz), hops spread over the clip."""
    import scipy.signal  # noqa: PLC0415

    x = np.asarray(samples, dtype=np.float32)
    n_fft = 8192 if samplerate > 32000 else 4096
    if x.size < n_fft:
        x = np.pad(x, (n_fft - x.size, 0))
    hop = max(1, (x.size - n_fft) // max(1, columns - 1))
    f, _, z = scipy.signal.stft(x, samplerate, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False)
    power = np.abs(z) ** 2
    n_bins = octaves * bins_per_octave
    edges = 32.703 * 2.0 ** ((np.arange(n_bins + 1) - 0.5) / bins_per_octave)
    band = np.searchsorted(edges, f) - 1
    out = np.zeros((n_bins, power.shape[1]))
    ok = (band >= 0) & (band < n_bins)
    np.add.at(out, band[ok], power[ok])
    # low bands narrower than an FFT bin get the nearest bin's power
    empty = out.sum(axis=1) == 0
    if empty.any():
        centres = 32.703 * 2.0 ** (np.arange(n_bins) / bins_per_octave)
        nearest = np.clip(np.searchsorted(f, centres), 0, len(f) - 1)
        out[empty] = power[nearest[empty]]
    db = 10 * np.log10(out + 1e-12)
    db -= db.max()
    if db.shape[1] != columns:
        idx = np.linspace(0, db.shape[1] - 1, columns).round().astype(int)
        db = db[:, idx]
    return db


def spectrum_image(samples: np.ndarray, samplerate: int, width: int, height: int, *, octaves: int = 7,
                   range_db: float = 60.0) -> np.ndarray:
    """The spectrum as an RGB image (low notes at the bottom, time left to right, magma-like colours)."""
    db = cq_spectrum(samples, samplerate, octaves=octaves, columns=max(8, width // 4))
    v = np.clip(1.0 + db / range_db, 0.0, 1.0)[::-1]  # high notes at the top
    stops = np.array([[0, 0, 4], [80, 18, 123], [183, 55, 121], [252, 137, 97], [252, 253, 191]], np.float32)
    pos = v * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    t = (pos - i)[..., None]
    rgb = stops[i] * (1 - t) + stops[i + 1] * t
    return resize(np.clip(rgb, 0, 255).astype(np.uint8), width, height)


# ---------------------------------------------------------------------------------------------- the pass


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    from bank_builder.interpolate import slerp  # noqa: PLC0415

    return slerp(a, b, t)


class _Model:
    """The img2img pipeline and its VAE, loaded once, lazily (a fully resumed run loads nothing)."""

    def __init__(self, spec: RefineSpec) -> None:
        try:
            import torch  # noqa: PLC0415
            from diffusers import StableDiffusionImg2ImgPipeline  # noqa: PLC0415
        except ModuleNotFoundError as exc:
            raise BuildExtraMissing(f"--refine needs torch and diffusers: {BUILD_EXTRA_HINT} ({exc})") from None
        import diffusers  # noqa: PLC0415

        diffusers.utils.logging.disable_progress_bar()
        self.torch = torch
        device = spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(
            spec.dtype, torch.float16 if device.startswith("cuda") else torch.float32)
        kwargs: dict[str, Any] = {"torch_dtype": dtype, "safety_checker": None, "requires_safety_checker": False}
        try:
            if spec.model.endswith((".safetensors", ".ckpt")):
                pipe = StableDiffusionImg2ImgPipeline.from_single_file(spec.model, **kwargs)
            else:
                pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
                    spec.model, local_files_only=not Path(spec.model).exists(), **kwargs)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise ModelNotFoundError(
                f"{spec.source}: line {_line_of(Path(spec.source).read_text(), 'model')}: model: cannot load "
                f"{spec.model!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); refine never downloads: "
                "give a local diffusers folder or checkpoint, or a hub id already in the cache") from None
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        self.device, self.dtype = device, dtype
        self.scale = float(getattr(pipe.vae.config, "scaling_factor", 0.18215))

    def img2img(self, image: np.ndarray, spec: RefineSpec, seed: int) -> np.ndarray:
        from PIL import Image  # noqa: PLC0415

        gen = self.torch.Generator(device="cpu").manual_seed(seed)
        out = self.pipe(prompt=spec.prompt, negative_prompt=spec.negative_prompt or None,
                        image=Image.fromarray(image), strength=spec.strength, num_inference_steps=spec.steps,
                        guidance_scale=spec.guidance, generator=gen, output_type="latent")
        return out.images[0].float().cpu().numpy()

    def decode(self, latents: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            lat = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).to(self.device, self.dtype)
            img = self.pipe.vae.decode(lat / self.scale).sample
        img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return img.permute(0, 2, 3, 1).cpu().numpy()


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name("." + path.name + ".tmp.npz")  # hidden: never mistaken for a finished one
    np.savez(tmp, **arrays)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def work_dir_for(output: Path) -> Path:
    """Where a refine of ``output`` keeps its finished keyframes and segments."""
    return Path(output).with_name(Path(output).name + ".refine-work")


@dataclass
class RefineResult:
    frames: int
    keyframes: int
    keyframes_made: int
    segments_made: int
    elapsed_s: float


def refine_video(spec: RefineSpec, rough: str | Path, output: str | Path, *, song: str | None = None,
                 start_s: float = 0.0, duration_s: float | None = None, progress: bool = True,
                 work_dir: str | Path | None = None, quality: float = 8.0) -> RefineResult:
    """Refine the video ``rough`` into ``output`` (see the module docstring)."""
    import imageio_ffmpeg  # noqa: PLC0415

    t_start = time.perf_counter()
    rough = Path(rough)
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(rough))
    reader = imageio_ffmpeg.read_frames(str(rough))
    meta = next(reader)
    reader.close()
    fps = float(meta["fps"])
    vw, vh = meta["size"]
    ww, wh = spec.size or (max(8, vw // 8 * 8), max(8, vh // 8 * 8))
    samples, sr = None, 0
    beats: list[float] = []
    if song is not None and (spec.every_beats is not None or spec.mode == "spectrum"):
        from vjengine.offline import read_song  # noqa: PLC0415

        samples, sr = read_song(song, start_s, duration_s)
        if spec.every_beats is not None:
            from vjengine.audio.analyze import analyze_samples  # noqa: PLC0415

            beats = list(analyze_samples(samples, sr).beat_times)
    if spec.mode == "spectrum" and samples is None:
        raise SpecError(f"{spec.source}: mode: spectrum needs the song")
    keys = keyframes(n_frames, fps, spec, beats)
    digest = hashlib.sha256(json.dumps([spec.digest(), REFINE_FORMAT, n_frames, fps, vw, vh, ww, wh, keys,
                                        rough.stat().st_size]).encode()).hexdigest()[:16]
    work = Path(work_dir) if work_dir else work_dir_for(Path(output))
    work = work / digest
    work.mkdir(parents=True, exist_ok=True)
    model: _Model | None = None

    def get_model() -> _Model:
        nonlocal model
        if model is None:
            model = _Model(spec)
        return model

    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=n_frames, unit="frame", desc=f"refine {Path(output).name}", dynamic_ncols=True)
    made_keys = made_segments = 0
    key_set = set(keys)
    prev_key: int | None = None
    prev_lat: np.ndarray | None = None
    prev_img: np.ndarray | None = None
    chunks: list[Path] = []
    frames = imageio_ffmpeg.read_frames(str(rough))
    next(frames)
    try:
        for idx, raw in enumerate(frames):
            if idx not in key_set:
                continue
            key_path = work / f"key-{idx:06d}.npz"
            if key_path.is_file():
                with np.load(key_path) as z:
                    lat, img = z["latent"], z["image"]
            else:
                rendered = np.frombuffer(raw, np.uint8).reshape(vh, vw, 3)
                if spec.mode == "feedback" and prev_img is not None:
                    init = zoom_image(prev_img, spec.zoom)
                elif spec.mode == "spectrum":
                    t = idx / fps
                    a = max(0, int((t - spec.spectrum_window_s) * sr))
                    clip = samples[a:max(a + 1, int(t * sr))]
                    init = spectrum_image(clip, sr, ww, wh, octaves=spec.spectrum_octaves)
                else:
                    init = resize(rendered, ww, wh)
                m = get_model()
                lat = m.img2img(init, spec, spec.seed + idx)
                img = m.decode(lat[None])[0]
                _atomic_save(key_path, latent=lat, image=img)
                made_keys += 1
            if prev_key is not None:
                chunk = work / f"seg-{prev_key:06d}-{idx:06d}.mp4"
                if not chunk.is_file():
                    _write_segment(chunk, get_model(), prev_lat, lat, prev_img, idx - prev_key, (vw, vh), fps,
                                   quality)
                    made_segments += 1
                chunks.append(chunk)
                if bar is not None:
                    bar.update(idx - prev_key)
            prev_key, prev_lat, prev_img = idx, lat, img
        # the last frame is a keyframe: its own one-frame chunk
        last = work / f"seg-{prev_key:06d}-end.mp4"
        if not last.is_file():
            _encode_frames(last, [resize(prev_img, vw, vh)], (vw, vh), fps, quality)
            made_segments += 1
        chunks.append(last)
        if bar is not None:
            bar.update(1)
    finally:
        frames.close()
        if bar is not None:
            bar.close()
    _join(chunks, rough, Path(output), work)
    elapsed = time.perf_counter() - t_start
    log.info("refined %d frames (%d keyframes, %d made now, %d segments made now) in %.1f s", n_frames, len(keys),
             made_keys, made_segments, elapsed)
    (work / "last-run.json").write_text(json.dumps({"frames": n_frames, "keyframes": len(keys),
                                                    "keyframes_made": made_keys, "segments_made": made_segments,
                                                    "elapsed_s": elapsed}) + "\n")
    return RefineResult(n_frames, len(keys), made_keys, made_segments, elapsed)


def _write_segment(path: Path, model: _Model, lat_a: np.ndarray, lat_b: np.ndarray, img_a: np.ndarray, n: int,
                   size: tuple[int, int], fps: float, quality: float) -> None:
    """Frames ``a .. b-1`` of a segment: the keyframe's image, then slerped latents decoded."""
    out = [resize(img_a, *size)]
    batch = 4
    ts = [j / n for j in range(1, n)]
    for i in range(0, len(ts), batch):
        lats = np.stack([_slerp(lat_a, lat_b, t) for t in ts[i:i + batch]])
        out.extend(resize(im, *size) for im in model.decode(lats))
    _encode_frames(path, out, size, fps, quality)


def _encode_frames(path: Path, frames: list[np.ndarray], size: tuple[int, int], fps: float, quality: float) -> None:
    import imageio_ffmpeg  # noqa: PLC0415

    tmp = path.with_name("." + path.stem + ".tmp.mp4")
    w = imageio_ffmpeg.write_frames(str(tmp), size, fps=fps, codec="libx264", quality=quality, macro_block_size=2,
                                    pix_fmt_in="rgb24", output_params=["-g", "1000"], ffmpeg_log_level="error")
    w.send(None)
    for f in frames:
        w.send(np.ascontiguousarray(f).tobytes())
    w.close()
    tmp.replace(path)


def _join(chunks: list[Path], rough: Path, output: Path, work: Path) -> None:
    """Concatenate the chunks (stream copy) and take the audio of the rendered video."""
    import imageio_ffmpeg  # noqa: PLC0415

    listing = work / "chunks.txt"
    listing.write_text("".join(f"file '{c.resolve()}'\n" for c in chunks))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
           "-i", str(listing), "-i", str(rough), "-map", "0:v", "-map", "1:a?", "-c:v", "copy", "-c:a", "copy",
           "-movflags", "+faststart", "-shortest", str(output)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        from vjengine.errors import VJError  # noqa: PLC0415

        raise VJError(f"{output}: joining the refined segments failed: {res.stderr.strip()[:300]}")
