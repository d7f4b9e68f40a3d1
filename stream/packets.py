"""Encoded video between a worker and the output: the worker's encoder keeps its packets
(:class:`PacketCapture`), the driver writes them into the output with the side streams
(:class:`PacketSink`). Both are the single run's :class:`~stream.encode.Sink`, so the
encoder, its settings and the side-stream copying are that run's own code.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import av

from stream.encode import EncoderSettings, Sink
from stream.errors import OutputError

# A compressed video packet as it travels through Ray: data, pts, dts, duration, keyframe.
Packet = tuple[bytes, "int | None", "int | None", int, bool]


class PacketCapture(Sink):
    """The single run's encoder for a format; its packets are kept, not written."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.packets: list[Packet] = []
        super().__init__(*args, **kwargs)

    def _mux(self, packet: av.Packet) -> None:
        if packet.stream is self.video:
            self.packets.append(
                (bytes(packet), packet.pts, packet.dts, packet.duration or 0, packet.is_keyframe)
            )


class PacketSink(Sink):
    """The single run's output, written from encoded packets. The side streams are read
    from ``side`` (the input opened a second time) as the video advances, and handed on
    as the single run's decoder does (in file order, empty packets left out)."""

    def __init__(self, *args: Any, side: av.container.InputContainer, **kwargs: Any):
        self._no_b_frames = False
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            side.close()
            raise
        self._side_input = side
        video = side.streams.video[0].index  # every other stream is the decoder's "others"
        others = [s for s in side.streams if s.index != video]
        self._side = iter(side.demux(others) if others else ())
        self._side_end = -float("inf")  # time of the last side packet queued
        self._last_dts: int | None = None
        # the encoder is open: the codec headers every segment's encoder must match
        self.extradata = bytes(self.video.codec_context.extradata or b"")

    def _set_up(self, *args: Any) -> None:
        self._no_b_frames = args[-1]  # what the format allows, for worker_settings()
        super()._set_up(*args)

    @property
    def format_name(self) -> str:
        """The output container's format, e.g. ``matroska`` (a worker's encoder needs it)."""
        return self._format

    def worker_settings(self) -> EncoderSettings:
        """Settings that give a worker's encoder (which writes to no file, see
        :class:`PacketCapture`) exactly this output's encoder."""
        if not self._no_b_frames:
            return self.settings
        return replace(self.settings, options={"bf": "0", **self.settings.options})

    def _pull_side(self, seconds: float | None) -> None:
        while seconds is None or self._side_end <= seconds:
            packet = next(self._side, None)
            if packet is None:
                self._side_end = float("inf")
                return
            if not packet.size:
                continue
            ts = packet.dts if packet.dts is not None else packet.pts
            if ts is not None and packet.time_base is not None:
                self._side_end = float(ts * packet.time_base)
            self.queue_packet(packet)

    def write_segment(
        self, index: int, extradata: bytes, time_base: Fraction, packets: list[Packet]
    ) -> None:
        """Mux segment ``index``'s packets (in ``time_base``), with the side packets up to
        their time; its encoder's ``extradata`` must be this output's."""
        if extradata != self.extradata:
            raise OutputError(
                f"segment {index} was encoded with other codec headers than this "
                "machine's encoder (a different FFmpeg or encoder build on a worker?)"
            )
        for data, pts, dts, duration, key in packets:
            if dts is not None and self._last_dts is not None and dts <= self._last_dts:
                raise OutputError(
                    f"segment {index} starts at decode time {dts}, not after "
                    f"{self._last_dts}: the encoder's B-frame delay does not continue "
                    "across segments here (variable frame rate?); add --encoder-opt bf=0"
                )
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.duration = pts, dts, duration
            packet.time_base = time_base
            packet.is_keyframe = key
            packet.stream = self.video
            if dts is not None:
                seconds = float(dts * time_base)
                self._pull_side(seconds)
                self.side.mux_until(seconds)
                self._last_dts = dts
            self._mux(packet)
            self._packets_written += 1
            self.frames_written += 1
            if pts is not None:
                end = float((pts + duration) * time_base)
                self._video_end = max(self._video_end, end)

    def close(self, flush: bool = True, complete: bool = True) -> None:
        """As :meth:`Sink.close`; ``complete``: the side streams are read to their end
        (else they end where the video ends, as after Ctrl-C)."""
        try:
            if flush and complete and not self._closed:
                self._pull_side(None)
            super().close(flush, complete)
        finally:
            self._side_input.close()
