"""Tiny random-weight Stable Diffusion models for tests, benchmarks and smoke runs (no network).

``make_tiny_pipeline(folder)`` writes a complete diffusers folder (UNet, VAE, CLIP text encoder, a
byte-level CLIP tokenizer written from scratch, a scheduler) that ``StableDiffusionPipeline
.from_pretrained(folder)`` loads exactly as it loads a real model id. The same seed gives the same
weights. Frames it makes are noise-like but deterministic, which is all a test needs.

It ships in the wheel on purpose: ``vj-bank selftest`` uses it to bake banks end to end on a user's
machine with no downloads, so it must import nothing a user lacks (no pytest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_CROSS_ATTENTION_DIM = 32


def _byte_symbols() -> list[str]:
    """The GPT-2/CLIP byte -> printable unicode table (256 symbols), in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(
        range(ord("\xae"), ord("\xff") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _write_tokenizer_files(folder: Path) -> None:
    """A byte-level BPE vocabulary: all 256 byte symbols (plain and end-of-word) plus a few merges."""
    symbols = list(_byte_symbols())
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = ["a t</w>", "c at</w>", "d o", "do g</w>", "r e", "re d</w>", "n e", "ne on</w>", "o n</w>", "e on</w>"]
    for m in merges:
        merged = m.replace(" ", "")
        if merged not in vocab:
            vocab[merged] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def make_tiny_pipeline(folder: str | Path, *, seed: int = 0, scheduler: str = "ddim"):
    """Build a tiny SD-1.x-shaped pipeline with seeded random weights and ``save_pretrained`` it.

    Returns the in-memory pipeline. Latents are 4 x (H/8) x (W/8), as in SD 1.5.
    """
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=64,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=TINY_CROSS_ATTENTION_DIM, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000,
        max_position_embeddings=77,
    )
    tok_dir = folder / "_tok_src"
    tok_dir.mkdir(exist_ok=True)
    _write_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    text_config.vocab_size = len(tokenizer)
    text_config.bos_token_id = tokenizer.bos_token_id
    text_config.eos_token_id = tokenizer.eos_token_id
    text_config.pad_token_id = tokenizer.pad_token_id
    text_encoder = CLIPTextModel(text_config)
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                  num_train_timesteps=1000)
    if scheduler == "euler":
        sched = EulerDiscreteScheduler(**common, timestep_spacing="trailing")
    else:
        sched = DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return pipe


def _tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    tok_dir = folder / "_tok_src"
    tok_dir.mkdir(parents=True, exist_ok=True)
    _write_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return tokenizer


TINY_SDXL_SAMPLE_SIZE = 4  # latent side the tiny SDXL "was trained at": 32 px frames


def make_tiny_sdxl_pipeline(folder: str | Path, *, seed: int = 0, scheduler: str = "euler"):
    """A tiny SDXL-shaped pipeline (two CLIP text encoders, the second with a projection giving the
    pooled embedding; a UNet with ``text_time`` micro-conditioning), seeded random weights, saved
    with ``save_pretrained``. ``StableDiffusionXLPipeline.from_pretrained(folder)`` loads it."""
    import torch
    from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    hidden, hidden_2, time_dim = 32, 48, 8  # encoder widths differ, as in SDXL (768 and 1280)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=TINY_SDXL_SAMPLE_SIZE, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * time_dim + hidden_2, cross_attention_dim=hidden + hidden_2,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=0.13025, force_upcast=True,
    )
    tokenizer = _tiny_tokenizer(folder)
    tokenizer_2 = _tiny_tokenizer(folder)

    def text_config(size: int, layers: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, hidden_size=size, intermediate_size=37, layer_norm_eps=1e-5,
            num_attention_heads=4, num_hidden_layers=layers, vocab_size=len(tokenizer), hidden_act="gelu",
            projection_dim=hidden_2, max_position_embeddings=77)

    text_encoder = CLIPTextModel(text_config(hidden, 3))
    text_encoder_2 = CLIPTextModelWithProjection(text_config(hidden_2, 3))
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                  num_train_timesteps=1000, timestep_spacing="leading")
    sched = (EulerAncestralDiscreteScheduler if scheduler == "euler_a" else EulerDiscreteScheduler)(**common)
    pipe = StableDiffusionXLPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, scheduler=sched, force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(folder)
    return pipe


def make_tiny_lora(pipe, path: str | Path, *, seed: int = 0, rank: int = 4, text_encoder: bool = True) -> Path:
    """A random LoRA for ``pipe`` (UNet attention projections, and the text encoders' if
    ``text_encoder``), saved as one .safetensors file in diffusers' format, as LoRA trainers write it.

    ``pipe`` is changed (the LoRA layers stay injected): pass a throw-away copy."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    torch.manual_seed(seed)
    unet_cfg = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                          target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    text_cfg = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                          target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    layers: dict[str, Any] = {}
    pipe.unet.add_adapter(unet_cfg, adapter_name="_make")
    layers["unet_lora_layers"] = get_peft_model_state_dict(pipe.unet, adapter_name="_make")
    encoders = [("text_encoder", pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append(("text_encoder_2", pipe.text_encoder_2))
    if text_encoder:
        for name, enc in encoders:
            inject_adapter_in_model(text_cfg, enc, adapter_name="_make")
            layers[f"{name}_lora_layers"] = get_peft_model_state_dict(enc, adapter_name="_make")
    # scale the random up-projections down so the LoRA is a visible change, not noise
    for group in layers.values():
        for k in group:
            if "lora_B" in k:
                group[k] = group[k] * 0.5
    type(pipe).save_lora_weights(str(path.parent), weight_name=path.name, **layers)
    return path


def make_tiny_taesd(folder: str | Path, *, seed: int = 0):
    """A tiny ``AutoencoderTiny`` (TAESD-class decoder) with seeded random weights, saved to ``folder``."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    model = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
    )
    model.save_pretrained(folder)
    return model


_RESNET_TO_LDM_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                       "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION_TO_LDM = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_key_to_ldm(key: str, layers_per_block: int, up_has_attention: list[bool]) -> str:
    """One diffusers UNet2DConditionModel key -> the original (CompVis) key, SD 1.x/2.x layout."""
    import re

    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",  # SDXL
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    head, _, leaf = key.rpartition(".")
    if head in fixed:
        return f"{fixed[head]}.{leaf}"

    def resnet(rest: str) -> str:
        name, _, tail = rest.partition(".")
        return f"{_RESNET_TO_LDM_UNET.get(name, name)}.{tail}"

    per_down = per_up = layers_per_block + 1  # up blocks: L+1 resnets, the upsampler rides on the last
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + i * per_down + j}.0.{resnet(rest)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * per_down + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_down}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per_up + int(m[2])}.0.{resnet(m[3])}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per_up + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        return f"output_blocks.{i * per_up + layers_per_block}.{2 if up_has_attention[i] else 1}.conv.{m[2]}"
    raise KeyError(f"no original-format name for UNet key {key!r}")


def _vae_key_to_ldm(key: str, n_blocks: int) -> str:
    """One diffusers AutoencoderKL key -> the original (CompVis) key."""
    import re

    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{n_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{n_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION_TO_LDM[m[2]]}.{m[3]}"
    return key


def _clip_state(encoder, prefix: str) -> dict:
    """A transformers CLIP text encoder's weights under OpenAI-CLIP (transformers) names behind ``prefix``."""
    out = {}
    for k, v in encoder.state_dict().items():
        if "position_ids" not in k:  # transformers 5 drops the "text_model." level from CLIPTextModel's keys
            out[prefix + (k if k.startswith("text_model.") else "text_model." + k)] = v
    return out


_OPEN_CLIP_NAMES = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                    "self_attn.out_proj": "attn.out_proj"}


def _open_clip_state(encoder, prefix: str) -> dict:
    """SDXL's second text encoder (a CLIPTextModelWithProjection) in OpenCLIP's layout, as SDXL
    checkpoints hold it: ``transformer.resblocks.N`` with q/k/v fused into ``attn.in_proj_*``,
    ``positional_embedding``, ``ln_final`` and ``text_projection`` (transposed: OpenCLIP computes
    ``x @ text_projection``)."""
    import re

    import torch

    sd = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items() if "position_ids" not in k}
    out = {prefix + "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
           prefix + "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
           prefix + "ln_final.weight": sd.pop("final_layer_norm.weight"),
           prefix + "ln_final.bias": sd.pop("final_layer_norm.bias"),
           prefix + "text_projection": sd.pop("text_projection.weight").T}
    layers = sorted({int(m[1]) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for n in layers:
        src, dst = f"encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for leaf in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{leaf}"] = torch.cat(
                [sd.pop(f"{src}self_attn.{q}_proj.{leaf}") for q in ("q", "k", "v")])
            for ours, theirs in _OPEN_CLIP_NAMES.items():
                out[f"{dst}{theirs}.{leaf}"] = sd.pop(f"{src}{ours}.{leaf}")
    if sd:
        raise KeyError(f"no OpenCLIP name for text encoder keys {sorted(sd)[:5]}")
    return out


def write_single_file_checkpoint(pipe, path: str | Path, config_folder: str | Path | None = None) -> None:
    """Write ``pipe`` as an original-format single-file checkpoint, as artists download them.

    SD 1.x/2.x (CompVis / A1111 layout): ``model.diffusion_model.``, ``first_stage_model.``,
    ``cond_stage_model.transformer.``. SDXL (Stability's ``sgm`` layout, as civitai checkpoints such
    as Pony or Illustrious): the same UNet and VAE names (plus ``label_emb`` for the micro-conditioning
    embedding), the first text encoder under ``conditioner.embedders.0.transformer.`` and the second
    in OpenCLIP's layout under ``conditioner.embedders.1.model.``. A ``.ckpt`` path is written with
    ``torch.save({"state_dict": ...})``, anything else as safetensors. If ``config_folder`` is given
    it gets the pipeline's configs and tokenizers without weights, for an offline
    ``from_single_file(path, config=config_folder)``.
    """
    import torch

    path = Path(path)
    unet_cfg = pipe.unet.config
    up_has_attention = ["CrossAttn" in t for t in unet_cfg.up_block_types]
    state: dict[str, torch.Tensor] = {}
    for k, v in pipe.unet.state_dict().items():
        state["model.diffusion_model." + _unet_key_to_ldm(k, unet_cfg.layers_per_block, up_has_attention)] = v
    n_blocks = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        new = _vae_key_to_ldm(k, n_blocks)
        if ".mid.attn_1." in new and new.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]  # the original attention projections are 1x1 convolutions
        state["first_stage_model." + new] = v
    if getattr(pipe, "text_encoder_2", None) is not None:
        state.update(_clip_state(pipe.text_encoder, "conditioner.embedders.0.transformer."))
        state.update(_open_clip_state(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        state.update(_clip_state(pipe.text_encoder, "cond_stage_model.transformer."))
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    if path.suffix == ".ckpt":
        torch.save({"state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    if config_folder is not None:
        config_folder = Path(config_folder)
        pipe.save_pretrained(config_folder)
        for weights in config_folder.rglob("*"):
            if weights.suffix in (".safetensors", ".bin"):
                weights.unlink()


# --- full-size architectures with random weights (timing without downloads) ---------------------

FULL_SIZE_FAMILIES = {
    # name: (diffusers family, native size, typical steps, typical guidance, what it stands for)
    "sd15": ("sd", 512, 20, 7.5, "Stable Diffusion 1.5 and its fine-tunes"),
    "sd-turbo": ("sd", 512, 1, 0.0, "SD-Turbo (the SD 2.1 architecture)"),
    "sdxl": ("sdxl", 1024, 20, 6.0, "SDXL base 1.0 and its fine-tunes (Pony, Illustrious, ...)"),
    "sdxl-turbo": ("sdxl", 512, 1, 0.0, "SDXL-Turbo (the SDXL architecture at 512x512)"),
}


def _clip_text(hidden: int, layers: int, heads: int, act: str, projection: int, vocab: int, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                         num_attention_heads=heads, hidden_act=act, projection_dim=projection,
                         max_position_embeddings=77, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg)


def full_size_modules(name: str, device: str = "cpu") -> dict:
    """The models of ``name`` (a key of FULL_SIZE_FAMILIES) at full size with random weights: ``unet``,
    ``vae``, ``text_encoder`` (and SDXL's ``text_encoder_2``), made on ``device`` ("meta" makes the
    shapes only, in no time: the tests count their parameters against the released models')."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    family, native, _, _, _ = FULL_SIZE_FAMILIES[name]
    vocab = 49408
    with torch.device(device):
        out = {"vae": AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                                    sample_size=native, scaling_factor=0.13025 if family == "sdxl" else 0.18215,
                                    force_upcast=family == "sdxl")}
        if name == "sd15":
            out["unet"] = UNet2DConditionModel(sample_size=native // 8, cross_attention_dim=768, attention_head_dim=8,
                                               block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
            out["text_encoder"] = _clip_text(768, 12, 12, "quick_gelu", 768, vocab, False)
        elif name == "sd-turbo":
            out["unet"] = UNet2DConditionModel(sample_size=native // 8, cross_attention_dim=1024,
                                               attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                                               block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
            out["text_encoder"] = _clip_text(1024, 23, 16, "gelu", 512, vocab, False)
        else:
            out["unet"] = UNet2DConditionModel(
                sample_size=native // 8, block_out_channels=(320, 640, 1280), layers_per_block=2,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
                cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)
            out["text_encoder"] = _clip_text(768, 12, 12, "quick_gelu", 768, vocab, False)
            out["text_encoder_2"] = _clip_text(1280, 32, 20, "gelu", 1280, vocab, True)
    return out


def make_full_size_pipeline(folder: str | Path, name: str, *, seed: int = 0, dtype=None, device: str = "cpu"):
    """The real architecture of ``name`` (a key of FULL_SIZE_FAMILIES) at full size, seeded random
    weights, saved with ``save_pretrained`` (in ``dtype``, default float16 on a GPU). Same layers,
    shapes and compute as the released model; its pictures are noise. The text encoders' vocabulary
    is CLIP's 49408 entries, the tokenizer the byte-level one written here (prompts are tokenized
    differently from the real model, which changes nothing about the cost)."""
    import torch
    from diffusers import (EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)

    family = FULL_SIZE_FAMILIES[name][0]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer(folder)
    sched_common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                        num_train_timesteps=1000)
    modules = full_size_modules(name, device)
    for m in modules.values():
        m.to(dtype)
    unet, vae, text, text_2 = (modules.get(k) for k in ("unet", "vae", "text_encoder", "text_encoder_2"))
    if family == "sd":
        sched = EulerDiscreteScheduler(**sched_common, timestep_spacing="trailing" if name == "sd-turbo" else "leading")
        pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        sched = (EulerAncestralDiscreteScheduler(**sched_common, timestep_spacing="trailing") if name == "sdxl-turbo"
                 else EulerDiscreteScheduler(**sched_common, timestep_spacing="leading"))
        pipe = StableDiffusionXLPipeline(unet=unet, vae=vae, text_encoder=text, text_encoder_2=text_2,
                                         tokenizer=tokenizer, tokenizer_2=_tiny_tokenizer(folder), scheduler=sched)
    pipe.save_pretrained(folder)
    return pipe


def make_full_size_taesd(folder: str | Path, *, seed: int = 0, dtype=None, device: str = "cpu"):
    """TAESD / TAESDXL's architecture (diffusers' AutoencoderTiny defaults) with seeded random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoencoderTiny()
    model.to(dtype or (torch.float16 if device.startswith("cuda") else torch.float32))
    model.save_pretrained(folder)
    return model
