"""Open the output (path or stdout), encode frames, and copy the other streams' packets.

Audio, subtitle and data packets are copied without re-encoding (audio the output
format cannot hold is re-encoded to its default codec) and interleaved by time with the
video, so audio stays in sync however long a scene is buffered. Video
keeps the input's time base and every frame's pts (variable frame rate works).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np

from stages.base import VideoInfo
from stream.decode import ColourTags
from stream.errors import DownstreamClosedError, OutputError

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

# Audio codecs a format takes where FFmpeg's own list is incomplete.
EXTRA_AUDIO_CODECS = {
    "mpegts": {"aac", "aac_latm", "mp2", "mp3", "ac3", "eac3", "opus", "dts", "truehd", "s302m"},
}

# Layout by channel count, for audio whose layout has no channel order.
STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}

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


@dataclass
class EncoderSettings:
    """What the user chose for the video encoder."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    options: dict[str, str] = field(default_factory=dict)


class _PipeWriter:
    """stdout as a file object whose writes turn a closed reader into our own error."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def write(self, data) -> int:
        try:
            self._stream.write(data)
        except (BrokenPipeError, ConnectionResetError) as err:
            raise DownstreamClosedError("the reader of the output closed the pipe") from err
        except ValueError as err:  # write to closed file
            raise DownstreamClosedError("the output was closed") from err
        return len(data)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as err:
            raise DownstreamClosedError("the reader of the output closed the pipe") from err


def _closed_downstream(err: BaseException) -> DownstreamClosedError | None:
    """The DownstreamClosedError behind an FFmpeg error raised from our write callback."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, DownstreamClosedError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _guess_format(path: str, fmt: str | None) -> str | None:
    if fmt:
        return fmt
    if path == "-":
        return DEFAULT_PIPE_FORMAT
    return None  # from the extension


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
        fmt = _guess_format(path, fmt)
        name = fmt or EXTENSION_FORMATS.get(Path(path).suffix.lower())
        fragmented = path == "-" and name in MP4_FAMILY
        self._no_b_frames = fragmented or name in NO_NEGATIVE_TS
        options = dict(FRAGMENTED_MP4) if fragmented else {}
        if name in KEEPS_NEGATIVE_TS:
            options.update(KEEP_TIMESTAMPS)
        if path == "-":
            target = _PipeWriter(stdout if stdout is not None else sys.stdout.buffer)
        else:
            parent = Path(path).resolve().parent
            if not parent.is_dir():
                raise OutputError(f"output folder does not exist: {parent}")
            target = path
        try:
            self.container = av.open(target, "w", format=fmt, container_options=options)
        except ValueError as err:
            raise OutputError(
                f"unknown output format for {path!r} ({fmt or 'from extension'}): "
                f"{err}; pass -f FORMAT (e.g. -f matroska)"
            ) from err
        except OSError as err:
            raise OutputError(f"cannot write {path!r}: {err}") from err
        if metadata:
            self.container.metadata.update(metadata)
        self.info = info
        self.colour = colour
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
        self.video = self._add_video()
        self._streams: dict[int, av.stream.Stream] = {}
        self._transcoders: dict[int, av.AudioResampler] = {}
        for stream in others:
            self._add_copy(stream)
        self._pending: deque[av.Packet] = deque()
        self.frames_written = 0
        self._closed = False

    # -- set-up ---------------------------------------------------------------------
    def _add_video(self) -> av.video.stream.VideoStream:
        codec = self.settings.codec or DEFAULT_CODECS.get(self._format, DEFAULT_CODEC)
        rate = self.info.frame_rate or Fraction(25)
        try:
            stream = self.container.add_stream(codec, rate=rate)
        except (ValueError, av.error.FFmpegError) as err:
            raise OutputError(f"unknown video codec {codec!r}: {err}") from err
        stream.width, stream.height = self.width, self.height
        stream.time_base = self.info.time_base
        ctx = stream.codec_context
        ctx.time_base = self.info.time_base
        ctx.framerate = rate
        ctx.thread_type = "AUTO"
        stream.pix_fmt = self._pix_fmt(ctx, codec)
        options = {"bf": "0"} if self._no_b_frames else {}
        options.update(self.settings.options)
        if self.settings.crf is not None:
            options["crf"] = str(self.settings.crf)
        if self.settings.preset:
            options["preset"] = self.settings.preset
        stream.options = options
        colour = self.colour
        for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
            value = getattr(colour, name)
            if value:
                try:
                    setattr(ctx, name, value)
                except (ValueError, AttributeError):
                    log.debug("could not tag %s=%s", name, value)
        return stream

    def _pix_fmt(self, ctx, codec: str) -> str:
        """The user's choice, else the input's format if the encoder takes it, else 4:2:0."""
        if self.settings.pix_fmt:
            return self.settings.pix_fmt
        formats = [f.name for f in (ctx.codec.video_formats or [])]
        source = self.colour.pix_fmt
        if source and (not formats or source in formats) and codec != "rawvideo":
            return source
        if not formats or "yuv420p" in formats:
            return "yuv420p"
        log.info("%s does not take yuv420p; writing %s", codec, formats[0])
        return formats[0]

    def _add_copy(self, stream: av.stream.Stream) -> None:
        name = stream.codec_context.name if stream.codec_context else None
        supported = self.container.supported_codecs | EXTRA_AUDIO_CODECS.get(self._format, set())
        if name and supported and name not in supported:
            if stream.type == "audio" and self.container.default_audio_codec != "none":
                self._add_transcode(stream)
                return
            log.warning(
                "%s stream %d (%s) cannot be stored in %s; it is left out",
                stream.type,
                stream.index,
                name,
                self.container.format.name,
            )
            return
        try:
            out = self.container.add_stream_from_template(stream)
        except (ValueError, av.error.FFmpegError) as err:
            log.warning("%s stream %d (%s) left out: %s", stream.type, stream.index, name, err)
            return
        out.time_base = stream.time_base
        self._streams[stream.index] = out

    def _add_transcode(self, stream: av.stream.Stream) -> None:
        codec = self.container.default_audio_codec
        ctx = stream.codec_context
        try:
            out = self.container.add_stream(codec, rate=ctx.sample_rate or 48000)
            # A standard layout for the channel count ("1 channels" has no order).
            channels = len(ctx.layout.channels) if ctx.layout else 2
            out.layout = STANDARD_LAYOUTS.get(channels, "stereo")
            formats = out.codec_context.codec.audio_formats or ()
            if formats:
                out.format = formats[0].name
        except (ValueError, av.error.FFmpegError) as err:
            log.warning("audio stream %d (%s) left out: %s", stream.index, ctx.name, err)
            return
        log.warning(
            "audio stream %d (%s) cannot be stored in %s: re-encoded as %s",
            stream.index,
            ctx.name,
            self.container.format.name,
            codec,
        )
        self._streams[stream.index] = out
        self._transcoders[stream.index] = av.AudioResampler(
            format=out.format, layout=out.layout, rate=out.rate
        )

    def _mux_transcoded(self, packet: av.Packet, out: av.stream.Stream) -> None:
        resampler = self._transcoders[packet.stream.index]
        try:
            frames = packet.decode() if packet is not None else []
        except av.error.FFmpegError as err:
            log.warning("undecodable audio packet skipped: %s", err)
            return
        for frame in frames:
            for resampled in resampler.resample(frame):
                for encoded in out.encode(resampled):
                    self._mux_copied(encoded)

    def _flush_transcoders(self) -> None:
        for index, resampler in self._transcoders.items():
            out = self._streams[index]
            for resampled in resampler.resample(None):
                for encoded in out.encode(resampled):
                    self._mux_copied(encoded)
            for encoded in out.encode(None):
                self._mux_copied(encoded)

    # -- writing --------------------------------------------------------------------
    def queue_packet(self, packet: av.Packet) -> None:
        """Hold a side-stream packet until the video has reached its time."""
        if packet.stream.index in self._streams:
            self._pending.append(packet)

    def _mux(self, packet: av.Packet) -> None:
        try:
            self.container.mux(packet)
        except DownstreamClosedError:
            raise
        except BrokenPipeError as err:
            raise DownstreamClosedError("the reader of the output closed the pipe") from err
        except av.error.FFmpegError as err:
            if closed := _closed_downstream(err):
                raise closed from None
            raise OutputError(f"writing {self.path!r} failed: {err}") from err

    def _mux_side_until(self, seconds: float | None) -> None:
        while self._pending:
            packet = self._pending[0]
            ts = packet.dts if packet.dts is not None else packet.pts
            known = seconds is not None and ts is not None and packet.time_base is not None
            if known and float(ts * packet.time_base) > seconds:
                return
            self._pending.popleft()
            out = self._streams[packet.stream.index]
            if packet.stream.index in self._transcoders:
                self._mux_transcoded(packet, out)
                continue
            packet.stream = out
            self._mux_copied(packet)

    def _mux_copied(self, packet: av.Packet) -> None:
        try:
            self._mux(packet)
        except OutputError as err:
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

    def _fit(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if h > self.height or w > self.width:
            raise ValueError(f"frame {w}x{h} larger than the output {self.width}x{self.height}")
        return np.pad(image, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            packets = self.video.encode(frame)
        except av.error.FFmpegError as err:
            if closed := _closed_downstream(err):
                raise closed from None
            raise OutputError(f"video encoder failed: {err}") from err
        for packet in packets:
            if packet.dts is not None:
                self._mux_side_until(float(packet.dts * packet.time_base))
            self._mux(packet)

    def close(self, flush: bool = True) -> None:
        """Flush the encoder and the held side packets, and write the trailer."""
        if self._closed:
            return
        self._closed = True
        try:
            if flush:
                self._encode(None)
                self._mux_side_until(None)
                self._flush_transcoders()
        finally:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError) as err:
                if closed := _closed_downstream(err):
                    if flush:
                        raise closed from None
                elif flush:
                    raise OutputError(f"closing {self.path!r} failed: {err}") from err
