"""The segment plan: the driver's one pass over the video, replayed by each worker.

See :mod:`stream.segments` for the design. :func:`plan_segments` runs the single run's
scene buffer over the whole input (no stage work) and records, per segment, where it
starts, the scene index there, each frame's fingerprint, and each cut with the frame at
which the detector reported it. A worker's :class:`SegmentScenes` replays those cuts
(:class:`ReplayDetector`) into the single run's buffer, so it windows the segment's frames
as the single run did.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.base import Window
from stream.segments import SegmentRule, fingerprint

if TYPE_CHECKING:
    from stream.scenes import SceneBuffer


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
