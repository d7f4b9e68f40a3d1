"""Build a ``StableDiffusionInpaintPipeline`` for :class:`gpu.sd_fill.StableDiffusionFill`.

Offline by default: a local diffusers folder, a single ``.safetensors`` checkpoint or a
hub id already in the local Hugging Face cache. torch and diffusers are imported inside
the function (diffusers alone takes seconds to import).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}


class ModelNotFoundError(FileNotFoundError):
    """The model is neither a local path nor in the local cache (or could not be read)."""


class NotInpaintingModelError(ValueError):
    """The model's UNet is not an inpainting UNet (it needs 9 input channels)."""


class CudaUnavailableError(RuntimeError):
    """CUDA was asked for (or needed) but is not available, and CPU was not allowed."""


def _how_to_get(model: str) -> str:
    hub_id = model if not _looks_like_path(model) else DEFAULT_MODEL
    return (
        f"on a machine with internet run `huggingface-cli download {hub_id} --local-dir DIR`, "
        "copy DIR here and pass --model DIR (or allow downloads)"
    )


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith(("/", ".", "~"))
        or model.endswith((".safetensors", ".ckpt", ".bin"))
        or model.count("/") != 1
    )


def _resolve_device(device: str, allow_cpu: bool) -> Any:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must look like 'cuda', 'cuda:0' or 'cpu', got {device!r}"
        ) from None
    if dev.type == "cuda" and torch.cuda.is_available():
        return dev
    if not allow_cpu:
        why = "CUDA is not available" if dev.type == "cuda" else f"device {device!r} is not CUDA"
        raise CudaUnavailableError(
            f"{why}; Stable Diffusion fill on CPU takes minutes per tile. Use a CUDA GPU or "
            "allow CPU explicitly (allow_cpu=True)"
        )
    logger.warning(
        "running Stable Diffusion on the CPU (device %r asked): expect minutes per tile", device
    )
    return torch.device("cpu")


def _from_source(cls: Any, model: str, common: dict[str, Any], config: str | None) -> Any:
    """Load from a diffusers folder, a single .safetensors file or a hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        return cls.from_pretrained(path, **common)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ModelNotFoundError(
                f"model file {str(path)!r} is not a .safetensors checkpoint (pickled "
                "checkpoints are refused); convert it or pass a diffusers folder"
            )
        kwargs = {k: v for k, v in common.items() if k != "use_safetensors"}
        if config is not None:
            kwargs["config"] = config
        return cls.from_single_file(str(path), **kwargs)
    if _looks_like_path(model):
        raise ModelNotFoundError(f"model path {model!r} does not exist; {_how_to_get(model)}")
    return cls.from_pretrained(model, **common)


def load_inpaint_pipeline(
    model: str,
    device: str,
    allow_download: bool = False,
    allow_cpu: bool = False,
    scheduler: str | None = None,
    config: str | None = None,
) -> Any:
    """Load an inpainting pipeline: fp16 on CUDA, fp32 on CPU, safety checker off.

    ``model`` is a diffusers folder, a ``.safetensors`` file or a hub id (hub ids are
    only fetched with ``allow_download``; otherwise the local cache must hold them).
    ``scheduler`` swaps the scheduler (a key of :data:`SCHEDULERS` or a diffusers class
    name such as ``DPMSolverMultistepScheduler``). ``config`` is the
    diffusers folder or hub id whose configs a single-file checkpoint is built with
    (default: looked up in the local cache for the checkpoint's model type).
    """
    sched_name = SCHEDULERS.get(scheduler, scheduler) if scheduler is not None else None
    if sched_name is not None and not sched_name.endswith("Scheduler"):
        raise ValueError(
            f"scheduler must be one of {sorted(SCHEDULERS)} or a diffusers scheduler class "
            f"name, got {scheduler!r}"
        )
    if not model:
        raise ModelNotFoundError(f"no model given; {_how_to_get(DEFAULT_MODEL)}")
    dev = _resolve_device(device, allow_cpu)

    import diffusers
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    common: dict[str, Any] = {
        "torch_dtype": dtype,
        "use_safetensors": True,
        "safety_checker": None,
        "requires_safety_checker": False,
        "local_files_only": not allow_download,
    }
    try:
        with warnings.catch_warnings():
            # ``torch_dtype`` works on every supported diffusers; newer ones only warn about it.
            warnings.filterwarnings("ignore", "`torch_dtype` is deprecated", FutureWarning)
            pipe = _from_source(StableDiffusionInpaintPipeline, model, common, config)
    except ModelNotFoundError:
        raise
    except (OSError, ValueError, KeyError) as err:
        if Path(model).expanduser().exists():
            where = "from disk"
        else:
            where = "from the local cache" if not allow_download else "from the hub"
        raise ModelNotFoundError(
            f"could not load inpainting model {model!r} {where}: {err}; {_how_to_get(model)}"
        ) from err

    in_channels = pipe.unet.config.in_channels
    if in_channels != 9:
        raise NotInpaintingModelError(
            f"model {model!r} is not an inpainting model: its UNet has {in_channels} input "
            f"channels, not 9 (use e.g. {DEFAULT_MODEL})"
        )
    if sched_name is not None:
        cls = getattr(diffusers, sched_name, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ValueError(f"diffusers has no scheduler class {sched_name!r}")
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.vae.enable_slicing()  # decode a batch one image at a time: flat VAE memory
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(dev)
    logger.info("loaded %s on %s (%s)", model, dev, str(dtype).removeprefix("torch."))
    return pipe
