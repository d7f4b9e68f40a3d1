"""How many tiles fit through the inpainting pipeline at once within a VRAM budget.

The estimate is deliberately coarse and conservative: weights are counted exactly,
activations from a per-sample model of the UNet (``UNET_MAPS`` feature maps of the first
block's width at latent resolution, doubled under classifier-free guidance) and of the
VAE (``VAE_MAPS`` maps of its first block's width at image resolution, once when the VAE
decodes slice by slice). ``benchmarks/sd_fill.py`` reports the measured peak to check
it, and an out-of-memory error still halves the batch at run time.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

GIB = 1024**3
UNET_MAPS = 64  # peak live UNet activations per sample, in maps of C0 x latent area
VAE_MAPS = 8  # peak live VAE activations per image, in maps of C0 x image area
RESERVE_BYTES = GIB // 2  # CUDA context, allocator slack, scheduler buffers


def weights_bytes(*modules: Any) -> int:
    """Bytes of all parameters and buffers of the given torch modules (None is skipped)."""
    total = 0
    for module in modules:
        if module is None:
            continue
        for t in list(module.parameters()) + list(module.buffers()):
            total += t.numel() * t.element_size()
    return total


def activation_bytes(
    unet_config: Any,
    vae_config: Any,
    height: int,
    width: int,
    element_size: int,
    vae_scale: int,
    cfg: bool,
) -> tuple[int, int]:
    """(per-tile UNet bytes, per-image VAE bytes) for a tile of ``height`` x ``width``."""
    latent_area = (height // vae_scale) * (width // vae_scale)
    unet = UNET_MAPS * unet_config.block_out_channels[0] * latent_area * element_size
    vae = VAE_MAPS * vae_config.block_out_channels[0] * height * width * element_size
    return unet * (2 if cfg else 1), vae


def cuda_free_bytes(device: Any) -> int | None:
    """Free memory on a CUDA device as the driver sees it, None for other devices."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def choose_batch_size(
    pipe: Any, height: int, width: int, budget_gb: float, cfg: bool, max_batch: int = 8
) -> int:
    """Largest batch (1..max_batch) whose estimated peak stays within ``budget_gb``.

    On CUDA the room left is also capped by the memory the driver reports free (weights
    already on the device are part of the used memory there).
    """
    if budget_gb <= 0:
        raise ValueError(f"budget_gb must be > 0, got {budget_gb}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    element_size = pipe.unet.dtype.itemsize
    weights = weights_bytes(pipe.unet, pipe.vae, pipe.text_encoder)
    per_tile, vae = activation_bytes(
        pipe.unet.config, pipe.vae.config, height, width, element_size, pipe.vae_scale_factor, cfg
    )
    sliced = getattr(pipe.vae, "use_slicing", False)
    room = int(budget_gb * GIB) - weights - RESERVE_BYTES
    free = cuda_free_bytes(pipe.device)
    if free is not None:
        room = min(room, free - RESERVE_BYTES)
    per = per_tile if sliced else per_tile + vae
    fixed = vae if sliced else 0
    batch = int(max(1, min(max_batch, (room - fixed) // max(per, 1))))
    logger.info(
        "batch %d for %dx%d tiles: weights %.2f GiB, %.3f GiB/tile, budget %.1f GiB%s",
        batch,
        width,
        height,
        weights / GIB,
        per / GIB,
        budget_gb,
        f", {free / GIB:.1f} GiB free" if free is not None else "",
    )
    return batch
