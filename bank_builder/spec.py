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
from vjengine.bank.format import MAX_AXES
from vjengine.config import ConfigError, load_toml, parse_toml
from vjengine.config import build as config_build

AXIS_KINDS = ("prompt", "seed", "token_weight", "guidance", "strength", "jitter", "lora_weight")
SCHEDULERS = ("default", "ddim", "euler", "euler_a", "dpm++", "unipc", "lcm", "tcd", "pndm", "lms", "heun")
TIMESTEP_SPACINGS = ("default", "leading", "trailing", "linspace")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
MAX_AXIS_COUNT = 10_000
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


def spec_from_json(d: dict[str, Any], *, source: str, digest: str | None = None) -> BankSpec:
    """The spec a bank was built from, read back from its manifest (``made_by.spec``, as
    :meth:`BankSpec.to_json` wrote it): what ``vj-bank repair`` needs to decode latents again. With
    ``digest`` (``made_by.spec_sha256``) the result must hash to it, so a spec edited in the manifest
    is refused rather than used. Raises :class:`SpecError` naming ``source`` and the key."""
    try:
        axes = tuple(AxisSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in a.items()})
                     for a in d.get("axes", []))
        loras = tuple(LoraSpec(**lo) for lo in d.get("loras", []))
        fields = {k: v for k, v in d.items() if k not in ("axes", "loras")}
        spec = BankSpec(source=source, axes=axes, loras=loras, **fields)
    except (TypeError, AttributeError) as exc:
        raise SpecError(f"{source}: made_by.spec: not a spec this version of vj-bank wrote ({exc})") from None
    if digest is not None and spec.digest() != digest:
        raise SpecError(f"{source}: made_by.spec does not match made_by.spec_sha256: the manifest was edited")
    return spec


def _axis_json(axis: AxisSpec) -> dict[str, Any]:
    """The axis as the artist would write it: the common keys and its kind's own keys only."""
    keys = _AXIS_KEYS[axis.kind] - {"range" if axis.kind == "jitter" and axis.cyclic else "radius"}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(axis).items() if k in keys}


# --- parsing --------------------------------------------------------------------------------
#
# The TOML goes through vjengine.config's one validated reader (config.build): the schema
# dataclasses below give every key's type, default, range and choices, and unknown or missing keys
# are errors naming the file and key. What config.build cannot say (cross-key rules, paths, the
# axis kinds' own keys) is checked after it, with the same file: key: message wording.


@dataclass(frozen=True, kw_only=True)
class _LoraToml:
    file: str
    weight: float = field(default=1.0, metadata={"range": (-4.0, 4.0)})
    name: str | None = None
    weight_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class _SpecToml:
    model: str
    steps: int = field(metadata={"range": (1, 1000)})
    size: int | tuple[int, ...]
    axes: tuple[Any, ...]
    model_config: str | None = None
    scheduler: str = field(default="default", metadata={"choices": SCHEDULERS})
    guidance: float = field(default=7.5, metadata={"range": (0.0, 100.0)})
    seed: int = field(default=0, metadata={"range": (0, 2**63 - 1)})
    prompt: str = ""
    negative_prompt: str = ""
    decoder: str = "vae"
    init_image: str | None = None
    strength: float = field(default=0.6, metadata={"range": (0.0, 1.0)})
    latent_dtype: str = field(default="float16", metadata={"choices": ("float16", "float32")})
    description: str = ""
    lora: tuple[_LoraToml, ...] = ()
    timestep_spacing: str = field(default="default", metadata={"choices": TIMESTEP_SPACINGS})
    codec: str = "raw"


@dataclass(frozen=True, kw_only=True)
class _AxisToml:
    kind: str
    count: int = field(metadata={"range": (2, MAX_AXIS_COUNT)})
    name: str | None = None
    densify: int = field(default=1, metadata={"range": (1, None)})
    adaptive: int = field(default=0, metadata={"range": (0, None)})
    cyclic: bool = False


@dataclass(frozen=True, kw_only=True)
class _RangeAxisToml(_AxisToml):
    range: tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class _PromptAxisToml(_AxisToml):
    prompts: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class _SeedAxisToml(_AxisToml):
    seeds: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class _TokenAxisToml(_RangeAxisToml):
    token: str


@dataclass(frozen=True, kw_only=True)
class _LoraAxisToml(_RangeAxisToml):
    lora: str = ""


@dataclass(frozen=True, kw_only=True)
class _JitterAxisToml(_AxisToml):
    range: tuple[float, float] | None = None
    radius: float | None = field(default=None, metadata={"range": (0.0, 10.0)})
    p: float | str = 2.0
    seed: int | None = field(default=None, metadata={"range": (0, None)})


_AXIS_SCHEMAS: dict[str, type] = {
    "prompt": _PromptAxisToml, "seed": _SeedAxisToml, "token_weight": _TokenAxisToml,
    "guidance": _RangeAxisToml, "strength": _RangeAxisToml, "jitter": _JitterAxisToml,
    "lora_weight": _LoraAxisToml,
}


def _build(cls: type, table: Any, source: str, key: str = ""):
    """config.build, with its ConfigError raised as the builder's SpecError (same text)."""
    try:
        return config_build(cls, table, source, key)
    except SpecError:
        raise
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def _fail(source: str, key: str, message: str) -> SpecError:
    return SpecError(f"{source}: {key}: {message}")


def _non_empty(value: str | None, source: str, key: str) -> str | None:
    if value is not None and not value.strip():
        raise _fail(source, key, "must not be empty")
    return None if value is None else value.strip()


def _pair(value: tuple[float, float], source: str, key: str) -> tuple[float, float]:
    if value[0] == value[1]:
        raise _fail(source, key, f"the two ends must differ, got {list(value)!r}")
    return value


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
    """Validate a parsed spec table (config.build, then the rules that span keys)."""
    t: _SpecToml = _build(_SpecToml, table, source)
    base_dir = Path(base_dir).resolve()

    model = _non_empty(t.model, source, "model")
    local = _resolve_path(model, base_dir)
    model_is_path = local.exists() or _looks_like_path(model)
    if model_is_path:
        model = str(local.resolve()) if local.exists() else str(local)
    model_config = _non_empty(t.model_config, source, "model_config")
    if model_config is not None:
        if not model.lower().endswith(SINGLE_FILE_SUFFIXES):
            raise _fail(source, "model_config", "only used with a single-file model (.safetensors or .ckpt)")
        cfg = _resolve_path(model_config, base_dir)
        model_config = str(cfg.resolve()) if cfg.exists() else model_config

    size = [t.size, t.size] if isinstance(t.size, int) else list(t.size)
    if len(size) != 2:
        raise _fail(source, "size", f"must be [width, height] in pixels, got {size!r}")
    width, height = size
    for name, v in (("width", width), ("height", height)):
        if v < 8 or v > 8192:
            raise _fail(source, "size", f"{name} must be in [8, 8192] pixels, got {v}")
        if v % 8:
            raise _fail(source, "size", f"{name} must be a multiple of 8 (the VAE works in 8x8 blocks), got {v}; "
                        f"try {max(8, v // 8 * 8)} or {v // 8 * 8 + 8}")

    decoder = _non_empty(t.decoder, source, "decoder")
    if decoder != "vae":
        dpath = _resolve_path(decoder, base_dir)
        if dpath.exists():
            decoder = str(dpath.resolve())
    init_image = _non_empty(t.init_image, source, "init_image")
    if init_image is not None:
        ipath = _resolve_path(init_image, base_dir)
        if not ipath.is_file():
            raise _fail(source, "init_image", f"file not found: {ipath}")
        init_image = str(ipath.resolve())
    if t.codec not in ("raw", "bc1", "bc7"):
        raise _fail(source, "codec", f"must be 'raw', 'bc1' or 'bc7' (GPU block compression), got {t.codec!r}")
    loras = tuple(_lora(lo, i, source, base_dir) for i, lo in enumerate(t.lora))
    lora_names = [lo.name for lo in loras]
    for i, n in enumerate(lora_names):
        if n in lora_names[:i]:
            raise _fail(source, f"lora[{i}].name", f"two [[lora]] entries are named {n!r}; give each its own name")

    if not 1 <= len(t.axes) <= MAX_AXES:
        raise _fail(source, "axes", f"a bank has 1 to {MAX_AXES} axes, got {len(t.axes)}")
    axes = tuple(_axis(a, i, source, t.seed) for i, a in enumerate(t.axes))

    seen: set[str] = set()
    for i, a in enumerate(axes):
        if a.name in seen:
            raise _fail(source, f"axes[{i}].name", f"two axes are named {a.name!r}; give each axis its own name")
        seen.add(a.name)
    for kind in _ONE_PER_BANK:
        where = [i for i, a in enumerate(axes) if a.kind == kind]
        if len(where) > 1:
            raise _fail(source, f"axes[{where[1]}].kind", f"only one {kind!r} axis per bank")
    prompt, steps, strength = t.prompt, t.steps, t.strength
    prompt_axis = next((i for i, a in enumerate(axes) if a.kind == "prompt"), None)
    if prompt_axis is None and not prompt.strip():
        raise _fail(source, "prompt", "missing (required unless a prompt axis gives the prompts)")
    if prompt_axis is not None and prompt.strip():
        raise _fail(source, "prompt", f"give either prompt or the prompts of axes[{prompt_axis}], not both")
    strength_axis = next((i for i, a in enumerate(axes) if a.kind == "strength"), None)
    if strength_axis is not None and init_image is None:
        raise _fail(source, f"axes[{strength_axis}]", "a strength axis is img2img and needs init_image "
                    "(the artwork to start from)")
    if "strength" in table and init_image is None:
        raise _fail(source, "strength", "img2img strength needs init_image (the artwork to start from)")
    if init_image is not None:
        strengths = [strength] if strength_axis is None else list(axes[strength_axis].range)
        for s in strengths:
            if int(steps * s) < 1:
                key = "strength" if strength_axis is None else f"axes[{strength_axis}].range"
                raise _fail(source, key, f"strength {s} with {steps} steps runs no denoising step "
                            "(steps x strength must be >= 1); raise steps or strength")
    for i, a in enumerate(axes):
        if a.kind != "lora_weight":
            continue
        if not loras:
            raise _fail(source, f"axes[{i}]", "a lora_weight axis needs a [[lora]] entry (file = ...) to weigh")
        if not a.lora:
            if len(loras) > 1:
                raise _fail(source, f"axes[{i}].lora",
                            f"name which [[lora]] this axis weighs (one of {', '.join(lora_names)})")
            axes = axes[:i] + (replace(a, lora=loras[0].name),) + axes[i + 1:]
        elif a.lora not in lora_names:
            raise _fail(source, f"axes[{i}].lora",
                        f"no [[lora]] entry is named {a.lora!r} (names: {', '.join(lora_names)})")
    weighed = [a.lora for a in axes if a.kind == "lora_weight"]
    if len(set(weighed)) < len(weighed):
        raise _fail(source, "axes", f"two lora_weight axes weigh the same LoRA {weighed[0]!r}")
    guidance_axis = next((i for i, a in enumerate(axes) if a.kind == "guidance"), None)
    if guidance_axis is not None and min(axes[guidance_axis].range) < 1.0:
        raise _fail(source, f"axes[{guidance_axis}].range", "guidance below 1.0 means no guidance "
                    "(as in diffusers); start the range at 1.0 or above")
    return BankSpec(source=source, model=model, model_is_path=model_is_path, model_config=model_config,
                    scheduler=t.scheduler, steps=steps, guidance=t.guidance, width=width, height=height,
                    seed=t.seed, prompt=prompt, negative_prompt=t.negative_prompt, decoder=decoder,
                    init_image=init_image, strength=strength, latent_dtype=t.latent_dtype,
                    description=t.description, axes=axes, loras=loras, timestep_spacing=t.timestep_spacing,
                    codec=t.codec)


def _lora(t: _LoraToml, i: int, source: str, base_dir: Path) -> LoraSpec:
    key = f"lora[{i}]"
    file = _non_empty(t.file, source, f"{key}.file")
    local = _resolve_path(file, base_dir)
    is_path = local.exists() or _looks_like_path(file) or file.lower().endswith((".bin", ".pt", ".pth"))
    if is_path:
        if not local.is_file():
            raise _fail(source, f"{key}.file", f"LoRA file not found: {local}")
        if local.suffix.lower() != ".safetensors":
            raise _fail(source, f"{key}.file", f"{local.name}: LoRAs are read only as .safetensors (a "
                        f"{local.suffix or 'suffix-less'} file may hold pickled code, which vj-bank never runs); "
                        "convert it or get the .safetensors release")
        file = str(local.resolve())
    default_name = Path(file).stem if is_path else file.rstrip("/").split("/")[-1]
    name = _non_empty(t.name, source, f"{key}.name") or default_name
    weight_name = _non_empty(t.weight_name, source, f"{key}.weight_name")
    if weight_name is not None and is_path:
        raise _fail(source, f"{key}.weight_name", "only for a hub repo (it picks the file inside the repo); "
                    "file is a local file")
    return LoraSpec(name=name, file=file, file_is_path=is_path, weight=t.weight, weight_name=weight_name)


def _axis(raw: Any, i: int, source: str, base_seed: int) -> AxisSpec:
    key = f"axes[{i}]"
    if not isinstance(raw, dict):
        raise _fail(source, key, "must be a table ([[axes]])")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in AXIS_KINDS:
        raise _fail(source, f"{key}.kind", f"unknown axis kind {kind!r} (one of {', '.join(AXIS_KINDS)})"
                    if "kind" in raw else "is required")
    a = _build(_AXIS_SCHEMAS[kind], raw, source, key)
    name = _non_empty(a.name, source, f"{key}.name") or kind
    count, cyclic = a.count, a.cyclic
    if cyclic and kind not in _CYCLIC_KINDS:
        raise _fail(source, f"{key}.cyclic", f"a {kind} axis cannot wrap around (only {', '.join(_CYCLIC_KINDS)} can)")
    hi = count - 1 if not cyclic else count
    if a.densify > hi:
        raise _fail(source, f"{key}.densify", f"must be an integer in [1, {hi}], got {a.densify}")
    if a.adaptive > count:
        raise _fail(source, f"{key}.adaptive", f"must be an integer in [0, {count}], got {a.adaptive}")
    if a.adaptive and a.densify < 2:
        raise _fail(source, f"{key}.adaptive", "adds keyframes between densified cells; set densify >= 2 first")
    if cyclic and count % a.densify:
        raise _fail(source, f"{key}.densify", f"a cyclic axis of {count} cells needs densify to divide {count}, "
                    f"got {a.densify}")
    extra: dict[str, Any] = {}
    if kind == "prompt":
        if len(a.prompts) < 2 or not all(p.strip() for p in a.prompts):
            raise _fail(source, f"{key}.prompts", f"must be a list of two or more non-empty strings, got {list(a.prompts)!r:.120}")
        extra["prompts"] = a.prompts
    elif kind == "seed":
        if len(a.seeds) < 2 or not all(s >= 0 for s in a.seeds):
            raise _fail(source, f"{key}.seeds", f"must be a list of two or more integers >= 0, got {list(a.seeds)!r:.120}")
        extra["seeds"] = a.seeds
    elif kind == "jitter":
        p = a.p
        if p == "inf":
            p = math.inf
        if p not in (1, 2, math.inf):
            raise _fail(source, f"{key}.p", f"the Lp norm must be 1, 2 or \"inf\", got {a.p!r}")
        extra["p"] = float(p)
        extra["seed"] = base_seed + 1000 + i if a.seed is None else a.seed
        if cyclic:
            if a.range is not None:
                raise _fail(source, f"{key}.range", "a cyclic jitter axis walks a loop of the given radius: use "
                            "radius, not range")
            if a.radius is None:
                raise _fail(source, f"{key}.radius", "is required")
            if a.radius <= 0:
                raise _fail(source, f"{key}.radius", "must be > 0")
            extra["radius"] = a.radius
        else:
            if a.radius is not None:
                raise _fail(source, f"{key}.radius", "only for a cyclic jitter axis; a straight one takes "
                            "range = [from, to]")
            if a.range is None:
                raise _fail(source, f"{key}.range", "is required")
            extra["range"] = _pair(a.range, source, f"{key}.range")
            if max(abs(v) for v in extra["range"]) > 10:
                raise _fail(source, f"{key}.range", "jitter amplitudes are relative to the noise (about 0.05 to "
                            f"0.5); got {list(extra['range'])}")
    else:
        rng = extra["range"] = _pair(a.range, source, f"{key}.range")
        if kind == "token_weight":
            extra["token"] = _non_empty(a.token, source, f"{key}.token")
            if min(rng) < 0:
                raise _fail(source, f"{key}.range", f"token weights must be >= 0, got {list(rng)}")
        elif kind == "lora_weight":
            extra["lora"] = a.lora.strip()
            if max(abs(v) for v in rng) > 4:
                raise _fail(source, f"{key}.range", f"LoRA weights beyond +-4 only make noise; got {list(rng)}")
        elif kind == "strength" and not all(0.0 < s <= 1.0 for s in rng):
            raise _fail(source, f"{key}.range", f"img2img strength must be in (0, 1], got {list(rng)}")
    return AxisSpec(kind=kind, name=name, count=count, densify=a.densify, adaptive=a.adaptive, cyclic=cyclic,
                    **extra)
