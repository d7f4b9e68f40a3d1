"""Segments: a long video cut at scene cuts into pieces that can be processed apart,
with exactly the output of one process.

Design (``remaster IN OUT --workers N``, :mod:`stream.split`, builds on this):

* **Where segments start** does not depend on the number of workers: a new segment
  starts at the first cut at least ``--segment-seconds`` (converted to frames at the
  input's nominal rate) after the start of the current one (:class:`SegmentRule`). The
  single-process run applies the same rule, so both cut the video at the same frames.
* **No state crosses a segment boundary, in either mode.** Stages carry estimates from
  scene to scene (the outpaint stage's lens falloff and film-gate detector, the
  interpolator's frame gaps), so scene k's output depends on earlier scenes. Instead of
  asking every stage to reset what it carries, each segment gets a *fresh stage chain*
  built from the same options by :func:`stream.wiring.build_chain`: in one process by
  :class:`SegmentedStage`, on a worker by :mod:`stream.split`. Whatever a stage carries,
  now or in future, the segment starts from nothing in both modes. What a rebuild would
  cost (a diffusion pipeline) is made once and shared (:func:`segmented_chain`).
* **The same cuts and the same windows.** Cut detection depends on history (PySceneDetect's
  minimum scene length, flash filter, adaptive windows; the same-shot check drops cuts),
  and a scene buffer's windows depend on when each cut was *reported*. So no worker detects
  cuts: the driver runs the single run's own :class:`~stream.scenes.SceneBuffer` over the
  whole video once (:func:`plan_segments`; a decode and a 256-pixel-wide detection per
  frame, no stage work) and records, for every cut, the frame at which it was reported. A
  worker's buffer gets a :class:`ReplayDetector` that reports the same cuts at the same
  frames; it is fed from the segment's first frame up to the frame that reported the
  segment's end cut (so a long last scene splits into the same windows), and
  :class:`SegmentScenes` drops any window or peek of the next segment. The buffer's window
  rule only looks back to the scene's start, so a buffer started at a segment's first
  frame gives the windows and peeks the single run gives from there.
* **The same frames.** The plan carries each frame's pts and a fingerprint (a sparse pixel
  grid); a worker seeks to a keyframe before its segment, checks that it decodes the very
  frames the driver decoded, and fails loudly otherwise (an input that cannot be decoded
  frame-exactly from a seek).

The cost of a boundary in one process: a segment re-learns its film-wide estimates; it is
measured in benchmarks/README.md.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.base import Frame, HoleFill, Stage, Window

if TYPE_CHECKING:
    from stages.base import StageChain, VideoInfo
    from stages.crop import CropBox
    from stream.options import Options
    from stream.scenes import SceneBuffer

log = logging.getLogger(__name__)

# The frame rate segment lengths are counted in when the input does not say.
FALLBACK_RATE = Fraction(25)
# Every FINGERPRINT_STEP-th pixel in both directions goes into a frame's fingerprint: a
# wrongly decoded block (a missing reference after a seek) covers at least 8x8 pixels.
FINGERPRINT_STEP = 8


@dataclass(frozen=True)
class SegmentRule:
    """Where segments start: the first cut at least ``frames`` frames after the current
    segment's first frame (None: the whole video is one segment)."""

    frames: int | None

    @classmethod
    def of(cls, seconds: float, rate: Fraction | None) -> SegmentRule:
        if seconds <= 0:
            return cls(None)
        return cls(max(1, round(seconds * (rate or FALLBACK_RATE))))

    def starts(self, cut: int, start: int) -> bool:
        """Does the scene starting at frame ``cut`` start a new segment (the current one
        started at frame ``start``)?"""
        return self.frames is not None and cut - start >= self.frames


def fingerprint(image: np.ndarray) -> int:
    """A checksum of a sparse pixel grid: equal frames give equal fingerprints."""
    return zlib.adler32(np.ascontiguousarray(image[::FINGERPRINT_STEP, ::FINGERPRINT_STEP]))


# -- one process --------------------------------------------------------------------


class SegmentedStage(Stage):
    """A fresh stage chain for each segment, so no state crosses a segment boundary.

    Windows and peeks are routed by the frame number of their scene's first frame; a peek
    may start the next segment's chain while the current one still has windows to do.
    """

    def __init__(
        self,
        build: Callable[[], StageChain],
        rule: SegmentRule,
        close: Callable[[], None] | None = None,
    ):
        first = build()
        self._build, self.rule, self._on_close = build, rule, close
        self._chains: deque[StageChain] = deque([first])  # [current, next ones made by peeks]
        self.infos = first.infos
        self.buffers_scenes, self.uses_peeks = first.buffers_scenes, first.uses_peeks
        self._frame = self._start = 0  # next window frame, current segment's first frame
        self._peeked = self._peek_start = 0  # the same, counted by peeks
        self.segments = 1

    def configure(self, info: VideoInfo) -> VideoInfo:
        return self.infos[-1]  # each chain is configured when built

    def peek(self, image: np.ndarray, scene: int, starts: bool) -> None:
        number, self._peeked = self._peeked, self._peeked + 1
        if starts and self.rule.starts(number, self._peek_start):
            self._peek_start = number
            self._chains.append(self._build())
        self._chains[-1].peek(image, scene, starts)

    def process(self, window: Window) -> Iterator[Frame]:
        number, self._frame = self._frame, self._frame + len(window)
        if not window.continues and self.rule.starts(number, self._start):
            self._start = number
            log.info("frame %d: segment %d starts (fresh stages)", number, self.segments)
            yield from self._next_segment()
        yield from self._chains[0].process(window)

    def _next_segment(self) -> Iterator[Frame]:
        done = self._chains.popleft()
        try:
            yield from done.finish()
        finally:
            done.close()
        if not self._chains:
            self._chains.append(self._build())
        self.segments += 1

    def finish(self) -> Iterator[Frame]:
        yield from self._chains[0].finish()

    def close(self) -> None:
        try:
            while self._chains:
                self._chains.popleft().close()
        finally:
            if self._on_close is not None:
                self._on_close()


class KeptFill(HoleFill):
    """A hole fill shared by several chains: a chain's close() leaves it open (its owner
    closes it); ``submit`` and the rest are the fill's own."""

    def __init__(self, fill: HoleFill):
        self._fill = fill

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        return self._fill(image, known)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fill, name)

    def close(self) -> None:
        """The owner closes the fill."""


def segmented_chain(
    options: Options,
    info: VideoInfo,
    crop: CropBox | None = None,
    hole_fill: HoleFill | None = None,
) -> SegmentedStage:
    """The stage chain of a one-process run: a fresh chain per segment, the options' hole
    fill (a diffusion pipeline) made once and shared by all of them; ``hole_fill``, when
    given, is used instead and left open (its owner closes it)."""
    from stream import wiring

    rule = SegmentRule.of(options.segment_seconds, info.frame_rate)
    fill, owned = hole_fill, False
    if fill is None and rule.frames is not None and options.fill_name in wiring.HOLE_FILLS:
        fill, owned = wiring.make_hole_fill(options), True
    shared = KeptFill(fill) if fill is not None else None
    try:
        return SegmentedStage(
            lambda: wiring.build_chain(options, info, crop, hole_fill=shared),
            rule,
            close=fill.close if owned and fill is not None else None,
        )
    except BaseException:
        if owned and fill is not None:
            fill.close()
        raise


# -- the plan: one pass over the video ------------------------------------------------


@dataclass
class SegmentPlan:
    """What a worker needs to process one segment exactly as the single run does.

    Frame numbers count from the start of the video; ``reports`` and ``final`` count from
    the segment's first frame (local), as the worker's scene buffer does."""

    index: int
    start: int  # first frame (the first frame of a scene)
    end: int | None  # first frame of the next segment; None: the end of the video
    first_pts: int
    first_scene: int  # scene index of the first frame
    feed: int | None  # frames the worker's buffer is fed; None: to the end and flushed
    reports: dict[int, list[int]] = field(default_factory=dict)  # push -> cuts reported
    final: list[int] = field(default_factory=list)  # cuts reported at the flush
    prints: list[int] = field(default_factory=list)  # fingerprint of each frame in [start, end)
    next_scene: int | None = None  # scene index of the next segment's first frame

    @property
    def frames(self) -> int:
        return len(self.prints)


def plan_segments(
    frames: Iterable[Any], buffer: SceneBuffer, rule: SegmentRule
) -> Iterator[SegmentPlan]:
    """Run ``buffer`` (the single run's scene buffer, no stage behind it) over ``frames``
    (objects with ``image`` and ``pts``) and yield each segment's plan as soon as its end
    cut is settled: the cut pass of the driver."""
    reported: dict[int, int] = {}  # cut -> the push that reported it (-1: the flush)
    pts: list[int] = []
    prints: list[int] = []
    seen = 0  # cuts of buffer.cuts_found looked at
    cuts: list[int] = []  # accepted cuts, sorted
    decided = 0  # cuts of ``cuts`` the rule has looked at
    floor = 0  # every cut below this frame has been reported
    start, scene_of_start, index = 0, 0, 0

    def note(push: int) -> None:
        nonlocal seen
        for cut in buffer.cuts_found[seen:]:
            if cut < floor:  # a detector reports a cut at most event_buffer_length late
                raise RuntimeError(f"the cut at frame {cut} was reported too late to plan")
            reported[cut] = push
            cuts.append(cut)
        seen = len(buffer.cuts_found)
        cuts.sort()

    def plan(end: int | None, end_scene: int | None) -> SegmentPlan:
        last = reported.get(end, -1) if end is not None else -1
        feed = None if last < 0 else last - start + 1
        upto = start + feed if feed is not None else len(pts)
        reports: dict[int, list[int]] = {}
        final = []
        for cut, push in reported.items():
            if cut < start:
                continue
            if push < 0:
                final.append(cut - start)
            elif start <= push < upto:
                reports.setdefault(push - start, []).append(cut - start)
        stop = end if end is not None else len(pts)
        return SegmentPlan(
            index,
            start,
            end,
            pts[start],
            scene_of_start,
            feed,
            {k: sorted(v) for k, v in reports.items()},
            sorted(final),
            prints[start:stop],
            end_scene,
        )

    def settled(limit: int) -> Iterator[SegmentPlan]:
        """Apply the rule to the cuts below frame ``limit`` (no earlier cut can come)."""
        nonlocal decided, start, scene_of_start, index, floor
        floor = max(floor, limit)
        while decided < len(cuts) and cuts[decided] < limit:
            cut = cuts[decided]
            decided += 1
            if rule.starts(cut, start):
                yield plan(cut, decided)  # scene index of ``cut``: the cuts up to it
                start, scene_of_start, index = cut, decided, index + 1

    for number, frame in enumerate(frames):
        pts.append(frame.pts)
        prints.append(fingerprint(frame.image))
        for _ in buffer.push(frame.image, frame.pts):
            pass  # the windows are the stages' business; only the cuts matter here
        note(number)
        yield from settled(number + 1 - buffer.lag)
    for _ in buffer.flush():
        pass
    note(-1)
    if not pts:
        return
    yield from settled(len(pts))
    yield plan(None, None)


# -- a worker's scene buffer ----------------------------------------------------------


class ReplayDetector:
    """Stands in for a PySceneDetect detector: reports the planned cuts at the frames where
    the real one reported them, so a :class:`~stream.scenes.SceneBuffer` windows the
    frames exactly as it did in the single run (its lag is the real detector's)."""

    def __init__(self, plan: SegmentPlan, event_buffer_length: int):
        self.reports = plan.reports
        self.final = plan.final
        self.event_buffer_length = event_buffer_length

    def process_frame(self, timecode: Any, image: np.ndarray) -> list[int]:
        return self.reports.get(timecode.frame_num, [])

    def post_process(self, timecode: Any) -> list[int]:
        return list(self.final)


class SegmentScenes:
    """A worker's scene buffer: the single run's buffer with the planned cuts replayed,
    numbering scenes from the segment's first; windows and peeks of the next segment (fed
    only so the last scene splits as in the single run) are dropped."""

    def __init__(self, buffer: SceneBuffer, plan: SegmentPlan):
        if buffer.detector is None:
            raise ValueError("the scene buffer has no detector to replay")
        self.plan = plan
        self.buffer = buffer
        buffer.detector = ReplayDetector(plan, buffer.detector.event_buffer_length)
        buffer.same_shot = None  # the plan holds only the cuts that were kept
        buffer.scene = plan.first_scene
        peek = buffer.on_settled
        if peek is not None and plan.next_scene is not None:
            stop = plan.next_scene
            buffer.on_settled = lambda image, scene, starts: (
                peek(image, scene, starts) if scene < stop else None
            )
        self.frames = 0  # frames of the segment handed on in windows

    def _mine(self, windows: Iterable[Window]) -> Iterator[Window]:
        for window in windows:
            if self.plan.next_scene is None or window.scene < self.plan.next_scene:
                self.frames += len(window)
                yield window

    def push(self, image: np.ndarray, pts: int) -> Iterator[Window]:
        yield from self._mine(self.buffer.push(image, pts))

    def flush(self) -> Iterator[Window]:
        if self.plan.feed is None:
            yield from self._mine(self.buffer.flush())
        if self.frames != self.plan.frames:
            raise RuntimeError(
                f"segment {self.plan.index}: {self.frames} frames in windows, "
                f"{self.plan.frames} planned"
            )
