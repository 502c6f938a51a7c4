"""The bank spec: a TOML file -> frozen dataclasses, validated; every error names the file and key.

A spec looks like this (see ``presets/banks/`` for complete examples)::

    model = "stabilityai/sd-turbo"     # SD 1.x/2.x or SDXL: hub id, diffusers folder, .safetensors/.ckpt file
    model_config = "configs/sd15"      # optional: local config folder for a single-file model (offline)
    scheduler = "default"              # default, ddim, euler, euler_a, dpm++, unipc, lcm, tcd, pndm, lms, heun
    timestep_spacing = "default"       # or trailing (Turbo / Hyper-SD / LCM LoRAs at 1-4 steps), leading, linspace
    steps = 1
    guidance = 0.0                     # classifier-free guidance; <= 1 means none (as in diffusers)
    size = [512, 512]                  # width, height: multiples of 8
    seed = 1234                        # the base noise every cell shares unless a seed axis varies it
    prompt = "a neon jellyfish"
    negative_prompt = ""
    decoder = "vae"                    # "vae" (the model's) or a TAESD-class decoder: path or hub id
    init_image = "art.png"             # optional: img2img from the artist's own image
    strength = 0.6                     # img2img strength when no strength axis varies it

    [[lora]]                           # any number; fused into the model before baking
    file = "loras/ink.safetensors"     # a .safetensors file, or a hub repo id (+ weight_name = "x.safetensors")
    weight = 0.8
    name = "ink"                       # optional (defaults to the file's stem); a lora_weight axis names it

    [[axes]]
    kind = "seed"                      # prompt, seed, token_weight, guidance, strength, jitter, lora_weight
    name = "noise"                     # optional, defaults to the kind
    seeds = [1, 2, 3]
    count = 24
    cyclic = true
    densify = 4                        # 1 cell in 4 by the full pipeline, the rest by latent slerp
    adaptive = 2                       # optional: up to 2 more keyframes where keyframes differ most

Relative paths (model, model_config, decoder, init_image) are resolved against the spec's folder.
This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bank_builder.errors import SpecError
from vjengine.config import ConfigError, load_toml, parse_toml

AXIS_KINDS = ("prompt", "seed", "token_weight", "guidance", "strength", "jitter", "lora_weight")
SCHEDULERS = ("default", "ddim", "euler", "euler_a", "dpm++", "unipc", "lcm", "tcd", "pndm", "lms", "heun")
TIMESTEP_SPACINGS = ("default", "leading", "trailing", "linspace")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
MAX_AXES = 4
MAX_AXIS_COUNT = 10_000
_TOP_KEYS = {"model", "model_config", "scheduler", "steps", "guidance", "size", "seed", "prompt",
             "negative_prompt", "decoder", "init_image", "strength", "latent_dtype", "description", "axes",
             "lora", "timestep_spacing", "codec"}
_LORA_KEYS = {"file", "weight", "name", "weight_name"}
_AXIS_COMMON = {"kind", "name", "count", "densify", "adaptive", "cyclic"}
_AXIS_KEYS = {
    "prompt": _AXIS_COMMON | {"prompts"},
    "seed": _AXIS_COMMON | {"seeds"},
    "token_weight": _AXIS_COMMON | {"token", "range"},
    "guidance": _AXIS_COMMON | {"range"},
    "strength": _AXIS_COMMON | {"range"},
    "jitter": _AXIS_COMMON | {"range", "radius", "p", "seed"},
    "lora_weight": _AXIS_COMMON | {"lora", "range"},
}
_CYCLIC_KINDS = ("prompt", "seed", "jitter")
_ONE_PER_BANK = ("prompt", "seed", "guidance", "strength")


@dataclass(frozen=True)
class AxisSpec:
    """One axis of the bank: what it varies (``kind``), how many cells, and how they are made.

    ``densify = k``: every k-th cell (and the last) is a keyframe made by the full pipeline; the
    cells between are slerps of their keyframes' latents, decoded only. ``adaptive = m``: up to m
    more keyframes at the midpoints of the segments whose keyframes differ most.
    """

    kind: str
    name: str
    count: int
    densify: int = 1
    adaptive: int = 0
    cyclic: bool = False
    prompts: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    token: str = ""
    range: tuple[float, float] = (0.0, 0.0)
    radius: float = 0.0
    p: float = 2.0
    seed: int = 0
    lora: str = ""

    def position(self, index: int) -> float:
        """The axis parameter at cell ``index``: a position along the prompt/seed list (0 = first),
        a weight / guidance / strength / jitter amplitude, or an angle in degrees (cyclic jitter)."""
        n = self.count
        if self.kind in ("prompt", "seed"):
            points = len(self.prompts) if self.kind == "prompt" else len(self.seeds)
            return index * points / n if self.cyclic else index * (points - 1) / (n - 1)
        if self.kind == "jitter" and self.cyclic:
            return 360.0 * index / n
        lo, hi = self.range
        return lo + (hi - lo) * index / (n - 1)

    def values(self) -> tuple[float, ...]:
        """The axis values written to the bank manifest (rounded, for humans and the live engine)."""
        return tuple(round(float(self.position(i)), 6) for i in range(self.count))

    def keyframe_indices(self) -> tuple[int, ...]:
        """The uniform keyframes: every ``densify``-th cell, plus the last one of a non-cyclic axis."""
        idx = set(range(0, self.count, self.densify))
        if not self.cyclic:
            idx.add(self.count - 1)
        return tuple(sorted(idx))


@dataclass(frozen=True)
class LoraSpec:
    """One ``[[lora]]`` entry: a LoRA file (.safetensors) or hub repo, fused at ``weight`` before baking
    (or, when a ``lora_weight`` axis names it, kept as an adapter whose weight the axis sets)."""

    name: str
    file: str
    file_is_path: bool
    weight: float = 1.0
    weight_name: str | None = None


@dataclass(frozen=True)
class BankSpec:
    """A validated bank spec. ``to_json()`` is what goes into the manifest's ``made_by``."""

    source: str
    model: str
    model_is_path: bool
    model_config: str | None
    scheduler: str
    steps: int
    guidance: float
    width: int
    height: int
    seed: int
    prompt: str
    negative_prompt: str
    decoder: str
    init_image: str | None
    strength: float
    latent_dtype: str
    description: str
    axes: tuple[AxisSpec, ...] = field(default_factory=tuple)
    loras: tuple[LoraSpec, ...] = ()
    timestep_spacing: str = "default"
    codec: str = "raw"  # how the bank stores its frames: raw, bc1 or bc7 (the pack step; not the pixels)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.count for a in self.axes)

    @property
    def count(self) -> int:
        return math.prod(self.sizes)

    @property
    def is_single_file(self) -> bool:
        return self.model.lower().endswith(SINGLE_FILE_SUFFIXES)

    @property
    def img2img(self) -> bool:
        return self.init_image is not None

    def axis(self, kind: str) -> AxisSpec | None:
        return next((a for a in self.axes if a.kind == kind), None)

    @property
    def axis_loras(self) -> tuple[str, ...]:
        """Names of the LoRAs a ``lora_weight`` axis varies (kept as adapters, not fused)."""
        return tuple(a.lora for a in self.axes if a.kind == "lora_weight")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        d["axes"] = [_axis_json(a) for a in self.axes]
        # keys a spec without LoRAs or spacing never had stay out, so older banks keep their digest
        if not self.loras:
            d.pop("loras")
        else:
            d["loras"] = [{k: v for k, v in asdict(lo).items() if v is not None} for lo in self.loras]
        if self.timestep_spacing == "default":
            d.pop("timestep_spacing")
        # the frame codec is how the pack stores the frames, not what the model makes: one work folder
        # serves every codec, and the manifest says the codec itself
        d.pop("codec")
        return d

    def digest(self) -> str:
        """A stable hash of everything that changes the pixels (not the spec's file name)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _axis_json(axis: AxisSpec) -> dict[str, Any]:
    """The axis as the artist would write it: the common keys and its kind's own keys only."""
    keys = _AXIS_KEYS[axis.kind] - {"range" if axis.kind == "jitter" and axis.cyclic else "radius"}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(axis).items() if k in keys}


# --- parsing --------------------------------------------------------------------------------

class _Reader:
    """Typed access to one TOML table; errors name ``file: key``."""

    def __init__(self, table: dict[str, Any], where: str, prefix: str = "") -> None:
        self.table, self.where, self.prefix = table, where, prefix

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.where}: {self.prefix}{key}: {message}")

    def check_keys(self, allowed: set[str], what: str) -> None:
        unknown = sorted(set(self.table) - allowed)
        if unknown:
            raise self.fail(unknown[0], f"unknown key for {what} (allowed: {', '.join(sorted(allowed))})")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, what: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "missing (required)")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"must be {what or _type_name(kinds)}, got {value!r}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.fail(key, f"must be {what or _type_name(kinds)}, got {value!r}")
        return value

    def number(self, key: str, default: Any = ..., *, lo: float | None = None, hi: float | None = None) -> float:
        value = self.get(key, float, default, what="a number")
        if value is not None and not math.isfinite(value):
            raise self.fail(key, f"must be finite, got {value!r}")
        if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            raise self.fail(key, f"must be in [{lo}, {hi}], got {value!r}")
        return value

    def integer(self, key: str, default: Any = ..., *, lo: int | None = None, hi: int | None = None) -> int:
        value = self.get(key, int, default, what="an integer")
        if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise self.fail(key, f"must be an integer {bounds}, got {value!r}")
        return value

    def string(self, key: str, default: Any = ..., *, non_empty: bool = False) -> str:
        value = self.get(key, str, default, what="a string")
        if non_empty and isinstance(value, str) and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def pair(self, key: str) -> tuple[float, float]:
        value = self.get(key, list, what="a list of two numbers [from, to]")
        if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.fail(key, f"must be a list of two numbers [from, to], got {value!r}")
        lo, hi = float(value[0]), float(value[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise self.fail(key, f"must be finite, got {value!r}")
        if lo == hi:
            raise self.fail(key, f"the two ends must differ, got {value!r}")
        return lo, hi


def _type_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _resolve_path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _looks_like_path(value: str) -> bool:
    return (value.startswith((".", "/", "~")) or "\\" in value or value.lower().endswith(SINGLE_FILE_SUFFIXES)
            or value.count("/") > 1)


def load_spec(path: str | Path) -> BankSpec:
    """Read and validate a spec file. Raises :class:`SpecError` naming the file and the key."""
    path = Path(path)
    try:
        table = load_toml(path, what="spec file")
    except ConfigError as exc:  # same text, as the builder's own error type
        raise SpecError(str(exc)) from None
    return spec_from_dict(table, source=str(path), base_dir=path.parent)


def parse_spec(text: str, *, source: str = "<spec>", base_dir: str | Path = ".") -> BankSpec:
    """Validate spec TOML ``text``; relative paths resolve against ``base_dir``."""
    try:
        table = parse_toml(text, source)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None
    return spec_from_dict(table, source=source, base_dir=Path(base_dir))


def spec_from_dict(table: dict[str, Any], *, source: str = "<spec>", base_dir: Path = Path(".")) -> BankSpec:
    r = _Reader(table, source)
    r.check_keys(_TOP_KEYS, "a bank spec")
    base_dir = Path(base_dir).resolve()

    model = r.string("model", non_empty=True).strip()
    local = _resolve_path(model, base_dir)
    model_is_path = local.exists() or _looks_like_path(model)
    if model_is_path:
        model = str(local.resolve()) if local.exists() else str(local)
    model_config = r.string("model_config", None, non_empty=True)
    if model_config is not None:
        if not model.lower().endswith(SINGLE_FILE_SUFFIXES):
            raise r.fail("model_config", "only used with a single-file model (.safetensors or .ckpt)")
        cfg = _resolve_path(model_config, base_dir)
        model_config = str(cfg.resolve()) if cfg.exists() else model_config
    scheduler = r.string("scheduler", "default")
    if scheduler not in SCHEDULERS:
        raise r.fail("scheduler", f"unknown scheduler {scheduler!r} (one of {', '.join(SCHEDULERS)})")
    steps = r.integer("steps", lo=1, hi=1000)
    guidance = r.number("guidance", 7.5, lo=0.0, hi=100.0)

    size = r.get("size", (list, int), what="[width, height] or one integer")
    if isinstance(size, int):
        size = [size, size]
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        raise r.fail("size", f"must be [width, height] in pixels, got {size!r}")
    width, height = size
    for name, v in (("width", width), ("height", height)):
        if v < 8 or v > 8192:
            raise r.fail("size", f"{name} must be in [8, 8192] pixels, got {v}")
        if v % 8:
            raise r.fail("size", f"{name} must be a multiple of 8 (the VAE works in 8x8 blocks), got {v}; "
                         f"try {max(8, v // 8 * 8)} or {v // 8 * 8 + 8}")

    seed = r.integer("seed", 0, lo=0, hi=2**63 - 1)
    prompt = r.string("prompt", "")
    negative_prompt = r.string("negative_prompt", "")
    decoder = r.string("decoder", "vae", non_empty=True).strip()
    if decoder != "vae":
        dpath = _resolve_path(decoder, base_dir)
        if dpath.exists():
            decoder = str(dpath.resolve())
    init_image = r.string("init_image", None, non_empty=True)
    if init_image is not None:
        ipath = _resolve_path(init_image, base_dir)
        if not ipath.is_file():
            raise r.fail("init_image", f"file not found: {ipath}")
        init_image = str(ipath.resolve())
    strength = r.number("strength", 0.6, lo=0.0, hi=1.0)
    timestep_spacing = r.string("timestep_spacing", "default")
    if timestep_spacing not in TIMESTEP_SPACINGS:
        raise r.fail("timestep_spacing", f"must be one of {', '.join(TIMESTEP_SPACINGS)}, got {timestep_spacing!r}")
    raw_loras = r.get("lora", list, [], what="a list of [[lora]] tables")
    loras = tuple(_parse_lora(lo, i, source, base_dir) for i, lo in enumerate(raw_loras))
    lora_names = [lo.name for lo in loras]
    for i, n in enumerate(lora_names):
        if n in lora_names[:i]:
            raise SpecError(f"{source}: lora[{i}].name: two [[lora]] entries are named {n!r}; give each its own name")
    latent_dtype = r.string("latent_dtype", "float16")
    if latent_dtype not in ("float16", "float32"):
        raise r.fail("latent_dtype", f"must be 'float16' or 'float32', got {latent_dtype!r}")
    description = r.string("description", "")
    codec = r.string("codec", "raw")
    if codec not in ("raw", "bc1", "bc7"):
        raise r.fail("codec", f"must be 'raw', 'bc1' or 'bc7' (GPU block compression), got {codec!r}")

    raw_axes = r.get("axes", list, what="a list of [[axes]] tables")
    if not 1 <= len(raw_axes) <= MAX_AXES:
        raise r.fail("axes", f"a bank has 1 to {MAX_AXES} axes, got {len(raw_axes)}")
    axes = tuple(_parse_axis(a, i, source, seed) for i, a in enumerate(raw_axes))

    seen: set[str] = set()
    for i, a in enumerate(axes):
        if a.name in seen:
            raise SpecError(f"{source}: axes[{i}].name: two axes are named {a.name!r}; give each axis its own name")
        seen.add(a.name)
    for kind in _ONE_PER_BANK:
        where = [i for i, a in enumerate(axes) if a.kind == kind]
        if len(where) > 1:
            raise SpecError(f"{source}: axes[{where[1]}].kind: only one {kind!r} axis per bank")
    prompt_axis = next((i for i, a in enumerate(axes) if a.kind == "prompt"), None)
    if prompt_axis is None and not prompt.strip():
        raise r.fail("prompt", "missing (required unless a prompt axis gives the prompts)")
    if prompt_axis is not None and prompt.strip():
        raise r.fail("prompt", f"give either prompt or the prompts of axes[{prompt_axis}], not both")
    strength_axis = next((i for i, a in enumerate(axes) if a.kind == "strength"), None)
    if strength_axis is not None and init_image is None:
        raise SpecError(f"{source}: axes[{strength_axis}]: a strength axis is img2img and needs init_image "
                        "(the artwork to start from)")
    if "strength" in table and init_image is None:
        raise r.fail("strength", "img2img strength needs init_image (the artwork to start from)")
    if init_image is not None:
        strengths = [strength] if strength_axis is None else list(axes[strength_axis].range)
        for s in strengths:
            if int(steps * s) < 1:
                key = "strength" if strength_axis is None else f"axes[{strength_axis}].range"
                raise SpecError(f"{source}: {key}: strength {s} with {steps} steps runs no denoising step "
                                f"(steps x strength must be >= 1); raise steps or strength")
    for i, a in enumerate(axes):
        if a.kind != "lora_weight":
            continue
        if not loras:
            raise SpecError(f"{source}: axes[{i}]: a lora_weight axis needs a [[lora]] entry (file = ...) to weigh")
        if not a.lora:
            if len(loras) > 1:
                raise SpecError(f"{source}: axes[{i}].lora: name which [[lora]] this axis weighs "
                                f"(one of {', '.join(lora_names)})")
            axes = axes[:i] + (replace(a, lora=loras[0].name),) + axes[i + 1:]
        elif a.lora not in lora_names:
            raise SpecError(f"{source}: axes[{i}].lora: no [[lora]] entry is named {a.lora!r} "
                            f"(names: {', '.join(lora_names)})")
    weighed = [a.lora for a in axes if a.kind == "lora_weight"]
    if len(set(weighed)) < len(weighed):
        raise SpecError(f"{source}: axes: two lora_weight axes weigh the same LoRA {weighed[0]!r}")
    guidance_axis = next((i for i, a in enumerate(axes) if a.kind == "guidance"), None)
    if guidance_axis is not None and min(axes[guidance_axis].range) < 1.0:
        raise SpecError(f"{source}: axes[{guidance_axis}].range: guidance below 1.0 means no guidance "
                        "(as in diffusers); start the range at 1.0 or above")
    return BankSpec(source=source, model=model, model_is_path=model_is_path, model_config=model_config,
                    scheduler=scheduler, steps=steps, guidance=guidance, width=width, height=height, seed=seed,
                    prompt=prompt, negative_prompt=negative_prompt, decoder=decoder, init_image=init_image,
                    strength=strength, latent_dtype=latent_dtype, description=description, axes=axes,
                    loras=loras, timestep_spacing=timestep_spacing, codec=codec)


def _parse_lora(raw: Any, i: int, source: str, base_dir: Path) -> LoraSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: lora[{i}]: must be a table ([[lora]])")
    r = _Reader(raw, source, f"lora[{i}].")
    r.check_keys(_LORA_KEYS, "a [[lora]] entry")
    file = r.string("file", non_empty=True).strip()
    local = _resolve_path(file, base_dir)
    is_path = local.exists() or _looks_like_path(file) or file.lower().endswith((".bin", ".pt", ".pth"))
    if is_path:
        if not local.is_file():
            raise r.fail("file", f"LoRA file not found: {local}")
        if local.suffix.lower() != ".safetensors":
            raise r.fail("file", f"{local.name}: LoRAs are read only as .safetensors (a {local.suffix or 'suffix-less'} "
                         "file may hold pickled code, which vj-bank never runs); convert it or get the "
                         ".safetensors release")
        file = str(local.resolve())
    weight = r.number("weight", 1.0, lo=-4.0, hi=4.0)
    default_name = Path(file).stem if is_path else file.rstrip("/").split("/")[-1]
    name = r.string("name", default_name, non_empty=True).strip()
    weight_name = r.string("weight_name", None, non_empty=True)
    if weight_name is not None and is_path:
        raise r.fail("weight_name", "only for a hub repo (it picks the file inside the repo); file is a local file")
    return LoraSpec(name=name, file=file, file_is_path=is_path, weight=weight, weight_name=weight_name)


def _parse_axis(raw: Any, i: int, source: str, base_seed: int) -> AxisSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: axes[{i}]: must be a table ([[axes]])")
    r = _Reader(raw, source, f"axes[{i}].")
    kind = r.string("kind")
    if kind not in AXIS_KINDS:
        raise r.fail("kind", f"unknown axis kind {kind!r} (one of {', '.join(AXIS_KINDS)})")
    r.check_keys(_AXIS_KEYS[kind], f"a {kind} axis")
    name = r.string("name", kind, non_empty=True).strip()
    count = r.integer("count", lo=2, hi=MAX_AXIS_COUNT)
    cyclic = r.get("cyclic", bool, False)
    if cyclic and kind not in _CYCLIC_KINDS:
        raise r.fail("cyclic", f"a {kind} axis cannot wrap around (only {', '.join(_CYCLIC_KINDS)} can)")
    densify = r.integer("densify", 1, lo=1, hi=count - 1 if not cyclic else count)
    adaptive = r.integer("adaptive", 0, lo=0, hi=count)
    if adaptive and densify < 2:
        raise r.fail("adaptive", "adds keyframes between densified cells; set densify >= 2 first")
    if cyclic and count % densify:
        raise r.fail("densify", f"a cyclic axis of {count} cells needs densify to divide {count}, got {densify}")
    extra: dict[str, Any] = {}
    if kind == "prompt":
        prompts = r.get("prompts", list, what="a list of two or more prompts")
        if len(prompts) < 2 or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise r.fail("prompts", f"must be a list of two or more non-empty strings, got {prompts!r:.120}")
        extra["prompts"] = tuple(prompts)
    elif kind == "seed":
        seeds = r.get("seeds", list, what="a list of two or more integer seeds")
        if len(seeds) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise r.fail("seeds", f"must be a list of two or more integers >= 0, got {seeds!r:.120}")
        extra["seeds"] = tuple(seeds)
    elif kind == "token_weight":
        extra["token"] = r.string("token", non_empty=True).strip()
        extra["range"] = r.pair("range")
        if min(extra["range"]) < 0:
            raise r.fail("range", f"token weights must be >= 0, got {list(extra['range'])}")
    elif kind == "guidance":
        extra["range"] = r.pair("range")
    elif kind == "lora_weight":
        extra["lora"] = r.string("lora", "", non_empty=False).strip()
        extra["range"] = r.pair("range")
        if max(abs(v) for v in extra["range"]) > 4:
            raise r.fail("range", f"LoRA weights beyond +-4 only make noise; got {list(extra['range'])}")
    elif kind == "strength":
        extra["range"] = r.pair("range")
        if not all(0.0 < s <= 1.0 for s in extra["range"]):
            raise r.fail("range", f"img2img strength must be in (0, 1], got {list(extra['range'])}")
    elif kind == "jitter":
        p = r.get("p", (int, float, str), 2, what="1, 2 or \"inf\"")
        if p == "inf":
            p = math.inf
        if p not in (1, 2, math.inf):
            raise r.fail("p", f"the Lp norm must be 1, 2 or \"inf\", got {p!r}")
        extra["p"] = float(p)
        extra["seed"] = r.integer("seed", base_seed + 1000 + i, lo=0)
        if cyclic:
            if "range" in raw:
                raise r.fail("range", "a cyclic jitter axis walks a loop of the given radius: use radius, not range")
            extra["radius"] = r.number("radius", lo=0.0, hi=10.0)
            if extra["radius"] <= 0:
                raise r.fail("radius", "must be > 0")
        else:
            if "radius" in raw:
                raise r.fail("radius", "only for a cyclic jitter axis; a straight one takes range = [from, to]")
            extra["range"] = r.pair("range")
            if max(abs(v) for v in extra["range"]) > 10:
                raise r.fail("range", "jitter amplitudes are relative to the noise (about 0.05 to 0.5); got "
                              f"{list(extra['range'])}")
    return AxisSpec(kind=kind, name=name, count=count, densify=densify, adaptive=adaptive, cyclic=cyclic, **extra)
