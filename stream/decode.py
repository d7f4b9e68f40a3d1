"""Open the input (path or stdin), describe it, and decode it in a producer thread.

Video packets are decoded into RGB frames, turned upright as the display matrix says
(as ffmpeg does by default); every other stream's packets (audio, subtitles, data) are
passed on untouched, for the encoder to copy. Corrupt packets are skipped with a warning
and a truncated stream ends the video where it ends, so a damaged file still produces a
complete, playable output.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np

from stages.base import Frame, VideoInfo
from stream.errors import InputError, InputNotFoundError
from stream.sidedata import UPRIGHT, HdrMetadata, Orientation, hdr_of, orientation_of
from stream.stdin import stdin_target

log = logging.getLogger(__name__)

# Side-stream packets held while looking for the first video frame: far more than any
# real file interleaves before its first picture, small against the memory budget.
FIRST_FRAME_SIDE_BYTES = 64 << 20

# An input FFmpeg opens by protocol: a URL scheme (two letters at least, so that a Windows
# drive letter is no scheme) with //, or FFmpeg's file: protocol.
URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]+://|file:)")

# Errors a damaged stream raises while demuxing or decoding.
DAMAGE = (av.error.InvalidDataError, av.error.UndefinedError, ValueError, OSError)


@dataclass(frozen=True)
class ColourTags:
    """Colour description of the input video, carried over to the output."""

    pix_fmt: str | None = None  # the input's, for information: the output's is yuv420p
    colorspace: int = 0
    color_range: int = 0
    color_primaries: int = 0
    color_trc: int = 0
    hdr: HdrMetadata | None = None


@dataclass
class Source:
    """An opened input: its container, video stream and description.

    ``early_frames`` and ``early_packets`` are what was read to find the first picture
    (and with it the orientation and HDR metadata); the :class:`Decoder` hands them on
    first.
    """

    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    info: VideoInfo
    colour: ColourTags
    duration_s: float | None
    frame_count: int | None
    others: list[av.stream.Stream] = field(default_factory=list)
    orientation: Orientation = UPRIGHT
    packets: Iterator[av.Packet] | None = None
    early_frames: list[av.VideoFrame] = field(default_factory=list)
    early_packets: list[av.Packet] = field(default_factory=list)
    skipped_packets: int = 0
    pipe_fd: int | None = None  # the read end FFmpeg reads stdin from, closed after it

    def close(self) -> None:
        self.container.close()
        if self.pipe_fd is not None:
            os.close(self.pipe_fd)
            self.pipe_fd = None


def _check_path(path: str) -> None:
    try:
        exists, is_dir = Path(path).exists(), Path(path).is_dir()
    except OSError as err:  # e.g. a name longer than the file system allows
        raise InputError(f"cannot open input {path!r}: {err.strerror or err}") from err
    if not exists:
        raise InputNotFoundError(f"input not found: {path}")
    if is_dir:
        raise InputError(f"input is a directory, not a video file: {path}")


def is_url(path: str) -> bool:
    """True for ``scheme://...`` or ``file:...``, which FFmpeg opens rather than the OS."""
    return bool(URL.match(path))


def open_input(path: str, fmt: str | None = None, stdin: BinaryIO | None = None) -> Source:
    """Open ``path`` (or ``-`` for stdin), decode its first picture, and describe it."""
    target: str | io.RawIOBase
    pipe_fd = None
    if path == "-":
        target, pipe_fd = stdin_target(stdin)
    elif is_url(path):
        target = path  # FFmpeg's protocols (http, ftp, file:, ...) open it
    else:
        _check_path(path)
        target = path
    try:
        source = _open(path, target, fmt)
    except BaseException:
        if pipe_fd is not None:
            os.close(pipe_fd)
        raise
    source.pipe_fd = pipe_fd
    return source


def _open(path: str, target: str | io.RawIOBase, fmt: str | None) -> Source:
    try:
        # Damaged or foreign metadata must not stop the video: undecodable bytes replaced.
        container = av.open(target, "r", format=fmt, metadata_errors="replace")
    except av.error.FileNotFoundError as err:
        raise InputNotFoundError(f"input not found: {path}") from err
    except ValueError as err:  # av's InvalidDataError, unknown format, ...
        what = f"format {fmt!r} " if fmt else ""
        raise InputError(f"cannot read {path!r} as a {what}video: {err}") from err
    except (OSError, av.error.FFmpegError) as err:
        raise InputError(f"cannot open {path!r}: {err}") from err
    try:
        return _describe(path, container)
    except BaseException:
        container.close()
        raise


def _describe(path: str, container: av.container.InputContainer) -> Source:
    if not container.streams.video:
        raise InputError(f"{path!r} has no video stream")
    video = container.streams.video[0]
    ctx = video.codec_context
    # Slice threads only: with frame threads a corrupt packet's error comes back on a
    # later packet, and PyAV (which cannot receive without sending) drops that packet's
    # frames too, so damaged input would lose good frames that ffmpeg keeps.
    ctx.thread_type = "SLICE"
    if not ctx.width or not ctx.height:
        raise InputError(f"{path!r}: the video stream has no picture size")
    others = [s for s in container.streams if s.index != video.index]
    rate = video.average_rate or video.guessed_rate
    info = VideoInfo(
        width=ctx.width,
        height=ctx.height,
        time_base=video.time_base or Fraction(1, 25),
        frame_rate=Fraction(rate) if rate else None,
    )
    source = Source(container, video, info, ColourTags(), None, None, others)
    source.packets = container.demux()
    first = _first_frame(path, source)
    source.orientation = orientation_of(first)
    width, height = first.width, first.height
    if source.orientation.swaps_axes:
        width, height = height, width
    source.info = info.with_size(width, height)
    source.colour = ColourTags(
        ctx.pix_fmt or first.format.name,
        int(first.colorspace or ctx.colorspace or 0),
        int(first.color_range or ctx.color_range or 0),
        int(first.color_primaries or ctx.color_primaries or 0),
        int(first.color_trc or ctx.color_trc or 0),
        hdr_of(first),
    )
    if source.orientation != UPRIGHT:
        log.info("input is displayed turned (%s): decoded upright", source.orientation)
    duration = None
    if video.duration and video.time_base:
        duration = float(video.duration * video.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    source.duration_s = duration
    frames = video.frames or (round(duration * rate) if duration and rate else None)
    source.frame_count = frames or None
    return source


def _first_frame(path: str, source: Source) -> av.VideoFrame:
    """Read until the first picture decodes; keep what was read for the Decoder."""
    held = 0
    for packet in _packets(source):
        if packet.stream.index != source.video.index:
            source.early_packets.append(packet)
            held += packet.size
            if held > FIRST_FRAME_SIDE_BYTES:
                raise InputError(
                    f"{path!r}: no video frame in the first {FIRST_FRAME_SIDE_BYTES >> 20} MiB "
                    "of the other streams"
                )
            continue
        source.early_frames.extend(_decode(source, packet))
        if source.early_frames:
            return source.early_frames[0]
    source.early_frames.extend(_decode(source, None))
    if source.early_frames:
        return source.early_frames[0]
    raise InputError(f"{path!r}: no video frame could be decoded")


def _packets(source: Source) -> Iterator[av.Packet]:
    """The input's packets in file order until its end or the point where it is broken."""
    assert source.packets is not None
    while True:
        try:
            yield next(source.packets)
        except (StopIteration, av.error.EOFError):
            return
        except DAMAGE as err:
            log.warning("input ends early (truncated or unreadable): %s", err)
            return


def _decode(source: Source, packet: av.Packet | None) -> list[av.VideoFrame]:
    """Decode one video packet (None: flush); a corrupt one is counted and skipped."""
    try:
        return list(source.video.decode(packet))
    except av.error.EOFError:
        return []
    except DAMAGE as err:
        source.skipped_packets += 1
        log.debug("corrupt packet skipped: %s", err)
        return []


class Decoder:
    """Demuxes ``source`` and decodes its video, for the producer thread.

    :meth:`frames` yields upright RGB :class:`~stages.base.Frame` objects with strictly
    increasing pts; packets of the other streams go to ``on_packet`` as they are read,
    in file order.
    """

    def __init__(self, source: Source, on_packet: Callable[[av.Packet], None]):
        self.source = source
        self.on_packet = on_packet
        self._last_pts: int | None = None
        self._step = self._frame_step()

    @property
    def skipped_packets(self) -> int:
        return self.source.skipped_packets

    def _frame_step(self) -> int:
        info = self.source.info
        if info.frame_rate:
            return max(1, round(1 / (info.frame_rate * info.time_base)))
        return 1

    def frames(self) -> Iterator[Frame]:
        source = self.source
        video = source.video.index
        other = {s.index for s in source.others}
        early, source.early_frames = source.early_frames, []
        for packet in source.early_packets:
            self._hand_on(packet, other)
        source.early_packets = []
        for frame in early:
            yield self._frame(frame)
        del early
        for packet in _packets(source):
            if packet.stream.index == video:
                for frame in _decode(source, packet):
                    yield self._frame(frame)
            else:
                self._hand_on(packet, other)
        for frame in _decode(source, None):
            yield self._frame(frame)
        if source.skipped_packets:
            log.warning("skipped %d corrupt video packet(s)", source.skipped_packets)

    def _hand_on(self, packet: av.Packet, other: set[int]) -> None:
        if packet.stream.index in other and packet.size:
            self.on_packet(packet)

    def _frame(self, frame: av.VideoFrame) -> Frame:
        return Frame(self._to_rgb(frame), self._pts(frame))

    def _pts(self, frame: av.VideoFrame) -> int:
        pts = frame.pts
        if pts is None:
            pts = frame.dts if frame.dts is not None else None
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            # Missing or non-increasing timestamps (damaged input): keep the order.
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        self._last_pts = pts
        return pts

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        colour = self.source.colour
        info = self.source.info
        turned = self.source.orientation
        width, height = info.width, info.height
        if turned.swaps_axes:
            width, height = height, width
        if frame.width != width or frame.height != height:
            # Mid-stream size change: keep one geometry for the whole output.
            frame = frame.reformat(width, height)
        image = frame.to_ndarray(
            format="rgb24",
            src_colorspace=colour.colorspace or None,
            src_color_range=colour.color_range or None,
        )
        return turned.apply(image) if turned != UPRIGHT else image
