"""The widened frames of one part of a window: each side from its background segment's
filled panorama as far as the confidence allows (:mod:`stages.confidence`), from the
frame's own pixels for the rest (:mod:`stages.fallback`), and the film gate inside the
picture covered in both (:class:`stages.gate.GatePatch`).

Each side is then blended with the previous frame's side warped into the current view
(:func:`follow`, within a part), as far as both frames' panorama weights allow (a frame
whose registration cannot be trusted cannot be related to the one before either): what
is rendered from a fixed panorama moves with the camera anyway, so this only damps what
changes from frame to frame for other reasons (the per-frame colour match's local
changes, resampling shimmer), the temporal flicker that a viewer sees in the sides. The
seam's cross-fade with the mirrored original (:meth:`stages.resample.Resampler.mirror`)
is laid on after following: the panorama under it follows, the mirror is the current
frame's, so a character at the frame edge still dissolves outwards at once. Each side's
mean colour stays the current rendering's, so film flicker and exposure changes still
pass at once."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import cv2
import numpy as np

from stages.confidence import RAMP, Confidence
from stages.fallback import FallbackRenderer
from stages.gate import GatePatch
from stages.resample import Resampler

WEIGHT_EPS = 1e-3  # panorama weights this close to 0 or 1 skip the other rendering
# weight of the current rendering in each side, the rest from the previous frame's side
# warped into this view: an exponential window of about four frames, long enough to damp
# flicker, short enough not to lag behind changes
FOLLOW = 0.25
# frames of a part drawn from the panorama ahead of the one being followed, in the
# stage's threads: enough to keep two threads busy; each holds one output frame
DRAW_AHEAD = 2
# frames looked at (seam agreement, side views) ahead of the one being drawn: a frame's
# weight waits for the agreement of the RAMP frames after it (stages.confidence)
LOOK_AHEAD = RAMP + DRAW_AHEAD

T = TypeVar("T")
Submit = Callable[..., "Future[Any]"]
Views = tuple[np.ndarray, np.ndarray]  # a view per side: output pixels -> panorama pixels
Looked = tuple[np.ndarray, np.ndarray, Views, float]  # frame, its view, side views, weight


def ahead(
    fn: Callable[..., T], items: Iterable[tuple], submit: Submit | None, depth: int = DRAW_AHEAD
) -> Iterator[T]:
    """``fn(*item)`` for each of ``items``, in order; with ``submit`` (an executor's),
    up to ``depth`` items are worked on while the caller takes the one before. The results
    are the same either way."""
    if submit is None:
        for item in items:
            yield fn(*item)
        return
    pending: deque[Future[T]] = deque()
    for item in items:
        pending.append(submit(fn, *item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def add_offsets(image: np.ndarray, offsets: Sequence[float]) -> np.ndarray:
    """``image`` (float32, (h, w, 3)) plus per-channel ``offsets``, rounded and saturated to
    uint8: the values of ``cv2.add(image, (*offsets, 0), dtype=cv2.CV_8U)``, which OpenCV
    works out several times slower through its path for a scalar of another type."""
    h, w, c = image.shape
    row = np.tile(np.float32(offsets), w)[None]
    return cv2.add(image, cv2.repeat(row, h, 1).reshape(h, w, c), dtype=cv2.CV_8U)


def follow(
    out: np.ndarray,
    previous: np.ndarray,
    to_previous: Sequence[np.ndarray],
    sides: list[tuple[int, int]],
    weight: float = FOLLOW,
) -> None:
    """Blend the column ranges ``sides`` of ``out`` in place towards ``previous`` (the
    previous output frame) warped into this frame (``to_previous``, one per side: this
    frame's output pixels -> the previous frame's): ``weight * out + (1 - weight) *
    warped``, shifted so that each side's mean colour stays that of ``out``; pixels the
    previous frame did not cover keep ``out``."""
    h = out.shape[0]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for (c0, c1), move in zip(sides, to_previous, strict=True):
        if c1 <= c0:
            continue
        at_side = np.array([[1.0, 0.0, c0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        side = out[:, c0:c1]
        warped = side.copy()  # a transparent border leaves these where nothing maps
        cv2.warpPerspective(
            previous,
            move @ at_side,
            (c1 - c0, h),
            dst=warped,
            flags=flags,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        blend = cv2.addWeighted(side, weight, warped, 1.0 - weight, 0.0, dtype=cv2.CV_32F)
        # the colour stays the current frame's (film flicker, exposure): only detail follows
        shift = np.subtract(cv2.mean(side)[:3], cv2.mean(blend)[:3])
        out[:, c0:c1] = add_offsets(blend, shift)


class Renderer:
    """Renders parts in order; the confidence's smoothing carries from part to part.
    With ``submit`` (an executor's), what each frame draws from the panorama is worked
    out in its threads a few frames ahead (:func:`ahead`); the fallback fill and
    :func:`follow` stay in order on the caller's thread."""

    def __init__(
        self,
        resampler: Resampler,
        own: FallbackRenderer,
        confidence: Confidence,
        submit: Submit | None = None,
    ):
        self.resampler, self.own, self.confidence = resampler, own, confidence
        self.submit = submit

    def alone(self, frames: list[np.ndarray], gate: GatePatch | None) -> Iterator[np.ndarray]:
        """Frames of no segment: from their own pixels."""
        self.confidence.no_panorama()
        for frame in frames:
            yield self.own.render(frame, gate)

    def from_panorama(
        self,
        frames: list[np.ndarray],
        panorama: np.ndarray,
        views: list[np.ndarray],
        registration: np.ndarray,
        unreliable: np.ndarray,
        falloff: np.ndarray | None,
        gate: GatePatch | None,
    ) -> Iterator[np.ndarray]:
        """Frames of one segment, with their output-to-canvas ``views`` and smoothed
        ``registration`` confidence (see :meth:`stages.resample.Resampler.render` for
        the rest). Each side follows the previous frame's (:func:`follow`)."""
        render = self.resampler

        def look(
            frame: np.ndarray, view: np.ndarray, reg: float
        ) -> tuple[tuple[float, float], Views]:
            # a frame the registration rules out is not drawn: its agreement still counts
            # in the smoothing, its side views are never used
            align = reg > WEIGHT_EPS
            return render.look(frame, panorama, view, unreliable, falloff, align=align)

        def draw(
            frame: np.ndarray, view: np.ndarray, moved: Views, weight: float
        ) -> tuple[Looked, np.ndarray | None]:
            """The frame drawn from the panorama (None at weight 0), after what it was
            drawn with."""
            if weight <= WEIGHT_EPS:
                return (frame, view, moved, weight), None
            out = render.render(frame, panorama, view, unreliable, falloff, gate, moved, False)
            return (frame, view, moved, weight), out

        pairs = list(zip(frames, views, strict=True))
        looked: deque[tuple[np.ndarray, np.ndarray, Views]] = deque()

        def shares() -> Iterator[tuple[float, float]]:
            items = [(f, v, float(r)) for (f, v), r in zip(pairs, registration, strict=True)]
            looks = ahead(look, items, self.submit, LOOK_AHEAD)
            for (frame, view), (share, moved) in zip(pairs, looks, strict=True):
                looked.append((frame, view, moved))
                yield share

        def weighted() -> Iterator[Looked]:
            # a frame's weight is known RAMP frames on: drawing starts before all are looked at
            agreement = self.confidence.agreement(shares())
            for reg, agree in zip(registration, agreement, strict=True):
                yield (*looked.popleft(), float(reg * agree))

        ox, w = render.offset, render.in_width
        # the seam's cross-fade too: the original is mirrored there only after following
        sides = [(0, ox), (ox + w, render.out_width)]
        # output, its sides' views, weight
        previous: tuple[np.ndarray, tuple[np.ndarray, ...], float] | None = None
        for (frame, _, moved, weight), out in ahead(draw, weighted(), self.submit):
            drawn = out is not None
            if weight < 1 - WEIGHT_EPS:
                out = self._blend(out, self.own.render(frame, gate), weight, gate)
            assert out is not None
            if previous is not None:
                trust = min(weight, previous[2])
                if trust > WEIGHT_EPS:
                    moves = [np.linalg.inv(p) @ v for p, v in zip(previous[1], moved, strict=True)]
                    follow(out, previous[0], moves, sides, 1 - (1 - FOLLOW) * trust)
            # before the mirror: what follows is the panorama's, not the edge's reflection
            previous = out.copy(), moved, weight
            if drawn:
                render.mirror(out, unreliable)
            yield out

    def _blend(
        self, pano: np.ndarray | None, own: np.ndarray, weight: float, gate: GatePatch | None
    ) -> np.ndarray:
        """The sides (and what covers the film gate) ``weight * pano + (1 - weight) * own``
        (``pano`` None: weight 0); the rest of the centre is the original in both."""
        if pano is None:
            return own
        ox, w = self.resampler.offset, self.resampler.in_width
        areas = [(slice(None), slice(0, ox)), (slice(None), slice(ox + w, None))]
        if gate is not None:
            areas += [(r, slice(ox + c.start, ox + c.stop)) for r, c in gate.rects]
        for a in areas:
            pano[a] = cv2.addWeighted(pano[a], weight, own[a], 1 - weight, 0)
        return pano
