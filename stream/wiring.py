"""Options in, a stage chain out: the registries of stages and fills, and the one device choice.

A stage registers here once (:func:`register_stage`): its name for ``--process-order``,
the option that asks for it, and how it is built from :class:`~stream.options.Options`.
Registration order is the default order of the chain (``first=True`` puts a stage ahead
of the others). A fill registers the same way (:func:`register_fill` for a fill that
widens the picture itself, :func:`register_hole_fill` for one that fills what no frame of
the panorama showed). The CLI takes its choices and help texts from these registries, and
any other caller (a worker process) builds the same chain from the same options with
:func:`build_chain`. Models and devices are made here and handed into the stages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING

from stream.errors import DeviceError, InputError, ModelError, RemasterError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from stages.base import FrameInterpolator, HoleFill, Stage, StageChain, VideoInfo
    from stages.crop import CropBox
    from stream.encode import EncoderSettings
    from stream.options import Options
    from stream.scenes import SceneBuffer

log = logging.getLogger(__name__)

# Opening frames examined by --crop auto (they stay in memory until the chain starts).
CROP_PROBE_FRAMES = 48
# Scene buffer for chains that work frame by frame (no stage needs a whole scene).
FRAME_STAGE_BUDGET = 1


@dataclass(frozen=True)
class StageEntry:
    """A stage the options can ask for."""

    name: str
    help: str
    wanted: Callable[[Options], bool]  # do the options ask for it
    build: Callable[[Options], Stage]
    option: str = ""  # the option that asks for it ("" when always wanted)


@dataclass(frozen=True)
class FillEntry:
    """A way to make the new side areas: builds the widening stage for a target aspect."""

    name: str
    help: str
    build: Callable[[Options, Fraction], Stage]


STAGES: dict[str, StageEntry] = {}
FILLS: dict[str, FillEntry] = {}
# the hole fills among FILLS: ``make(options)`` (None: the panorama stage's classical fill)
HOLE_FILLS: dict[str, Callable[[Options], HoleFill | None]] = {}


def register_stage(
    name: str, help: str, wanted: Callable[[Options], bool], option: str = "", first: bool = False
) -> Callable[[Callable[[Options], Stage]], Callable[[Options], Stage]]:
    """Decorator: register ``build(options) -> Stage`` as the stage ``name``."""

    def add(build: Callable[[Options], Stage]) -> Callable[[Options], Stage]:
        entry = StageEntry(name, help, wanted, build, option)
        others = [(n, e) for n, e in STAGES.items() if n != name]  # registering again replaces
        items = [(name, entry), *others] if first else [*others, (name, entry)]
        STAGES.clear()
        STAGES.update(items)
        return build

    return add


def register_fill(name: str, help: str):
    """Decorator: register ``build(options, aspect) -> Stage``, a whole widening stage."""

    def add(build: Callable[[Options, Fraction], Stage]) -> Callable[[Options, Fraction], Stage]:
        FILLS[name] = FillEntry(name, help, build)
        return build

    return add


def register_hole_fill(name: str, help: str):
    """Decorator: register ``make(options) -> HoleFill | None``, used inside the panorama stage
    for what no frame showed (None: the classical fill)."""

    def add(make: Callable[[Options], HoleFill | None]) -> Callable[[Options], HoleFill | None]:
        HOLE_FILLS[name] = make
        FILLS[name] = FillEntry(name, help, lambda o, aspect: _panorama(o, aspect, make(o)))
        return make

    return add


def resolve_device(device: str) -> str:
    """The torch device for ``device``: ``auto`` is ``cuda`` when torch sees a CUDA GPU, else
    ``cpu``; a CUDA device that is not there raises DeviceError."""
    if device == "cpu":
        return device
    have_torch = importlib.util.find_spec("torch") is not None
    cuda = 0
    if have_torch:
        import torch

        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda" if cuda else "cpu"
    index = int(device.partition(":")[2] or 0)
    if index >= cuda:
        why = "torch is not installed" if not have_torch else f"torch sees {cuda} CUDA GPU(s)"
        raise DeviceError(f"--device {device}: no such CUDA device ({why}); use --device cpu")
    return device


# -- stages -------------------------------------------------------------------------


@register_stage("outpaint", "widen the picture with the chosen --fill", lambda o: True)
def _outpaint(options: Options) -> Stage:
    return FILLS[options.fill_name].build(options, options.target_aspect)


@register_stage("upscale", "super-resolution", lambda o: o.upscale is not None, "--upscale")
def _upscale(options: Options) -> Stage:
    from stages.upscale import UpscaleStage, esrgan_available, vulkan_gpu_count

    backend = options.upscale_model
    if backend == "auto":
        backend = "esrgan" if esrgan_available() else "lanczos"
    gpu_id = -1
    device = resolve_device(options.device) if backend == "esrgan" else "cpu"
    if device != "cpu":  # ncnn runs on Vulkan: the GPU with the CUDA device's index
        index, count = int(device.partition(":")[2] or 0), vulkan_gpu_count()
        if index < count:
            gpu_id = index
        elif options.device != "auto":
            raise DeviceError(f"--device {device}: Real-ESRGAN sees {count} Vulkan GPU(s)")
        else:
            log.info("Real-ESRGAN sees no Vulkan GPU %d; upscaling on the CPU", index)
    return UpscaleStage(options.upscale, backend=backend, gpu_id=gpu_id)


@register_stage(
    "interpolate",
    "frame-rate conversion",
    lambda o: o.interpolate is not None or o.fps is not None,
    "--interpolate/--fps",
)
def _interpolate(options: Options) -> Stage:
    from stages.interpolate import InterpolateStage

    interpolator = make_interpolator(options.interp_model, options.device)
    return InterpolateStage(interpolator, factor=options.interpolate, fps=options.fps)


def make_interpolator(backend: str = "auto", device: str = "auto") -> FrameInterpolator:
    """The interpolator named ``backend``: ``auto`` is RIFE when torch and its weights are
    installed, else DIS optical flow; RIFE runs on ``device``."""
    from gpu.weights import rife_available
    from stages.interpolate import BlendInterpolator, DisInterpolator

    if backend == "auto":
        backend = "rife" if rife_available() else "dis"
        log.info("interpolation backend: %s", backend)
    if backend == "blend":
        return BlendInterpolator()
    if backend == "dis":
        return DisInterpolator()
    if backend != "rife":
        raise UsageError(f"--interp-model must be auto, rife, dis or blend, got {backend!r}")
    from gpu.rife import RifeInterpolator, load_ifnet  # torch is imported here only

    return RifeInterpolator(load_ifnet(), device=resolve_device(device))


@register_stage(
    "repair",
    "old-film repair: dust, scratches, flicker, grain",
    lambda o: o.repair,
    "--repair",
    first=True,
)
def _repair(options: Options) -> Stage:
    from stages.repair import RepairStage

    return RepairStage(options.repair_settings())


# -- fills --------------------------------------------------------------------------


@register_hole_fill(
    "panorama", "real background of the scene, the rest filled classically (no weights)"
)
def _classical(options: Options) -> HoleFill | None:
    return None  # the panorama stage's own classical fill


@register_hole_fill("sd", "what no frame showed generated by Stable Diffusion (--model)")
def _sd(options: Options) -> HoleFill:
    from gpu.loading import DEFAULT_MODEL, CudaUnavailableError, load_inpaint_pipeline
    from gpu.sd_fill import StableDiffusionFill

    device = resolve_device(options.device)
    model = "" if options.model else " and an inpainting model (--model DIR, FILE or HUB_ID)"
    if device == "cpu" and not options.allow_cpu:
        raise DeviceError(
            f"--fill sd needs a CUDA GPU{model}; no GPU is here: pass --allow-cpu to run it "
            "on the CPU (minutes per tile), or use --fill panorama"
        )
    try:
        pipe = load_inpaint_pipeline(
            options.model or DEFAULT_MODEL,
            device=device,
            allow_download=options.allow_download,
            allow_cpu=options.allow_cpu,
            scheduler=options.scheduler,
        )
    except CudaUnavailableError as err:
        raise DeviceError(str(err)) from err
    except (OSError, ValueError, RuntimeError) as err:
        hint = "" if options.model else f"--fill sd without --model tries {DEFAULT_MODEL}: "
        raise ModelError(f"{hint}{err}") from err
    return StableDiffusionFill(
        pipe,
        prompt=options.prompt,
        negative_prompt=options.negative_prompt,
        steps=options.steps,
        guidance=options.guidance,
        seed=options.seed,
        vram_budget_gb=options.vram_gb,
    )


@register_fill("blur", "blurred pillarbox (fast)")
def _blur(options: Options, aspect: Fraction) -> Stage:
    from stages.blur import BlurPillarbox

    return BlurPillarbox(aspect)


def _panorama(options: Options, aspect: Fraction, fill: HoleFill | None) -> Stage:
    from stages.outpaint import PanoramaOutpaint

    return PanoramaOutpaint(
        aspect,
        fill=fill,
        segmenter=make_segmenter(options.mask, options.device),
        dump_dir=options.dump_panoramas,
        vignette=options.vignette,
        keep_gate=options.keep_gate,
    )


def make_segmenter(mask: str, device: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The foreground segmenter for ``--mask`` (None for ``auto``: no learned masks)."""
    if mask == "u2netp":
        from stages.segment import U2NetpSegmenter

        return U2NetpSegmenter()
    if mask == "maskrcnn":
        from stages.segment import MaskRCNNSegmenter

        return MaskRCNNSegmenter(device=resolve_device(device))
    return None


# -- the chain and its neighbours ---------------------------------------------------


def build_chain(
    options: Options,
    info: VideoInfo,
    crop: CropBox | None = None,
    hole_fill: HoleFill | None = None,
) -> StageChain:
    """The stages the options ask for, in their order, after ``crop`` (if any), configured
    for ``info``; a final resize when ``--size`` differs from what they give.

    ``hole_fill`` replaces the one the options' hole fill would make (a fill shared by
    several chains, or one that forwards to another process); closing the chain closes it.
    """
    from stages.base import StageChain
    from stages.upscale import Resize

    if hole_fill is not None and options.fill_name not in HOLE_FILLS:
        raise UsageError(f"--fill {options.fill_name} takes no hole fill")

    names, stages = [], []
    bars = _letterbox(options, info, crop)
    with _as_remaster_error(UsageError):
        if crop is not None:
            from stages.crop import CropStage

            names.append("crop")
            stages.append(CropStage(crop))
        for name in options.order():
            if not STAGES[name].wanted(options):
                continue
            names.append(name)
            # the picture between letterbox bars is widened to the whole output width
            built = replace(options, aspect=bars[0], size=None) if bars is not None else options
            if name == "outpaint" and hole_fill is not None:
                stages.append(_panorama(built, built.target_aspect, hole_fill))
            elif name == "outpaint":
                stages.append(STAGES[name].build(built))
            else:
                stages.append(STAGES[name].build(options))
            if name == "outpaint" and bars is not None:
                from stages.crop import PadStage

                names.append("pad")
                stages.append(PadStage(*bars[1:]))
    chain = StageChain(stages)
    try:
        with _as_remaster_error(InputError):  # the input's format does not suit a stage
            out = chain.configure(info)
        if "outpaint" in names:
            k = names.index("outpaint")
            before, after = chain.infos[k], chain.infos[k + 1]
            if after.width <= before.width:
                log.warning(
                    "the picture is %dx%d, already as wide as %s or wider: it is not widened "
                    "(remaster never narrows a picture)",
                    before.width,
                    before.height,
                    _ratio_text(options.target_aspect),
                )
        if options.size and (out.width, out.height) != tuple(options.size):
            resize = Resize(*options.size)
            infos = [*chain.infos, resize.configure(out)]
            chain = StageChain([*stages, resize])
            chain.infos = infos
    except BaseException:
        chain.close()
        raise
    return chain


def _letterbox(
    options: Options, info: VideoInfo, crop: CropBox | None
) -> tuple[Fraction, int, int] | None:
    """For a picture with top or bottom bars that gets widened: the aspect the picture is
    widened to (the output's width at the picture's height) and the rows of bar above and
    below it, put back after the widening so the output keeps the input's height."""
    if crop is None or crop.h == info.height or "outpaint" not in options.order():
        return None
    from stages.base import widened_width

    width = widened_width(crop.w, info.height, options.target_aspect)
    return Fraction(width, crop.h), crop.y, info.height - crop.y - crop.h


@contextlib.contextmanager
def _as_remaster_error(value_error: type[RemasterError]) -> Iterator[None]:
    """Turns what a stage raises while it is built or configured into the project's errors:
    a refused value into ``value_error``, missing weights or packages into ModelError."""
    try:
        yield
    except RemasterError:
        raise
    except ImportError as err:
        raise ModelError(f"a needed package is missing: {err}") from err
    except FileNotFoundError as err:
        raise ModelError(str(err)) from err
    except ValueError as err:
        raise value_error(str(err)) from err


def _ratio_text(ratio: Fraction) -> str:
    return f"{ratio.numerator}:{ratio.denominator}"


def make_hole_fill(options: Options) -> HoleFill | None:
    """The hole fill of the options' ``--fill`` (None: the classical one), made once so that
    several chains can share it (see ``hole_fill`` of :func:`build_chain`)."""
    if options.fill_name not in HOLE_FILLS:
        raise UsageError(f"--fill {options.fill_name} has no hole fill")
    return HOLE_FILLS[options.fill_name](options)


def crop_probe_frames(options: Options) -> int:
    """How many opening frames :func:`choose_crop` needs to see."""
    return CROP_PROBE_FRAMES if options.crop == "auto" else 0


def choose_crop(options: Options, probe: list[np.ndarray], info: VideoInfo) -> CropBox | None:
    """The active picture: detected in ``probe`` (``--crop auto``), given, or None."""
    from stages.crop import CropBox, detect_crop

    if options.crop == "none":
        return None
    if options.crop == "auto":
        box = detect_crop(probe) if probe else None
        if box is not None:
            log.info("active picture %d:%d:%d:%d (crop=auto)", box.w, box.h, box.x, box.y)
        return box
    box = CropBox.parse(options.crop)
    if not box.fits(info.width, info.height):
        raise InputError(
            f"--crop {options.crop} lies outside the {info.width}x{info.height} picture"
        )
    return box


def scene_buffer(options: Options, info: VideoInfo, chain: Stage) -> SceneBuffer:
    """The scene buffer feeding ``chain``: its detector, memory budget and read-ahead."""
    from stages.motion import same_shot
    from stream.scenes import SceneBuffer, make_detector

    detector = make_detector(options.scene_detector, options.scene_threshold)
    budget = options.memory << 20 if chain.buffers_scenes else FRAME_STAGE_BUDGET
    peek = chain.peek if chain.uses_peeks else None
    return SceneBuffer(detector, info.frame_rate, budget, on_settled=peek, same_shot=same_shot)


def encoder_settings(options: Options) -> EncoderSettings:
    """The video encoder settings of the options."""
    from stream.encode import EncoderSettings

    return EncoderSettings(
        options.codec, options.crf, options.preset, options.pix_fmt, dict(options.encoder_opt)
    )
