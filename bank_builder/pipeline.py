"""One readable file around the diffusers Stable Diffusion pipelines (torch is imported here only).

:class:`Generator` loads the model the spec names (hub id, diffusers folder, or single-file
checkpoint; SD 1.x/2.x/Turbo or SDXL/SDXL-Turbo) through diffusers' own loaders, fuses the spec's
LoRAs, and runs the same denoising loop as ``StableDiffusionPipeline.__call__`` /
``StableDiffusionXLPipeline.__call__`` (and their img2img variants), batched over cells that differ
in text embedding, initial noise and guidance scale (one batch shares a strength and LoRA weights).
Latents come back in the UNet's (scaled) space as float32 numpy; ``decode`` turns them into uint8 RGB
frames with the model's VAE or a TAESD-class decoder.

A cell's result is a pure function of (spec, cell): its noise, conditioning and ancestral generator
come from the spec alone, and with ``exact`` (the default on the CPU) every model call has the same
shape (``EXACT_ROWS`` cells, CFG rows decided per spec), so the bytes do not depend on the batch
size, the batch order or a resume. GPU kernels pick algorithms by batch shape, so a batched GPU
build agrees with an exact one to float rounding only (``benchmarks/build_gpu.py`` measures it).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
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
    "tcd": ("TCDScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
ANCESTRAL_SEED_OFFSET = 1  # the per-step noise of ancestral schedulers: seed + 1, the same in every cell
# exact mode: every model call holds exactly this many cells (the last call padded with copies).
# CPU kernels (oneDNN convolutions, small GEMMs) pick their algorithm by batch shape, but for one
# shape a row's result does not depend on its neighbours or its position, so a fixed shape makes a
# cell's bytes independent of how cells are batched, ordered or resumed.
EXACT_ROWS = 4

# model_index.json "_class_name" -> family. Anything else is refused before any work starts.
FAMILIES = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
}
FAMILY_NAMES = {"sd": "Stable Diffusion 1.x/2.x (incl. SD-Turbo)", "sdxl": "SDXL (incl. SDXL-Turbo)"}
# SDXL takes sizes whose area is within this factor of the one it was trained at (1024x1024 for SDXL)
SDXL_AREA_FACTOR = 4.0


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


def synchronize(device: str) -> None:
    """Wait for the device's queued work (GPU calls return before the work is done): for timings."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def release_cache(device: str) -> None:
    """Give the allocator's cached blocks back (after an out-of-memory, before a retry)."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()


def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    out = {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    try:
        import peft

        out["peft"] = peft.__version__
    except ModuleNotFoundError:
        pass
    return out


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, OutOfMemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError))


def telling_line(exc: BaseException, *marks: str, limit: int = 300) -> str:
    """The first line of an exception's text holding one of ``marks`` (the line that says what went
    wrong in a long library message), else its first line; shortened as :func:`first_line`."""
    for ln in str(exc).splitlines():
        if any(m in ln for m in marks):
            return first_line(ValueError(ln.strip()), limit)
    return first_line(exc, limit)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text, shortened at a word boundary (never mid-word)."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[:cut if cut > limit // 2 else limit].rstrip(" ,;:") + " ..."
    return text


# --- families and safe checkpoints --------------------------------------------------------------

def checkpoint_shapes(path: Path, key: str = "model") -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes in a single-file checkpoint, read without running any pickled code.

    .safetensors: the header only. .ckpt: ``torch.load(weights_only=True)``, which refuses anything
    but tensors and plain containers; a checkpoint that needs more is refused with a SpecError.
    """
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as exc:
            raise SpecError(f"{key}: {path} is not a readable .safetensors file ({first_line(exc)})") from None
    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpecError(
            f"{key}: {path} is not safetensors and not loadable with weights_only=True "
            f"({telling_line(exc, 'GLOBAL', 'Unsupported global', 'Unsupported operand', limit=200)}); "
            "vj-bank never unpickles arbitrary code: use the model's .safetensors release, or convert it on a "
            "machine you trust") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SpecError(f"{key}: {path} holds no state dict of tensors")
    return {str(k): tuple(getattr(v, "shape", ())) for k, v in state.items()}


def single_file_family(keys: Iterable[str]) -> str | None:
    """sd or sdxl from an original-format (CompVis / A1111 / kohya) checkpoint's key names."""
    keys = list(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("model.diffusion_model.") for k in keys) and any(k.startswith("cond_stage_model.") for k in keys):
        return "sd"
    return None


# the diffusers repos whose configs and tokenizers fit each family's single-file checkpoints
BASE_CONFIG_REPOS = {"sd": "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd2": "stabilityai/stable-diffusion-2-1",
                     "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}


def base_config_repo(shapes: dict[str, tuple[int, ...]], family: str) -> str:
    """The hub repo diffusers takes a single-file checkpoint's configs from (its own sniffing of the
    tensor names and shapes), or our family's base model where that sniffing disagrees with us."""
    from types import SimpleNamespace

    try:
        from diffusers.loaders.single_file_utils import fetch_diffusers_config

        view = {k: SimpleNamespace(shape=v) for k, v in shapes.items()}
        repo = str(fetch_diffusers_config(view)["pretrained_model_name_or_path"])
    except Exception:  # diffusers' internals moved: our own answer is good enough for a hint
        repo = ""
    if (family == "sdxl") == ("-xl-" in repo) and repo in BASE_CONFIG_REPOS.values():
        return repo
    return BASE_CONFIG_REPOS[family]


def model_family(spec: BankSpec) -> str:
    """``sd`` or ``sdxl`` for the spec's model, from its model_index.json or checkpoint keys.

    A hub id fetches only ``model_index.json`` (or finds it in the cache). Raises SpecError for a
    family the builder does not bake, ModelNotFoundError for a model it cannot find.
    """
    where = spec.source
    if spec.is_single_file:
        path = Path(spec.model)
        if not path.is_file():
            raise ModelNotFoundError(f"{where}: model: checkpoint file not found: {path}")
        try:
            family = single_file_family(checkpoint_shapes(path))
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
        if family is None:
            raise SpecError(f"{where}: model: {path.name} is not an SD 1.x/2.x or SDXL checkpoint (no "
                            "model.diffusion_model./cond_stage_model. or conditioner.embedders keys); vj-bank "
                            f"builds {' and '.join(FAMILY_NAMES.values())} models")
        return family
    if spec.model_is_path:
        folder = Path(spec.model)
        if not folder.is_dir():
            raise ModelNotFoundError(f"{where}: model: folder not found: {folder}")
        index = folder / "model_index.json"
        if not index.is_file():
            raise SpecError(f"{where}: model: {folder} has no model_index.json, so it is not a diffusers pipeline "
                            "folder (for a single checkpoint file give its .safetensors path)")
        try:
            config = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(f"{where}: model: {index} is not readable JSON ({first_line(exc)})") from None
    else:
        from diffusers import DiffusionPipeline

        try:
            config = DiffusionPipeline.load_config(spec.model)
        except Exception as exc:
            raise hub_error(spec, "model", spec.model, exc) from None
    name = str(config.get("_class_name", ""))
    if name not in FAMILIES:
        raise SpecError(f"{where}: model: {spec.model} is a {name or 'unknown'} model, an unknown family for "
                        f"vj-bank; it builds {' and '.join(FAMILY_NAMES.values())} models")
    return FAMILIES[name]


def hub_error(spec: BankSpec, what: str, name: str, exc: BaseException | None) -> ModelNotFoundError:
    """Model (decoder, LoRA) ``name`` could not be had from the hub or its cache: say how to get it."""
    detail = f" ({type(exc).__name__}: {first_line(exc)})" if exc is not None else ""
    offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    gated = exc is not None and any(w in str(exc).lower() for w in ("gated", "401", "403", "restricted"))
    if offline:
        hint = ("HF_HUB_OFFLINE is set, so only the local Hugging Face cache is searched: run once online, or "
                f"`hf download {name}`, or point {what} at a local diffusers folder")
    elif gated:
        hint = (f"{name} is gated: accept its licence on huggingface.co, then `hf auth login` (or set HF_TOKEN) "
                "and run again")
    else:
        hint = ("it is neither a local folder nor a model id the Hugging Face hub could serve; check the spelling, "
                f"the network (or `hf download {name}` on a machine online and copy the cache), or point {what} "
                "at a local diffusers folder or .safetensors file")
    return ModelNotFoundError(f"{spec.source}: {what}: model {name!r} not found: {hint}{detail}")


class Generator:
    """The model, loaded once; generates keyframe latents and decodes latents to frames.

    ``timings_s`` accumulates seconds per stage: ``load``, ``text``, ``unet``, ``decode`` (and
    ``vae_encode``, ``warmup``).
    """

    def __init__(self, spec: BankSpec, *, device: str = "auto", dtype: str = "auto", compile_unet: bool = False,
                 threads: int | None = None, exact: bool | None = None) -> None:
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        # exact: one cell's rows per model call, so a cell's bytes do not depend on its batch
        self.exact = (self.device == "cpu") if exact is None else bool(exact)
        if threads:
            torch.set_num_threads(int(threads))
        self.timings_s: dict[str, float] = defaultdict(float)
        self.family = model_family(spec)
        self._load_pipeline()
        self._check_size()
        self._load_loras()
        self._load_decoder()
        self.latent_shape = (int(self.unet.config.in_channels), spec.height // 8, spec.width // 8)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self._noise_cache: dict[int, np.ndarray] = {}
        self._init_latents: "torch.Tensor | None" = None
        self._jitter_dirs: dict[tuple[int, int], np.ndarray] = {}
        self._lora_state: tuple | None = None
        guidances = [spec.guidance] + [v for a in spec.axes if a.kind == "guidance" for v in a.range]
        self.spec_uses_cfg = max(guidances) > 1.0 and self.unet.config.time_cond_proj_dim is None
        self._text_cache: dict[tuple, tuple] = {}
        self._encode_prompts()
        self._speed_options(compile_unet)

    # --- loading ----------------------------------------------------------------------------

    def _load_pipeline(self) -> None:
        import warnings

        import diffusers
        import transformers
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)

        spec = self.spec
        cls = StableDiffusionXLPipeline if self.family == "sdxl" else StableDiffusionPipeline
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"torch_dtype": self.dtype}
        if self.family == "sd":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            if spec.is_single_file:
                path = Path(spec.model)
                if spec.model_config:
                    cfg = Path(spec.model_config)
                    if not cfg.is_dir():
                        raise ModelNotFoundError(f"{spec.source}: model_config: config folder not found: {cfg}")
                    kwargs["config"] = str(cfg)
                    kwargs["local_files_only"] = True
                pipe = cls.from_single_file(str(path), **kwargs)
            else:
                pipe = cls.from_pretrained(spec.model, **kwargs)
        except ModelNotFoundError:
            raise
        except (OSError, ValueError, EnvironmentError) as exc:
            if spec.is_single_file and not spec.model_config:
                raise self._configs_missing(exc) from None
            if spec.model_is_path or spec.is_single_file:
                raise ModelNotFoundError(f"{spec.source}: model: cannot load {spec.model} "
                                         f"({type(exc).__name__}: {first_line(exc)})") from None
            raise hub_error(spec, "model", spec.model, exc) from None
        if self.family == "sdxl" and getattr(pipe, "text_encoder", None) is None:
            raise SpecError(f"{spec.source}: model: {spec.model} is an SDXL refiner (one text encoder); vj-bank "
                            "bakes with SDXL base models and their fine-tunes")
        self.pipe = pipe.to(self.device)
        self.unet, self.vae = pipe.unet, pipe.vae
        self.text_encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if self.family == "sdxl" else [])
        self.tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if self.family == "sdxl" else [])
        self.text_encoder, self.tokenizer = self.text_encoders[0], self.tokenizers[0]
        for m in (self.unet, self.vae, *self.text_encoders):
            m.eval()
            m.requires_grad_(False)
        if spec.scheduler == "default":
            self.scheduler_class, self.scheduler_config = type(pipe.scheduler), dict(pipe.scheduler.config)
        else:
            class_name, extra = _SCHEDULERS[spec.scheduler]
            self.scheduler_class = getattr(diffusers, class_name)
            self.scheduler_config = {**dict(pipe.scheduler.config), **extra}
        if spec.timestep_spacing != "default":
            self.scheduler_config["timestep_spacing"] = spec.timestep_spacing
        self.timings_s["load"] += time.perf_counter() - t0

    def _configs_missing(self, exc: BaseException) -> ModelNotFoundError:
        """A single-file checkpoint whose base model's configs diffusers could not fetch: say what to pass."""
        spec = self.spec
        repo = base_config_repo(checkpoint_shapes(Path(spec.model)), self.family)
        folder = repo.rsplit("/", 1)[-1] + "-config"
        return ModelNotFoundError(
            f"{spec.source}: model: {Path(spec.model).name} is a single-file {FAMILY_NAMES[self.family]} checkpoint, "
            f"and diffusers needs the configs and tokenizers of its base model ({repo}) to load it, which it could "
            f"neither find in the Hugging Face cache nor download. Either run once with network, or on any machine "
            f"online run `hf download {repo} --include '*.json' --include '*.txt' --local-dir {folder}` (a few MB, "
            f"no weights), put {folder} beside the spec and add model_config = \"{folder}\" to it "
            f"({type(exc).__name__}: {first_line(exc)})")

    def _check_size(self) -> None:
        """SDXL makes noise far from the area it was trained at: refuse such sizes before any work."""
        if self.family != "sdxl":
            return
        spec = self.spec
        native = int(self.unet.config.sample_size) * 8
        area, native_area = spec.width * spec.height, native * native
        if not native_area / SDXL_AREA_FACTOR <= area <= native_area * SDXL_AREA_FACTOR:
            lo = int(native / math.sqrt(SDXL_AREA_FACTOR)) // 8 * 8
            hi = int(native * math.sqrt(SDXL_AREA_FACTOR)) // 8 * 8
            raise SpecError(f"{spec.source}: size: {spec.width}x{spec.height} is not a size this SDXL model can take "
                            f"(trained at {native}x{native}; the area must lie between {lo}x{lo} and {hi}x{hi}, "
                            f"e.g. size = [{native}, {native}] or [{native * 9 // 8 // 8 * 8}, {native * 7 // 8 // 8 * 8}])")

    def _load_loras(self) -> None:
        """Load every [[lora]]; fuse the ones no axis varies, keep the axis ones as adapters."""
        spec = self.spec
        if not spec.loras:
            self.axis_loras: tuple[str, ...] = ()
            return
        try:
            import peft  # noqa: F401
        except ModuleNotFoundError:
            raise BuildExtraMissing(f"{spec.source}: lora: LoRAs need peft: {BUILD_EXTRA_HINT}") from None
        t0 = time.perf_counter()
        axis = set(spec.axis_loras)
        fused = [(i, lo) for i, lo in enumerate(spec.loras) if lo.name not in axis]
        kept = [(i, lo) for i, lo in enumerate(spec.loras) if lo.name in axis]
        if fused:
            for i, lo in fused:
                self._load_lora(i, lo)
            self.pipe.set_adapters([lo.name for _, lo in fused], [lo.weight for _, lo in fused])
            self.pipe.fuse_lora(adapter_names=[lo.name for _, lo in fused], lora_scale=1.0)
            self.pipe.unload_lora_weights()
        for i, lo in kept:
            self._load_lora(i, lo)
        self.axis_loras = tuple(lo.name for _, lo in kept)
        self.timings_s["load"] += time.perf_counter() - t0

    def _load_lora(self, i: int, lo) -> None:
        spec = self.spec
        key = f"lora[{i}].file"
        kwargs: dict[str, Any] = {"adapter_name": lo.name}
        if lo.weight_name:
            kwargs["weight_name"] = lo.weight_name
        before = {n for names in self.pipe.get_list_adapters().values() for n in names}
        import diffusers

        verbosity = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity(logging.CRITICAL)  # its own dump of every mismatch: we say it once
        try:
            self.pipe.load_lora_weights(lo.file, **kwargs)
        except (OSError, EnvironmentError) as exc:
            if lo.file_is_path:
                raise SpecError(f"{spec.source}: {key}: cannot read {lo.file} ({first_line(exc)})") from None
            raise hub_error(spec, key, lo.file, exc) from None
        except (ValueError, RuntimeError, KeyError) as exc:
            raise SpecError(f"{spec.source}: {key}: {lo.file} does not fit this {FAMILY_NAMES[self.family]} model "
                            f"(a LoRA for another base model?): {telling_line(exc, 'size mismatch')}") from None
        finally:
            diffusers.utils.logging.set_verbosity(verbosity)
        after = {n for names in self.pipe.get_list_adapters().values() for n in names}
        if lo.name not in after - before:
            raise SpecError(f"{spec.source}: {key}: {lo.file} matches no layer of this {FAMILY_NAMES[self.family]} "
                            "model: a LoRA for another base model?")

    def _set_loras(self, weights: tuple[tuple[str, float], ...]) -> None:
        """Set the axis LoRAs' weights (one batch shares them)."""
        if not self.axis_loras or self._lora_state == weights:
            return
        given = dict(weights)
        self.pipe.set_adapters(list(self.axis_loras), [float(given[n]) for n in self.axis_loras])
        self._lora_state = weights

    def _load_decoder(self) -> None:
        spec = self.spec
        if spec.decoder == "vae":
            self.decoder = self.vae
        else:
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
                if is_path:
                    raise ModelNotFoundError(f"{spec.source}: decoder: cannot load {spec.decoder} "
                                             f"({type(last).__name__}: {first_line(last)})")
                raise hub_error(spec, "decoder", spec.decoder, last)
            self.decoder = dec.to(self.device).eval().requires_grad_(False)
        # SDXL's VAE overflows to NaN in float16: diffusers marks it force_upcast, and so do we
        # (an fp16-fix VAE clears the flag and stays in half precision).
        self.decode_dtype = self.decoder.dtype
        if self.family == "sdxl" and self.dtype == torch.float16 and getattr(self.decoder.config, "force_upcast", False):
            self.decode_dtype = torch.float32
        if self.decoder is not self.vae and self.decode_dtype != self.decoder.dtype:
            self.decoder.to(self.decode_dtype)

    def _speed_options(self, compile_unet: bool) -> None:
        """SDPA attention (diffusers' default on torch 2: checked, not assumed), channels-last on CUDA,
        and torch.compile with a warm-up that is timed as ``warmup``, not as progress."""
        from diffusers.models.attention_processor import AttnProcessor2_0

        procs = {type(p).__name__ for p in self.unet.attn_processors.values()}
        if procs - {"AttnProcessor2_0"} and not self.axis_loras:
            self.unet.set_attn_processor(AttnProcessor2_0())
        self.attention = ",".join(sorted({type(p).__name__ for p in self.unet.attn_processors.values()}))
        if self.device.startswith("cuda"):
            self.unet.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        self.compiled = bool(compile_unet)
        if compile_unet:
            self.unet = torch.compile(self.unet)

    def model_info(self) -> dict[str, Any]:
        """What the manifest records about how cells were made (the same for every batch)."""
        info = {"family": self.family, "attention": self.attention, "exact": self.exact,
                "decode_dtype": str(self.decode_dtype).replace("torch.", ""),
                "loras_fused": [lo.name for lo in self.spec.loras if lo.name not in self.axis_loras]}
        return dict(sorted(info.items()))  # as it reads back from a shard's JSON meta

    def warm_up(self, cell: CellParams, batch: int = 1) -> None:
        """One generate + decode of ``batch`` copies of ``cell``, thrown away (compiles kernels)."""
        t0 = time.perf_counter()
        steps = self.timings_s.copy()
        lat = self._generate([cell] * batch)
        self._decode(lat)
        self.timings_s.clear()
        self.timings_s.update(steps)
        self.timings_s["warmup"] += time.perf_counter() - t0

    def suggest_batch_size(self, cell: CellParams, cap: int = 16) -> int:
        """Keyframes per batch that fit in free GPU memory: one probe cell's peak, measured, x 1.3 headroom."""
        if not self.device.startswith("cuda") or self.exact:
            return 8 if self.device != "cpu" else 4
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        self.warm_up(cell, 1)
        per_cell = max(torch.cuda.max_memory_allocated() - base, 1) * 1.3
        free, _ = torch.cuda.mem_get_info()
        size = int(max(1, min(cap, free // per_cell)))
        log.info("batch size %d from %.0f MiB free and %.0f MiB per keyframe", size, free / 2**20, per_cell / 2**20)
        return size

    # --- conditioning -----------------------------------------------------------------------

    @contextmanager
    def _timed(self, stage: str):
        synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.timings_s[stage] += time.perf_counter() - t0

    def _token_ids(self, text: str, tokenizer=None) -> "torch.Tensor":
        tokenizer = tokenizer or self.tokenizer
        return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids

    @torch.inference_mode()
    def _encode_one(self, text: str) -> tuple[np.ndarray, np.ndarray | None]:
        """One prompt as diffusers encodes it: [77, D] float32 (SDXL: both encoders' penultimate layers
        side by side) and, for SDXL, the second encoder's pooled embedding."""
        if self.family == "sd":
            ids = self._token_ids(text).to(self.device)
            return self.text_encoder(ids)[0][0].float().cpu().numpy(), None
        parts, pooled = [], None
        for tok, enc in zip(self.tokenizers, self.text_encoders):
            out = enc(self._token_ids(text, tok).to(self.device), output_hidden_states=True)
            if out[0].ndim == 2:
                pooled = out[0][0].float().cpu().numpy()
            parts.append(out.hidden_states[-2][0].float().cpu().numpy())
        return np.concatenate(parts, axis=-1), pooled

    def _positions(self, prompt: str, token: str, tokenizer) -> list[int]:
        ids = self._token_ids(prompt, tokenizer)[0].tolist()
        sub = tokenizer(token, add_special_tokens=False).input_ids
        if not sub:
            return []
        found: list[int] = []
        for start in range(len(ids) - len(sub) + 1):
            if ids[start:start + len(sub)] == sub:
                found.extend(range(start, start + len(sub)))
        return found

    def _token_positions(self, prompt: str, token: str) -> list[int]:
        """Positions of the tokens of ``token`` (a word or phrase) in the tokenized ``prompt``."""
        return self._positions(prompt, token, self.tokenizer)

    def _encode_prompts(self) -> None:
        spec = self.spec
        prompt_axis = spec.axis("prompt")
        self.prompts = list(prompt_axis.prompts) if prompt_axis else [spec.prompt]
        self.embed_dims = [int(e.config.hidden_size) for e in self.text_encoders]
        self.token_positions: dict[str, list[list[int]]] = {}
        self.token_positions_per_encoder: dict[str, list[list[list[int]]]] = {}
        for i, axis in enumerate(spec.axes):
            if axis.kind != "token_weight":
                continue
            per_enc = [[self._positions(p, axis.token, tok) for tok in self.tokenizers] for p in self.prompts]
            if not any(any(x) for x in per_enc):
                raise SpecError(f"{spec.source}: axes[{i}].token: {axis.token!r} is not in the prompt "
                                f"({'any of the prompts' if prompt_axis else repr(spec.prompt)})")
            self.token_positions_per_encoder[axis.token] = per_enc
            self.token_positions[axis.token] = [pe[0] for pe in per_enc]
        first = self._text(self._axis_lora_default())
        self.prompt_embeds = torch.from_numpy(first[0])  # [P, 77, D] float32 CPU
        self.negative_embeds = torch.from_numpy(first[2])

    def _axis_lora_default(self) -> tuple[tuple[str, float], ...]:
        from bank_builder.plan import cell_params

        return cell_params(self.spec, (0,) * len(self.spec.axes)).lora_weights

    def _text(self, lora_weights: tuple[tuple[str, float], ...]) -> tuple:
        """(prompt embeds [P,77,D], pooled [P,Dp] | None, negative [77,D], negative pooled | None), per
        LoRA weights (a LoRA on the text encoders changes them)."""
        key = lora_weights if self.axis_loras else ()
        if key not in self._text_cache:
            self._set_loras(lora_weights)
            with self._timed("text"):
                enc = [self._encode_one(p) for p in self.prompts]
                embeds = np.stack([e for e, _ in enc])
                pooled = np.stack([p for _, p in enc]) if self.family == "sdxl" else None
                if self.family == "sdxl" and not self.spec.negative_prompt and \
                        self.pipe.config.get("force_zeros_for_empty_prompt", True):
                    neg, npooled = np.zeros_like(embeds[0]), np.zeros_like(pooled[0])
                else:
                    neg, npooled = self._encode_one(self.spec.negative_prompt)
            self._text_cache[key] = (embeds, pooled, neg, npooled)
        return self._text_cache[key]

    def cell_conditioning(self, params: CellParams) -> tuple[np.ndarray, np.ndarray | None]:
        """The cell's text embedding [77, D] and (SDXL) pooled embedding (float64): token weights
        applied per prompt and encoder (keeping each encoder's mean), then the prompt axis'
        interpolation (a lerp between neighbouring prompts, pooled embeddings alike)."""
        embeds, pooled, _, _ = self._text(params.lora_weights)
        bounds = np.cumsum([0] + self.embed_dims)
        weighted = []
        for k in range(len(self.prompts)):
            z = embeds[k].astype(np.float64)
            if params.token_weights:
                z = z.copy()
                for e in range(len(self.embed_dims)):
                    part = z[:, bounds[e]:bounds[e + 1]]
                    mean_before = part.mean()
                    multipliers = np.ones(part.shape[0])
                    for token, w in params.token_weights:
                        for pos in self.token_positions_per_encoder[token][k][e]:
                            multipliers[pos] *= w
                    part = part * multipliers[:, None]
                    mean_after = part.mean()
                    if mean_after != 0.0:  # prompt-attention weighting keeps the embedding's mean
                        part = part * (mean_before / mean_after)
                    z[:, bounds[e]:bounds[e + 1]] = part
            weighted.append(z)
        pooled64 = None if pooled is None else [p.astype(np.float64) for p in pooled]
        if len(weighted) == 1:
            return weighted[0], (None if pooled64 is None else pooled64[0])
        prompt_axis = self.spec.axis("prompt")
        z = polyline(weighted, params.prompt_position, cyclic=prompt_axis.cyclic, spherical=False)
        pz = None if pooled64 is None else polyline(pooled64, params.prompt_position, cyclic=prompt_axis.cyclic,
                                                    spherical=False)
        return z, pz

    def cell_embedding(self, params: CellParams) -> np.ndarray:
        """The cell's text embedding [77, D] (float64); see :meth:`cell_conditioning`."""
        return self.cell_conditioning(params)[0]

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
            upcast = self.family == "sdxl" and self.vae.dtype == torch.float16 and self.vae.config.get("force_upcast", False)
            enc_dtype = torch.float32 if upcast else self.vae.dtype
            vae_dtype = self.vae.dtype
            with torch.inference_mode(), self._timed("vae_encode"):
                if enc_dtype != vae_dtype:
                    self.vae.to(enc_dtype)
                lat = self.vae.encode(x.to(self.device, enc_dtype)).latent_dist.mean
                if enc_dtype != vae_dtype:
                    self.vae.to(vae_dtype)
            self._init_latents = (lat.float() * self.scaling_factor).cpu()
        return self._init_latents

    # --- generation ---------------------------------------------------------------------------

    def _oom(self, exc: BaseException, what: str, batch: int) -> OutOfMemoryError:
        spec = self.spec
        release_cache(self.device)
        smaller = f"--batch-size {max(1, batch // 2)}" if batch > 1 else (
            f"a smaller size (e.g. size = [{spec.width // 16 * 8}, {spec.height // 16 * 8}])"
            + (" or decoder = a TAESD-class decoder" if what == "decoding" else ""))
        return OutOfMemoryError(f"{self.device} ran out of memory {what} a batch of {batch} at "
                                f"{spec.width}x{spec.height}: try {smaller} ({first_line(exc, 160)})")

    def generate(self, cells: Sequence[CellParams]) -> np.ndarray:
        """Full pipeline for a batch of cells sharing one strength and LoRA weights: latents [B, C, h, w]
        float32 (scaled). Raises :class:`OutOfMemoryError` (the builder then halves the batch)."""
        try:
            return self._generate(cells)
        except Exception as exc:
            if _is_oom(exc):
                raise self._oom(exc, "generating", len(cells)) from None
            raise

    def _add_time_ids(self, n: int) -> "torch.Tensor":
        """SDXL micro-conditioning, the same for every cell: original size = target size = the bank's
        frame size, crop (0, 0), as diffusers' defaults for a text-to-image call at that size."""
        h, w = self.spec.height, self.spec.width
        ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=self.dtype)
        return ids.to(self.device).repeat(n, 1)

    def _eps(self, scheduler, latents, t, cond, uncond, pooled, npooled, g, use_cfg, tcond, cfg) -> "torch.Tensor":
        """Noise prediction for some cells' latents (one row each), with CFG on the cells that use it
        (``cfg``: whether the call has the unconditional rows at all)."""
        n = latents.shape[0]
        x = torch.cat([latents] * 2) if cfg else latents
        x = scheduler.scale_model_input(x, t)
        embeds = torch.cat([uncond, cond]) if cfg else cond
        kwargs: dict[str, Any] = {}
        if self.family == "sdxl":
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.cat([npooled, pooled]) if cfg else pooled,
                                           "time_ids": self._add_time_ids(2 * n if cfg else n)}
        if tcond is not None:
            kwargs["timestep_cond"] = tcond
        eps = self.unet(x, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]
        if cfg:
            eps_uncond, eps_cond = eps.chunk(2)
            guided = eps_uncond + g.view(-1, 1, 1, 1) * (eps_cond - eps_uncond)
            eps = torch.where(use_cfg.view(-1, 1, 1, 1), guided, eps_cond)
        return eps

    @torch.inference_mode()
    def _generate(self, cells: Sequence[CellParams]) -> np.ndarray:
        spec = self.spec
        starts = {denoise_start(spec.steps, c.strength) for c in cells}
        if len(starts) != 1 or len({c.lora_weights for c in cells}) != 1:
            raise ValueError("one batch must share one img2img start step and one set of LoRA weights")
        dev, dt, n = self.device, self.dtype, len(cells)
        self._set_loras(cells[0].lora_weights)
        _, _, neg, npooled = self._text(cells[0].lora_weights)
        with self._timed("text"):
            conds = [self.cell_conditioning(c) for c in cells]
        # float64 arithmetic stays on the CPU (MPS has no float64): float32 before the move
        cond = torch.from_numpy(np.stack([c for c, _ in conds]).astype(np.float32)).to(dev, dt)
        pooled = (torch.from_numpy(np.stack([p for _, p in conds]).astype(np.float32)).to(dev, dt)
                  if self.family == "sdxl" else None)
        noise = torch.from_numpy(np.stack([self.cell_noise(c) for c in cells]).astype(np.float32))
        guidance = torch.tensor([c.guidance for c in cells], dtype=torch.float32)
        tcond = None
        if self.unet.config.time_cond_proj_dim is not None:  # guidance-distilled (LCM) UNets: w as an input
            use_cfg = torch.zeros(n, dtype=torch.bool)
            tcond = self.pipe.get_guidance_scale_embedding(
                guidance - 1, embedding_dim=self.unet.config.time_cond_proj_dim).to(dev, dt)
        else:
            use_cfg = guidance > 1.0
        if self.exact:  # pad to whole calls of EXACT_ROWS cells (copies of the last cell, dropped at the end)
            pad = -n % EXACT_ROWS
            if pad:
                extend = lambda x: None if x is None else torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
                cond, pooled, noise, guidance, use_cfg, tcond = map(extend, (cond, pooled, noise, guidance, use_cfg, tcond))
                cells = list(cells) + [cells[-1]] * pad
        n_real, n = n, len(cells)
        uncond = torch.from_numpy(neg).to(dev, dt)[None].expand(n, -1, -1)
        unpooled = torch.from_numpy(npooled).to(dev, dt)[None].expand(n, -1) if self.family == "sdxl" else None
        g, use_cfg = guidance.to(dev, dt), use_cfg.to(dev)

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
            init = self.init_latents().expand(n, -1, -1, -1)
            latents = scheduler.add_noise(init.to(dev), noise.to(dev), timesteps[:1].repeat(n))
        else:
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(0)
            latents = noise.to(dev) * scheduler.init_noise_sigma
        latents = latents.to(dt)

        if self.exact:  # fixed shape: the CFG rows are there for every cell if any cell of the spec uses CFG
            rows = [slice(i, i + EXACT_ROWS) for i in range(0, n, EXACT_ROWS)]
            cfg = [self.spec_uses_cfg] * len(rows)
        else:
            rows, cfg = [slice(0, n)], [bool(use_cfg.any())]
        with self._timed("unet"):
            for t in timesteps:
                eps = torch.cat([
                    self._eps(scheduler, latents[r], t, cond[r], uncond[r], None if pooled is None else pooled[r],
                              None if unpooled is None else unpooled[r], g[r], use_cfg[r],
                              None if tcond is None else tcond[r], c)
                    for r, c in zip(rows, cfg)])
                latents = scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        return latents[:n_real].float().cpu().numpy()

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Scaled latents [B, C, h, w] -> uint8 RGB frames [B, H, W, 3]."""
        try:
            return self._decode(latents)
        except Exception as exc:
            if _is_oom(exc):
                raise self._oom(exc, "decoding", len(latents)) from None
            raise

    def _decode_rows(self, z: "torch.Tensor") -> "torch.Tensor":
        cfg = self.decoder.config
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is not None and std is not None:
            c = z.shape[1]
            z = z * torch.tensor(std).view(1, c, 1, 1).to(z) / cfg.scaling_factor + torch.tensor(mean).view(1, c, 1, 1).to(z)
        else:
            z = z / cfg.scaling_factor
        if not self.exact:
            return self.decoder.decode(z, return_dict=False)[0]
        n = len(z)
        pad = -n % EXACT_ROWS
        if pad:
            z = torch.cat([z, z[-1:].expand(pad, *z.shape[1:])])
        out = [self.decoder.decode(z[i:i + EXACT_ROWS], return_dict=False)[0] for i in range(0, len(z), EXACT_ROWS)]
        return torch.cat(out)[:n]

    @torch.inference_mode()
    def _decode(self, latents: np.ndarray) -> np.ndarray:
        with self._timed("decode"):
            if self.decoder.dtype != self.decode_dtype:
                self.decoder.to(self.decode_dtype)
            z = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).to(self.device, self.decode_dtype)
            image = self._decode_rows(z)
            if self.decode_dtype != torch.float32 and not bool(torch.isfinite(image).all()):
                # a half-precision VAE that overflows (SDXL's, without the fp16 fix): decode in float32 from now on
                log.warning("the decoder overflowed in %s; decoding in float32 from now on", self.decode_dtype)
                self.decode_dtype = torch.float32
                self.decoder.to(torch.float32)
                image = self._decode_rows(z.float())
            image = (image.float() / 2 + 0.5).clamp(0, 1)
            frames = (image.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return frames
