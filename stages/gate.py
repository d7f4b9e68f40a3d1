"""Film-gate borders: the dark frame edges (rounded corners, the gate's own outline,
vignettes) that are not picture and must not be used as background or mirrored outwards."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class GateDetector:
    """Unreliable frame-border pixels: dark film-gate corners and vignettes.

    Keeps a running mean of the luminance over every frame seen (the gate does not move
    during a film). Pixels in the outer ``band`` of the frame whose mean is below
    ``ratio`` times the centre's median and that connect to the frame edge are
    unreliable (dilated a little), plus a thin fixed margin at the left and right edges
    (compression ringing, blanking) where the seams are.

    With ``max_cv``, a dark pixel counts only if it is also steady: its standard deviation
    over the frames is under ``max_cv`` times its mean (plus 2 levels). A gate is dark in
    every frame; dark content at the border that the camera pans along (the audience
    rows above an ice rink) is dark only on average.
    """

    def __init__(
        self,
        band: float = 0.08,
        ratio: float = 0.55,
        margin: float = 0.006,
        max_cv: float | None = None,
    ):
        if not 0 < band < 0.5 or not 0 < ratio < 1 or not 0 <= margin < band:
            raise ValueError(f"need 0 <= margin < band < 0.5, 0 < ratio < 1: {band, ratio, margin}")
        if max_cv is not None and max_cv <= 0:
            raise ValueError(f"max_cv must be positive or None, got {max_cv}")
        self.band, self.ratio, self.margin, self.max_cv = band, ratio, margin, max_cv
        self._sum: np.ndarray | None = None
        self._sq: np.ndarray | None = None  # sum of squares, kept only with max_cv
        self._count = 0

    def update(self, small_frames: list[np.ndarray]) -> None:
        """Add frames (any fixed small size) to the running luminance mean."""
        for f in small_frames:
            y = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            if self._sum is None or self._sum.shape != y.shape:
                self._sum, self._count = np.zeros(y.shape, np.float64), 0
                self._sq = np.zeros(y.shape, np.float64) if self.max_cv is not None else None
            cv2.accumulate(y, self._sum)  # in float64, exact for these integer sums
            if self._sq is not None:
                cv2.accumulateSquare(y, self._sq)
            self._count += 1

    def copy(self) -> GateDetector:
        """An independent detector with the same frames seen."""
        other = GateDetector(self.band, self.ratio, self.margin, self.max_cv)
        other._sum = None if self._sum is None else self._sum.copy()
        other._sq = None if self._sq is None else self._sq.copy()
        other._count = self._count
        return other

    def mask(
        self, size: tuple[int, int], margin: bool = True, corners: float | None = None
    ) -> np.ndarray:
        """Unreliable pixels (bool) at ``size`` (w, h); ``margin=False`` leaves out the fixed
        edge margin (for the seam, where only real gate darkness matters); ``corners``
        keeps the dark pixels only in the corner squares of that share of the height."""
        w, h = size
        if self._sum is None or self._count == 0:
            small = np.zeros((64, 64), bool)
        else:
            mean = self._sum / self._count
            sh, sw = mean.shape
            centre = float(np.median(mean[sh // 4 : 3 * sh // 4, sw // 4 : 3 * sw // 4]))
            dark = mean < self.ratio * centre
            if self._sq is not None and self.max_cv is not None:
                std = np.sqrt(np.maximum(self._sq / self._count - mean * mean, 0.0))
                dark &= std < self.max_cv * mean + 2.0
            dark = dark.astype(np.uint8)
            bh, bw = max(1, round(self.band * sh)), max(1, round(self.band * sw))
            inner = np.zeros_like(dark)
            inner[bh:-bh, bw:-bw] = 1
            dark[inner > 0] = 0
            n, labels = cv2.connectedComponents(dark, connectivity=8)
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            small = np.isin(labels, edge[edge > 0])
        out = cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
        r = max(1, round(0.004 * w))
        out = cv2.dilate(out, np.ones((2 * r + 1,) * 2, np.uint8)) > 0
        if corners is not None:
            c = max(1, round(corners * h))
            keep = np.zeros_like(out)
            for rows in (slice(0, c), slice(h - c, h)):
                for cols in (slice(0, c), slice(w - c, w)):
                    keep[rows, cols] = out[rows, cols]
            out = keep
        if margin:  # left/right only: the seams are there
            m = max(1, round(self.margin * w))
            out[:, :m] = out[:, -m:] = True
        return out


RIM_RATIO = 0.8  # a notch's rim: darker than this share of the picture inside the corner


@dataclass
class GatePatch:
    """Where the film gate lies in the picture: ``mask`` (bool, frame size), ``alpha``
    (float32, 1 on the gate and falling to 0 a few pixels outside it: the feather), and
    the ``rects`` (rows, columns) that hold all of ``alpha > 0``."""

    mask: np.ndarray
    alpha: np.ndarray
    rects: list[tuple[slice, slice]]

    def blend(self, frame: np.ndarray, under: np.ndarray, rect: tuple[slice, slice]) -> np.ndarray:
        """``frame[rect]`` with ``under`` (the picture under the gate, rect-sized) feathered
        in where the gate is."""
        a = self.alpha[rect]
        return cv2.blendLinear(under, frame[rect], a, 1 - a)


class FilmGate:
    """The film's own gate inside the picture: near-black rounded notches at all four
    corners, and dark lines along the picture's edges, as on old film scans (every Popeye
    frame has both). Running statistics of full-resolution corner patches and edge strips,
    film-wide (the gate does not move). Only a film whose four corners all hold a steady
    near-black notch has a gate (:meth:`patch` is None otherwise): dark content in one or two
    corners of a static shot, which is picture, never passes.
    """

    def __init__(
        self,
        corner: float = 0.06,
        line_depth: float = 0.012,
        notch_ratio: float = 0.45,
        line_ratio: float = 0.85,
        max_cv: float = 0.35,
        feather: float = 0.006,
        min_frames: int = 4,
    ):
        if not 0 < corner < 0.25 or not 0 < line_depth < corner / 2 or feather < 0:
            raise ValueError(f"need 0 < line_depth < corner / 2 < 0.125: {corner, line_depth}")
        if not 0 < notch_ratio < line_ratio < 1 or max_cv <= 0:
            raise ValueError(f"need 0 < notch_ratio < line_ratio < 1, max_cv > 0: {notch_ratio}")
        self.corner, self.line_depth = corner, line_depth
        self.notch_ratio, self.line_ratio, self.max_cv = notch_ratio, line_ratio, max_cv
        self.feather, self.min_frames = feather, min_frames
        self._shape: tuple[int, int] | None = None
        self._sums: dict[str, np.ndarray] = {}  # per patch: [sum, sum of squares]
        self._count = 0
        self._cache: tuple[int, GatePatch | None] | None = None

    def _sizes(self, h: int, w: int) -> tuple[int, int]:
        c = max(4, round(self.corner * h))
        d = max(2, round(self.line_depth * h))
        return c, d

    def _patches(self, grey: np.ndarray) -> dict[str, np.ndarray]:
        """Corner patches turned so the corner is at [0, 0]; edge strips as (depth from
        the edge, 8 segment means along it)."""
        h, w = grey.shape
        c, d = self._sizes(h, w)
        out = {
            "tl": grey[:c, :c],
            "tr": grey[:c, -c:][:, ::-1],
            "bl": grey[-c:, :c][::-1],
            "br": grey[-c:, -c:][::-1, ::-1],
        }
        strips = {
            "top": grey[: 2 * d, c:-c],
            "bottom": grey[-2 * d :, c:-c][::-1],
            "left": grey[c:-c, : 2 * d].T,
            "right": grey[c:-c, -2 * d :][:, ::-1].T,
        }
        for name, s in strips.items():
            n = s.shape[1] // 8 * 8
            out[name] = s[:, :n].reshape(s.shape[0], 8, -1).mean(2)
        return out

    def update(self, frames: list[np.ndarray]) -> None:
        """Add full-size RGB frames (of one size throughout) to the statistics."""
        for f in frames:
            h, w = f.shape[:2]
            if self._shape != (h, w):
                self._shape, self._sums, self._count = (h, w), {}, 0
            c, _ = self._sizes(h, w)
            if 2 * c + 16 > min(h, w):
                continue  # too small a picture to tell a gate
            grey = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64)
            for name, p in self._patches(grey).items():
                acc = self._sums.setdefault(name, np.zeros((2, *p.shape)))
                acc[0] += p
                acc[1] += p * p
            self._count += 1

    def _stats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        s, sq = self._sums[name] / self._count
        return s, np.sqrt(np.maximum(sq - s * s, 0.0))

    def _notch(self, name: str) -> np.ndarray | None:
        """The corner's notch (bool, patch size): steady pixels darker than
        ``notch_ratio`` times the picture inside the corner, reaching the corner and
        ending along the diagonal within half the patch; None when there is none."""
        mean, std = self._stats(name)
        c = mean.shape[0]
        yy, xx = np.mgrid[:c, :c]
        inner = float(np.median(mean[yy + xx > c]))
        dark = (mean < self.notch_ratio * inner) & (std < self.max_cv * mean + 2.0)
        diag = dark[np.arange(c), np.arange(c)]
        k = int(np.argmin(diag))  # where the diagonal leaves the dark
        if not diag[0] or diag[k] or k > c // 2:  # no notch, or dark far into the picture
            return None
        # the notch with its soft, anti-aliased rim: what is darker than the picture
        # (RIM_RATIO) and joins the dark core near the corner
        near = ((mean < RIM_RATIO * inner) & (yy + xx < 3 * k)).astype(np.uint8)
        _, labels = cv2.connectedComponents(near, connectivity=8)
        return labels == labels[0, 0]

    def _line(self, name: str) -> int:
        """Depth (pixels) of a steady dark line along the edge, as deep along most of it
        (five of eight segments); 0 for none."""
        mean, std = self._stats(name)
        d = mean.shape[0] // 2
        ref = mean[d:].mean(0)
        dark = (mean[:d] < self.line_ratio * ref) & (std[:d] < self.max_cv * mean[:d] + 2.0)
        depth = np.argmin(np.vstack([dark, np.zeros((1, 8), bool)]), 0)  # leading dark rows
        return int(np.sort(depth)[3])

    def patch(self) -> GatePatch | None:
        """The gate's pixels and feather, or None when the film shows no gate."""
        if self._cache is not None and self._cache[0] == self._count:
            return self._cache[1]
        out = self._find() if self._count >= self.min_frames and self._shape else None
        self._cache = self._count, out
        return out

    def _find(self) -> GatePatch | None:
        assert self._shape is not None
        h, w = self._shape
        if "tl" not in self._sums:
            return None
        notches = {k: self._notch(k) for k in ("tl", "tr", "bl", "br")}
        if any(n is None for n in notches.values()):
            return None
        c, _ = self._sizes(h, w)
        mask = np.zeros((h, w), np.uint8)
        places = {
            "tl": (slice(0, c), slice(0, c), 1, 1),
            "tr": (slice(0, c), slice(w - c, w), 1, -1),
            "bl": (slice(h - c, h), slice(0, c), -1, 1),
            "br": (slice(h - c, h), slice(w - c, w), -1, -1),
        }
        for k, (rows, cols, sy, sx) in places.items():
            mask[rows, cols] |= notches[k][::sy, ::sx].astype(np.uint8)  # type: ignore[index]
        lines = {k: self._line(k) for k in ("top", "bottom", "left", "right")}
        mask[: lines["top"]] = 1
        mask[h - lines["bottom"] :] = 1  # (an empty slice for depth 0)
        mask[:, : lines["left"]] = 1
        mask[:, w - lines["right"] :] = 1
        r = max(1, round(0.004 * h))  # the rim's last, lightest pixels
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
        sigma = max(1.0, self.feather * h)
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
        alpha = np.maximum(np.clip(2 * alpha, 0, 1), mask.astype(np.float32))
        alpha[alpha < 0.02] = 0
        n, _, stats, _ = cv2.connectedComponentsWithStats((alpha > 0).astype(np.uint8))
        rects = [(slice(y, y + hh), slice(x, x + ww)) for x, y, ww, hh, _ in stats[1:n].tolist()]
        return GatePatch(mask > 0, alpha, rects)
