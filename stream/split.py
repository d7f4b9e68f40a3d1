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

from stages.base import Frame, VideoInfo
from stream.decode import Decoder, Source, open_input
from stream.encode import EncoderSettings
from stream.errors import InputError, UsageError
from stream.options import Options
from stream.packets import Packet, PacketCapture, PacketSink
from stream.plan import SegmentPlan, SegmentScenes, plan_segments
from stream.segments import SegmentRule, fingerprint

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
    plan: SegmentPlan | None  # set per segment
    out_format: str  # the output container's format (the encoder depends on it)
    settings: EncoderSettings
    hole_fill: Any = None  # gpu.actors.ActorFill with --fill sd
    tally: Any = None  # progress actor handle
    env: dict[str, str | None] | None = None  # the driver's thread settings


@dataclass
class SegmentResult:
    """A segment's encoded video."""

    index: int
    extradata: bytes
    time_base: Fraction
    packets: list[Packet]
    frames: int
    seconds: float


# -- the worker -------------------------------------------------------------------------


def _seek_frames(job: SegmentJob) -> tuple[Source, Iterator[Frame]]:
    """The input opened and positioned so that its next frame is the segment's first."""
    plan = job.plan
    margin = SEEK_MARGIN_SECONDS
    while True:
        source = open_input(job.path, job.input_format)
        if plan.start > 0:
            tb = source.video.time_base or Fraction(1, 25)
            target = int(plan.first_pts - margin / tb)
            source.container.seek(max(target, 0), stream=source.video, backward=True)
            source.early_frames, source.early_packets = [], []  # read before the seek
        frames = Decoder(source, lambda packet: None).frames()
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


def _checked(frames: Iterator[Frame], plan: SegmentPlan) -> Iterator[Frame]:
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
    from stream import cluster, wiring
    from stream.chain import Chain, ChainStats
    from stream.tally import Reporter

    cluster.use_env(job.env or {})
    began = time.monotonic()
    plan = job.plan
    if plan is None:
        raise ValueError("a segment job needs its plan")
    source, frames = _seek_frames(job)
    try:
        info = source.info
        chain = wiring.build_chain(job.options, info, job.crop, hole_fill=job.hole_fill)
        try:
            sink = PacketCapture(
                os.devnull, chain.infos[-1], source.colour, [], job.out_format, job.settings
            )
            scenes = SegmentScenes(wiring.scene_buffer(job.options, info, chain), plan)
            reporter = Reporter(job.tally, plan.index, f"segment {plan.index}", plan.frames)

            # the frames fed past the segment's end (see SegmentScenes) count for the next
            def progress(stats: ChainStats) -> None:
                reporter.update(replace(stats, frames_in=min(stats.frames_in, plan.frames)))

            stats = Chain(_Feed(_checked(frames, plan)), scenes, chain, sink, progress).run()
            reporter.done(replace(stats, frames_in=plan.frames))
        finally:
            chain.close()
    finally:
        source.close()
    extradata = bytes(sink.video.codec_context.extradata or b"")
    tb = sink.video.codec_context.time_base
    seconds = time.monotonic() - began
    return SegmentResult(plan.index, extradata, tb, sink.packets, plan.frames, seconds)


class _Feed:
    """Adapts an iterator of decoded frames to the chain's ``frames()`` source."""

    def __init__(self, frames: Iterator[Frame]):
        self._frames = frames

    def frames(self) -> Iterator[Frame]:
        return self._frames


# -- the driver -------------------------------------------------------------------------


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
        frames = Decoder(source, lambda packet: None).frames()
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
            scenes.on_settled = None  # the cut pass runs no stage
            sink = _open_sink(args, out_info, source, wiring.encoder_settings(options))
            try:
                job = SegmentJob(
                    path=args.input,
                    input_format=args.input_format,
                    options=options,
                    crop=crop,
                    plan=None,
                    out_format=sink.format_name,
                    settings=sink.worker_settings(),
                    hole_fill=fill,
                    env=cluster.thread_env(),
                )
                rule = SegmentRule.of(options.segment_seconds, info.frame_rate)
                plans = plan_segments(itertools.chain(probe, frames), scenes, rule)
                with Board(ray, source.frame_count, "segments", enabled=not args.quiet) as board:
                    _distribute(ray, plans, replace(job, tally=board.tally), sink, args.workers)
            except KeyboardInterrupt:
                sink.close(complete=False)
                log.error("interrupted; the output written so far was closed properly")
                return EXIT_INTERRUPTED
            except BaseException:
                sink.close(flush=False)
                raise
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
    return sink


def _distribute(
    ray: Any, plans: Iterator[SegmentPlan], job: SegmentJob, sink: PacketSink, workers: int
) -> None:
    """Run each planned segment as a Ray task, ``workers`` at a time, and mux the results
    in order as they come."""
    task = ray.remote(run_segment).options(num_cpus=1, max_retries=2)
    running: list[Any] = []  # refs in segment order, not yet muxed

    def mux_ready(wait: bool) -> None:
        while running and (wait or _finished(ray, running[:1])):
            wait = False
            try:
                result = ray.get(running[0])
            except ray.exceptions.RayTaskError as err:
                raise err.cause from None  # the worker's own error (an InputError, ...)
            running.pop(0)
            sink.write_segment(result.index, result.extradata, result.time_base, result.packets)
            log.info(
                "segment %d: %d frames in %.1f s on a worker",
                result.index,
                result.frames,
                result.seconds,
            )

    try:
        for plan in plans:
            mux_ready(wait=False)
            while len(running) >= AHEAD_PER_WORKER * workers or (
                len(running) - _finished(ray, running) >= workers
            ):
                done = _finished(ray, running)
                ray.wait(running, num_returns=done + 1)  # one more task ends
                mux_ready(wait=False)
            running.append(task.remote(replace(job, plan=plan)))
        while running:
            mux_ready(wait=True)
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise


def _finished(ray: Any, refs: list[Any]) -> int:
    """How many of ``refs`` have finished (with a result or an error)."""
    if not refs:
        return 0
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    return len(done)
