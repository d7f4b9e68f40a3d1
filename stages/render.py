"""The widened frames of one part of a window: each side from its background segment's
filled panorama as far as the confidence allows (:mod:`stages.confidence`), from the
frame's own pixels for the rest (:mod:`stages.fallback`), and the film gate inside the
picture covered in both (:class:`stages.gate.GatePatch`)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from stages.confidence import Confidence
from stages.fallback import FallbackRenderer
from stages.gate import GatePatch
from stages.resample import Resampler

WEIGHT_EPS = 1e-3  # panorama weights this close to 0 or 1 skip the other rendering


class Renderer:
    """Renders parts in order; the confidence's smoothing carries from part to part."""

    def __init__(self, resampler: Resampler, own: FallbackRenderer, confidence: Confidence):
        self.resampler, self.own, self.confidence = resampler, own, confidence

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
        the rest)."""
        render = self.resampler
        shares = [
            render.agreement(f, panorama, v, unreliable, falloff)
            for f, v in zip(frames, views, strict=True)
        ]
        weights = registration * self.confidence.agreement(np.array(shares))
        for frame, view, weight in zip(frames, views, weights, strict=True):
            out = None
            if weight > WEIGHT_EPS:
                out = render.render(frame, panorama, view, unreliable, falloff, gate)
            if weight < 1 - WEIGHT_EPS:
                out = self._blend(out, self.own.render(frame, gate), float(weight), gate)
            assert out is not None
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
