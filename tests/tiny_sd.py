"""A tiny random StableDiffusionInpaintPipeline for CPU tests (no download, seconds to build).

The component sizes follow diffusers' own pipeline tests. The CLIP tokenizer is built in
memory from a small character vocabulary, so nothing is fetched from the hub.
"""

from __future__ import annotations

import string
from typing import Any

TINY_TILE = 64  # UNet sample_size 32 x VAE scale factor 2
TINY_EMBED_DIM = 32


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over single lower-case letters (every word splits into characters)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_inpaint_pipeline(
    seed: int = 0, in_channels: int = 9, with_text: bool = True, scheduler: str = "ddim"
) -> Any:
    """Build a tiny random inpainting pipeline on CPU in float32, seeded for repeatability.

    ``in_channels=4`` gives a plain (non-inpainting) UNet for the loader's error path;
    ``with_text=False`` leaves out tokenizer and text encoder (callers then pass embeddings).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_EMBED_DIM,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )
    text_encoder = tokenizer = None
    if with_text:
        torch.manual_seed(seed + 2)
        config = CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=TINY_EMBED_DIM,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=64,
            max_position_embeddings=77,
        )
        text_encoder = CLIPTextModel(config).eval()
        tokenizer = tiny_tokenizer()
    betas = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    if scheduler == "ddim":
        sched = DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    elif scheduler == "pndm":
        sched = PNDMScheduler(**betas, skip_prk_steps=True, steps_offset=1)
    else:
        raise ValueError(f"scheduler must be 'ddim' or 'pndm', got {scheduler!r}")
    pipe = StableDiffusionInpaintPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
