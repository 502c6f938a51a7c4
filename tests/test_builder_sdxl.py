"""SDXL through every axis kind, checked cell by cell against diffusers' own SDXL pipelines.

The tiny SDXL-shaped model has both text encoders (the second with the projection that gives the
pooled embedding) and a ``text_time`` UNet (micro-conditioning), so every SDXL code path runs. Cells
whose conditioning diffusers cannot express itself (a blend of prompts, a token weight, a slerp of
seeds, jitter) are compared with diffusers given the builder's embeddings or noise: the UNet loop,
micro-conditioning, CFG and decoding are then diffusers' own.
"""

from __future__ import annotations

import numpy as np
import pytest

from _builder_fixtures import require_build_extra, tiny_sdxl, tiny_sdxl_pipe, write_spec  # noqa: F401

require_build_extra()

import torch  # noqa: E402

from bank_builder.build import BuildOptions, build_bank  # noqa: E402
from bank_builder.errors import SpecError  # noqa: E402
from bank_builder.plan import cell_params  # noqa: E402
from bank_builder.spec import load_spec  # noqa: E402
from vjengine.bank import open_bank  # noqa: E402

SIZE, STEPS, TOL = 32, 2, 2


def head(model, *, guidance=3.0, prompt='prompt = "a red cat"\n', extra=""):
    return (f'model = "{model}"\nsteps = {STEPS}\nguidance = {guidance}\nsize = [{SIZE}, {SIZE}]\nseed = 7\n'
            f'{prompt}{extra}')


def build(tmp_path, text, name="bank", **opts):
    spec = load_spec(write_spec(tmp_path, text, name + ".toml"))
    opts.setdefault("progress", False)
    build_bank(spec, tmp_path / name, BuildOptions(**opts))
    return spec, open_bank(tmp_path / name)


def ref(pipe, prompt=None, *, seed=7, guidance=3.0, cond=None, latents=None, steps=STEPS, **kw):
    """diffusers' StableDiffusionXLPipeline for one cell, as uint8 [H, W, 3]."""
    if cond is not None:
        kw["prompt_embeds"] = torch.from_numpy(cond[0]).float()[None]
        kw["pooled_prompt_embeds"] = torch.from_numpy(cond[1]).float()[None]
    if latents is not None:
        kw["latents"] = torch.from_numpy(latents).float()[None]
    out = pipe(prompt, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kw).images[0]
    return np.round(out * 255).astype(np.uint8)


def close(a, b, tol=TOL):
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()) <= tol


def generator(spec):
    from bank_builder.pipeline import Generator

    return Generator(spec)


def test_sdxl_prompt_and_token_weight_axes(tmp_path, tiny_sdxl, tiny_sdxl_pipe):
    text = head(tiny_sdxl, prompt="") + (
        '[[axes]]\nkind = "prompt"\nprompts = ["a red cat", "a neon dog"]\ncount = 3\n'
        '[[axes]]\nkind = "token_weight"\ntoken = "red"\nrange = [1.0, 2.0]\ncount = 2\n')
    spec, bank = build(tmp_path, text)
    assert bank.made_by["model"]["family"] == "sdxl"
    # the ends of the prompt axis at weight 1 are diffusers' own images of the two prompts
    assert close(bank.frames[bank.index((0, 0))], ref(tiny_sdxl_pipe, "a red cat"))
    assert close(bank.frames[bank.index((2, 0))], ref(tiny_sdxl_pipe, "a neon dog"))
    gen = generator(spec)
    # the blend (both encoders' embeddings and the pooled embedding lerped) and a token weight
    for cell in [(1, 0), (0, 1), (1, 1)]:
        cond = gen.cell_conditioning(cell_params(spec, cell))
        assert close(bank.frames[bank.index(cell)], ref(tiny_sdxl_pipe, cond=cond)), cell
    mid, _ = gen.cell_conditioning(cell_params(spec, (1, 0)))
    ends = gen.prompt_embeds.numpy()
    assert np.allclose(mid, (ends[0] + ends[1]) / 2, atol=1e-6) and mid.shape == (77, 80)
    # the token weight scales the token's rows in both encoders' halves
    (p1,), (p2,) = gen.token_positions_per_encoder["red"][0]
    w2, _ = gen.cell_conditioning(cell_params(spec, (0, 1)))
    ratio = w2 / ends[0]
    assert ratio[p1, :32].mean() == pytest.approx(2 * np.delete(ratio[:, :32], p1, axis=0).mean(), rel=1e-6)
    assert ratio[p2, 32:].mean() == pytest.approx(2 * np.delete(ratio[:, 32:], p2, axis=0).mean(), rel=1e-6)


def test_sdxl_seed_guidance_and_jitter_axes(tmp_path, tiny_sdxl, tiny_sdxl_pipe):
    text = head(tiny_sdxl) + ('[[axes]]\nkind = "seed"\nseeds = [5, 9]\ncount = 3\n'
                              '[[axes]]\nkind = "guidance"\nrange = [1.0, 4.0]\ncount = 2\n'
                              '[[axes]]\nkind = "jitter"\nrange = [0.0, 0.3]\ncount = 2\n')
    spec, bank = build(tmp_path, text, batch_size=3)
    assert close(bank.frames[bank.index((0, 1, 0))], ref(tiny_sdxl_pipe, "a red cat", seed=5, guidance=4.0))
    assert close(bank.frames[bank.index((2, 1, 0))], ref(tiny_sdxl_pipe, "a red cat", seed=9, guidance=4.0))
    # the comparisons can fail: another seed, or other micro-conditioning, is another picture
    assert not close(bank.frames[bank.index((0, 1, 0))], bank.frames[bank.index((2, 1, 0))], 10)
    assert not close(bank.frames[bank.index((0, 1, 0))],
                     ref(tiny_sdxl_pipe, "a red cat", seed=5, guidance=4.0, original_size=(64, 64)), 10)
    # guidance 1.0: no CFG, as diffusers
    assert close(bank.frames[bank.index((2, 0, 0))], ref(tiny_sdxl_pipe, "a red cat", seed=9, guidance=1.0))
    gen = generator(spec)
    for cell, g in [((1, 1, 0), 4.0), ((0, 1, 1), 4.0), ((1, 0, 1), 1.0)]:  # seed slerp, jitter, both
        noise = gen.cell_noise(cell_params(spec, cell)).astype(np.float32)
        assert close(bank.frames[bank.index(cell)], ref(tiny_sdxl_pipe, "a red cat", guidance=g, latents=noise)), cell
    lat = np.asarray(bank.latents, np.float32)
    assert np.abs(lat[bank.index((0, 1, 0))] - lat[bank.index((0, 1, 1))]).mean() > 1e-3


def test_sdxl_strength_axis_is_diffusers_img2img(tmp_path, tiny_sdxl, tiny_sdxl_pipe):
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from PIL import Image

    rng = np.random.default_rng(3)
    art = np.linspace(0, 255, SIZE)[None, :, None] * np.ones((SIZE, 1, 3)) * 0.7 + rng.uniform(0, 70, (SIZE, SIZE, 3))
    Image.fromarray(art.astype(np.uint8)).save(tmp_path / "art.png")
    text = head(tiny_sdxl, extra='init_image = "art.png"\n').replace(f"steps = {STEPS}", "steps = 4") + (
        '[[axes]]\nkind = "strength"\nrange = [0.5, 1.0]\ncount = 2\n')
    _, bank = build(tmp_path, text)
    img2img = StableDiffusionXLImg2ImgPipeline(**tiny_sdxl_pipe.components, requires_aesthetics_score=False)
    img2img.set_progress_bar_config(disable=True)
    vae = tiny_sdxl_pipe.vae
    x = torch.from_numpy(np.asarray(Image.open(tmp_path / "art.png").convert("RGB"), np.float32) / 127.5 - 1)
    with torch.no_grad():
        init = vae.encode(x.permute(2, 0, 1)[None]).latent_dist.mean * vae.config.scaling_factor
    for i, strength in enumerate((0.5, 1.0)):
        out = img2img("a red cat", image=init, strength=strength, num_inference_steps=4, guidance_scale=3.0,
                      generator=torch.Generator("cpu").manual_seed(7), output_type="np").images[0]
        assert close(bank.frames[i], np.round(out * 255).astype(np.uint8)), f"strength {strength}"


def test_sdxl_size_it_cannot_take_is_refused_before_work(tmp_path, tiny_sdxl):
    text = head(tiny_sdxl).replace(f"size = [{SIZE}, {SIZE}]", "size = [256, 256]") + (
        '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n')
    with pytest.raises(SpecError, match=r"size: 256x256 is not a size this SDXL model can take \(trained at 32x32"):
        build(tmp_path, text)
    assert not (tmp_path / "bank").exists() and not (tmp_path / "bank.work").exists()


def test_sdxl_vae_decodes_in_float32_under_half_precision(tmp_path, tiny_sdxl):
    """SDXL's VAE overflows in fp16 (force_upcast): the builder decodes it in float32, like diffusers."""
    spec = load_spec(write_spec(tmp_path, head(tiny_sdxl) + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n'))
    from bank_builder.pipeline import Generator

    half = Generator(spec, dtype="float16")
    assert half.unet.dtype == torch.float16 and half.decode_dtype == torch.float32
    assert half.model_info()["decode_dtype"] == "float32"
    full = Generator(spec)
    lat = full.generate([cell_params(spec, (0,))])
    assert close(half.decode(lat), full.decode(lat), 1)


def test_a_half_precision_decode_that_overflows_is_redone_in_float32(tmp_path, tiny_sdxl, monkeypatch):
    spec = load_spec(write_spec(tmp_path, head(tiny_sdxl) + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n'))
    from bank_builder.pipeline import Generator

    gen = Generator(spec, dtype="bfloat16")
    assert gen.decode_dtype == torch.bfloat16  # force_upcast is about float16 only
    real = type(gen.decoder).decode

    def overflowing(self, z, *a, **k):  # what an fp16 VAE without the fix does on some latents
        out = real(self, z, *a, **k)
        return (out[0] * float("inf"),) if z.dtype != torch.float32 else out

    monkeypatch.setattr(type(gen.decoder), "decode", overflowing)
    lat = Generator(spec).generate([cell_params(spec, (0,))])
    frames = gen.decode(lat)
    assert gen.decode_dtype == torch.float32 and gen.decoder.dtype == torch.float32
    assert 0 < frames.std() and frames.min() < 250  # real pixels, not the saturated inf frame


def test_single_file_family_from_tensor_names(tmp_path):
    from safetensors.torch import save_file

    from bank_builder.pipeline import checkpoint_shapes, single_file_family

    sdxl = tmp_path / "pony.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2),
               "model.diffusion_model.out.2.bias": torch.zeros(2)}, str(sdxl))
    assert single_file_family(checkpoint_shapes(sdxl)) == "sdxl"
    sd = tmp_path / "dreamshaper.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(2),
                               "cond_stage_model.transformer.x": torch.zeros(2)}}, sd)
    assert single_file_family(checkpoint_shapes(sd)) == "sd"
    other = tmp_path / "flux.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2)}, str(other))
    spec = load_spec(write_spec(tmp_path, head(other.name) + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n'))
    from bank_builder.pipeline import model_family

    with pytest.raises(SpecError, match=r"model: flux.safetensors is not an SD 1.x/2.x or SDXL checkpoint"):
        model_family(spec)


def test_sdxl_single_file_checkpoint_bakes_offline_with_local_config(tmp_path, tiny_sdxl, tiny_sdxl_pipe):
    """An SDXL checkpoint as civitai serves it (one .safetensors in Stability's original layout: the
    second text encoder in OpenCLIP's names) loads offline through diffusers' converter, given a
    local config folder, and bakes the very bytes the diffusers folder of the same weights bakes."""
    from safetensors import safe_open

    from bank_builder.testing import write_single_file_checkpoint

    ckpt = tmp_path / "pony-like.safetensors"
    write_single_file_checkpoint(tiny_sdxl_pipe, ckpt, tmp_path / "xl-config")
    with safe_open(str(ckpt), framework="pt") as f:
        keys = set(f.keys())
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys and not any(k.startswith("unet.") for k in keys)
    axis = '[[axes]]\nkind = "seed"\nseeds = [5, 9]\ncount = 2\n'
    _, single = build(tmp_path, head(ckpt.name, extra='model_config = "xl-config"\n') + axis, name="single")
    _, folder = build(tmp_path, head(tiny_sdxl) + axis, name="folder")
    assert single.made_by["model"]["family"] == "sdxl"
    assert np.array_equal(np.asarray(single.frames), np.asarray(folder.frames))
    assert np.array_equal(np.asarray(single.latents), np.asarray(folder.latents))
    assert close(single.frames[1], ref(tiny_sdxl_pipe, "a red cat", seed=9))


def test_sdxl_single_file_without_configs_offline_says_what_to_pass(tmp_path, tiny_sdxl_pipe):
    """No model_config, no network, an empty Hugging Face cache: exit 2 naming the base model's repo,
    the command that fetches its configs and the key to add; no work folder."""
    import subprocess

    from _builder_fixtures import bank_cli, cli_env

    from bank_builder.testing import write_single_file_checkpoint

    write_single_file_checkpoint(tiny_sdxl_pipe, tmp_path / "illustrious-like.safetensors")
    spec = write_spec(tmp_path, head("illustrious-like.safetensors") + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n')
    env = cli_env() | {"HF_HOME": str(tmp_path / "hf-home")}
    r = subprocess.run(bank_cli("build", str(spec), "-o", str(tmp_path / "b"), "--no-progress"), capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "model: illustrious-like.safetensors is a single-file SDXL" in r.stderr
    assert "hf download stabilityai/stable-diffusion-xl-base-1.0 --include '*.json' --include '*.txt'" in r.stderr
    assert 'model_config = "stable-diffusion-xl-base-1.0-config"' in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.work").exists()
