"""Open the input (path or stdin), describe it, and decode it in a producer thread.

Video packets are decoded into RGB frames; every other stream's packets (audio,
subtitles, data) are passed on untouched, for the encoder to copy. Corrupt packets are
skipped with a warning and a truncated stream ends the video where it ends, so a
damaged file still produces a complete, playable output.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np

from stages.base import VideoInfo
from stream.errors import InputError, InputNotFoundError

log = logging.getLogger(__name__)

# Bytes of stdin looked at before opening, to reject an mp4 whose index is at the end.
MP4_PEEK_BYTES = 1 << 16
# An input FFmpeg opens by protocol: a URL scheme (two letters at least, so that a Windows
# drive letter is no scheme) with //, or FFmpeg's file: protocol.
URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]+://|file:)")


@dataclass(frozen=True)
class ColourTags:
    """Colour description of the input video, carried over to the output."""

    pix_fmt: str | None = None  # kept when the output encoder supports it
    colorspace: int = 0
    color_range: int = 0
    color_primaries: int = 0
    color_trc: int = 0


@dataclass
class Source:
    """An opened input: its container, video stream and description."""

    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    info: VideoInfo
    colour: ColourTags
    duration_s: float | None
    frame_count: int | None
    others: list[av.stream.Stream] = field(default_factory=list)

    def close(self) -> None:
        self.container.close()


@dataclass
class DecodedFrame:
    """A decoded picture (RGB) and its pts in the video stream's time base."""

    image: np.ndarray
    pts: int


class _ReplayReader(io.RawIOBase):
    """Reads ``head`` first, then the rest of ``stream``: lets us peek at a pipe."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def mp4_index_at_end(head: bytes) -> bool:
    """True when the top-level boxes show media data before the index (``moov``).

    Such a file needs seeking, which a pipe cannot do. Fragmented mp4 (``moof``) and
    files with ``moov`` first are fine.
    """
    pos = 0
    while pos + 8 <= len(head):
        size, kind = struct.unpack(">I4s", head[pos : pos + 8])
        if kind in (b"moov", b"moof"):
            return False
        if kind == b"mdat":
            return True
        if size == 1 and pos + 16 <= len(head):
            size = struct.unpack(">Q", head[pos + 8 : pos + 16])[0]
        if size < 8:
            return False
        pos += size
    return False


def _read_head(stream: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def is_url(path: str) -> bool:
    """True for ``scheme://...`` or ``file:...``, which FFmpeg opens rather than the OS."""
    return bool(URL.match(path))


def open_input(path: str, fmt: str | None = None, stdin: BinaryIO | None = None) -> Source:
    """Open ``path`` (or ``-`` for stdin) and describe its first video stream."""
    target: str | io.RawIOBase
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        head = _read_head(stream, MP4_PEEK_BYTES)
        if not head:
            raise InputError("no input on stdin: nothing was piped in")
        if head[4:8] == b"ftyp" and mp4_index_at_end(head):
            raise InputError(
                "the mp4 on stdin has its index at the end, which cannot be read from a pipe; "
                "pipe a streamable format instead (e.g. `ffmpeg -i in.mp4 -c copy -f nut -` or "
                "`-f matroska -`), remux with `-movflags +faststart`, or pass the file path"
            )
        target = _ReplayReader(head, stream)
    elif is_url(path):
        target = path  # FFmpeg's protocols (http, ftp, file:, ...) open it
    else:
        if not Path(path).exists():
            raise InputNotFoundError(f"input not found: {path}")
        if Path(path).is_dir():
            raise InputError(f"input is a directory, not a video file: {path}")
        target = path
    try:
        container = av.open(target, "r", format=fmt)
    except av.error.FileNotFoundError as err:
        raise InputNotFoundError(f"input not found: {path}") from err
    except ValueError as err:  # av's InvalidDataError, unknown format, ...
        what = f"format {fmt!r} " if fmt else ""
        raise InputError(f"cannot read {path!r} as a {what}video: {err}") from err
    except OSError as err:
        raise InputError(f"cannot open {path!r}: {err}") from err
    if not container.streams.video:
        container.close()
        raise InputError(f"{path!r} has no video stream")
    video = container.streams.video[0]
    ctx = video.codec_context
    ctx.thread_type = "AUTO"
    if not ctx.width or not ctx.height:
        container.close()
        raise InputError(f"{path!r}: the video stream has no picture size")
    rate = video.average_rate or video.guessed_rate
    info = VideoInfo(
        width=ctx.width,
        height=ctx.height,
        time_base=video.time_base or Fraction(1, 25),
        frame_rate=Fraction(rate) if rate else None,
    )
    colour = ColourTags(
        ctx.pix_fmt,
        int(ctx.colorspace or 0),
        int(ctx.color_range or 0),
        int(ctx.color_primaries or 0),
        int(ctx.color_trc or 0),
    )
    duration = None
    if video.duration and video.time_base:
        duration = float(video.duration * video.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    frames = video.frames or (round(duration * rate) if duration and rate else None)
    others = [s for s in container.streams if s.index != video.index]
    return Source(container, video, info, colour, duration, frames or None, others)


class Decoder:
    """Demuxes ``source`` and decodes its video, for the producer thread.

    :meth:`frames` yields :class:`DecodedFrame` objects; packets of the other streams go
    to ``on_packet`` as they are read, in file order.
    """

    def __init__(self, source: Source, on_packet: Callable[[av.Packet], None]):
        self.source = source
        self.on_packet = on_packet
        self.skipped_packets = 0
        self._last_pts: int | None = None
        self._step = self._frame_step()

    def _frame_step(self) -> int:
        info = self.source.info
        if info.frame_rate:
            return max(1, round(1 / (info.frame_rate * info.time_base)))
        return 1

    def frames(self) -> Iterator[DecodedFrame]:
        video = self.source.video
        other = {s.index for s in self.source.others}
        packets = self.source.container.demux()
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.EOFError:
                break
            except (av.error.InvalidDataError, OSError) as err:
                log.warning("input ends early (truncated or unreadable): %s", err)
                break
            if packet.stream.index in other:
                if packet.size:
                    self.on_packet(packet)
                continue
            if packet.stream.index != video.index:
                continue
            yield from self._decode(packet)
        yield from self._decode(None)
        if self.skipped_packets:
            log.warning("skipped %d corrupt video packet(s)", self.skipped_packets)

    def _decode(self, packet: av.Packet | None) -> Iterator[DecodedFrame]:
        try:
            decoded = self.source.video.decode(packet)
        except (av.error.InvalidDataError, av.error.UndefinedError, ValueError) as err:
            self.skipped_packets += 1
            log.debug("corrupt packet skipped: %s", err)
            return
        except av.error.EOFError:
            return
        for frame in decoded:
            yield DecodedFrame(self._to_rgb(frame), self._pts(frame))

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
        image = frame.to_ndarray(
            format="rgb24",
            src_colorspace=colour.colorspace or None,
            src_color_range=colour.color_range or None,
        )
        info = self.source.info
        if image.shape[0] != info.height or image.shape[1] != info.width:
            # Mid-stream size change: keep one geometry for the whole output.
            image = frame.reformat(info.width, info.height, "rgb24").to_ndarray()
        return image
