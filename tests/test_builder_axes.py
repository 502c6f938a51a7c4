"""Each axis kind changes what it should and nothing else, checked against diffusers' own pipelines.

The tiny random-weight model is built once per session and loaded by the builder through
``from_pretrained(folder)``, the path a real model id takes. Frames are compared within 2 levels
of 255 (the same cell in a batch of 4 differs from a batch of 1 by ~1e-4 in the latents).
"""

from __future__ import annotations

import numpy as np
import pytest

from _builder_fixtures import require_build_extra, tiny_model, tiny_pipe, tiny_taesd, write_spec  # noqa: F401

require_build_extra()

import torch  # noqa: E402

from bank_builder.build import BuildOptions, build_bank  # noqa: E402
from bank_builder.errors import ModelNotFoundError, OutOfMemoryError, SpecError  # noqa: E402
from bank_builder.interpolate import slerp  # noqa: E402
from bank_builder.spec import load_spec  # noqa: E402
from vjengine.bank import open_bank, validate_bank  # noqa: E402

SIZE = 32
STEPS = 2
TOL = 2  # uint8 levels


def head(model, *, guidance=3.0, prompt='prompt = "a red cat"\n', extra=""):
    return (f'model = "{model}"\nsteps = {STEPS}\nguidance = {guidance}\nsize = [{SIZE}, {SIZE}]\nseed = 7\n'
            f'{prompt}{extra}')


def build(tmp_path, text, name="bank", **opts):
    spec = load_spec(write_spec(tmp_path, text, name + ".toml"))
    opts.setdefault("progress", False)
    result = build_bank(spec, tmp_path / name, BuildOptions(**opts))
    return open_bank(tmp_path / name), result


def reference(pipe, prompt, *, seed=7, guidance=3.0, steps=STEPS, latents=None):
    """diffusers' own StableDiffusionPipeline, as uint8 [H, W, 3]."""
    g = torch.Generator("cpu").manual_seed(seed)
    out = pipe(prompt, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
               generator=g, latents=latents, output_type="np").images[0]
    return np.round(out * 255).astype(np.uint8)


def close(a, b, tol=TOL):
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()) <= tol


def test_prompt_axis_ends_are_the_prompts_own_images(tmp_path, tiny_model, tiny_pipe):
    text = head(tiny_model, prompt="") + ('[[axes]]\nkind = "prompt"\nprompts = ["a red cat", "a neon dog", "red red"]\n'
                                          'count = 5\n')
    bank, _ = build(tmp_path, text)
    assert close(bank.frames[0], reference(tiny_pipe, "a red cat"))
    assert close(bank.frames[2], reference(tiny_pipe, "a neon dog"))
    assert close(bank.frames[4], reference(tiny_pipe, "red red"))
    assert not np.array_equal(bank.latents[0], bank.latents[2])
    validate_bank(bank.path)


def test_seed_and_guidance_axes(tmp_path, tiny_model, tiny_pipe):
    text = head(tiny_model) + ('[[axes]]\nkind = "seed"\nseeds = [5, 9]\ncount = 3\n'
                               '[[axes]]\nkind = "guidance"\nrange = [1.0, 5.0]\ncount = 3\n')
    bank, _ = build(tmp_path, text, batch_size=4)
    assert bank.sizes == (3, 3)
    assert close(bank.frames[bank.index((0, 2))], reference(tiny_pipe, "a red cat", seed=5, guidance=5.0))
    assert close(bank.frames[bank.index((2, 2))], reference(tiny_pipe, "a red cat", seed=9, guidance=5.0))
    # guidance 1.0 is plain conditioning, exactly what diffusers does without CFG
    assert close(bank.frames[bank.index((2, 0))], reference(tiny_pipe, "a red cat", seed=9, guidance=1.0))
    # the seed axis changes the picture; the guidance axis changes it along the other axis
    lat = np.asarray(bank.latents, np.float32)
    assert np.abs(lat[bank.index((0, 1))] - lat[bank.index((2, 1))]).mean() > 0.1
    assert np.abs(lat[bank.index((0, 0))] - lat[bank.index((0, 2))]).mean() > 1e-3
    assert [a.values for a in bank.axes] == [(0.0, 0.5, 1.0), (1.0, 3.0, 5.0)]


def test_token_weight_axis(tmp_path, tiny_model, tiny_pipe):
    text = head(tiny_model) + '[[axes]]\nkind = "token_weight"\ntoken = "red"\nrange = [0.0, 2.0]\ncount = 3\n'
    bank, _ = build(tmp_path, text)
    base = reference(tiny_pipe, "a red cat")
    assert close(bank.frames[1], base)  # weight 1 is the prompt itself
    lat = np.asarray(bank.latents, np.float32)
    assert np.abs(lat[0] - lat[1]).max() > 1e-2 and np.abs(lat[2] - lat[1]).max() > 1e-2

    from bank_builder.pipeline import Generator
    from bank_builder.plan import cell_params

    spec = load_spec(tmp_path / "bank.toml")
    gen = Generator(spec)
    (pos,) = gen.token_positions["red"][0]
    plain = gen.prompt_embeds[0].double().numpy()
    z = gen.cell_embedding(cell_params(spec, (2,)))
    ratio = z / plain
    others = np.delete(ratio, pos, axis=0)
    assert np.allclose(others, others.flat[0])  # every other token only rescaled by the mean-keeping factor
    assert np.allclose(ratio[pos], 2.0 * others.flat[0])
    missing = head(tiny_model) + '[[axes]]\nkind = "token_weight"\ntoken = "zebra"\nrange = [0.0, 2.0]\ncount = 3\n'
    with pytest.raises(SpecError, match=r"axes\[0\].token: 'zebra' is not in the prompt"):
        build(tmp_path, missing, name="missing")


def test_strength_axis_is_diffusers_img2img(tmp_path, tiny_model, tiny_pipe):
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    rng = np.random.default_rng(3)
    art = (np.linspace(0, 255, SIZE)[None, :, None] * np.ones((SIZE, 1, 3)) * 0.7 + rng.uniform(0, 70, (SIZE, SIZE, 3)))
    Image.fromarray(art.astype(np.uint8)).save(tmp_path / "art.png")
    text = head(tiny_model, extra='init_image = "art.png"\n').replace(f"steps = {STEPS}", "steps = 4") + (
        '[[axes]]\nkind = "strength"\nrange = [0.5, 1.0]\ncount = 3\n')
    bank, _ = build(tmp_path, text)

    img2img = StableDiffusionImg2ImgPipeline(**tiny_pipe.components)
    img2img.set_progress_bar_config(disable=True)
    x = torch.from_numpy(np.asarray(Image.open(tmp_path / "art.png").convert("RGB"), np.float32) / 127.5 - 1)
    with torch.no_grad():
        init = tiny_pipe.vae.encode(x.permute(2, 0, 1)[None]).latent_dist.mean * tiny_pipe.vae.config.scaling_factor
    for i, strength in enumerate((0.5, 0.75, 1.0)):
        out = img2img("a red cat", image=init, strength=strength, num_inference_steps=4, guidance_scale=3.0,
                      generator=torch.Generator("cpu").manual_seed(7), output_type="np").images[0]
        assert close(bank.frames[i], np.round(out * 255).astype(np.uint8)), f"strength {strength}"
    lat = np.asarray(bank.latents, np.float32)
    assert np.abs(lat[0] - lat[2]).mean() > 1e-2


def test_jitter_axis(tmp_path, tiny_model, tiny_pipe):
    text = head(tiny_model) + '[[axes]]\nkind = "jitter"\nrange = [0.0, 0.4]\ncount = 3\np = "inf"\nseed = 4\n'
    bank, _ = build(tmp_path, text)
    assert close(bank.frames[0], reference(tiny_pipe, "a red cat"))  # amplitude 0: the base image
    lat = np.asarray(bank.latents, np.float32)
    d1, d2 = np.abs(lat[1] - lat[0]).mean(), np.abs(lat[2] - lat[0]).mean()
    assert 0 < d1 < d2  # a bigger ball, a bigger change

    from bank_builder.pipeline import Generator
    from bank_builder.plan import cell_params

    spec = load_spec(tmp_path / "bank.toml")
    gen = Generator(spec)
    base = gen.seed_noise(7).astype(np.float64)
    noise = gen.cell_noise(cell_params(spec, (2,)))
    assert np.linalg.norm(noise) == pytest.approx(np.linalg.norm(base))
    # before the norm-keeping rescale the perturbation is inside the L-inf ball of radius 0.4
    scale = np.linalg.norm(base) / np.linalg.norm(noise)
    assert np.abs(noise * 1.0 - base).max() < 0.4 + np.abs(base).max() * abs(1 - scale) + 1e-6


def test_densified_cells_are_decoded_slerps(tmp_path, tiny_model, tiny_taesd):
    text = head(tiny_model, extra=f'decoder = "{tiny_taesd}"\nlatent_dtype = "float32"\n') + (
        '[[axes]]\nkind = "seed"\nseeds = [1, 2, 3]\ncount = 6\ncyclic = true\ndensify = 3\n'
        '[[axes]]\nkind = "guidance"\nrange = [1.0, 5.0]\ncount = 3\ndensify = 2\n')
    bank, result = build(tmp_path, text, batch_size=2)
    assert (result.keyframes, result.inbetweens) == (4, 14)
    lat = np.asarray(bank.latents)
    idx = bank.index
    # on the seed axis (cyclic, keyframes 0 and 3): cell 5 is 2/3 of the way from 3 back to 0
    want = slerp(lat[idx((3, 0))], lat[idx((0, 0))], 2 / 3)
    assert np.allclose(lat[idx((5, 0))], want, atol=1e-5)
    # both axes off-keyframe: the nested slerp, axis 0 first
    want2 = slerp(slerp(lat[idx((0, 0))], lat[idx((3, 0))], 1 / 3), slerp(lat[idx((0, 2))], lat[idx((3, 2))], 1 / 3), 0.5)
    assert np.allclose(lat[idx((1, 1))], want2, atol=1e-5)

    from diffusers import AutoencoderTiny

    taesd = AutoencoderTiny.from_pretrained(str(tiny_taesd))
    with torch.no_grad():
        img = taesd.decode(torch.from_numpy(lat[[idx((5, 0)), idx((1, 1))]]).float()).sample
    frames = np.round(((img / 2 + 0.5).clamp(0, 1) * 255).permute(0, 2, 3, 1).numpy()).astype(np.uint8)
    assert close(bank.frames[idx((5, 0))], frames[0], 1) and close(bank.frames[idx((1, 1))], frames[1], 1)
    made_by = bank.made_by
    assert made_by["spec"]["decoder"] == str(tiny_taesd)
    assert made_by["keyframes"] == {"seed": [0, 3], "guidance": [0, 2]}
    assert {"torch", "diffusers", "transformers", "python"} <= set(made_by["versions"])
    assert made_by["build"] == {"device": "cpu", "dtype": "auto"}  # batch sizes do not change the bytes
    assert made_by["model"]["family"] == "sd" and made_by["model"]["exact"] is True
    assert made_by["model"]["attention"] == "AttnProcessor2_0"
    assert (bank.path / "reports" / "seams.png").is_file() and made_by["seams"]["axes"][0]["name"] == "seed"


def test_model_not_found_and_out_of_memory(tmp_path, tiny_model):
    text = head(tmp_path / "no-such-folder") + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n'
    with pytest.raises(ModelNotFoundError, match="model: folder not found: .*no-such-folder"):
        build(tmp_path, text, name="nf")
    assert not (tmp_path / "nf").exists()

    from bank_builder.pipeline import Generator
    from bank_builder.plan import cell_params

    spec = load_spec(write_spec(tmp_path, head(tiny_model) + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n', "ok.toml"))
    gen = Generator(spec)

    def oom(*_a, **_k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    gen._generate = oom
    with pytest.raises(OutOfMemoryError, match=r"ran out of memory generating a batch of 4 at 32x32: try --batch-size 2"):
        gen.generate([cell_params(spec, (0,))] * 4)
    gen._decode = oom
    with pytest.raises(OutOfMemoryError, match=r"decoding a batch of 1 .* a smaller size .*TAESD"):
        gen.decode(np.zeros((1, 4, 4, 4), np.float32))


def test_device_and_dtype_choice(monkeypatch):
    """Apple's MPS cannot run here: its branch is the device choice (auto takes it when there is no
    CUDA), half precision, and a clear error when it is asked for and absent."""
    from bank_builder.pipeline import pick_device, pick_dtype

    if not torch.backends.mps.is_available():
        with pytest.raises(SpecError, match=r"--device mps: Metal \(MPS\) is not available"):
            pick_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match=r"--device cuda:1: CUDA is not available"):
            pick_device("cuda:1")
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        assert pick_device("auto") == "mps"
        monkeypatch.undo()
    with pytest.raises(SpecError, match=r"--device 'gpu': use auto, cpu, cuda, cuda:N or mps"):
        pick_device("gpu")
    assert pick_dtype("mps") == pick_dtype("cuda:1") == torch.float16 and pick_dtype("cpu") == torch.float32
    assert pick_dtype("mps", "bfloat16") == torch.bfloat16


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_checkpoint_with_local_config(tmp_path, tiny_model, tiny_pipe, suffix):
    """An artist's single-file checkpoint (original key names) loads offline given a config folder,
    and gives the same frames as the diffusers folder it was written from."""
    from bank_builder.testing import write_single_file_checkpoint

    ckpt = tmp_path / f"artist-model{suffix}"
    write_single_file_checkpoint(tiny_pipe, ckpt, tmp_path / "sd-config")
    axis = '[[axes]]\nkind = "seed"\nseeds = [5, 9]\ncount = 2\n'
    text = head(ckpt.name, extra='model_config = "sd-config"\n') + axis
    bank, _ = build(tmp_path, text, name="single")
    assert bank.made_by["spec"]["model"] == str(ckpt.resolve())
    assert close(bank.frames[0], reference(tiny_pipe, "a red cat", seed=5))
    assert close(bank.frames[1], reference(tiny_pipe, "a red cat", seed=9))
    with pytest.raises(ModelNotFoundError, match="model_config: config folder not found"):
        build(tmp_path, head(ckpt.name, extra='model_config = "nowhere"\n') + axis, name="nocfg")


def test_hub_model_not_found_offline_hint(tmp_path):
    import subprocess

    from _builder_fixtures import bank_cli, cli_env

    spec = write_spec(tmp_path, head("nobody-here/no-such-model") + '[[axes]]\nkind = "seed"\nseeds = [1, 2]\ncount = 2\n')
    r = subprocess.run(bank_cli("build", str(spec), "-o", str(tmp_path / "b"), "--no-progress"), capture_output=True,
                       text=True, env=cli_env(), timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "model 'nobody-here/no-such-model' not found" in r.stderr
    assert "HF_HUB_OFFLINE" in r.stderr and "local diffusers folder" in r.stderr
    assert "`hf download nobody-here/no-such-model`" in r.stderr and "huggingface-cli" not in r.stderr
    assert "Traceback" not in r.stderr
    # the library's own reason is given whole (the message used to stop mid-word)
    assert r.stderr.rstrip().endswith(")") and "..." not in r.stderr
    assert not (tmp_path / "b.work").exists(), "a build that failed before any cell leaves no work directory"


def test_adaptive_adds_keyframes_and_up_to_date_bank_is_kept(tmp_path, tiny_model):
    text = head(tiny_model) + '[[axes]]\nkind = "seed"\nseeds = [1, 2, 3]\ncount = 9\ndensify = 4\nadaptive = 1\n'
    bank, result = build(tmp_path, text)
    keys = bank.made_by["keyframes"]["seed"]
    assert result.keyframes == 4 and len(keys) == 4 and {0, 4, 8} < set(keys)
    extra = (set(keys) - {0, 4, 8}).pop()
    assert extra in (2, 6)
    lat = np.asarray(bank.latents, np.float32)
    # the cell next to the new keyframe is now interpolated from it
    lo, hi = (extra - 2, extra) if extra in (2, 6) else (0, 0)
    assert np.allclose(lat[lo + 1], slerp(lat[lo], lat[hi], 0.5), atol=2e-2)

    from bank_builder.cli_build import _up_to_date

    assert _up_to_date(bank.path, load_spec(tmp_path / "bank.toml").digest())
    other = load_spec(write_spec(tmp_path, text.replace("seed = 7", "seed = 8"), "other.toml"))
    assert not _up_to_date(bank.path, other.digest())


def test_four_axes_bank_and_its_contact_sheet(tmp_path, tiny_model):
    text = head(tiny_model, prompt="") + (
        '[[axes]]\nkind = "prompt"\nprompts = ["a red cat", "a neon dog"]\ncount = 2\n'
        '[[axes]]\nkind = "jitter"\nname = "wobble"\nradius = 0.3\ncount = 4\ncyclic = true\ndensify = 2\n'
        '[[axes]]\nkind = "token_weight"\ntoken = "red"\nrange = [0.5, 1.5]\ncount = 3\ndensify = 2\n'
        '[[axes]]\nkind = "guidance"\nrange = [1.0, 4.0]\ncount = 2\n')
    bank, result = build(tmp_path, text)
    assert bank.sizes == (2, 4, 3, 2) and result.keyframes == 2 * 2 * 2 * 2
    assert bank.axes[1].cyclic and bank.axes[1].values == (0.0, 90.0, 180.0, 270.0)
    validate_bank(bank.path)

    from bank_builder.pipeline import Generator
    from bank_builder.plan import cell_params

    spec = load_spec(tmp_path / "bank.toml")
    gen = Generator(spec)
    base = gen.seed_noise(7).astype(np.float64)
    n0, n2 = (gen.cell_noise(cell_params(spec, (0, i, 0, 0))) for i in (0, 2))
    # the loop: opposite angles perturb in opposite directions, same size, norm kept
    assert np.linalg.norm(n0) == pytest.approx(np.linalg.norm(base))
    assert np.abs(n0 - base).mean() == pytest.approx(np.abs(n2 - base).mean(), rel=0.05)
    assert np.abs(n0 - n2).mean() > 0.2

    from bank_builder.preview import contact_sheet
    from PIL import Image

    out = contact_sheet(bank, tmp_path / "sheet.png", show=["wobble", "token_weight"],
                        at={"prompt": 1})
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 4 * 32 and img.shape[1] > 3 * 32
