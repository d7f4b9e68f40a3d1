"""Motion compensation for the repair stage: where each pixel of a frame lies in its
neighbours, and whether that correspondence can be trusted.

Each pair of consecutive frames of a scene is registered once, at a reduced size: the
global camera motion first (corners tracked with pyramidal Lucas-Kanade, a robust fit by
:func:`stages.motion.fit_model`), then DIS optical flow started from that motion, so
characters that move on their own are followed too. Both directions are computed; a
pixel is trusted where the backward and forward flows undo each other (an occlusion or
a failed match does not) and it lands inside the other frame. Maps to the frames two
apart are the two one-frame maps composed, trusted where both steps are. Small holes of
distrust (a speck unsettles the flow at its own place) are filled from the motion
around them (:func:`fill_holes`).

Maps are ``(h, w, 2)`` float32 arrays on the small grid: for each small pixel of frame
A, its (x, y) position in frame B's small grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from .motion import fit_model

# Forward-backward error (small-grid pixels) above which a match is distrusted; the
# flow is accurate to a fraction of a pixel where it is right and off by several where
# it is wrong.
FB_TOLERANCE = 0.75
# LK corners for the global motion: enough for a robust fit at the small size.
MAX_CORNERS = 150
MIN_INLIERS = 12
# Where the flow is distrusted, the global motion is taken if the median-filtered small
# pictures differ by less than this many times their typical difference under the flow
# (and at least PHOTO_MIN levels).
PHOTO_FACTOR = 3.0
PHOTO_MIN, PHOTO_MAX = 4.0, 12.0
# Below this share of trusted flow a pair without a global motion is taken for two shots.
MIN_TRUSTED = 0.25
# Phase-correlation peak (0-1) above which the shift it gives is taken: 0.6-1 between the
# frames of one shot (grainy, flat, shaking), about 0.1 across a cut.
PHASE_MIN = 0.3
# The motion around the flow's holes is smoothed at 1/(hole size / HOLE_REDUCE) of the
# small size: a Gaussian of half the hole size still spans two reduced pixels.
HOLE_REDUCE = 4


@dataclass
class Small:
    """A frame at the flow size: grey uint8 for matching, luma float32 for brightness."""

    gray: np.ndarray
    luma: np.ndarray


@dataclass
class Neighbour:
    """A neighbour warped onto the repaired frame and brought to its brightness: RGB and
    luma uint8, where the alignment is trusted, and where the neighbour sees the place."""

    rgb: np.ndarray
    luma: np.ndarray
    ok: np.ndarray
    seen: np.ndarray  # bool on the flow grid: the place lies inside the neighbour's picture

    @cached_property
    def inside(self) -> np.ndarray:
        """``seen`` at full size (bool): made only when asked for (rarely needed)."""
        h, w = self.ok.shape
        small = self.seen.view(np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).view(bool)

    def colour(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Float32 (n, 3) colours at the pixels (ys, xs)."""
        return self.rgb[ys, xs].astype(np.float32)


@dataclass
class Link:
    """Registration of a frame with the one before it (small-grid maps both ways)."""

    back: np.ndarray  # this frame's pixels in the previous frame
    back_ok: np.ndarray  # bool: trusted
    fwd: np.ndarray  # the previous frame's pixels in this frame
    fwd_ok: np.ndarray
    shift: np.ndarray  # 3x3: this frame's small coords -> previous frame's (global motion)
    g_back: np.ndarray  # the global motion as maps, both ways
    g_fwd: np.ndarray
    # whether ``shift`` can stand for the motion: found, or the identity for a picture
    # too flat to track (where no motion shows anyway); False when none fits
    found: bool


class Aligner:
    """Registers consecutive frames at ``flow_width`` and warps neighbours onto a frame."""

    def __init__(self, flow_width: int = 256):
        if flow_width < 32:
            raise ValueError(f"flow_width must be >= 32, got {flow_width}")
        self.flow_width = flow_width
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        self._windows: dict[tuple[int, int], np.ndarray] = {}

    def small_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """Flow size (w, h) for frames of ``shape``."""
        h, w = shape[:2]
        sw = min(self.flow_width, w)
        return sw, max(8, round(h * sw / w))

    def small(self, rgb: np.ndarray) -> Small:
        """The frame shrunk (area average, so grain and specks are diluted) to the flow size."""
        size = self.small_size(rgb.shape)
        shrunk = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(shrunk, cv2.COLOR_RGB2GRAY)
        return Small(gray, gray.astype(np.float32))

    def grid(self, w: int, h: int) -> np.ndarray:
        """Identity map (h, w, 2) float32 (cached per size)."""
        g = self._grids.get((w, h))
        if g is None:
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            g = self._grids[(w, h)] = np.dstack([xs, ys])
        return g

    def link(self, prev: Small, cur: Small) -> Link:
        """Register ``cur`` with ``prev`` (global motion, then DIS flow both ways)."""
        h, w = cur.gray.shape
        window = self._windows.get((w, h))
        if window is None:
            window = self._windows[(w, h)] = cv2.createHanningWindow((w, h), cv2.CV_32F)
        shift, status = global_motion(prev, cur, window)  # cur -> prev
        grid = self.grid(w, h)
        g_back = _apply(shift, grid)
        g_fwd = _apply(np.linalg.inv(shift), grid)
        back = self._flow(cur.gray, prev.gray, g_back - grid) + grid
        fwd = self._flow(prev.gray, cur.gray, g_fwd - grid) + grid
        back_ok = _consistent(back, fwd, grid)
        fwd_ok = _consistent(fwd, back, grid)
        if status == "no fit" and back_ok.mean() < MIN_TRUSTED:
            # a textured picture, yet no camera motion fits and the flow mostly fails:
            # another shot (a cut the scene detector missed); nothing of it is trusted
            back_ok[:] = False
            fwd_ok[:] = False
        return Link(back, back_ok, fwd, fwd_ok, shift, g_back, g_fwd, status != "no fit")

    def fall_back(self, link: Link, prev: np.ndarray, cur: np.ndarray) -> None:
        """Where the flow is distrusted, take the global motion instead if the pictures
        agree under it: flat areas (a sky) where the flow wanders with a nearby moving
        character. ``prev`` and ``cur`` are the small lumas at the same brightness; both
        are median-filtered first so a speck does not decide."""
        if not link.found:
            return  # a textured picture that no global motion explains
        a, b = cv2.medianBlur(prev, 5), cv2.medianBlur(cur, 5)
        for there, ok, glob, src, dst in (
            (link.back, link.back_ok, link.g_back, a, b),
            (link.fwd, link.fwd_ok, link.g_fwd, b, a),
        ):
            if ok.all():
                continue
            dense = cv2.absdiff(cv2.remap(src, there, None, cv2.INTER_LINEAR), dst)
            typical = np.minimum(dense[ok], 255).astype(np.uint8)
            noise = 1.4826 * median_u8(typical) if ok.sum() > 64 else 2.0
            tol = min(max(PHOTO_MIN, PHOTO_FACTOR * noise), PHOTO_MAX)
            moved = cv2.absdiff(cv2.remap(src, glob, None, cv2.INTER_LINEAR), dst)
            use = ~ok & _inside(glob, ok.shape)
            use &= (cv2.erode(moved, np.ones((3, 3), np.uint8)) < tol) & (moved < tol)
            there[use] = glob[use]
            ok |= use

    def _flow(self, a: np.ndarray, b: np.ndarray, init: np.ndarray) -> np.ndarray:
        """DIS flow from ``a`` to ``b`` (a(x) ~ b(x + flow)) started from ``init`` (DIS takes
        a flow of the right size and type as its starting point)."""
        flow = np.ascontiguousarray(init, dtype=np.float32)
        return self._dis.calc(a, b, flow)

    def to_full(
        self, small_map: np.ndarray, ok: np.ndarray, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A small-grid map as a full-resolution remap map (H, W, 2), its bool trust, and
        where it points inside the other picture (bool, on the small grid)."""
        h, w = shape[:2]
        sh, sw = small_map.shape[:2]
        scale = tuple(float(np.float32(v)) for v in (w / sw, h / sh, 0, 0))
        # OpenCV's arithmetic: numpy's over a trailing axis of two is many times slower
        disp = cv2.multiply(cv2.subtract(small_map, self.grid(sw, sh)), scale)
        disp = cv2.resize(disp, (w, h), interpolation=cv2.INTER_LINEAR)
        disp += self.grid(w, h)
        trust = cv2.resize(ok.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        return disp, trust.view(bool), _inside(small_map, (sh, sw), 0.5)


def compose(
    ab: np.ndarray, ab_ok: np.ndarray, bc: np.ndarray, bc_ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The map A -> C from A -> B and B -> C, trusted where both steps are."""
    ac = cv2.remap(bc, ab, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ok_c = cv2.remap(bc_ok.astype(np.float32), ab, None, cv2.INTER_LINEAR, borderValue=0.0)
    return ac, ab_ok & (ok_c > 0.99)


def fill_holes(
    small_map: np.ndarray, ok: np.ndarray, grid: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The map with its small distrusted holes (at most ``size`` small pixels across)
    filled from the trusted motion around them, and trusted where that lands inside the
    other picture: a speck of the frame unsettles the flow at its own place (the
    neighbour has nothing to match it), while the picture under it moves as around it.
    Something that moves on its own there is then told by the dust stage's judgement.

    The motion around is a normalised Gaussian (sigma ``size / 2``) of the trusted
    displacement, taken for all holes at once at a reduced size (the motion around a
    hole is smooth; a Gaussian that wide costs little there)."""
    hole = (~ok).view(np.uint8)
    n, labels, stats = blobs(hole)
    if n <= 1:
        return small_map, ok
    h, w = ok.shape
    small = (stats[:, cv2.CC_STAT_WIDTH] <= size) & (stats[:, cv2.CC_STAT_HEIGHT] <= size)
    small[0] = False  # label 0: the trusted pixels
    if not small.any():
        return small_map, ok
    ys, xs = nonzero(np.take(small.view(np.uint8), labels))
    weight = ok.astype(np.float32)
    dx, dy = cv2.split(cv2.subtract(small_map, grid))  # by OpenCV: as numpy's, faster
    field = cv2.merge([cv2.multiply(dx, weight), cv2.multiply(dy, weight), weight])
    sigma = max(1.0, size / 2)
    f = max(1, size // HOLE_REDUCE)
    if f > 1:
        field = cv2.resize(
            field, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA
        )
    field = cv2.GaussianBlur(field, (0, 0), sigma * field.shape[1] / w)
    if f > 1:
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    num, den = field[ys, xs, :2], field[ys, xs, 2]
    there = grid[ys, xs] + num / np.maximum(den, 1e-3)[:, None]
    land = _inside(there[:, None], ok.shape)[:, 0] & (den > 1e-3)
    out = small_map.copy()
    trusted = ok.copy()
    out[ys, xs] = there
    trusted[ys, xs] = land
    return out, trusted


def warp(image: np.ndarray, full_map: np.ndarray) -> np.ndarray:
    """``image`` (uint8 RGB) sampled at ``full_map`` (bilinear; edges replicated: they are
    untrusted). Padded to four channels for the remap: OpenCV vectorises the float-map
    remap of one and four channels, which makes it about four times as fast as of three."""
    rgba = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
    out = cv2.remap(rgba, full_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)


def nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D uint8 or bool ``mask`` (rows, columns; in the same order),
    by OpenCV: many times as fast on a frame with few set pixels."""
    pts = cv2.findNonZero(mask.view(np.uint8))
    if pts is None:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    pts = pts.reshape(-1, 2)
    return pts[:, 1].astype(np.intp), pts[:, 0].astype(np.intp)


def blobs(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a uint8 ``mask``: count (with the background, label 0),
    int32 labels and OpenCV's stats. By Grana's block-based algorithm: about three times
    as fast as OpenCV's default on a frame of scattered grain-sized blobs."""
    n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask, 8, cv2.CV_32S, cv2.CCL_GRANA
    )
    return n, labels, stats


def median_u8(values: np.ndarray) -> float:
    """Median of uint8 values by counting (much faster than sorting); 0 when empty."""
    if values.size == 0:
        return 0.0
    counts = np.bincount(values.ravel(), minlength=256)
    return float(np.searchsorted(np.cumsum(counts), (values.size + 1) / 2))


def global_motion(prev: Small, cur: Small, window: np.ndarray) -> tuple[np.ndarray, str]:
    """3x3 map from ``cur``'s pixel coords to ``prev``'s, and how it was got: ``found``
    (corners tracked and fitted, or else a clear phase-correlation peak: a pure shift),
    ``flat`` (too little to track: the identity, where no motion shows anyway) or
    ``no fit`` (a textured picture that no motion explains: the identity). ``window``:
    a Hanning window of the small size, for the phase correlation."""
    shift = _tracked(prev.gray, cur.gray)
    if shift is not None:
        return shift, "found"
    # copies: OpenCV 5's phaseCorrelate multiplies its inputs by the window in place
    (dx, dy), response = cv2.phaseCorrelate(prev.luma.copy(), cur.luma.copy(), window)
    if response >= PHASE_MIN:
        return np.array([[1.0, 0, -dx], [0, 1.0, -dy], [0, 0, 1.0]]), "found"
    corners = cv2.goodFeaturesToTrack(cur.gray, MIN_INLIERS, 0.01, 5, blockSize=5)
    flat = corners is None or len(corners) < MIN_INLIERS
    return np.eye(3), "flat" if flat else "no fit"


def _tracked(prev: np.ndarray, cur: np.ndarray) -> np.ndarray | None:
    """Corners of ``prev`` tracked into ``cur`` (pyramidal LK) and a RANSAC similarity
    fitted (cur -> prev); None when too few corners or inliers. A similarity is enough:
    it only starts the flow and stands in for it where the picture is flat."""
    pts = cv2.goodFeaturesToTrack(prev, MAX_CORNERS, 0.01, 5, blockSize=5)
    if pts is None or len(pts) < MIN_INLIERS:
        return None
    levels = max(1, int(np.log2(min(prev.shape) / 24)))
    moved, st, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(15, 15), maxLevel=levels)
    good = st.ravel() == 1
    if good.sum() < MIN_INLIERS:
        return None
    m, n, _ = fit_model(moved[good], pts[good], "similarity", 1.0)
    return m if n >= MIN_INLIERS else None


def _apply(m: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Points of ``grid`` (h, w, 2) mapped by the 3x3 ``m``."""
    h, w = grid.shape[:2]
    return cv2.perspectiveTransform(grid.reshape(-1, 1, 2), m).reshape(h, w, 2).astype(np.float32)


def _consistent(there: np.ndarray, back: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Where going ``there`` and sampling the reverse map ``back`` returns to the start,
    inside the other frame."""
    home = cv2.remap(back, there, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    dx, dy = cv2.split(cv2.subtract(home, grid))
    err = cv2.add(cv2.multiply(dx, dx), cv2.multiply(dy, dy))
    return _inside(there, grid.shape) & (err < FB_TOLERANCE**2)


def _inside(points: np.ndarray, shape: tuple[int, ...], margin: float = 0.0) -> np.ndarray:
    """Bool: where the (x, y) of ``points`` (h, w, 2) lie inside a picture of ``shape``
    (pixel centres from 0 to size - 1, and ``margin`` more each way)."""
    h, w = shape[:2]
    lo, hi = (-margin, -margin), (w - 1 + margin, h - 1 + margin)
    return cv2.inRange(points, lo, hi) > 0
