"""Open the output (path or stdout), encode frames, and interleave the other streams.

The whole output is set up before any work: the video encoder opened (a refused option is
a usage error) and the path checked (one that cannot be written is an output error); the
file itself is created with the first packet, so a run that fails before leaves none.
Video keeps the input's time base and every frame's pts (variable frame rate works).
Audio, subtitle and data packets go through :mod:`stream.side_streams`, interleaved by
time with the video. An output that ends early (Ctrl-C, an error) holds every frame
encoded so far, its side streams end with its video, and a file that got no frame at all
is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np

from stages.base import VideoInfo
from stream.decode import ColourTags
from stream.errors import DownstreamClosedError, OutputError, UsageError
from stream.side_streams import SideStreams
from stream.video_encoder import EncoderSettings, add_video_stream

__all__ = ["EncoderSettings", "Sink", "rgb_frame", "same_file"]

log = logging.getLogger(__name__)

# Output format when writing to stdout without -f: carries any codec, audio and subtitles,
# needs no seeking, and ffmpeg, GStreamer and players all read it from a pipe.
DEFAULT_PIPE_FORMAT = "matroska"

# Video encoder per output format when --codec is not given.
DEFAULT_CODECS = {
    "yuv4mpegpipe": "rawvideo",
    "webm": "libvpx-vp9",
    "rawvideo": "rawvideo",
}
DEFAULT_CODEC = "libx264"

# Fragmented mp4 is the only mp4 that can be written to a pipe.
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
MP4_FAMILY = ("mp4", "mov", "ipod")

# B-frames give the first frames negative decode times. These formats store them, so
# every pts stays exactly as in the input ...
KEEP_TIMESTAMPS = {"avoid_negative_ts": "disabled"}
KEEPS_NEGATIVE_TS = ("matroska", "webm", "mpegts")
# ... while nut and fragmented mp4 cannot, and would shift the video against the input
# (fragmented mp4 even against the audio): there the encoder makes no B-frames unless
# the user sets ``--encoder-opt bf=N``.
NO_NEGATIVE_TS = ("nut",)
EXTENSION_FORMATS = {
    ".mkv": "matroska",
    ".mka": "matroska",
    ".webm": "webm",
    ".nut": "nut",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".mts": "mpegts",
}


class PacketError(OutputError):
    """The muxer refused one packet (the output itself may still be fine)."""


class _PipeWriter:
    """stdout as a file object whose write errors become our own errors.

    Writes go to the unbuffered file underneath when there is one (FFmpeg buffers
    already), so nothing is left in Python's buffer to fail again at exit."""

    def __init__(self, stream: BinaryIO):
        stream.flush()
        self._stream = getattr(stream, "raw", stream)

    def write(self, data) -> int:
        view = memoryview(data)
        try:
            while view:
                n = self._stream.write(view)
                view = view[n if n is not None else 0 :]
        except (BrokenPipeError, ConnectionResetError) as err:
            raise DownstreamClosedError("the reader of the output closed the pipe") from err
        except ValueError as err:  # write to closed file
            raise DownstreamClosedError("the output was closed") from err
        except OSError as err:
            raise OutputError(f"cannot write the output to stdout: {err.strerror}") from err
        return len(data)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as err:
            raise DownstreamClosedError("the reader of the output closed the pipe") from err
        except OSError as err:
            raise OutputError(f"cannot write the output to stdout: {err.strerror}") from err


def _own_error(err: BaseException) -> OutputError | None:
    """Our error (a closed pipe, a full disk) behind an FFmpeg error from the write callback."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OutputError | DownstreamClosedError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _guess_format(path: str, fmt: str | None) -> str | None:
    if fmt:
        return fmt
    if path == "-":
        return DEFAULT_PIPE_FORMAT
    return None  # from the extension


def same_file(a: str, b: str) -> bool:
    """True when paths ``a`` and ``b`` name one existing file (never raises)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def rgb_frame(image: np.ndarray) -> av.VideoFrame:
    """An rgb24 frame holding a copy of ``image`` (uint8 (H, W, 3)).

    Copied by numpy into the frame's plane rather than by ``VideoFrame.from_ndarray``,
    which holds the GIL for the whole copy and, measured, halved the throughput of the
    stage thread running beside the encoder; this is also about 3x faster."""
    h, w = image.shape[:2]
    frame = av.VideoFrame(w, h, "rgb24")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)
    rows[:, : w * 3] = image.reshape(h, w * 3)
    return frame


def _open_target(path: str, stdout: BinaryIO | None) -> str | _PipeWriter:
    if path == "-":
        stream = stdout if stdout is not None else sys.stdout.buffer
        if stream.isatty():
            raise UsageError(
                "refusing to write video to the terminal: redirect it (`> out.mkv`), pipe it "
                "(`| ffplay -`), or give an output path instead of -"
            )
        return _PipeWriter(stream)
    try:
        parent = Path(path).resolve().parent
        folder = parent.is_dir()
    except OSError as err:  # e.g. a name longer than the file system allows
        raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from err
    if not folder:
        raise OutputError(f"output folder does not exist: {parent}")
    _check_writable(path)
    return path


def _check_writable(path: str) -> None:
    """Fail now if ``path`` cannot be created or written, without changing anything: the
    file itself is created when the first packet is written, so a run that fails before
    leaves no file behind."""
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            return  # opening it would wait for a reader
    except FileNotFoundError:
        pass
    except OSError as err:
        raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from err
    existed = os.path.lexists(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o666))
        if not existed:
            os.unlink(path)
    except OSError as err:
        raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from err


class Sink:
    """An output container with one encoded video stream and copied side streams."""

    def __init__(
        self,
        path: str,
        info: VideoInfo,
        colour: ColourTags,
        others: list[av.stream.Stream],
        fmt: str | None = None,
        settings: EncoderSettings | None = None,
        metadata: dict[str, str] | None = None,
        stdout: BinaryIO | None = None,
    ):
        self.path = path
        self.settings = settings or EncoderSettings()
        self.info = info
        self.colour = colour
        self.frames_written = 0
        self._packets_written = 0
        self._started = False
        self._video_end = 0.0  # seconds: where the last written frame ends
        self._closed = False
        fmt = _guess_format(path, fmt)
        name = fmt or EXTENSION_FORMATS.get(Path(path).suffix.lower())
        fragmented = path == "-" and name in MP4_FAMILY
        options = dict(FRAGMENTED_MP4) if fragmented else {}
        if name in KEEPS_NEGATIVE_TS:
            options.update(KEEP_TIMESTAMPS)
        target = _open_target(path, stdout)
        try:
            self.container = av.open(target, "w", format=fmt, container_options=options)
        except ValueError as err:
            raise OutputError(
                f"unknown output format for {path!r} ({fmt or 'from extension'}): "
                f"{err}; pass -f FORMAT (e.g. -f matroska)"
            ) from err
        except OSError as err:
            raise OutputError(f"cannot write {path!r}: {err}") from err
        try:
            self._set_up(info, colour, others, metadata, fragmented or name in NO_NEGATIVE_TS)
        except BaseException:
            self._discard()
            raise

    # -- set-up ---------------------------------------------------------------------
    def _set_up(
        self,
        info: VideoInfo,
        colour: ColourTags,
        others: list[av.stream.Stream],
        metadata: dict[str, str] | None,
        no_b_frames: bool,
    ) -> None:
        if metadata:
            self.container.metadata.update(metadata)
        self.width = info.width + info.width % 2
        self.height = info.height + info.height % 2
        if (self.width, self.height) != (info.width, info.height):
            log.warning(
                "odd picture size %dx%d padded to %dx%d for the encoder",
                info.width,
                info.height,
                self.width,
                self.height,
            )
        self._format = self.container.format.name.split(",")[0]  # e.g. "matroska"
        codec = self.settings.codec or DEFAULT_CODECS.get(self._format, DEFAULT_CODEC)
        self.video = add_video_stream(
            self.container,
            codec,
            (self.width, self.height),
            info,
            colour,
            self.settings,
            no_b_frames,
        )
        self.side = SideStreams(self.container, others, self._mux_copied)

    def queue_packet(self, packet: av.Packet) -> None:
        """Hold a side-stream packet until the video has reached its time."""
        self.side.queue(packet)

    # -- writing --------------------------------------------------------------------
    def _mux(self, packet: av.Packet) -> None:
        self._started = True  # the first packet opens the file and writes the header
        try:
            self.container.mux(packet)
        except (OutputError, DownstreamClosedError):
            raise
        except BrokenPipeError as err:
            raise DownstreamClosedError("the reader of the output closed the pipe") from err
        except (av.error.FFmpegError, OSError) as err:
            if own := _own_error(err):
                raise own from None
            raise PacketError(f"writing {self.path!r} failed: {err}") from err

    def _mux_copied(self, packet: av.Packet) -> None:
        try:
            self._mux(packet)
        except PacketError as err:
            log.warning("a copied packet could not be written and is skipped: %s", err)

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one RGB frame at ``pts`` (input time base) and mux what comes out."""
        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = self._fit(image)
        frame = rgb_frame(image)
        colour = self.colour
        frame = frame.reformat(
            format=self.video.pix_fmt,
            dst_colorspace=colour.colorspace or None,
            dst_color_range=colour.color_range or None,
        )
        frame.pts = pts
        frame.time_base = self.info.time_base
        self._encode(frame)
        self.frames_written += 1
        step = 1 / self.info.frame_rate if self.info.frame_rate else Fraction(0)
        self._video_end = max(self._video_end, float(pts * self.info.time_base + step))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if h > self.height or w > self.width:
            raise ValueError(f"frame {w}x{h} larger than the output {self.width}x{self.height}")
        return np.pad(image, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            packets = self.video.encode(frame)
        except av.error.FFmpegError as err:
            if own := _own_error(err):
                raise own from None
            raise OutputError(f"video encoder failed: {err}") from err
        for packet in packets:
            if packet.dts is not None:
                self.side.mux_until(float(packet.dts * packet.time_base))
            self._mux(packet)
            self._packets_written += 1

    def close(self, flush: bool = True, complete: bool = True) -> None:
        """Flush the encoder and the held side packets, and write the trailer.

        ``flush``: encode the frames the encoder still holds (False after a write error).
        ``complete``: the whole input was written; otherwise the side streams end where
        the video ends. A file that got no video at all is removed."""
        if self._closed:
            return
        self._closed = True
        try:
            if flush:
                self._encode(None)
                if complete:
                    self.side.mux_until(None)
                    self.side.flush()
                else:
                    self.side.cut_at(self._video_end)
        finally:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError) as err:
                own = _own_error(err)
                if flush and own is not None:
                    raise own from None
                if flush:
                    raise OutputError(f"closing {self.path!r} failed: {err}") from err
            finally:
                if not self._packets_written:
                    self._remove_file()

    def _discard(self) -> None:
        """Close a container that failed while being set up, and remove its file."""
        self._closed = True
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            self.container.close()
        self._remove_file()

    def _remove_file(self) -> None:
        """Remove the file we wrote that holds no video (one we never opened stays)."""
        if self.path == "-" or not self._started:
            return
        try:
            if Path(self.path).is_file():
                Path(self.path).unlink()
                log.info("no video was written: %s removed", self.path)
        except OSError as err:
            log.debug("could not remove %s: %s", self.path, err)
