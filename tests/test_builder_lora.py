"""LoRAs fused before baking (and a LoRA weight as an axis) against diffusers' own LoRA loading; and
the bad inputs that must stop a build before any work: exit 2, the key and value named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from _builder_fixtures import (bank_cli, cli_env, require_build_extra, tiny_model, tiny_pipe,  # noqa: F401
                               tiny_sdxl, write_spec)

require_build_extra()
pytest.importorskip("peft", reason="LoRAs need peft (the build extra)")

import torch  # noqa: E402

from bank_builder.build import BuildOptions, build_bank  # noqa: E402
from bank_builder.errors import SpecError  # noqa: E402
from bank_builder.spec import load_spec, parse_spec  # noqa: E402
from vjengine.bank import open_bank  # noqa: E402

SIZE, STEPS = 32, 2
AXIS = '[[axes]]\nkind = "seed"\nseeds = [5, 9]\ncount = 2\n'


def head(model, extra=""):
    return f'model = "{model}"\nsteps = {STEPS}\nguidance = 3.0\nsize = [{SIZE}, {SIZE}]\nseed = 7\nprompt = "a red cat"\n{extra}'


def fresh(cls_name: str, folder: Path):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd_lora(tmp_path_factory, tiny_model) -> Path:
    from bank_builder.testing import make_tiny_lora

    return make_tiny_lora(fresh("StableDiffusionPipeline", tiny_model),
                          tmp_path_factory.mktemp("lora") / "ink.safetensors", seed=3)


def ref(pipe, seed, lora_weight=None):
    if lora_weight is not None:
        pipe.set_adapters(["ink"], [lora_weight])
    out = pipe("a red cat", height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=3.0,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images[0]
    return np.round(out * 255).astype(np.uint8)


def close(a, b, tol=2):
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()) <= tol


def test_fused_lora_matches_diffusers_unfused_and_the_weights_are_w_plus_wBA(tmp_path, tiny_model, tiny_pipe, sd_lora):
    text = head(tiny_model, f'[[lora]]\nfile = "{sd_lora}"\nweight = 0.7\n') + AXIS
    spec = load_spec(write_spec(tmp_path, text))
    build_bank(spec, tmp_path / "bank", BuildOptions(progress=False))
    bank = open_bank(tmp_path / "bank")
    assert bank.made_by["model"]["loras_fused"] == ["ink"] and bank.made_by["spec"]["loras"][0]["weight"] == 0.7
    unfused = fresh("StableDiffusionPipeline", tiny_model)
    unfused.load_lora_weights(str(sd_lora), adapter_name="ink")
    for i, seed in enumerate((5, 9)):
        want = ref(unfused, seed, 0.7)
        assert close(bank.frames[i], want), seed
        assert not close(want, ref(tiny_pipe, seed), 6), "the LoRA must visibly change the picture"

    # the fused weights are W + 0.7 * B @ A, layer by layer (UNet and text encoder)
    from safetensors.torch import load_file

    from bank_builder.pipeline import Generator

    lora = load_file(str(sd_lora))
    gen = Generator(spec)
    base_unet, base_text = dict(tiny_pipe.unet.named_modules()), dict(tiny_pipe.text_encoder.named_modules())
    fused_unet, fused_text = dict(gen.unet.named_modules()), dict(gen.text_encoder.named_modules())
    checked = 0
    for key in (k for k in lora if k.endswith("lora_A.weight")):
        module = key[: -len(".lora_A.weight")]
        part, name = module.split(".", 1)
        base, fused = (base_unet, fused_unet) if part == "unet" else (base_text, fused_text)
        name = name if name in base else "text_model." + name
        a, b = lora[key].double(), lora[module + ".lora_B.weight"].double()
        want = base[name].weight.double() + 0.7 * (b @ a)
        assert torch.allclose(fused[name].weight.double(), want, atol=1e-5), module
        checked += 1
    assert checked >= 8


def test_lora_weight_axis(tmp_path, tiny_model, tiny_pipe, sd_lora):
    text = head(tiny_model, f'[[lora]]\nfile = "{sd_lora}"\n') + (
        '[[axes]]\nkind = "lora_weight"\nname = "style"\nrange = [0.0, 1.0]\ncount = 3\n')
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.axes[0].lora == "ink"  # the one [[lora]] is the one the axis weighs
    build_bank(spec, tmp_path / "bank", BuildOptions(batch_size=3, progress=False))
    bank = open_bank(tmp_path / "bank")
    assert bank.made_by["model"]["loras_fused"] == []
    assert close(bank.frames[0], ref(tiny_pipe, 7))  # weight 0: the model itself
    with_lora = fresh("StableDiffusionPipeline", tiny_model)
    with_lora.load_lora_weights(str(sd_lora), adapter_name="ink")
    assert close(bank.frames[1], ref(with_lora, 7, 0.5))
    assert close(bank.frames[2], ref(with_lora, 7, 1.0))
    assert bank.axes[0].values == (0.0, 0.5, 1.0)


def test_sdxl_lora_weight_axis_on_both_text_encoders(tmp_path, tiny_sdxl):
    """An SDXL LoRA (UNet and both text encoders) weighed by an axis: each weight is diffusers' own
    SDXL pipeline with the LoRA at that weight."""
    from bank_builder.testing import make_tiny_lora

    lora = make_tiny_lora(fresh("StableDiffusionXLPipeline", tiny_sdxl), tmp_path / "ink.safetensors", seed=4)
    text = head(tiny_sdxl, f'[[lora]]\nfile = "{lora.name}"\n') + (
        '[[axes]]\nkind = "lora_weight"\nrange = [0.0, 1.0]\ncount = 3\n')
    build_bank(load_spec(write_spec(tmp_path, text)), tmp_path / "bank", BuildOptions(batch_size=3, progress=False))
    bank = open_bank(tmp_path / "bank")
    with_lora = fresh("StableDiffusionXLPipeline", tiny_sdxl)
    with_lora.load_lora_weights(str(lora), adapter_name="ink")
    assert {"text_encoder", "text_encoder_2", "unet"} <= set(with_lora.get_list_adapters())
    for i, w in enumerate((0.0, 0.5, 1.0)):
        assert close(bank.frames[i], ref(with_lora, 7, w)), w
    assert not close(bank.frames[0], bank.frames[2], 6), "the LoRA must visibly change the picture"


@pytest.mark.parametrize("scheduler", ["lcm", "tcd"])
def test_distillation_lora_with_the_scheduler_it_needs(tmp_path, tiny_model, sd_lora, scheduler):
    """An LCM / Hyper-SD-style LoRA fused, baked in 4 steps without guidance by the scheduler it was
    distilled for (stochastic between steps: its noise comes from seed + 1, the same in every cell):
    diffusers' pipeline with that scheduler and the LoRA fused makes the same frames."""
    import diffusers

    from bank_builder.pipeline import ANCESTRAL_SEED_OFFSET, Generator
    from bank_builder.plan import cell_params

    text = head(tiny_model, f'scheduler = "{scheduler}"\n[[lora]]\nfile = "{sd_lora}"\n').replace(
        "steps = 2", "steps = 4").replace("guidance = 3.0", "guidance = 1.0") + AXIS
    spec = load_spec(write_spec(tmp_path, text))
    build_bank(spec, tmp_path / "bank", BuildOptions(progress=False))
    bank = open_bank(tmp_path / "bank")
    pipe = fresh("StableDiffusionPipeline", tiny_model)
    cls = {"lcm": diffusers.LCMScheduler, "tcd": diffusers.TCDScheduler}[scheduler]
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(str(sd_lora), adapter_name="ink")
    pipe.fuse_lora(lora_scale=1.0)
    gen = Generator(spec)
    for i in range(2):
        noise = torch.from_numpy(gen.cell_noise(cell_params(spec, (i,))).astype(np.float32))[None]
        out = pipe("a red cat", height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=1.0, latents=noise,
                   generator=torch.Generator("cpu").manual_seed(spec.seed + ANCESTRAL_SEED_OFFSET),
                   output_type="np").images[0]
        assert close(bank.frames[i], np.round(out * 255).astype(np.uint8)), i
    # the scheduler matters: the default one is another picture
    plain = fresh("StableDiffusionPipeline", tiny_model)
    plain.load_lora_weights(str(sd_lora), adapter_name="ink")
    plain.fuse_lora(lora_scale=1.0)
    other = plain("a red cat", height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=1.0, latents=noise,
                  output_type="np").images[0]
    assert not close(bank.frames[1], np.round(other * 255).astype(np.uint8), 6)


# --- bad input: exit 2, before any work -------------------------------------------------------

def run_cli(spec: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(bank_cli("build", str(spec), "-o", str(out), "--no-progress", "--threads", "1"),
                          capture_output=True, text=True, env=cli_env(), timeout=300)


def test_lora_for_another_base_is_exit_2_before_work(tmp_path, tiny_model, tiny_sdxl):
    from bank_builder.testing import make_tiny_lora

    xl_lora = make_tiny_lora(fresh("StableDiffusionXLPipeline", tiny_sdxl), tmp_path / "xl-style.safetensors")
    spec = write_spec(tmp_path, head(tiny_model, f'[[lora]]\nfile = "{xl_lora.name}"\n') + AXIS)
    r = run_cli(spec, tmp_path / "bank")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "lora[0].file" in r.stderr and "xl-style.safetensors" in r.stderr and "another base model" in r.stderr
    # the one line that says why (a layer of another width), not diffusers' dump of every layer
    assert r.stderr.count("size mismatch for ") == 1 and "unsuccessful" not in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "bank").exists() and not (tmp_path / "bank.work").exists()


def test_unknown_family_and_unsafe_checkpoint_are_exit_2(tmp_path):
    # a diffusers folder of a family vj-bank does not bake
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    r = run_cli(write_spec(tmp_path, head("flux") + AXIS, "flux.toml"), tmp_path / "b1")
    assert r.returncode == 2 and "model:" in r.stderr and "FluxPipeline" in r.stderr and "unknown family" in r.stderr

    # a .ckpt that needs arbitrary code to unpickle: refused, and its code never runs
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "extra": Payload()}, tmp_path / "evil.ckpt")
    r = run_cli(write_spec(tmp_path, head("evil.ckpt") + AXIS, "evil.toml"), tmp_path / "b2")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "evil.ckpt is not safetensors and not loadable with weights_only=True" in r.stderr
    assert not marker.exists()
    assert not any(tmp_path.glob("b*.work"))


@pytest.mark.parametrize("extra, key, words", [
    ('[[axes]]\nkind = "lora_weight"\nrange = [0.0, 1.0]\ncount = 3\n', "axes[0]", "needs a [[lora]] entry"),
    ('[[lora]]\nfile = "a.safetensors"\n[[axes]]\nkind = "lora_weight"\nlora = "b"\nrange = [0, 1]\ncount = 3\n',
     "axes[0].lora", "no [[lora]] entry is named 'b'"),
    ('[[lora]]\nfile = "style.bin"\n' + AXIS, "lora[0].file", "only as .safetensors"),
    ('[[lora]]\nfile = "missing.safetensors"\n' + AXIS, "lora[0].file", "LoRA file not found"),
    ('[[lora]]\nfile = "a.safetensors"\nweight = 9\n' + AXIS, "lora[0].weight", "must be in"),
    ('timestep_spacing = "sideways"\n' + AXIS, "timestep_spacing", "sideways"),
])
def test_lora_spec_errors_name_the_key(tmp_path, extra, key, words):
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / "style.bin").write_bytes(b"")
    with pytest.raises(SpecError) as err:
        parse_spec(head("some/model", extra), source="t.toml", base_dir=tmp_path)
    assert f"t.toml: {key}" in str(err.value) and words in str(err.value)
