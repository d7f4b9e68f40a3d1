"""The output's other streams (audio, subtitles, data), interleaved with the video.

Packets are copied without re-encoding where the output format takes their codec. Audio
it cannot hold is re-encoded to the format's default audio codec, resampled to a rate,
sample format and frame size that encoder takes (Opus: 48 kHz). Packets wait until the
video has reached their time, so every stream stays in sync however long a scene is
buffered; an output cut short ends its side streams where its video ends.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Callable

import av
import av.error

log = logging.getLogger(__name__)

# Audio codecs a format takes where FFmpeg's own list is incomplete.
EXTRA_AUDIO_CODECS = {
    "mpegts": {"aac", "aac_latm", "mp2", "mp3", "ac3", "eac3", "opus", "dts", "truehd", "s302m"},
}

# Layout by channel count, for audio whose layout has no channel order.
STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def _seconds(packet: av.Packet, end: bool = False) -> float | None:
    """A packet's start (or end) time in seconds, None when it has no timestamp."""
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None or packet.time_base is None:
        return None
    if end:
        ts += packet.duration or 0
    return float(ts * packet.time_base)


def _copy(container: av.container.OutputContainer, stream: av.stream.Stream) -> av.stream.Stream:
    """Add a copy of ``stream`` to ``container``; audio without a channel order gets the
    standard layout for its channel count (mp4 cannot store "2 channels")."""
    if stream.type == "audio":
        ctx = stream.codec_context
        if not ctx.sample_rate or not ctx.layout or not ctx.layout.nb_channels:
            raise ValueError("no sample rate or no channels")
    out = container.add_stream_from_template(stream)
    out.time_base = stream.time_base
    if stream.type == "audio":
        layout = stream.codec_context.layout
        if all(c.name == "NONE" for c in layout.channels):
            standard = STANDARD_LAYOUTS.get(layout.nb_channels)
            if standard:
                out.codec_context.layout = standard
    return out


def encoder_rate(codec: av.Codec, rate: int) -> int:
    """``rate`` if the encoder takes it, else the nearest rate above (or its highest)."""
    rates = codec.audio_rates
    if not rates or rate in rates:
        return rate
    higher = [r for r in rates if r >= rate]
    return min(higher) if higher else max(rates)


class SideStreams:
    """The copied and re-encoded streams of one output container.

    ``mux`` writes one packet to the container (the sink's, which logs and skips a
    packet that cannot be written).
    """

    def __init__(
        self,
        container: av.container.OutputContainer,
        others: list[av.stream.Stream],
        mux: Callable[[av.Packet], None],
    ):
        self.container = container
        self._format = container.format.name.split(",")[0]
        self._mux = mux
        self._streams: dict[int, av.stream.Stream] = {}
        self._resamplers: dict[int, av.AudioResampler] = {}
        self._pending: deque[av.Packet] = deque()
        for stream in others:
            self._add(stream)

    # -- set-up ---------------------------------------------------------------------
    def _add(self, stream: av.stream.Stream) -> None:
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
            # First into a throw-away container of the same format: a stream the muxer
            # refuses (a damaged header's phantom stream, a layout it cannot store) must
            # not take the whole output down, and an added stream cannot be taken out.
            with av.open(io.BytesIO(), "w", format=self._format) as trial:
                _copy(trial, stream)
                trial.start_encoding()
            out = _copy(self.container, stream)
        except (ValueError, OSError, av.error.FFmpegError) as err:
            log.warning("%s stream %d (%s) left out: %s", stream.type, stream.index, name, err)
            return
        self._streams[stream.index] = out

    def _add_transcode(self, stream: av.stream.Stream) -> None:
        codec_name = self.container.default_audio_codec
        ctx = stream.codec_context
        try:
            codec = av.Codec(codec_name, "w")
            rate = encoder_rate(codec, ctx.sample_rate or 48000)
            # A standard layout for the channel count ("1 channels" has no order).
            channels = len(ctx.layout.channels) if ctx.layout else 2
            layout = STANDARD_LAYOUTS.get(channels, "stereo")
            formats = [f.name for f in codec.audio_formats or ()]
            source_format = ctx.format.name if ctx.format else None
            sample_format = source_format if source_format in formats else formats[0]
            # Opened on its own first: a stream added to the container cannot be taken out.
            trial = av.CodecContext.create(codec, "w")
            trial.sample_rate, trial.layout, trial.format = rate, layout, sample_format
            trial.open()
            out = self.container.add_stream(codec_name, rate=rate)
            out.layout, out.format = layout, sample_format
            out.codec_context.open()
        except (ValueError, IndexError, av.error.FFmpegError) as err:
            log.warning("audio stream %d (%s) left out: %s", stream.index, ctx.name, err)
            return
        resampled = f", resampled to {rate} Hz" if rate != ctx.sample_rate else ""
        log.warning(
            "audio stream %d (%s) cannot be stored in %s: re-encoded as %s%s",
            stream.index,
            ctx.name,
            self.container.format.name,
            codec_name,
            resampled,
        )
        self._streams[stream.index] = out
        self._resamplers[stream.index] = av.AudioResampler(
            format=sample_format,
            layout=layout,
            rate=rate,
            frame_size=out.codec_context.frame_size or None,
        )

    # -- writing --------------------------------------------------------------------
    def queue(self, packet: av.Packet) -> None:
        """Hold a packet until the video has reached its time."""
        if packet.stream.index in self._streams:
            self._pending.append(packet)

    def mux_until(self, seconds: float | None) -> None:
        """Write the held packets that start by ``seconds`` (all of them for None)."""
        while self._pending:
            start = _seconds(self._pending[0])
            if seconds is not None and start is not None and start > seconds:
                return
            self._write(self._pending.popleft())

    def cut_at(self, seconds: float) -> None:
        """End every stream at ``seconds``: write what ends by then, drop the rest."""
        while self._pending:
            packet = self._pending.popleft()
            start, end = _seconds(packet), _seconds(packet, end=True)
            if start is None or (start < seconds and (end is None or end <= seconds + 1e-3)):
                self._write(packet)
        self.flush()

    def flush(self) -> None:
        """Flush the re-encoders (after the last packet was written)."""
        for index, resampler in self._resamplers.items():
            out = self._streams[index]
            for frame in resampler.resample(None):
                self._encode(out, frame)
            self._encode(out, None)

    def _write(self, packet: av.Packet) -> None:
        index = packet.stream.index
        out = self._streams[index]
        if index not in self._resamplers:
            packet.stream = out
            self._mux(packet)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as err:
            log.warning("undecodable audio packet skipped: %s", err)
            return
        for frame in frames:
            for resampled in self._resamplers[index].resample(frame):
                self._encode(out, resampled)

    def _encode(self, out: av.stream.Stream, frame: av.AudioFrame | None) -> None:
        try:
            packets = out.encode(frame)
        except av.error.FFmpegError as err:
            log.warning("audio could not be re-encoded; a frame is skipped: %s", err)
            return
        for packet in packets:
            self._mux(packet)
