"""One readable file around the diffusers Stable Diffusion pipeline (torch is imported here only).

:class:`Generator` loads the model the spec names (hub id, diffusers folder, or single-file
checkpoint) through diffusers' own loaders, and runs the same denoising loop as
``StableDiffusionPipeline.__call__`` / ``StableDiffusionImg2ImgPipeline.__call__``, but batched over
cells that differ in text embedding, initial noise and guidance scale (one batch shares a strength).
Latents come back in the UNet's (scaled) space as float32 numpy; ``decode`` turns them into uint8
RGB frames with the model's VAE or a TAESD-class decoder.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bank_builder import BUILD_EXTRA_HINT
from bank_builder.errors import BuildExtraMissing, ModelNotFoundError, OutOfMemoryError, SpecError
from bank_builder.interpolate import lp_direction, perturb_keep_norm, polyline
from bank_builder.plan import CellParams, denoise_start
from bank_builder.spec import BankSpec

try:
    import torch
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the build extra
    raise BuildExtraMissing(f"vj-bank build needs torch and diffusers: {BUILD_EXTRA_HINT} ({_exc})") from None

log = logging.getLogger("bank_builder")

_SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
ANCESTRAL_SEED_OFFSET = 1  # the per-step noise of ancestral schedulers: seed + 1, the same in every cell


def pick_device(requested: str = "auto") -> str:
    """``auto`` -> cuda if available, else mps, else cpu."""
    if requested != "auto":
        import re

        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", requested):
            raise SpecError(f"--device {requested!r}: use auto, cpu, cuda, cuda:N or mps")
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise SpecError(f"--device {requested}: CUDA is not available (torch {torch.__version__})")
        if requested == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise SpecError("--device mps: Metal (MPS) is not available")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, requested: str = "auto") -> "torch.dtype":
    """Half precision on GPUs, float32 on the CPU (bf16 convolutions are very slow without AVX512-BF16)."""
    if requested == "auto":
        return torch.float16 if device.split(":")[0] in ("cuda", "mps") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[requested]


def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def _is_oom(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError))


class Generator:
    """The model, loaded once; generates keyframe latents and decodes latents to frames.

    ``timings_s`` accumulates seconds per stage: ``text``, ``unet``, ``decode`` (and ``vae_encode``).
    """

    def __init__(self, spec: BankSpec, *, device: str = "auto", dtype: str = "auto", compile_unet: bool = False,
                 threads: int | None = None) -> None:
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        if threads:
            torch.set_num_threads(int(threads))
        self.timings_s: dict[str, float] = defaultdict(float)
        self._load_pipeline()
        self._load_decoder()
        self._speed_options(compile_unet)
        self.latent_shape = (int(self.unet.config.in_channels), spec.height // 8, spec.width // 8)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self._encode_prompts()
        self._noise_cache: dict[int, np.ndarray] = {}
        self._init_latents: "torch.Tensor | None" = None
        self._jitter_dirs: dict[tuple[int, int], np.ndarray] = {}

    # --- loading ----------------------------------------------------------------------------

    def _model_error(self, what: str, name: str, exc: BaseException | None, is_path: bool) -> ModelNotFoundError:
        detail = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})" if exc is not None else ""
        if is_path:
            return ModelNotFoundError(f"{self.spec.source}: {what}: cannot load {name}{detail}")
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")
        hint = ("HF_HUB_OFFLINE is set, so only the local Hugging Face cache is searched: run once online, or "
                f"`huggingface-cli download {name}`, or point {what} at a local diffusers folder"
                if offline else
                "it is neither a local folder nor a model id the Hugging Face hub could serve; check the spelling, "
                f"the network (or `huggingface-cli download {name}` on a machine online), or point {what} at a "
                "local diffusers folder or .safetensors file")
        return ModelNotFoundError(f"{self.spec.source}: {what}: model {name!r} not found: {hint}{detail}")

    def _load_pipeline(self) -> None:
        import warnings

        import diffusers
        import transformers
        from diffusers import StableDiffusionPipeline

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)

        spec = self.spec
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"torch_dtype": self.dtype, "safety_checker": None, "requires_safety_checker": False}
        try:
            if spec.is_single_file:
                path = Path(spec.model)
                if not path.is_file():
                    raise ModelNotFoundError(f"{spec.source}: model: checkpoint file not found: {path}")
                if spec.model_config:
                    cfg = Path(spec.model_config)
                    if not cfg.is_dir():
                        raise ModelNotFoundError(f"{spec.source}: model_config: config folder not found: {cfg}")
                    kwargs["config"] = str(cfg)
                    kwargs["local_files_only"] = True
                pipe = StableDiffusionPipeline.from_single_file(str(path), **kwargs)
            else:
                if spec.model_is_path and not Path(spec.model).is_dir():
                    raise ModelNotFoundError(f"{spec.source}: model: folder not found: {spec.model}")
                pipe = StableDiffusionPipeline.from_pretrained(spec.model, **kwargs)
        except ModelNotFoundError:
            raise
        except (OSError, ValueError, EnvironmentError) as exc:
            if spec.is_single_file and not spec.model_config:
                raise ModelNotFoundError(
                    f"{spec.source}: model: loading the single-file checkpoint {spec.model} needs its configs; "
                    "offline, give model_config = a local diffusers folder of the same architecture (configs and "
                    f"tokenizer, no weights needed) ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
            raise self._model_error("model", spec.model, exc, spec.model_is_path or spec.is_single_file) from None
        self.pipe = pipe.to(self.device)
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        for m in (self.unet, self.vae, self.text_encoder):
            m.eval()
            m.requires_grad_(False)
        if spec.scheduler == "default":
            self.scheduler_class, self.scheduler_config = type(pipe.scheduler), dict(pipe.scheduler.config)
        else:
            import diffusers

            class_name, extra = _SCHEDULERS[spec.scheduler]
            self.scheduler_class = getattr(diffusers, class_name)
            self.scheduler_config = {**dict(pipe.scheduler.config), **extra}
        self.timings_s["load"] += time.perf_counter() - t0

    def _load_decoder(self) -> None:
        spec = self.spec
        if spec.decoder == "vae":
            self.decoder = self.vae
            return
        from diffusers import AutoencoderKL, AutoencoderTiny

        is_path = Path(spec.decoder).exists() or spec.decoder.startswith((".", "/", "~"))
        last: BaseException | None = None
        for cls in (AutoencoderTiny, AutoencoderKL):
            try:
                dec = cls.from_pretrained(spec.decoder, torch_dtype=self.dtype)
                break
            except (OSError, ValueError, EnvironmentError) as exc:
                last = exc
        else:
            raise self._model_error("decoder", spec.decoder, last, is_path)
        self.decoder = dec.to(self.device).eval().requires_grad_(False)

    def _speed_options(self, compile_unet: bool) -> None:
        # SDPA attention is diffusers' default processor on torch 2; nothing to switch on.
        if self.device.startswith("cuda"):
            self.unet.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        if compile_unet:
            self.unet = torch.compile(self.unet)

    # --- conditioning -----------------------------------------------------------------------

    @contextmanager
    def _timed(self, stage: str):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            self.timings_s[stage] += time.perf_counter() - t0

    def _token_ids(self, text: str) -> "torch.Tensor":
        ids = self.tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return ids

    def _encode(self, texts: Sequence[str]) -> "torch.Tensor":
        ids = torch.cat([self._token_ids(t) for t in texts]).to(self.device)
        return self.text_encoder(ids)[0].float().cpu()

    def _token_positions(self, prompt: str, token: str) -> list[int]:
        """Positions of the tokens of ``token`` (a word or phrase) in the tokenized ``prompt``."""
        ids = self._token_ids(prompt)[0].tolist()
        sub = self.tokenizer(token, add_special_tokens=False).input_ids
        if not sub:
            return []
        found: list[int] = []
        for start in range(len(ids) - len(sub) + 1):
            if ids[start:start + len(sub)] == sub:
                found.extend(range(start, start + len(sub)))
        return found

    def _encode_prompts(self) -> None:
        spec = self.spec
        prompt_axis = spec.axis("prompt")
        self.prompts = list(prompt_axis.prompts) if prompt_axis else [spec.prompt]
        with self._timed("text"):
            self.prompt_embeds = self._encode(self.prompts)  # [P, 77, D] float32 CPU
            self.negative_embeds = self._encode([spec.negative_prompt])[0]
        self.token_positions: dict[str, list[list[int]]] = {}
        for i, axis in enumerate(spec.axes):
            if axis.kind != "token_weight":
                continue
            positions = [self._token_positions(p, axis.token) for p in self.prompts]
            if not any(positions):
                raise SpecError(f"{spec.source}: axes[{i}].token: {axis.token!r} is not in the prompt "
                                f"({'any of the prompts' if prompt_axis else repr(spec.prompt)})")
            self.token_positions[axis.token] = positions

    def cell_embedding(self, params: CellParams) -> np.ndarray:
        """The cell's text embedding [77, D] (float64): token weights applied per prompt, then the
        prompt axis' interpolation (a lerp between neighbouring prompts)."""
        weighted = []
        for k in range(len(self.prompts)):
            z = self.prompt_embeds[k].double().numpy()
            if params.token_weights:
                mean_before = z.mean()
                multipliers = np.ones(z.shape[0])
                for token, w in params.token_weights:
                    for pos in self.token_positions[token][k]:
                        multipliers[pos] *= w
                z = z * multipliers[:, None]
                mean_after = z.mean()
                if mean_after != 0.0:  # prompt-attention weighting keeps the embedding's mean
                    z = z * (mean_before / mean_after)
            weighted.append(z)
        if len(weighted) == 1:
            return weighted[0]
        prompt_axis = self.spec.axis("prompt")
        return polyline(weighted, params.prompt_position, cyclic=prompt_axis.cyclic, spherical=False)

    def seed_noise(self, seed: int) -> np.ndarray:
        """Unit-variance noise [C, h, w] from ``seed``, exactly as diffusers draws it on the CPU."""
        if seed not in self._noise_cache:
            g = torch.Generator("cpu").manual_seed(int(seed))
            self._noise_cache[seed] = torch.randn((1, *self.latent_shape), generator=g, dtype=torch.float32)[0].numpy()
        return self._noise_cache[seed]

    def cell_noise(self, params: CellParams) -> np.ndarray:
        """The cell's initial noise (float64): the base seed's, or the seed axis' slerp, then jitter."""
        spec = self.spec
        seed_axis = spec.axis("seed")
        if params.seed_position is None or seed_axis is None:
            noise = self.seed_noise(spec.seed).astype(np.float64)
        else:
            points = [self.seed_noise(s) for s in seed_axis.seeds]
            noise = polyline(points, params.seed_position, cyclic=seed_axis.cyclic, spherical=True)
        for d, value in params.jitter:
            axis = spec.axes[d]
            dir1 = self._jitter_dir(axis.seed, 0, axis.p)
            if axis.cyclic:
                dir2 = self._jitter_dir(axis.seed, 1, axis.p)
                angle = math.radians(value)
                delta = axis.radius * (math.cos(angle) * dir1 + math.sin(angle) * dir2)
            else:
                delta = value * dir1
            noise = perturb_keep_norm(noise, delta)
        return noise

    def _jitter_dir(self, seed: int, which: int, p: float) -> np.ndarray:
        key = (seed, which)
        if key not in self._jitter_dirs:
            self._jitter_dirs[key] = lp_direction(self.latent_shape, p, seed * 2 + which)
        return self._jitter_dirs[key]

    def init_latents(self) -> "torch.Tensor":
        """The init image in the UNet's latent space [1, C, h, w] (VAE posterior mean, scaled)."""
        if self._init_latents is None:
            from PIL import Image, ImageOps

            spec = self.spec
            try:
                img = Image.open(spec.init_image).convert("RGB")
            except OSError as exc:
                raise SpecError(f"{spec.source}: init_image: cannot read {spec.init_image} ({exc})") from None
            img = ImageOps.fit(img, (spec.width, spec.height), method=Image.Resampling.LANCZOS)
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
            with torch.inference_mode(), self._timed("vae_encode"):
                lat = self.vae.encode(x.to(self.device, self.vae.dtype)).latent_dist.mean
            self._init_latents = (lat.float() * self.scaling_factor).cpu()
        return self._init_latents

    # --- generation ---------------------------------------------------------------------------

    def _oom(self, exc: BaseException, what: str, batch: int) -> OutOfMemoryError:
        spec = self.spec
        smaller = f"--batch-size {max(1, batch // 2)}" if batch > 1 else (
            f"a smaller size (e.g. size = [{spec.width // 16 * 8}, {spec.height // 16 * 8}])"
            + (" or decoder = a TAESD-class decoder" if what == "decoding" else ""))
        return OutOfMemoryError(f"{self.device} ran out of memory {what} a batch of {batch} at "
                                f"{spec.width}x{spec.height}: try {smaller} ({str(exc).splitlines()[0][:160]})")

    def generate(self, cells: Sequence[CellParams]) -> np.ndarray:
        """Full pipeline for a batch of cells sharing one strength: latents [B, C, h, w] float32 (scaled)."""
        try:
            return self._generate(cells)
        except Exception as exc:
            if _is_oom(exc):
                raise self._oom(exc, "generating", len(cells)) from None
            raise

    @torch.inference_mode()
    def _generate(self, cells: Sequence[CellParams]) -> np.ndarray:
        spec = self.spec
        starts = {denoise_start(spec.steps, c.strength) for c in cells}
        if len(starts) != 1:
            raise ValueError("one batch must share one img2img start step")
        dev, dt = self.device, self.dtype
        with self._timed("text"):
            cond = torch.from_numpy(np.stack([self.cell_embedding(c) for c in cells])).to(dev, dt)
        noise = torch.from_numpy(np.stack([self.cell_noise(c) for c in cells]).astype(np.float32))
        guidance = torch.tensor([c.guidance for c in cells], dtype=torch.float32)
        do_cfg = bool((guidance > 1.0).any())
        if do_cfg:
            uncond = self.negative_embeds[None].expand(len(cells), -1, -1).to(dev, dt)
            embeds = torch.cat([uncond, cond])
            g = guidance.to(dev, dt).view(-1, 1, 1, 1)
        else:
            embeds = cond

        scheduler = self.scheduler_class.from_config(self.scheduler_config)
        scheduler.set_timesteps(spec.steps, device=dev)
        timesteps = scheduler.timesteps
        generators = [torch.Generator("cpu").manual_seed(spec.seed + ANCESTRAL_SEED_OFFSET) for _ in cells]
        step_kwargs: dict[str, Any] = {}
        step_params = set(inspect.signature(scheduler.step).parameters)
        if "generator" in step_params:
            step_kwargs["generator"] = generators
        if "eta" in step_params:
            step_kwargs["eta"] = 0.0

        if spec.img2img:
            start = starts.pop() * scheduler.order
            timesteps = timesteps[start:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(start)
            init = self.init_latents().expand(len(cells), -1, -1, -1)
            latents = scheduler.add_noise(init.to(dev), noise.to(dev), timesteps[:1].repeat(len(cells)))
        else:
            latents = noise.to(dev) * scheduler.init_noise_sigma
        latents = latents.to(dt)

        with self._timed("unet"):
            for t in timesteps:
                model_in = torch.cat([latents] * 2) if do_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t)
                eps = self.unet(model_in, t, encoder_hidden_states=embeds, return_dict=False)[0]
                if do_cfg:
                    eps_uncond, eps_cond = eps.chunk(2)
                    eps = eps_uncond + g * (eps_cond - eps_uncond)
                latents = scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        return latents.float().cpu().numpy()

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Scaled latents [B, C, h, w] -> uint8 RGB frames [B, H, W, 3]."""
        try:
            return self._decode(latents)
        except Exception as exc:
            if _is_oom(exc):
                raise self._oom(exc, "decoding", len(latents)) from None
            raise

    @torch.inference_mode()
    def _decode(self, latents: np.ndarray) -> np.ndarray:
        with self._timed("decode"):
            z = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).to(self.device, self.decoder.dtype)
            image = self.decoder.decode(z / self.decoder.config.scaling_factor, return_dict=False)[0]
            image = (image.float() / 2 + 0.5).clamp(0, 1)
            frames = (image.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return frames
