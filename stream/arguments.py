"""The `remaster` command line: the argparse parser, its choices and help taken from the
registries of :mod:`stream.wiring` and its defaults from :class:`stream.options.Options`.

Imports only the standard library at the top (the CLI must start without heavy imports).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

EPILOG = """\
examples:
  remaster old.mkv new.mp4                       file to file, 16:9, scene-panorama fill
  ffmpeg -i old.mkv -f nut - | remaster - - -f nut | ffmpeg -i - -c copy new.mkv
  remaster in.mp4 out.mkv --fill blur --crf 20   fast blurred pillarbox
  remaster in.mkv out.mkv --aspect 2.39:1 --dump-panoramas pano/
  remaster in.mkv out.mkv --fill sd --model ./sd-inpainting --prompt "cartoon background"
  remaster in.mkv out.mkv --process-order outpaint,upscale,interpolate --upscale 2 --interpolate 2
  remaster film.mkv out.mkv --workers 4          one film over 4 Ray workers, same output
  remaster batch 'season1/*.mkv' -o out/         every episode (see remaster batch --help)
  remaster old.mkv new.mp4 --repair              repair dust, scratches, flicker, grain; widen

The output keeps the input's height and audio, subtitle and data streams (copied, not
re-encoded), each frame's timestamp, and the colour tags. stdout carries only video;
logs and the progress bar go to stderr.

A picture is only ever widened: an input already as wide as the target (or wider) is
passed through at its width, with a warning.

exit codes:
  0    done
  1    internal error (a bug: the traceback is printed; please report it)
  2    bad options (also a value that cannot work, e.g. --memory 0, an odd --size, or
       --upscale with a --process-order that leaves upscale out)
  3    bad input (missing, not a video, no video stream, unknown format, an mp4 on stdin
       whose index is at the end)
  4    output cannot be written
  5    a model, package or device the options need is missing (weights, CUDA)
  130  interrupted with Ctrl-C (what was written is closed properly)
  141  downstream closed the pipe
"""


BATCH_DESCRIPTION = """\
Remaster many videos into one folder with Ray: each input is one task, run on this
machine or on a Ray cluster (--address). Finished outputs are skipped on a re-run; an
output appears under its final name only when it is complete."""

BATCH_EPILOG = """\
examples:
  remaster batch season1/*.mkv -o out/                      every episode, this machine
  remaster batch episodes.txt -o /shared/out --address head:6379 --fill sd --model ./sd

INPUT: video files, quoted globs ('season1/*.mkv'), URLs FFmpeg can open, or a .txt
file listing one path or URL a line (# comments; paths relative to the list's folder).
The output is OUTDIR/<input name><ext> (--ext, default the input's own suffix).

exit codes:
  0 every input done or skipped   1 some input failed (the summary names it and why)
  2 bad options   130 interrupted (unfinished outputs removed)
"""


def _add_batch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, globs, URLs or a .txt list")
    p.add_argument("-o", "--outdir", required=True, type=Path, help="folder for the outputs")
    p.add_argument("--ext", help="output file suffix, e.g. .mkv (default: the input's)")
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="inputs processed at once (default: the CPUs Ray offers, one per input)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times an input is tried again after its worker died or it failed "
        "unexpectedly; a bad input is not retried (default 2)",
    )


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 854x480, got {text!r}") from None
    return w, h


def _aspect(text: str) -> Fraction:
    from stages.base import parse_aspect

    try:
        return parse_aspect(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _order(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


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


def build_parser(batch: bool = False) -> argparse.ArgumentParser:
    """The command line (``batch``: that of `remaster batch`, many inputs into a folder);
    choices, defaults and stage/fill help come from the registries."""
    from stream.options import INTERP_MODELS, MASKS, UPSCALE_FACTORS, UPSCALE_MODELS, Options
    from stream.scenes import DETECTORS
    from stream.wiring import FILLS, STAGES

    default = Options()
    p = argparse.ArgumentParser(
        prog="remaster batch" if batch else "remaster",
        description=BATCH_DESCRIPTION
        if batch
        else "Widen old 4:3 video to 16:9 (or any ratio): the new side areas show the "
        "real background of the same scene, gathered from the frames where the camera "
        "panned; only what no frame ever showed is generated. Works on files and as a pipe "
        "stage, in bounded memory, without temp files.",
        epilog=BATCH_EPILOG if batch else EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if batch:
        _add_batch_arguments(p)
    else:
        p.add_argument("input", help="input video path or URL, or - for stdin")
        p.add_argument("output", help="output video path, or - for stdout")
    geo = p.add_argument_group("geometry")
    size = geo.add_mutually_exclusive_group()
    size.add_argument(
        "--aspect",
        type=_aspect,
        default=default.aspect,
        help="target aspect ratio W:H, e.g. 16:9 (default), 2.39:1, 854:480; "
        "the height is kept and the width rounded to even (never narrower than the input)",
    )
    size.add_argument("--size", type=_size, help="exact output size WxH, both even, e.g. 854x480")
    geo.add_argument(
        "--crop",
        default=default.crop,
        help="auto (default): find a picture already boxed in black bars and "
        "treat it as the source; none; or W:H:X:Y as in ffmpeg's crop filter",
    )
    fill = p.add_argument_group("fill")
    fill.add_argument(
        "--fill",
        choices=tuple(FILLS),
        default=None,
        help="; ".join(f"{e.name}: {e.help}" for e in FILLS.values())
        + " (default: sd with --model, else panorama)",
    )
    fill.add_argument(
        "--mask",
        choices=MASKS,
        default=default.mask,
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
        "--keep-gate",
        action="store_true",
        help="panorama/sd: keep an old film's own gate (dark rounded corners and border "
        "inside the picture) as it is; by default the fill runs under it, feathered, so the "
        "widened frame reads as one picture",
    )
    fill.add_argument(
        "--scene-detector",
        choices=sorted(DETECTORS),
        default=default.scene_detector,
        help="PySceneDetect detector for cuts (default content); a detected cut across "
        "which one camera motion explains both frames (a fast pan over changing content) "
        "is dropped",
    )
    fill.add_argument("--scene-threshold", type=float, help="detector threshold")
    fill.add_argument(
        "--memory",
        type=int,
        default=default.memory,
        metavar="MB",
        help="memory for the frames of one scene, above 0; longer scenes are processed in "
        f"consecutive windows (default {default.memory})",
    )
    fill.add_argument(
        "--segment-seconds",
        type=float,
        default=default.segment_seconds,
        metavar="S",
        help="a new segment starts at the first cut after S seconds of video: estimates "
        "that span scenes (lens falloff, film gate) start afresh there, and --workers "
        f"spreads segments over workers; 0: one segment (default {default.segment_seconds:g})",
    )
    sd = p.add_argument_group("Stable Diffusion fill (--fill sd)")
    sd.add_argument(
        "--model",
        help="local diffusers folder, .safetensors file, or hub id "
        "(downloads only with --allow-download)",
    )
    sd.add_argument("--prompt", default=default.prompt, help="text describing the background")
    sd.add_argument("--negative-prompt", default=default.negative_prompt, help="what to avoid")
    sd.add_argument("--steps", type=int, default=default.steps, help="denoising steps (20)")
    sd.add_argument("--guidance", type=float, default=default.guidance, help="guidance (7.5)")
    sd.add_argument("--scheduler", help="scheduler class name, e.g. DPMSolverMultistepScheduler")
    sd.add_argument("--seed", type=int, default=default.seed, help="random seed (default 0)")
    sd.add_argument("--vram-gb", type=float, default=default.vram_gb, help="VRAM budget (8 GB)")
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
    dev = p.add_argument_group("models and devices")
    dev.add_argument(
        "--device",
        default=default.device,
        help="device of every model (diffusion, RIFE, Real-ESRGAN's Vulkan GPU of the same "
        "index, Mask R-CNN): cuda, cuda:1, cpu, or auto (default: cuda when torch sees one)",
    )
    rs = p.add_argument_group("restoration stages")
    rs.add_argument(
        "--process-order",
        type=_order,
        default=None,
        help="order of the stages, any subset of "
        + ", ".join(
            f"{e.name} ({e.help}{', with ' + e.option if e.option else ''})"
            for e in STAGES.values()
        )
        + f"; default {','.join(STAGES)}. A listed stage without its option is skipped; "
        "an option whose stage is left out is an error",
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
        choices=INTERP_MODELS,
        default=default.interp_model,
        help="auto: RIFE when torch and its weights are there, else DIS flow",
    )
    rs.add_argument("--upscale", type=int, choices=UPSCALE_FACTORS, help="super-resolution factor")
    rs.add_argument(
        "--upscale-model",
        choices=UPSCALE_MODELS,
        default=default.upscale_model,
        help="auto: Real-ESRGAN animevideov3 when installed, else Lanczos",
    )
    _repair_arguments(p)
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
    ray = p.add_argument_group("scale-out on Ray (pip install 'remaster[cluster]')")
    if not batch:
        ray.add_argument(
            "--workers",
            type=int,
            metavar="N",
            help="split the input at scene cuts into segments processed by N Ray workers "
            "at once; the output is the same as without it (see --segment-seconds)",
        )
    ray.add_argument(
        "--address",
        metavar="ADDR",
        help="join this Ray cluster (host:port of `ray start --head`); default: a Ray "
        "started for this command on this machine, on the loopback interface only",
    )
    out = p.add_argument_group("messages")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only errors")
    out.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    return p


def _parts(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _repair_arguments(p: argparse.ArgumentParser) -> None:
    """The old-film repair options (defaults: the repair stage's own)."""
    from stages.repair import RepairSettings
    from stream.options import REPAIR_PARTS

    default = RepairSettings()
    rp = p.add_argument_group("old-film repair (--repair)")
    rp.add_argument(
        "--repair",
        action="store_true",
        help="repair old film before anything else: dust and dirt, vertical scratches, "
        "brightness flicker and grain, from each frame's motion-compensated neighbours "
        "(never across a cut)",
    )
    rp.add_argument(
        "--repair-skip",
        type=_parts,
        default=(),
        metavar="PARTS",
        help=f"parts of the repair left out, any of {','.join(REPAIR_PARTS)}",
    )
    rp.add_argument(
        "--grain-strength",
        type=float,
        metavar="S",
        help="how much difference between aligned frames still counts as grain and is "
        f"averaged out (0: none; default {default.grain_strength})",
    )
    rp.add_argument(
        "--dust-threshold",
        type=float,
        metavar="K",
        help="a speck must differ from its neighbours by K times the grain's sigma "
        f"(default {default.dust_threshold}; lower finds fainter dust, risks more)",
    )
    rp.add_argument(
        "--flicker-radius",
        type=int,
        metavar="N",
        help="frames either side whose brightness trend a frame is brought to "
        f"(default {default.flicker_radius})",
    )
