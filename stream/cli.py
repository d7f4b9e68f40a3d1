"""The `remaster` command: options, logging to stderr, wiring of the chain, exit codes."""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from stages.base import Stage, StageChain, VideoInfo, parse_aspect
from stages.motion import same_shot
from stream import errors
from stream.chain import Chain
from stream.decode import Decoder, open_input
from stream.encode import EncoderSettings, Sink, same_file
from stream.progress import ProgressBar
from stream.scenes import DEFAULT_BUDGET_BYTES, DETECTORS, SceneBuffer, make_detector

log = logging.getLogger("remaster")

# Opening frames examined by --crop auto (they stay in memory until the chain starts).
CROP_PROBE_FRAMES = 48

# Scene buffer for chains that work frame by frame (no stage needs a whole scene).
FRAME_STAGE_BUDGET = 1

STAGE_NAMES = ("outpaint", "upscale", "interpolate")

EPILOG = """\
examples:
  remaster old.mkv new.mp4                       file to file, 16:9, scene-panorama fill
  ffmpeg -i old.mkv -f nut - | remaster - - -f nut | ffmpeg -i - -c copy new.mkv
  remaster in.mp4 out.mkv --fill blur --crf 20   fast blurred pillarbox
  remaster in.mkv out.mkv --aspect 2.39:1 --dump-panoramas pano/
  remaster in.mkv out.mkv --fill sd --model ./sd-inpainting --prompt "cartoon background"
  remaster in.mkv out.mkv --process-order outpaint,upscale,interpolate --upscale 2 --interpolate 2

The output keeps the input's height and audio, subtitle and data streams (copied, not
re-encoded), each frame's timestamp, and the colour tags. stdout carries only video;
logs and the progress bar go to stderr.

exit codes:
  0 done   1 internal error   2 bad options   3 bad input   4 output cannot be written
  5 model or device missing   130 interrupted (output closed properly)
  141 downstream closed the pipe
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 854x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _aspect(text: str) -> Fraction:
    try:
        return parse_aspect(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _crop(text: str) -> str:
    if text in ("auto", "none"):
        return text
    parts = text.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"crop must be auto, none or W:H:X:Y, got {text!r}")
    return text


def _order(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in STAGE_NAMES]
    if bad or len(set(names)) != len(names) or not names:
        raise argparse.ArgumentTypeError(
            f"process order must list some of {','.join(STAGE_NAMES)} once each, got {text!r}"
        )
    return names


def _positive_fraction(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"expected a number like 24 or 30000/1001, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"encoder option must look like KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="remaster",
        description="Widen old 4:3 video to 16:9 (or any ratio): the new side areas show the "
        "real background of the same scene, gathered from the frames where the camera "
        "panned; only what no frame ever showed is generated. Works on files and as a pipe "
        "stage, in bounded memory, without temp files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="input video path, or - for stdin")
    p.add_argument("output", help="output video path, or - for stdout")
    geo = p.add_argument_group("geometry")
    size = geo.add_mutually_exclusive_group()
    size.add_argument(
        "--aspect",
        type=_aspect,
        default=Fraction(16, 9),
        help="target aspect ratio W:H, e.g. 16:9 (default), 2.39:1, 854:480; "
        "the height is kept and the width rounded to even",
    )
    size.add_argument("--size", type=_size, help="exact output size WxH, e.g. 854x480")
    geo.add_argument(
        "--crop",
        type=_crop,
        default="auto",
        help="auto (default): find a picture already boxed in black bars and "
        "treat it as the source; none; or W:H:X:Y as in ffmpeg's crop filter",
    )
    fill = p.add_argument_group("fill")
    fill.add_argument(
        "--fill",
        choices=("panorama", "blur", "sd"),
        default=None,
        help="panorama: real background of the scene, the rest filled classically "
        "(default without --model); sd: the rest generated by Stable Diffusion "
        "(default with --model); blur: blurred pillarbox (fast)",
    )
    fill.add_argument(
        "--mask",
        choices=("auto", "u2netp", "maskrcnn"),
        default="auto",
        help="foreground masks: auto (no weights: what disagrees with the scene's "
        "background), u2netp (ONNX, extra 'masks'), maskrcnn (CUDA torch)",
    )
    fill.add_argument(
        "--dump-panoramas",
        type=Path,
        metavar="DIR",
        help="write each scene's panorama and known-mask as PNG into DIR",
    )
    fill.add_argument(
        "--no-vignette",
        dest="vignette",
        action="store_false",
        help="panorama/sd: do not learn the lens falloff (vignetting) from the pans; by "
        "default it is divided out of the panorama and continued into the new sides",
    )
    fill.add_argument(
        "--scene-detector",
        choices=sorted(DETECTORS),
        default="content",
        help="PySceneDetect detector for cuts (default content); a detected cut across "
        "which one camera motion explains both frames (a fast pan over changing content) "
        "is dropped",
    )
    fill.add_argument("--scene-threshold", type=float, help="detector threshold")
    fill.add_argument(
        "--memory",
        type=int,
        default=DEFAULT_BUDGET_BYTES >> 20,
        metavar="MB",
        help="memory for the frames of one scene; longer scenes are processed in "
        "consecutive windows (default 512)",
    )
    sd = p.add_argument_group("Stable Diffusion fill (--fill sd)")
    sd.add_argument(
        "--model",
        help="local diffusers folder, .safetensors file, or hub id "
        "(downloads only with --allow-download)",
    )
    sd.add_argument("--prompt", default="", help="text describing the scene's background")
    sd.add_argument(
        "--negative-prompt", default="text, watermark, people, blurry", help="what to avoid"
    )
    sd.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    sd.add_argument("--guidance", type=float, default=7.5, help="guidance scale (default 7.5)")
    sd.add_argument("--scheduler", help="scheduler class name, e.g. DPMSolverMultistepScheduler")
    sd.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sd.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default)")
    sd.add_argument("--vram-gb", type=float, default=8.0, help="VRAM budget in GB (default 8)")
    sd.add_argument(
        "--allow-download",
        action="store_true",
        help="allow fetching the model from the Hugging Face hub",
    )
    sd.add_argument(
        "--allow-cpu",
        action="store_true",
        help="run diffusion on the CPU when no CUDA device is there (very slow)",
    )
    rs = p.add_argument_group("restoration stages")
    rs.add_argument(
        "--process-order",
        type=_order,
        default=list(STAGE_NAMES),
        help="order of the stages, any subset, e.g. outpaint,upscale,interpolate "
        "(default); a stage without its option is skipped",
    )
    rate = rs.add_mutually_exclusive_group()
    rate.add_argument(
        "--interpolate",
        type=int,
        metavar="N",
        help="multiply the frame rate by N (scene-aware: never across a cut)",
    )
    rate.add_argument("--fps", type=_positive_fraction, help="target frame rate, e.g. 60")
    rs.add_argument(
        "--interp-model",
        choices=("auto", "rife", "dis", "blend"),
        default="auto",
        help="auto: RIFE when torch and its weights are there, else DIS flow",
    )
    rs.add_argument("--upscale", type=int, choices=(2, 3, 4), help="super-resolution factor")
    rs.add_argument(
        "--upscale-model",
        choices=("auto", "esrgan", "lanczos"),
        default="auto",
        help="auto: Real-ESRGAN animevideov3 when installed, else Lanczos",
    )
    enc = p.add_argument_group("output encoding")
    enc.add_argument(
        "-f",
        "--format",
        dest="format",
        help="output container (default: from the extension; matroska for -)",
    )
    enc.add_argument("--input-format", help="input container, when it cannot be guessed")
    enc.add_argument("--codec", help="video encoder, e.g. libx264 (default), libx265, ffv1")
    enc.add_argument("--crf", type=int, help="encoder quality (x264 default 23)")
    enc.add_argument("--preset", help="encoder preset, e.g. veryfast, medium")
    enc.add_argument("--pix-fmt", help="output pixel format (default yuv420p)")
    enc.add_argument(
        "--encoder-opt",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra encoder option, repeatable",
    )
    out = p.add_argument_group("messages")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only errors")
    out.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    return p


def _configure_logging(quiet: bool, verbose: int) -> None:
    # --quiet: errors only; default: warnings; -v and more: everything.
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("remaster: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("libav", "av"):
        logging.getLogger(noisy).setLevel(logging.ERROR if verbose < 2 else logging.INFO)


def _outpaint_stage(args: argparse.Namespace, aspect: Fraction) -> Stage:
    fill = args.fill or ("sd" if args.model else "panorama")
    if fill == "blur":
        from stages.blur import BlurPillarbox

        return BlurPillarbox(aspect)
    from stages.outpaint import PanoramaOutpaint

    segmenter = None
    if args.mask == "u2netp":
        from stages.segment import U2NetpSegmenter

        segmenter = U2NetpSegmenter()
    elif args.mask == "maskrcnn":
        from stages.segment import MaskRCNNSegmenter

        segmenter = MaskRCNNSegmenter(device="cuda" if args.device == "auto" else args.device)
    hole_fill = None
    if fill == "sd":
        hole_fill = _sd_fill(args)
    return PanoramaOutpaint(
        aspect,
        fill=hole_fill,
        segmenter=segmenter,
        dump_dir=args.dump_panoramas,
        vignette=args.vignette,
    )


def _sd_fill(args: argparse.Namespace):
    from gpu.loading import DEFAULT_MODEL, load_inpaint_pipeline
    from gpu.sd_fill import StableDiffusionFill

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        pipe = load_inpaint_pipeline(
            args.model or DEFAULT_MODEL,
            device=device,
            allow_download=args.allow_download,
            allow_cpu=args.allow_cpu,
            scheduler=args.scheduler,
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise errors.ModelError(str(err)) from err
    return StableDiffusionFill(
        pipe,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        vram_budget_gb=args.vram_gb,
    )


def build_stages(args: argparse.Namespace, info: VideoInfo, crop) -> StageChain:
    """The stages the options ask for, in --process-order, with crop first."""
    stages: list[Stage] = []
    if crop is not None:
        from stages.crop import CropStage

        stages.append(CropStage(crop))
    aspect = Fraction(args.size[0], args.size[1]) if args.size else args.aspect
    for name in args.process_order:
        if name == "outpaint":
            stages.append(_outpaint_stage(args, aspect))
        elif name == "upscale" and args.upscale:
            from stages.upscale import UpscaleStage

            gpu_id = 0 if args.device.startswith("cuda") else -1
            stages.append(UpscaleStage(args.upscale, backend=args.upscale_model, gpu_id=gpu_id))
        elif name == "interpolate" and (args.interpolate or args.fps):
            from stages.interpolate import InterpolateStage

            device = "cpu" if args.device == "auto" else args.device
            stages.append(
                InterpolateStage(
                    factor=args.interpolate, fps=args.fps, backend=args.interp_model, device=device
                )
            )
    chain = StageChain(stages)
    if args.size:
        out = chain.configure(info)
        if (out.width, out.height) != tuple(args.size):
            from stages.upscale import Resize

            chain = StageChain([*stages, Resize(*args.size)])
    return chain


def _find_crop(args: argparse.Namespace, probe: list, info: VideoInfo):
    if args.crop == "none":
        return None
    from stages.crop import CropBox, detect_crop

    if args.crop == "auto":
        box = detect_crop([f.image for f in probe]) if probe else None
        if box is not None:
            log.info("active picture %d:%d:%d:%d (crop=auto)", box.w, box.h, box.x, box.y)
        return box
    box = CropBox.parse(args.crop)
    if box.x + box.w > info.width or box.y + box.h > info.height:
        raise errors.InputError(
            f"crop {args.crop} lies outside the {info.width}x{info.height} picture"
        )
    return box


def run(args: argparse.Namespace) -> int:
    """Run the whole job for parsed ``args``; returns the exit code."""
    if "-" not in (args.input, args.output) and same_file(args.input, args.output):
        raise errors.UsageError(f"output would overwrite the input {args.input!r}")
    if args.interpolate is not None and args.interpolate < 2:
        raise errors.UsageError(f"--interpolate must be 2 or more, got {args.interpolate}")
    source = open_input(args.input, args.input_format)
    try:
        info = source.info
        log.info(
            "input %dx%d, %s fps, %s frames",
            info.width,
            info.height,
            float(info.frame_rate) if info.frame_rate else "?",
            source.frame_count or "?",
        )
        side_packets: list = []
        decoder = Decoder(source, side_packets.append)
        frames = decoder.frames()
        probe = list(itertools.islice(frames, CROP_PROBE_FRAMES)) if args.crop == "auto" else []
        if args.crop == "auto" and not probe:
            raise errors.InputError(f"{args.input!r}: no video frame could be decoded")
        crop = _find_crop(args, probe, info)
        try:
            stage = build_stages(args, info, crop)
        except errors.RemasterError:
            raise
        except ValueError as err:  # an option value a stage refused
            raise errors.UsageError(str(err)) from err
        try:
            out_info = stage.configure(info)
            sink = Sink(
                args.output,
                out_info,
                source.colour,
                source.others,
                fmt=args.format,
                settings=EncoderSettings(
                    args.codec, args.crf, args.preset, args.pix_fmt, dict(args.encoder_opt)
                ),
                metadata=dict(source.container.metadata),
            )
            for packet in side_packets:
                sink.queue_packet(packet)
            decoder.on_packet = sink.queue_packet
            detector = make_detector(args.scene_detector, args.scene_threshold)
            budget = args.memory << 20 if stage.buffers_scenes else FRAME_STAGE_BUDGET
            scenes = SceneBuffer(
                detector, info.frame_rate, budget, on_settled=stage.peek, same_shot=same_shot
            )
            chained = _Frames(itertools.chain(probe, frames))
            chain = Chain(chained, scenes, stage, sink)
            with ProgressBar(source.frame_count, enabled=not args.quiet) as bar:
                chain.on_progress = bar.update
                stats = chain.run()
                bar.update(stats, force=True)
        finally:
            stage.close()
        log.info("%d frames in, %d out, %d scenes", stats.frames_in, stats.frames_out, stats.scenes)
        return errors.EXIT_OK
    finally:
        source.close()


class _Frames:
    """Adapts an iterator of decoded frames to the chain's ``frames()`` source."""

    def __init__(self, it):
        self._it = it

    def frames(self):
        return self._it


# glibc mallopt parameters: frames are allocated in the decoder thread and freed in
# others; with glibc's defaults the freed frame memory stays in per-thread arenas and peak
# RSS grows with the number of scene windows (measured: 0.95 GB for 30 s, 2.26 GB for
# 150 s of one long 640x480 scene). Two arenas and a fixed mmap threshold keep it flat.
# The threshold is 8 MiB, above a 1080p frame: at 128 KiB every frame-sized temporary was
# a fresh mmap, and the page faults cost the panorama CLI 20 % of its speed (300 frames
# 640x480: 13.9 s wall, 4.0 s system time against 11.2 s and 1.7 s).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MALLOC_SETTINGS = ((M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, 8 << 20), (M_TRIM_THRESHOLD, 64 << 20))


def _tune_malloc() -> None:
    """Apply MALLOC_SETTINGS where the C library is glibc; elsewhere do nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        for param, value in MALLOC_SETTINGS:
            libc.mallopt(param, value)
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `remaster` command."""
    _tune_malloc()
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet, args.verbose)
    try:
        return run(args)
    except errors.DownstreamClosedError:
        log.info("the output pipe was closed downstream; stopping")
        _silence_stdout()
        return errors.EXIT_BROKEN_PIPE
    except BrokenPipeError:
        _silence_stdout()
        return errors.EXIT_BROKEN_PIPE
    except errors.RemasterError as err:
        log.error("%s", err)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted; the output written so far was closed properly")
        return errors.EXIT_INTERRUPTED
    except (ImportError, ModuleNotFoundError) as err:
        log.error("a needed package is missing: %s", err)
        return errors.EXIT_MODEL
    except Exception:
        log.exception("internal error (please report it with the command line)")
        return errors.EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's exit flush cannot fail again."""
    try:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
