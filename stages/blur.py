"""Blurred-pillarbox widening: the fast baseline fill.

The picture, scaled to cover the wide frame, blurred strongly and darkened a little,
sits behind the untouched original (centred, pixel-exact). For speed the blur runs on
a copy shrunk by ``factor`` (default 8) and only the two side strips are sampled back
up, straight from the small blurred copy with one affine warp each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import cv2
import numpy as np

from .base import Frame, Stage, VideoInfo, Window, widened_width

log = logging.getLogger(__name__)


class BlurPillarbox(Stage):
    """Widens frames to ``aspect`` with a blurred, darkened copy of the picture at the sides.

    ``factor`` is the shrink factor for the blur, ``sigma`` the blur radius in full-size
    pixels and ``darken`` the brightness kept in the sides (1 = unchanged).
    """

    buffers_scenes = False

    def __init__(
        self, aspect: Fraction, factor: int = 8, sigma: float = 24.0, darken: float = 0.75
    ):
        if aspect <= 0:
            raise ValueError(f"aspect must be positive, got {aspect}")
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if not 0 < darken <= 1:
            raise ValueError(f"darken must be in (0, 1], got {darken}")
        self.aspect, self.factor, self.sigma, self.darken = aspect, factor, sigma, darken
        self._in_size: tuple[int, int] | None = None

    def configure(self, info: VideoInfo) -> VideoInfo:
        w, h = info.width, info.height
        out_w = widened_width(w, h, self.aspect)
        self._in_size, self._out_w = (w, h), out_w
        self._left = (out_w - w) // 2
        self._small = (max(1, round(w / self.factor)), max(1, round(h / self.factor)))
        self._warps = [
            (x0, x1 - x0, self._strip_warp(x0, w, h, out_w))
            for x0, x1 in ((0, self._left), (self._left + w, out_w))
            if x1 > x0
        ]
        log.info("blurred pillarbox %dx%d -> %dx%d", w, h, out_w, h)
        return info.with_size(out_w, h)

    def _strip_warp(self, x0: int, w: int, h: int, out_w: int) -> np.ndarray:
        """Affine map from a side strip starting at output column ``x0`` to the small copy.

        The cover-scaled picture is ``out_w`` wide (scale ``s``) and centred vertically;
        output pixel (u, v) shows picture point ((u + .5) / s, (v + .5 - dy) / s) - .5,
        which lies at that point times (small / full) in the small copy.
        """
        s = out_w / w
        dy = (h - h * s) / 2
        kx, ky = self._small[0] / w, self._small[1] / h
        ax, bx = kx / s, kx * (x0 + 0.5) / s - 0.5
        ay, by = ky / s, ky * (0.5 - dy) / s - 0.5
        return np.array([[ax, 0, bx], [0, ay, by]], np.float64)

    def process(self, window: Window) -> Iterator[Frame]:
        if self._in_size is None:
            raise RuntimeError("BlurPillarbox.configure must be called before process")
        w, h = self._in_size
        for img, pts in zip(window.frames, window.pts, strict=True):
            if img.dtype != np.uint8 or img.shape != (h, w, 3):
                raise ValueError(
                    f"frame must be uint8 ({h}, {w}, 3) as configured, got {img.dtype} {img.shape}"
                )
            if not self._warps:
                yield Frame(img, pts)
                continue
            yield Frame(self._widen(img), pts)

    def _widen(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        small = cv2.resize(img, self._small, interpolation=cv2.INTER_AREA)
        small_sigma = self.sigma * self._small[0] / w
        small = cv2.GaussianBlur(small, (0, 0), small_sigma, borderType=cv2.BORDER_REFLECT)
        small = cv2.convertScaleAbs(small, alpha=self.darken)
        out = np.empty((h, self._out_w, 3), np.uint8)
        out[:, self._left : self._left + w] = img
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # the maps go output -> small copy
        for x0, strip_w, m in self._warps:
            out[:, x0 : x0 + strip_w] = cv2.warpAffine(
                small, m, (strip_w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE
            )
        return out
