"""``remaster IN OUT --workers N``: one long input over many Ray workers, the output of
one process (the design is in :mod:`stream.segments`).

The driver decodes the input once to plan the segments (:func:`~stream.segments.plan_segments`)
and hands each one to a Ray task as soon as its end cut is settled. A task decodes its
segment from a seek, runs a fresh stage chain built by :mod:`stream.wiring` from the same
options, and encodes it with the single run's encoder, set up by the same
:class:`~stream.encode.Sink` code; its first frame is a keyframe. The compressed packets
come back through Ray's object store (no temp files). The driver checks that every
segment's encoder wrote the same codec headers (extradata) as its own, and muxes the
packets in order, with the timestamps they carry, into the output; audio, subtitles and
data streams are copied by the single run's side-stream code, read by a second demuxer
of the input as the video advances.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av

from stages.base import VideoInfo
from stream.decode import DecodedFrame, Decoder, Source, open_input
from stream.encode import EncoderSettings, Sink
from stream.errors import InputError, OutputError, UsageError
from stream.options import Options
from stream.segments import SegmentPlan, SegmentRule, SegmentScenes, fingerprint, plan_segments

log = logging.getLogger(__name__)

# Segments planned or running, not yet muxed, per worker: enough to keep every worker busy
# while the driver waits for the oldest; bounds the encoded packets held in Ray's store.
AHEAD_PER_WORKER = 2
# How far before a segment's first frame a worker seeks first (seconds); doubled until
# the seek lands at or before the frame (demuxers without an exact index land late).
SEEK_MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class SegmentJob:
    """Everything a worker needs for one segment (sent through Ray)."""

    path: str
    input_format: str | None
    options: Options
    crop: Any  # CropBox | None
    plan: SegmentPlan
    out_format: str  # the output container's format (the encoder depends on it)
    settings: EncoderSettings
    hole_fill: Any = None  # gpu.actors.ActorFill with --fill sd
    tally: Any = None  # progress actor handle


@dataclass
class SegmentResult:
    """A segment's encoded video."""

    index: int
    extradata: bytes
    time_base: Fraction
    packets: list[tuple[bytes, int | None, int | None, int, bool]]  # data pts dts dur key
    frames: int
    seconds: float


# -- the worker -------------------------------------------------------------------------


class _Capture(Sink):
    """The single run's encoder for a format; its packets are kept, not written."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.packets: list[tuple[bytes, int | None, int | None, int, bool]] = []
        super().__init__(*args, **kwargs)

    def _mux(self, packet: av.Packet) -> None:
        if packet.stream is self.video:
            self.packets.append(
                (bytes(packet), packet.pts, packet.dts, packet.duration or 0, packet.is_keyframe)
            )


def _seek_frames(job: SegmentJob) -> tuple[Source, Iterator[DecodedFrame]]:
    """The input opened and positioned so that its next frame is the segment's first."""
    plan = job.plan
    margin = SEEK_MARGIN_SECONDS
    while True:
        source = open_input(job.path, job.input_format)
        frames = Decoder(source, lambda packet: None).frames()
        if plan.start > 0:
            tb = source.video.time_base or Fraction(1, 25)
            target = int(plan.first_pts - margin / tb)
            source.container.seek(max(target, 0), stream=source.video, backward=True)
        first = next(frames, None)
        while first is not None and first.pts < plan.first_pts:
            first = next(frames, None)
        if first is not None and first.pts == plan.first_pts:
            return source, itertools.chain([first], frames)
        source.close()
        if plan.start == 0 or target <= 0:
            raise InputError(
                f"{job.path}: frame {plan.start} (pts {plan.first_pts}) cannot be found by "
                "seeking; run without --workers"
            )
        margin *= 2


def _checked(frames: Iterator[DecodedFrame], plan: SegmentPlan) -> Iterator[DecodedFrame]:
    """The frames the segment's buffer is fed, each of the segment checked against the
    driver's decode."""
    for k, frame in enumerate(frames):
        if plan.feed is not None and k >= plan.feed:
            return
        if k < plan.frames and fingerprint(frame.image) != plan.prints[k]:
            raise InputError(
                f"frame {plan.start + k} decodes differently after a seek (the input "
                "cannot be decoded frame-exactly from a keyframe); run without --workers"
            )
        yield frame


def run_segment(job: SegmentJob) -> SegmentResult:
    """Process one segment as the single run does (a Ray task)."""
    from stream import wiring
    from stream.chain import Chain
    from stream.tally import Reporter

    began = time.monotonic()
    plan = job.plan
    source, frames = _seek_frames(job)
    try:
        info = source.info
        chain = wiring.build_chain(job.options, info, job.crop, hole_fill=job.hole_fill)
        try:
            sink = _Capture(
                os.devnull, chain.infos[-1], source.colour, [], job.out_format, job.settings
            )
            scenes = SegmentScenes(wiring.scene_buffer(job.options, info, chain), plan)
            reporter = Reporter(job.tally, plan.index, f"segment {plan.index}", plan.frames)
            run = Chain(_Feed(_checked(frames, plan)), scenes, chain, sink, reporter.update)
            stats = run.run()
            reporter.done(stats)
        finally:
            chain.close()
    finally:
        source.close()
    extradata = bytes(sink.video.codec_context.extradata or b"")
    tb = sink.video.codec_context.time_base
    seconds = time.monotonic() - began
    return SegmentResult(plan.index, extradata, tb, sink.packets, stats.frames_in, seconds)


class _Feed:
    """Adapts an iterator of decoded frames to the chain's ``frames()`` source."""

    def __init__(self, frames: Iterator[DecodedFrame]):
        self._frames = frames

    def frames(self) -> Iterator[DecodedFrame]:
        return self._frames


# -- the driver -------------------------------------------------------------------------


class PacketSink(Sink):
    """The single run's output, written from encoded packets. The side streams are read
    from ``side`` (the input opened a second time) as the video advances, and handed on
    as the single run's decoder does (in file order, empty packets left out)."""

    def __init__(self, *args: Any, side: av.container.InputContainer, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._side_input = side
        copied = [s for s in side.streams if s.index in self._streams]
        self._side = iter(side.demux(copied) if copied else ())
        self._side_end = -float("inf")  # time of the last side packet queued
        self.extradata = b""
        self._last_dts: int | None = None

    @property
    def format_name(self) -> str:
        """The output container's format, e.g. ``matroska`` (a worker's encoder needs it)."""
        return self._format

    def start(self) -> bytes:
        """Open the encoder and write the header; the codec headers segments must match."""
        self.container.start_encoding()
        self.extradata = bytes(self.video.codec_context.extradata or b"")
        return self.extradata

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

    def write_segment(self, result: SegmentResult) -> None:
        if result.extradata != self.extradata:
            raise OutputError(
                f"segment {result.index} was encoded with other codec headers than this "
                "machine's encoder (a different FFmpeg or encoder build on a worker?)"
            )
        for data, pts, dts, duration, key in result.packets:
            if dts is not None and self._last_dts is not None and dts <= self._last_dts:
                raise OutputError(
                    f"segment {result.index} starts at decode time {dts}, not after "
                    f"{self._last_dts}: the encoder's B-frame delay does not continue "
                    "across segments here (variable frame rate?); add --encoder-opt bf=0"
                )
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.duration = pts, dts, duration
            packet.time_base = result.time_base
            packet.is_keyframe = key
            packet.stream = self.video
            if dts is not None:
                seconds = float(dts * result.time_base)
                self._pull_side(seconds)
                self._mux_side_until(seconds)
                self._last_dts = dts
            self._mux(packet)
            self.frames_written += 1

    def close(self, flush: bool = True) -> None:
        try:
            if flush and not self._closed:
                self._pull_side(None)
            super().close(flush)
        finally:
            self._side_input.close()


def run_split(args: argparse.Namespace, options: Options) -> int:
    """The whole ``--workers`` job for parsed ``args``; returns the exit code."""
    from stream import cluster, wiring
    from stream.errors import EXIT_INTERRUPTED, EXIT_OK
    from stream.tally import Board

    if args.input == "-":
        raise UsageError("--workers needs a file or URL input (workers seek in it), not stdin")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    source = open_input(args.input, args.input_format)
    try:
        info = source.info
        decoder = Decoder(source, lambda packet: None)
        frames = decoder.frames()
        probe = list(itertools.islice(frames, wiring.crop_probe_frames(options)))
        crop = wiring.choose_crop(options, [f.image for f in probe], info)
        with cluster.connect(args.address, cpus=args.workers) as ray:
            fill = cluster.hole_fill(ray, options)
            chain = wiring.build_chain(options, info, crop, hole_fill=fill)
            try:
                scenes = wiring.scene_buffer(options, info, chain)
                out_info = chain.infos[-1]
            finally:
                chain.close()
            scenes.on_settled = None
            settings = wiring.encoder_settings(options)
            sink = _open_sink(args, out_info, source, settings)
            settings = _worker_settings(sink, settings)
            job = SegmentJob(
                args.input, args.input_format, options, crop, None, sink.format_name, settings,
                fill,
            )  # fmt: skip
            rule = SegmentRule.of(options.segment_seconds, info.frame_rate)
            plans = plan_segments(itertools.chain(probe, frames), scenes, rule)
            with Board(ray, source.frame_count, "segments", enabled=not args.quiet) as board:
                job = replace(job, tally=board.tally)
                try:
                    _distribute(ray, plans, job, sink, args.workers, board)
                except KeyboardInterrupt:
                    sink.close()
                    log.error("interrupted; the output written so far was closed properly")
                    return EXIT_INTERRUPTED
            sink.close()
        return EXIT_OK
    finally:
        source.close()


def _open_sink(
    args: argparse.Namespace, info: VideoInfo, source: Source, settings: EncoderSettings
) -> PacketSink:
    sink = PacketSink(
        args.output,
        info,
        source.colour,
        source.others,
        fmt=args.format,
        settings=settings,
        metadata=dict(source.container.metadata),
        side=av.open(args.input, "r", format=args.input_format),
    )
    sink.start()
    return sink


def _worker_settings(sink: PacketSink, settings: EncoderSettings) -> EncoderSettings:
    """The settings that give a worker's encoder (which writes to no file) this output's."""
    if not sink._no_b_frames:
        return settings
    return replace(settings, options={"bf": "0", **settings.options})


def _distribute(
    ray: Any,
    plans: Iterator[SegmentPlan],
    job: SegmentJob,
    sink: PacketSink,
    workers: int,
    board: Any,
) -> None:
    """Submit each planned segment as a Ray task and mux the results in order."""
    task = ray.remote(run_segment).options(num_cpus=1, max_retries=2)
    running: list[Any] = []  # refs in segment order, not yet muxed

    def mux_oldest() -> None:
        ref = running.pop(0)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            raise err.cause from None  # the worker's own error (an InputError, ...)
        sink.write_segment(result)
        board.segment_done(result.frames, result.seconds)

    try:
        for plan in plans:
            running.append(task.remote(replace(job, plan=plan)))
            while running and (
                len(running) >= AHEAD_PER_WORKER * workers or _ready(ray, running[0])
            ):
                mux_oldest()
        while running:
            mux_oldest()
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise


def _ready(ray: Any, ref: Any) -> bool:
    done, _ = ray.wait([ref], timeout=0)
    return bool(done)
