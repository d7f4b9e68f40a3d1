"""Benchmark the Stable Diffusion fill: throughput, batching gain, peak VRAM, fp16 vs fp32.

Full size (GPU): SD 1.5 inpainting UNet + VAE + CLIP text encoder built from their public
configs (below) with random weights -- speed and memory do not depend on the weights, and
nothing is downloaded. Prompt embeddings are random (1x77x768).

    python benchmarks/sd_fill.py                 # CUDA, 20 steps, writes $OUT or /tmp JSON
    python benchmarks/sd_fill.py --tiny          # tiny random models on CPU (smoke test)
    python benchmarks/sd_fill.py --check-config  # only the parameter counts (CPU, no memory)

Measured: tiles/s at batch 1 and at the batch chosen from the VRAM budget (same run, so
the ratio is meaningful), peak VRAM (torch.cuda.max_memory_allocated and nvidia-smi),
fp16 vs fp32, and the time of one scene (a 640x480 shot widened to 854x480: two 480x512
tiles), projected to a 22-minute episode. Targets: peak <= 8 GiB, batched >= 1.5x batch
1, episode <= 22 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu.sd_fill import StableDiffusionFill  # noqa: E402
from gpu.tiles import plan_tiles  # noqa: E402
from tests.synthetic import textured_background  # noqa: E402

logger = logging.getLogger("benchmarks.sd_fill")

# Public configs of stable-diffusion-v1-5/stable-diffusion-inpainting (unet/, vae/, text_encoder/).
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
# Known parameter counts of the released SD 1.5 inpainting components.
KNOWN_PARAMS = {"unet": 859_535_364, "vae": 83_653_863, "text_encoder": 123_060_480}
GIB = 1024**3


def check_config() -> dict[str, int]:
    """Build the full-size modules on the meta device (no memory) and check parameter counts."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        modules = {
            "unet": UNet2DConditionModel(**UNET_CONFIG),
            "vae": AutoencoderKL(**VAE_CONFIG),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)),
        }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items()}
    for name, count in counts.items():
        if count != KNOWN_PARAMS[name]:
            raise SystemExit(f"{name} has {count:,} parameters, SD 1.5 has {KNOWN_PARAMS[name]:,}")
    return counts


def full_pipeline(device: str, dtype: Any) -> Any:
    """The SD 1.5 inpainting pipeline with random weights, built directly on ``device``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**UNET_CONFIG).to(dtype).eval()
        vae = AutoencoderKL(**VAE_CONFIG).to(dtype).eval()
        text = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).to(dtype).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.vae.enable_slicing()
    return pipe


def tiny_pipeline() -> Any:
    from tests.tiny_sd import tiny_inpaint_pipeline

    pipe = tiny_inpaint_pipeline(seed=0)
    pipe.vae.enable_slicing()
    return pipe


class SmiPeak:
    """Polls nvidia-smi in a thread and keeps the highest memory.used (MiB) seen."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak_mib = interval, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
                used = max(int(v) for v in out.split())
                self.peak_mib = max(self.peak_mib or 0, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> SmiPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def grid_scene(tile: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A panorama of ``n`` tile-sized cells, each with a hole in its centre: n tiles, one wave."""
    image = textured_background(tile, tile * n, seed=1)
    known = np.ones(image.shape[:2], bool)
    q = tile // 4
    for k in range(n):
        known[
            tile // 2 - q : tile // 2 + q, k * tile + tile // 2 - q : k * tile + tile // 2 + q
        ] = 0
    image[~known] = 0
    return image, known


def widescreen_scene(height: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4:3 shot of ``height`` lines widened to 16:9: real centre, empty side strips."""
    width, inner = round(height * 16 / 9 / 2) * 2, round(height * 4 / 3 / 2) * 2
    image = textured_background(height, width, seed=2)
    known = np.zeros((height, width), bool)
    left = (width - inner) // 2
    known[:, left : left + inner] = True
    image[~known] = 0
    return image, known


def timed_fill(pipe: Any, embeds: tuple, image, known, runs: int, **kwargs) -> dict[str, Any]:
    """Fill ``image`` ``runs`` times after one warm-up; seconds per fill and peak memory."""
    import torch

    cuda = pipe.device.type == "cuda"
    fill = StableDiffusionFill(
        pipe, prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], **kwargs
    )
    try:
        fill(image, known)  # warm-up: kernels, allocator, batch size estimate
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with SmiPeak() if cuda else _Null() as smi:
            start = time.perf_counter()
            for _ in range(runs):
                out = fill(image, known)
            seconds = (time.perf_counter() - start) / runs
        batch = fill.batch_for(plan_tiles(known, fill.tile, fill.overlap, fill.margin)[0])
    finally:
        fill.close()
    return {
        "seconds": seconds,
        "batch": batch,
        "peak_alloc_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
        "peak_smi_gib": smi.peak_mib / 1024 if cuda and smi.peak_mib else None,
        "hole_mean": float(out[~known].mean()),
    }


def end_to_end(
    device: str, steps: int, clip_s: float, size: tuple[int, int], work: Path
) -> dict[str, Any]:
    """Run the CLI on a synthetic clip of 4-second panning shots, --fill panorama vs sd.

    The model is the random-weight pipeline saved under ``work / "model"``; the CLI loads
    it through :func:`gpu.loading.load_inpaint_pipeline` like a real one.
    """
    from tests.synthetic import cut_clip, encode_clip

    width, height = size
    fps = 24
    shots = max(1, round(clip_s / 4))
    frames, _cuts = cut_clip([4 * fps] * shots, height=height, width=width)
    clip = work / "clip.nut"
    clip.write_bytes(encode_clip(frames, fmt="nut", codec="mpeg4", fps=fps, audio=False))
    del frames
    model = work / "model"
    root = Path(__file__).resolve().parents[1]
    times = {}
    for fill in ("panorama", "sd"):
        cmd = [sys.executable, "-m", "stream.cli", str(clip), str(work / f"out_{fill}.nut")]
        cmd += ["--fill", fill]
        if fill == "sd":
            cmd += ["--model", str(model), "--device", device, "--steps", str(steps)]
            cmd += ["--allow-cpu"] if device == "cpu" else []
        start = time.perf_counter()
        res = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        times[fill] = time.perf_counter() - start
        if res.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return {
        "clip_s": shots * 4.0,
        "shots": shots,
        "size": size,
        **{f"{k}_s": v for k, v in times.items()},
    }


class _Null:
    peak_mib = None

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random models on CPU (smoke test)")
    ap.add_argument("--check-config", action="store_true", help="only check parameter counts")
    ap.add_argument("--device", default=None, help="default: cuda (full) / cpu (tiny)")
    ap.add_argument("--steps", type=int, default=None, help="default 20 (full) / 2 (tiny)")
    ap.add_argument("--tiles", type=int, default=8, help="tiles in the throughput panorama")
    ap.add_argument("--runs", type=int, default=2, help="timed fills per measurement")
    ap.add_argument("--budget-gb", type=float, default=8.0, help="VRAM budget for the batch")
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 comparison")
    ap.add_argument("--episode-min", type=float, default=22.0, help="episode length, minutes")
    ap.add_argument("--shot-s", type=float, default=4.0, help="mean shot (scene) length, s")
    ap.add_argument("--e2e", action="store_true", help="also time the CLI, --fill sd vs panorama")
    ap.add_argument("--clip-s", type=float, default=120.0, help="synthetic clip length for --e2e")
    ap.add_argument("--json", type=Path, default=None, help="default $OUT or /tmp")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    counts = check_config()
    print(
        "parameter counts match SD 1.5 inpainting: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )
    if args.check_config:
        return 0
    mode = "tiny" if args.tiny else "full"
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run the full benchmark on a GPU machine, or pass --tiny")
    steps = args.steps or (2 if args.tiny else 20)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32

    def build(dt: Any) -> tuple[Any, tuple]:
        pipe = tiny_pipeline().to(device, dt) if args.tiny else full_pipeline(device, dt)
        dim = pipe.unet.config.cross_attention_dim
        gen = torch.Generator().manual_seed(0)
        embeds = tuple(torch.randn(1, 77, dim, generator=gen).to(device, dt) for _ in range(2))
        return pipe, embeds

    pipe, embeds = build(dtype)
    tile = pipe.unet.config.sample_size * pipe.vae_scale_factor
    common = {"steps": steps, "guidance": 7.5, "seed": 0, "vram_budget_gb": args.budget_gb}
    grid = grid_scene(tile, args.tiles)
    n_tiles = len(plan_tiles(grid[1], tile))
    results: dict[str, Any] = {"mode": mode, "device": device, "steps": steps, "tile": tile}
    if device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    rows = []

    def measure(name: str, p: Any, e: tuple, image, known, **kw) -> dict[str, Any]:
        r = timed_fill(p, e, image, known, args.runs, **common, **kw)
        r["tiles"] = len(plan_tiles(known, tile))
        r["tiles_per_s"] = r["tiles"] / r["seconds"]
        results[name] = r
        rows.append((name, r))
        return r

    one = measure("batch1_" + str(dtype).removeprefix("torch."), pipe, embeds, *grid, batch_size=1)
    auto = measure("auto_" + str(dtype).removeprefix("torch."), pipe, embeds, *grid)
    height = 480 if not args.tiny else 60
    scene = measure("scene_480p", pipe, embeds, *widescreen_scene(height))
    if args.e2e:
        import tempfile

        from tests.tiny_sd import tiny_tokenizer

        size = (160, 120) if args.tiny else (640, 480)
        with tempfile.TemporaryDirectory() as tmp:
            # The tiny character tokenizer's ids are valid for any CLIP vocabulary.
            pipe.tokenizer = tiny_tokenizer()
            pipe.save_pretrained(Path(tmp) / "model")
            del pipe
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            e2e = end_to_end(device, steps, args.clip_s, size, Path(tmp))
        scale = args.episode_min / (e2e["clip_s"] / 60)
        e2e["episode_sd_minutes"] = e2e["sd_s"] / 60 * scale
        e2e["episode_panorama_minutes"] = e2e["panorama_s"] / 60 * scale
        results["e2e"] = e2e
    else:
        del pipe
    if not args.no_fp32 and dtype != torch.float32:
        torch.cuda.empty_cache()
        pipe32, embeds32 = build(torch.float32)
        measure("batch1_float32", pipe32, embeds32, *grid, batch_size=1)
        measure("same_batch_float32", pipe32, embeds32, *grid, batch_size=auto["batch"])

    scenes = args.episode_min * 60 / args.shot_s
    projected_min = scenes * scene["seconds"] / 60
    speedup = auto["tiles_per_s"] / one["tiles_per_s"]
    peak = max((r["peak_alloc_gib"] or 0) for _, r in rows)
    results["projection"] = {
        "scenes": scenes,
        "seconds_per_scene": scene["seconds"],
        "episode_fill_minutes": projected_min,
    }
    results["targets"] = {
        "peak_vram_le_8gib": peak <= 8 if device.startswith("cuda") else None,
        "batched_ge_1.5x": speedup >= 1.5,
        "episode_le_22min": projected_min <= args.episode_min,
    }
    results["speedup_batched_vs_1"] = speedup

    print(
        f"\n### SD fill benchmark ({mode}, {device}, {steps} steps, tile {tile}, {n_tiles} tiles)\n"
    )
    print("| run | batch | tiles | s/fill | tiles/s | peak alloc GiB | peak nvidia-smi GiB |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        alloc = f"{r['peak_alloc_gib']:.2f}" if r["peak_alloc_gib"] is not None else "-"
        smi = f"{r['peak_smi_gib']:.2f}" if r["peak_smi_gib"] is not None else "-"
        print(
            f"| {name} | {r['batch']} | {r['tiles']} | {r['seconds']:.3f} | "
            f"{r['tiles_per_s']:.2f} | {alloc} | {smi} |"
        )
    print(f"\nbatched vs batch 1: {speedup:.2f}x (target >= 1.5x)")
    print(
        f"episode projection: {scenes:.0f} scenes x {scene['seconds']:.2f} s = "
        f"{projected_min:.1f} min of fill for a {args.episode_min:g} min episode "
        f"(target <= {args.episode_min:g})"
    )
    if "e2e" in results:
        e = results["e2e"]
        print(
            f"CLI on a {e['clip_s']:.0f} s {e['size'][0]}x{e['size'][1]} clip "
            f"({e['shots']} shots): "
            f"--fill panorama {e['panorama_s']:.1f} s, --fill sd {e['sd_s']:.1f} s -> episode "
            f"{e['episode_panorama_minutes']:.1f} / {e['episode_sd_minutes']:.1f} min"
        )
        results["targets"]["episode_le_22min_cli"] = e["episode_sd_minutes"] <= args.episode_min
    print(f"targets: {results['targets']}")
    out = args.json or Path(os.environ.get("OUT", "/tmp")) / f"sd_fill_{mode}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
