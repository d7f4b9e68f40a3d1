"""Stable Diffusion inpainting as a :class:`HoleFill`: what no frame showed, generated.

The pipeline is handed in (see :func:`gpu.loading.load_inpaint_pipeline`). The prompt
is encoded once; each call plans tiles over the panorama (:mod:`gpu.tiles`), runs them
through the pipeline in batches sized to the VRAM budget, colour-matches each tile to
its surrounding real pixels and pastes it with feathered seams. Work runs on one
background thread with its own CUDA stream so the caller can keep decoding and
encoding meanwhile (:meth:`StableDiffusionFill.submit`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from gpu import memory, tiles
from stages.base import HoleFill, check_fill_inputs

logger = logging.getLogger(__name__)


class FillOutOfMemoryError(RuntimeError):
    """The GPU ran out of memory even with one tile per batch."""


class StableDiffusionFill(HoleFill):
    """Fill holes with a diffusers ``StableDiffusionInpaintPipeline``, tile by tile.

    ``tile`` defaults to the model's native size (512 for SD 1.5). ``overlap`` is the
    overlap of neighbouring tiles on large holes, ``margin`` the known context kept
    around each hole (both default to tile/8), ``feather`` the cross-fade width into
    earlier generated content, ``ring`` the width of the context ring used for colour
    matching. ``batch_size`` fixes the batch; by default it follows ``vram_budget_gb``.
    ``prompt_embeds`` / ``negative_prompt_embeds`` replace the text prompts (no text
    encoder needed then).
    Tile ``k`` of a call draws its noise from ``torch.Generator().manual_seed(seed + k)``.
    """

    def __init__(
        self,
        pipe: Any,
        prompt: str = "",
        negative_prompt: str = "",
        steps: int = 20,
        guidance: float = 7.5,
        seed: int = 0,
        tile: int | None = None,
        overlap: int | None = None,
        margin: int | None = None,
        vram_budget_gb: float = 8.0,
        batch_size: int | None = None,
        feather: int = 32,
        ring: int = 16,
        colour_match: bool = True,
        prompt_embeds: Any = None,
        negative_prompt_embeds: Any = None,
    ) -> None:
        import torch

        scale = int(pipe.vae_scale_factor)
        multiple = max(8, scale)
        native = int(pipe.unet.config.sample_size) * scale
        tile = native if tile is None else tile
        overlap = tile // 8 if overlap is None else overlap
        margin = tile // 8 if margin is None else margin
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        if tile < multiple or tile % multiple:
            raise ValueError(f"tile must be a positive multiple of {multiple}, got {tile}")
        if not 0 <= overlap <= tile // 2:
            raise ValueError(f"overlap must be in [0, {tile // 2}], got {overlap}")
        if margin < 0 or feather < 0 or ring < 1:
            raise ValueError(
                f"margin, feather must be >= 0 and ring >= 1, got {margin, feather, ring}"
            )
        if vram_budget_gb <= 0:
            raise ValueError(f"vram_budget_gb must be > 0, got {vram_budget_gb}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pipe.unet.config.in_channels != 9:
            raise ValueError(
                f"pipeline UNet has {pipe.unet.config.in_channels} input channels, an inpainting "
                "model needs 9"
            )
        self.pipe = pipe
        self.steps, self.guidance, self.seed = steps, float(guidance), seed
        self.tile, self.overlap, self.margin, self.multiple = tile, overlap, margin, multiple
        self.feather, self.ring, self.colour_match = feather, ring, colour_match
        self.vram_budget_gb, self.batch_size = vram_budget_gb, batch_size
        self.device = pipe.device
        self.cfg = self.guidance > 1.0
        self._cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None
        self._batch_cap: int | None = None  # lowered after an out-of-memory error
        self._auto_batch: dict[tuple[int, int], int] = {}
        pipe.set_progress_bar_config(disable=True)
        self._embeds = self._encode(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sd-fill"
        )

    # -- public -------------------------------------------------------------------------

    def submit(self, image: np.ndarray, known: np.ndarray) -> Future[np.ndarray]:
        """Start filling on the worker thread; the future gives the filled image."""
        check_fill_inputs(image, known)
        with self._lock:
            if self._executor is None:
                raise RuntimeError("StableDiffusionFill is closed")
            return self._executor.submit(self._fill, image.copy(), known.copy())

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        return self.submit(image, known).result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._embeds = None
        if self._cuda:
            import torch

            torch.cuda.empty_cache()

    # -- work ---------------------------------------------------------------------------

    def _encode(self, prompt: str, negative: str, embeds: Any, negative_embeds: Any) -> tuple:
        """Encode the prompts once (or adopt given embeddings) on the pipeline's device."""
        import torch

        dtype = self.pipe.unet.dtype
        if embeds is None and self.pipe.tokenizer is None:
            raise ValueError("pipeline has no tokenizer/text encoder: pass prompt_embeds")
        if self.cfg and negative_embeds is None and self.pipe.tokenizer is None:
            raise ValueError("guidance > 1 without a text encoder needs negative_prompt_embeds")
        if embeds is not None:
            embeds = embeds.to(self.device, dtype)
        if negative_embeds is not None:
            negative_embeds = negative_embeds.to(self.device, dtype)
        with torch.inference_mode():
            pos, neg = self.pipe.encode_prompt(
                None if embeds is not None else prompt,
                self.device,
                1,
                self.cfg,
                negative,
                prompt_embeds=embeds,
                negative_prompt_embeds=negative_embeds,
            )
        if self._cuda:  # the worker's stream must not read the embeddings before they exist
            torch.cuda.current_stream(self.device).synchronize()
        return pos.to(dtype), (neg.to(dtype) if neg is not None else None)

    def _fill(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        import torch

        plan = tiles.plan_tiles(known, self.tile, self.overlap, self.margin, self.multiple)
        if not plan:
            return image
        canvas = image.astype(np.float32)
        filled = known.copy()
        stream = torch.cuda.stream(self._stream) if self._cuda else contextlib.nullcontext()
        with stream, torch.inference_mode():
            for wave in sorted({t.wave for t in plan}):
                todo = [t for t in plan if t.wave == wave]
                while todo:
                    batch = self.batch_for(todo[0])
                    chunk = todo[:batch]
                    try:
                        outputs = self._generate(chunk, canvas, filled)
                    except torch.cuda.OutOfMemoryError as err:
                        self._on_oom(len(chunk), err)
                        continue
                    for t, out in zip(chunk, outputs, strict=True):
                        self._paste(t, out, canvas, filled, known)
                    todo = todo[len(chunk) :]
        if not filled.all():
            raise RuntimeError(f"{int((~filled).sum())} hole pixels left unfilled (tile plan bug)")
        result = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        result[known] = image[known]
        logger.debug("filled %d hole pixels with %d tiles", int((~known).sum()), len(plan))
        return result

    def batch_for(self, tile: tiles.Tile) -> int:
        """Batch size for tiles of this tile's shape: fixed, or estimated once per shape."""
        batch = self.batch_size
        if batch is None:
            key = (tile.h, tile.w)
            if key not in self._auto_batch:
                self._auto_batch[key] = memory.choose_batch_size(
                    self.pipe, tile.h, tile.w, self.vram_budget_gb, self.cfg
                )
            batch = self._auto_batch[key]
        return min(batch, self._batch_cap) if self._batch_cap is not None else batch

    def _on_oom(self, batch: int, err: BaseException) -> None:
        """Halve the batch after an out-of-memory error; give up at one tile."""
        import torch

        if self._cuda:
            torch.cuda.empty_cache()
        if batch <= 1:
            raise FillOutOfMemoryError(
                f"GPU out of memory with a single {self.tile}px tile on {self.device}; lower "
                "the tile size, free GPU memory or use a smaller model"
            ) from err
        self._batch_cap = batch // 2
        logger.warning("GPU out of memory at batch %d, retrying at %d", batch, self._batch_cap)

    def _generate(
        self, chunk: list[tiles.Tile], canvas: np.ndarray, filled: np.ndarray
    ) -> np.ndarray:
        """Run one batch of tiles through the pipeline; returns (B, h, w, 3) float32 0..255."""
        import torch

        h, w = chunk[0].h, chunk[0].w
        images = np.stack([tiles.crop(canvas, t) for t in chunk]) / np.float32(255)
        masks = np.stack([~tiles.crop(filled, t) for t in chunk]).astype(np.float32)
        image_t = self._to_device(images).permute(0, 3, 1, 2)
        mask_t = self._to_device(masks)[:, None]
        pos, neg = self._embeds
        n = len(chunk)
        generators = [torch.Generator().manual_seed(self.seed + t.index) for t in chunk]
        out = self.pipe(
            prompt_embeds=pos.expand(n, -1, -1),
            negative_prompt_embeds=neg.expand(n, -1, -1) if neg is not None else None,
            image=image_t,
            mask_image=mask_t,
            height=h,
            width=w,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=generators,
            output_type="pt",
            return_dict=False,
        )[0]
        return self._to_host(out.permute(0, 2, 3, 1).float() * 255)

    def _to_device(self, array: np.ndarray) -> Any:
        import torch

        host = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if not self._cuda:
            return host.to(self.device)
        return host.pin_memory().to(self.device, non_blocking=True)

    def _to_host(self, tensor: Any) -> np.ndarray:
        import torch

        if not self._cuda:
            return tensor.cpu().numpy()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host.numpy()

    def _paste(
        self,
        tile: tiles.Tile,
        output: np.ndarray,
        canvas: np.ndarray,
        filled: np.ndarray,
        known: np.ndarray,
    ) -> None:
        """Colour-match one tile's output and blend it into ``canvas``; mark its pixels filled."""
        ys, xs = tile.region(*canvas.shape[:2])
        context = canvas[ys, xs]
        gen = output[: context.shape[0], : context.shape[1]]
        todo = ~filled[ys, xs]
        if self.colour_match:
            gen = tiles.colour_match(gen, context, tiles.ring_mask(todo, ~todo, self.ring))
            # a colour shift can leave 0..255; the next tile reads this canvas as its image
            gen = np.clip(gen, 0, 255)
        weights = tiles.blend_weights(todo, filled[ys, xs] & ~known[ys, xs], self.feather)
        canvas[ys, xs] = context + weights[..., None] * (gen - context)
        filled[ys, xs] |= todo
