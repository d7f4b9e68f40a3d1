"""The output's video encoder: codec, pixel format and options, opened before any work.

The encoder is opened when the output is set up, so every value it refuses (``--crf``,
``--preset``, ``--pix-fmt``, ``--encoder-opt``, a ``--size`` it cannot encode) and every
option it does not know becomes a usage error naming the option, before a frame is
decoded, instead of an output error half way through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.error

from stages.base import VideoInfo
from stream.decode import ColourTags
from stream.errors import OutputError, UsageError
from stream.sidedata import hdr_encoder_options

log = logging.getLogger(__name__)

# The output's pixel format unless --pix-fmt says otherwise: what every player decodes.
DEFAULT_PIX_FMT = "yuv420p"

# Encoder options set unless the user sets them. x265 prints a banner and statistics
# straight to stderr at its default log level.
QUIET_OPTIONS = {"libx265": {"x265-params": "log-level=error"}}


@dataclass
class EncoderSettings:
    """What the user chose for the video encoder."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def _join_params(first: str | None, second: str) -> str:
    """Two ``key=value:key=value`` strings as one (the second's keys are parsed last)."""
    return f"{first}:{second}" if first else second


def encoder_options(
    codec: str, settings: EncoderSettings, colour: ColourTags, no_b_frames: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """The options to open ``codec`` with, and for each one the user gave, its spelling."""
    options = {"bf": "0"} if no_b_frames else {}
    options.update(QUIET_OPTIONS.get(codec, {}))
    for key, value in hdr_encoder_options(codec, colour.hdr).items():
        options[key] = _join_params(options.get(key), value)
    spelled: dict[str, str] = {}
    for key, value in settings.options.items():
        joins = key.endswith("-params") and key in options
        options[key] = _join_params(options[key], value) if joins else value
        spelled[key] = f"--encoder-opt {key}={value}"
    if settings.crf is not None:
        options["crf"] = str(settings.crf)
        spelled["crf"] = f"--crf {settings.crf}"
    if settings.preset:
        options["preset"] = settings.preset
        spelled["preset"] = f"--preset {settings.preset}"
    return options, spelled


def choose_pix_fmt(codec: av.Codec, requested: str | None) -> str:
    """``requested`` if the encoder takes it, else yuv420p (or the encoder's first)."""
    formats = [f.name for f in codec.video_formats or ()]
    if requested:
        try:
            av.VideoFormat(requested)
        except ValueError:
            raise UsageError(
                f"--pix-fmt {requested!r} is not a pixel format (`ffmpeg -pix_fmts` lists them)"
            ) from None
        if formats and requested not in formats:
            raise UsageError(
                f"--pix-fmt {requested}: {codec.name} cannot encode it; it takes "
                f"{', '.join(formats)}"
            )
        return requested
    if not formats or DEFAULT_PIX_FMT in formats:
        return DEFAULT_PIX_FMT
    log.info("%s does not take %s; writing %s", codec.name, DEFAULT_PIX_FMT, formats[0])
    return formats[0]


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err)


def _try_open(
    codec: str, width: int, height: int, pix_fmt: str, info: VideoInfo, options: dict[str, str]
) -> BaseException | None:
    """Open a throw-away encoder with these settings; the error, or None when it opens."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = info.time_base
    ctx.framerate = info.frame_rate or Fraction(25)
    ctx.options = dict(options)
    try:
        ctx.open()
    except (av.error.FFmpegError, ValueError) as err:
        return err
    return None


def _refusal(
    stream: av.video.stream.VideoStream,
    error: BaseException,
    options: dict[str, str],
    spelled: dict[str, str],
    requested_pix_fmt: str | None,
    info: VideoInfo,
) -> UsageError:
    """Which setting the encoder refused, found by opening it with one setting at a time."""
    codec, w, h, pix_fmt = stream.codec_context.name, stream.width, stream.height, stream.pix_fmt
    own = {k: v for k, v in options.items() if k not in spelled}
    if _try_open(codec, w, h, pix_fmt, info, own) is not None:
        if requested_pix_fmt and _try_open(codec, w, h, DEFAULT_PIX_FMT, info, own) is None:
            return UsageError(f"--pix-fmt {pix_fmt} is refused by {codec}: {_reason(error)}")
        return UsageError(
            f"{codec} cannot encode a {w}x{h} picture ({_reason(error)}); "
            "choose a smaller --size or --aspect, or another --codec"
        )
    for key, spelling in spelled.items():
        if (err := _try_open(codec, w, h, pix_fmt, info, {**own, key: options[key]})) is not None:
            return UsageError(f"{spelling} is refused by {codec}: {_reason(err)}")
    names = ", ".join(spelled.values())
    return UsageError(f"{codec} refuses these options together ({names}): {_reason(error)}")


def add_video_stream(
    container: av.container.OutputContainer,
    codec: str,
    size: tuple[int, int],
    info: VideoInfo,
    colour: ColourTags,
    settings: EncoderSettings,
    no_b_frames: bool,
) -> av.video.stream.VideoStream:
    """Add the video stream to ``container`` and open its encoder, or say what is wrong."""
    try:
        av.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        raise UsageError(f"--codec {codec!r}: no such video encoder") from None
    rate = info.frame_rate or Fraction(25)
    try:
        stream = container.add_stream(codec, rate=rate)
    except (ValueError, av.error.FFmpegError) as err:
        raise OutputError(f"cannot write {codec} video into this format: {err}") from err
    stream.width, stream.height = size
    stream.time_base = info.time_base
    ctx = stream.codec_context
    ctx.time_base = info.time_base
    ctx.framerate = rate
    ctx.thread_type = "AUTO"
    stream.pix_fmt = choose_pix_fmt(ctx.codec, settings.pix_fmt)
    for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
        if value := getattr(colour, name):
            try:
                setattr(ctx, name, value)
            except (ValueError, AttributeError):
                log.debug("could not tag %s=%s", name, value)
    options, spelled = encoder_options(codec, settings, colour, no_b_frames)
    ctx.options = dict(options)
    try:
        ctx.open()
    except (av.error.FFmpegError, ValueError) as err:
        raise _refusal(stream, err, options, spelled, settings.pix_fmt, info) from err
    unknown = [spelled[k] for k in ctx.options if k in spelled]  # left over: not used
    if unknown:
        raise UsageError(f"{', '.join(unknown)}: {codec} has no such option")
    return stream
