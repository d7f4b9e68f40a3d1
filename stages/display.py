"""What a scene's frames are rendered from: its background panorama with the holes filled.

:class:`SceneDisplay` owns the filled panorama of one background segment of a scene (see
:mod:`stages.motion`) on the panorama's canvas and follows the canvas when it grows or
moves, or when the segment goes on from a new reference (:meth:`SceneDisplay.carry`).
Pixels already shown (real or filled) keep their values unless real background arrives
for them, so the fill does not flicker at window boundaries, and memory stays one
bounded canvas per scene. What the frames' views
need and nothing showed is filled through :meth:`stages.base.HoleFill.submit`, in one
rectangle per window, so a fill that runs in the background overlaps other work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np

from stages.base import HoleFill
from stages.panorama import Canvas, ScenePanorama, move_to, warp_canvas
from stages.regions import needed

log = logging.getLogger(__name__)


class SceneDisplay:
    """The filled panorama of one background segment (``segment``) of a scene (``index``),
    on ``pano``'s canvas."""

    def __init__(self, index: int, pano: ScenePanorama, segment: int = 0):
        self.index, self.segment = index, segment
        self.pano = pano
        self.image: np.ndarray | None = None  # (h, w, 3) uint8 on pano.canvas
        self.shown: np.ndarray | None = None  # (h, w) bool: pixels already real or filled
        self.frames_seen = 0  # frames of the scene composited so far
        # the panorama holds frames divided by the lens falloff and multiplied by this (the
        # falloff at the frame corners, fixed at the scene's first flattened window), so
        # bright pixels near the frame edges do not clip at 255 in uint8
        self.headroom: float | None = None
        self._fill: tuple[Future[np.ndarray], tuple[slice, slice]] | None = None

    @property
    def canvas(self) -> Canvas | None:
        return self.pano.canvas

    def absorb(self, updated: np.ndarray, old: Canvas | None) -> None:
        """Take the real background the panorama's last composite updated (``updated``,
        on its canvas, which was ``old`` before that composite grew it)."""
        pano = self.pano
        if pano.image is None or pano.canvas is None:
            raise RuntimeError("the panorama has no canvas yet")
        if self.image is None or self.shown is None or old is None:
            self.image = pano.image.copy()
            self.shown = updated.copy()
            return
        self.settle()
        if old != pano.canvas:
            self.image = move_to(self.image, old, pano.canvas)
            self.shown = move_to(self.shown, old, pano.canvas, False)
        self.image[updated] = pano.image[updated]
        self.shown |= updated

    def carry(
        self, segment: int, link: np.ndarray, need: np.ndarray, max_size: tuple[int, int]
    ) -> None:
        """Go on as ``segment``, whose reference is this one's mapped by ``link`` (old ->
        new reference): what is stored and filled moves into the new coordinates, on a
        canvas covering ``need`` (new coordinates) and what fits of the old one."""
        self.segment = segment
        if self.image is None or self.shown is None:
            return
        old = self.pano.canvas
        image = self.settle()
        matrix = self.pano.carry(link, need, max_size)
        canvas = self.pano.canvas
        if matrix is None or canvas is None:
            self.image = self.shown = None  # nothing kept: start afresh
            return
        self.image = warp_canvas(image, matrix, canvas)
        self.shown = warp_canvas(self.shown, matrix, canvas)
        log.debug("scene %d: segment %d carried over from %s", self.index, segment, old)

    def fill_views(
        self,
        views: list[np.ndarray],
        margin: int,
        fill: HoleFill,
        mean_colour: Callable[[], np.ndarray],
    ) -> None:
        """Fill what the views (outlines on the canvas, see
        :func:`stages.regions.view_polygons`) need and nothing showed, inside its bounding
        box grown by ``margin`` pixels of known context. With nothing shown at all (views
        spread wider than the canvas bound and the samples fell outside), the holes take
        ``mean_colour()`` (the frames' mean, which the seam's colour match then shades row
        by row) rather than a fill's flat grey."""
        if self.image is None or self.shown is None:
            raise RuntimeError("absorb() a composite before filling")
        todo = needed(self.shown.shape, views) & ~self.shown
        if not todo.any():
            return
        if not self.shown.any():
            log.warning("scene %d: no background on the canvas; sides take mean colour", self.index)
            self.image[todo] = np.round(mean_colour()).astype(np.uint8)
            self.shown = self.shown | todo
            return
        ys, xs = np.nonzero(todo.any(1))[0], np.nonzero(todo.any(0))[0]
        h, w = todo.shape
        rect = (
            slice(max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)),
            slice(max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)),
        )
        if not self.shown[rect].any():  # no context around the holes: use all there is
            rect = (slice(0, h), slice(0, w))
        image = np.ascontiguousarray(self.image[rect])
        known = np.ascontiguousarray(self.shown[rect])
        self._fill = fill.submit(image, known), rect
        # a new array: a fill running in the background keeps the input it was given
        self.shown = self.shown.copy()
        self.shown[rect] = True

    def settle(self) -> np.ndarray:
        """The filled panorama, once the fill in flight is done (its error is raised here)."""
        if self.image is None:
            raise RuntimeError("nothing composited yet")
        if self._fill is not None:
            future, rect = self._fill
            self._fill = None
            self.image[rect] = future.result()
        return self.image

    def detach(self) -> np.ndarray:
        """The filled panorama as it is now, for frames still to be rendered from it; the
        display goes on with a copy (the next composite changes it in place)."""
        image = self.settle()
        self.image = image.copy()
        return image

    def cancel(self) -> None:
        """Drop the fill in flight: not started yet, it never runs; running, the fill's own
        ``close`` waits for it."""
        if self._fill is not None:
            self._fill[0].cancel()
        self._fill = None

    def dump(self, folder: Path) -> None:
        """Write the filled panorama and the real-background mask as PNGs (debugging)."""
        if self.image is None or self.pano.known is None:
            return
        stem = Path(folder) / f"scene{self.index:04d}"
        cv2.imwrite(f"{stem}_panorama.png", cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(f"{stem}_known.png", self.pano.known.astype(np.uint8) * 255)
        log.info("dumped %s_panorama.png", stem)
