"""Tiny random-weight Stable Diffusion models for tests, benchmarks and smoke runs (no network).

``make_tiny_pipeline(folder)`` writes a complete diffusers folder (UNet, VAE, CLIP text encoder, a
byte-level CLIP tokenizer written from scratch, a scheduler) that ``StableDiffusionPipeline
.from_pretrained(folder)`` loads exactly as it loads a real model id. The same seed gives the same
weights. Frames it makes are noise-like but deterministic, which is all a test needs.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CROSS_ATTENTION_DIM = 32


def _write_tokenizer_files(folder: Path) -> None:
    """A byte-level BPE vocabulary: all 256 byte symbols (plain and end-of-word) plus a few merges."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = ["a t</w>", "c at</w>", "d o", "do g</w>", "r e", "re d</w>", "n e", "ne on</w>", "o n</w>", "e on</w>"]
    merges = [m for m in merges if True]
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


def write_single_file_checkpoint(pipe, path: str | Path, config_folder: str | Path) -> None:
    """Write ``pipe`` as an original-format single-file checkpoint plus a weight-free config folder.

    The checkpoint uses the original (CompVis) key names, as checkpoints artists download do;
    ``config_folder`` gets the diffusers configs and tokenizer files so that
    ``from_single_file(path, config=config_folder)`` works offline.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.convert_from_ckpt import (  # noqa: F401 (presence check)
        assign_to_checkpoint,
    )
    raise NotImplementedError
