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
  whole video once (:func:`stream.plan.plan_segments`: a decode and a 256-pixel-wide
  detection per frame, no stage work) and records, for every cut, the frame at which it
  was reported. A worker's buffer replays the same cuts at the same frames; it is fed from
  the segment's first frame up to the frame that reported the segment's end cut (so a long
  last scene splits into the same windows), and drops any window or peek of the next
  segment (:class:`stream.plan.SegmentScenes`). The buffer's window rule only looks back to
  the scene's start, so a buffer started at a segment's first frame gives the windows and
  peeks the single run gives from there.
* **The same frames.** The plan carries each frame's pts and a fingerprint (a sparse pixel
  grid); a worker seeks to a keyframe before its segment, checks that it decodes the very
  frames the driver decoded, and fails loudly otherwise (an input that cannot be decoded
  frame-exactly from a seek).
* **One encoded stream.** A worker encodes its segment with the encoder the single run
  would open (the same :class:`~stream.encode.Sink` code, settings and format), so its
  first frame is a keyframe and its codec headers (x264's SPS/PPS) are the driver's own:
  the driver checks them byte for byte, and that decode times continue from one segment to
  the next (they do for a constant frame rate: x264's B-frame delay is the same in every
  segment). Timestamps are the input's, as in the single run. With a lossless codec the
  output decodes to exactly the single run's frames; a lossy one differs only in where
  keyframes fall and in rate control near them.

What does not scale: the driver's cut pass is serial (it runs while the workers work, and
a segment starts as soon as its end cut is settled). What a boundary costs in one process
(a segment re-learns its film-wide estimates) is measured in benchmarks/README.md. With
``--fps`` on a variable-frame-rate input the interpolator's last frame interval before a
boundary is an estimate in both modes; should it overlap the next segment, the driver
stops with an error instead of writing timestamps out of order.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.base import Frame, HoleFill, Stage, Window

if TYPE_CHECKING:
    from stages.base import StageChain, VideoInfo
    from stages.crop import CropBox
    from stream.options import Options

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
        if name == "_fill":  # not set yet (a copy being made)
            raise AttributeError(name)
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
