"""Film-gate borders: the dark frame edges (rounded corners, the gate's own outline,
vignettes) that are not picture and must not be used as background or mirrored outwards."""

from __future__ import annotations

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
            y = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64)
            if self._sum is None or self._sum.shape != y.shape:
                self._sum, self._count = np.zeros_like(y), 0
                self._sq = np.zeros_like(y) if self.max_cv is not None else None
            self._sum += y
            if self._sq is not None:
                self._sq += y * y
            self._count += 1

    def copy(self) -> GateDetector:
        """An independent detector with the same frames seen."""
        other = GateDetector(self.band, self.ratio, self.margin, self.max_cv)
        other._sum = None if self._sum is None else self._sum.copy()
        other._sq = None if self._sq is None else self._sq.copy()
        other._count = self._count
        return other

    def mask(self, size: tuple[int, int], margin: bool = True) -> np.ndarray:
        """Unreliable pixels (bool) at ``size`` (w, h); ``margin=False`` leaves out the fixed
        edge margin (for the seam, where only real gate darkness matters)."""
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
        if margin:  # left/right only: the seams are there
            m = max(1, round(self.margin * w))
            out[:, :m] = out[:, -m:] = True
        return out
