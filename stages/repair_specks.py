"""Which candidate blobs of the dust search are specks, and which are picture.

A blob that differs from both aligned neighbours of a pair in the same direction is a
speck only if nothing says it is a piece of the picture that the flow failed to follow:

- its surroundings disagree with the neighbours too (:func:`in_motion`, a ring 2-4 px
  around it: the changing edge of something moving; a large blob must sit in calm),
  unless it is compact and stands out from the neighbours many times more than its
  surroundings do (:func:`stands_out`: a speck on a picture the flow follows loosely);
- it was found from one side only where the other side sees the place but distrusts it
  all around (:func:`one_sided`: something new before a wild change or a flash);
- it is found, with its surroundings, a little off its place in both nearest
  neighbours (:func:`found_nearby`: a piece the flow put a few pixels wrong);
- it is found displaced in two neighbours at one velocity (:func:`moving_object`: a
  ball, a raindrop, too small and fast for the flow).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .repair_align import Neighbour

# Neighbour pairs in order of preference (offsets from the repaired frame).
PAIRS = ((-1, 1), (-2, 2), (1, 2), (-1, -2))
# Pairs from one side only (indices into PAIRS): within a scene, where the other side
# sees the place but is distrusted all around it (a wild change, a flash), something new
# appearing looks like a speck from one side, so there they find none.
ONE_SIDED = (2, 3)
# Blobs of at least this many pixels are checked for being a real moving object; smaller
# ones are grain-sized and replacing them is harmless.
VERIFY_MIN_AREA = 6
# Template margin (pixels) around a blob: the object's surroundings must match too.
VERIFY_MARGIN = 3
# A blob is found in a neighbour when the best match there leaves at most this fraction
# of the mismatch at the blob's own place.
VERIFY_RATIO = 0.3
# A blob and its surroundings are found near its place in a neighbour when the best
# match leaves at most this share of the mismatch at its own place ...
NEARBY_RATIO = 0.2
# ... searched over this share of the moving-object search (a flow error is small).
NEARBY_SEARCH = 0.34
# The two velocities of a moving object may differ by this share (it speeds up, turns).
VELOCITY_TOLERANCE = 0.25
# Ring around a blob (outer radius, px) that must agree with the neighbours, and the
# largest fraction of it that may not (grain, a neighbouring speck).
RING = 4
RING_MAX_ODD = 0.25
RING_MAX_ODD_SPECK = 0.5
# A compact blob whose median difference from its pair's mean is this many times the
# ring's 75th percentile stands out of a loosely aligned picture as only dirt does.
STANDOUT = 6.0
# Blobs of at least this many pixels (up to 480 lines; above, scaled with the area) are
# "large": they must have a calm ring around them.
LARGE_AREA = 30


@dataclass
class Judge:
    """What one frame's search found, for telling specks from picture blob by blob:
    the frame's luma (uint8), the candidate labels, the odd mask (the frame disagrees
    with its pair there), the contrast and threshold maps (uint8), the pair index + 1 of
    every pixel, the aligned neighbours and the moving-object search radius (px)."""

    luma: np.ndarray
    labels: np.ndarray
    odd: np.ndarray
    contrast: np.ndarray
    threshold: np.ndarray
    pair_of: np.ndarray
    neighbours: dict[int, Neighbour]
    search: int

    def __post_init__(self) -> None:
        self.large = round(LARGE_AREA * max(1.0, self.luma.shape[0] / 480) ** 2)
        nbs = self.neighbours
        self.both_sides = any(k < 0 for k in nbs) and any(k > 0 for k in nbs)

    def pixels_in_motion(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """:func:`in_motion` for one-pixel blobs at (``ys``, ``xs``), all at once (bool per
        blob). Only the ring judges them: matching one pixel's surroundings elsewhere
        tells little, and grain makes hundreds of them a frame."""
        h, w = self.odd.shape
        yy = ys[:, None] + _RING_DY[None, :]
        xx = xs[:, None] + _RING_DX[None, :]
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        odd = self.odd[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)] & inside
        frac = odd.sum(axis=1) / np.maximum(inside.sum(axis=1), 1)
        strong = self.contrast[ys, xs] >= 2 * self.threshold[ys, xs].astype(np.int16)
        return (frac > RING_MAX_ODD) & ((frac > RING_MAX_ODD_SPECK) | ~strong)

    def is_picture(self, label: int, box: tuple[int, int, int, int], area: int) -> bool:
        """Whether the candidate blob ``label`` (bounding ``box``, ``area`` px) is a piece
        of the picture rather than a speck (see the module docstring)."""
        nbs = self.neighbours
        if self.both_sides and one_sided(self.pair_of, self.labels, label, box, nbs):
            return True
        if in_motion(
            self.labels, label, box, self.odd, self.contrast, self.threshold, self.large
        ) and not stands_out(self.luma, self.labels, label, box, nbs):
            return True
        if found_nearby(self.luma, nbs, box, max(2, round(NEARBY_SEARCH * self.search))):
            return True
        return area >= VERIFY_MIN_AREA and moving_object(
            self.luma, self.labels, label, nbs, box, self.search
        )


def in_motion(
    labels: np.ndarray,
    label: int,
    box: tuple[int, int, int, int],
    odd: np.ndarray,
    contrast: np.ndarray,
    threshold: np.ndarray,
    large: int,
) -> bool:
    """Whether the blob's surroundings (a ring 2-4 px out) disagree with the neighbours
    too: a speck sits on a picture that the neighbours show unchanged; the changing
    edge of something moving does not. A small speck (under ``large`` pixels) beside a
    moving edge has part of its ring disagreeing: up to RING_MAX_ODD_SPECK of it is
    allowed for a blob that looks like a speck (compact, and twice the threshold's
    contrast), which the sliver along a moving edge does not; a large blob gets no such
    benefit (a wrong large patch shows: a piece of a limb pasted over)."""
    win, blob, ring = _blob_and_ring(labels, label, box)
    around = cv2.countNonZero(ring.view(np.uint8))
    if not around:
        return False
    # the share of the ring that is odd (counted by OpenCV: the same as numpy's mean)
    frac = cv2.countNonZero(cv2.bitwise_and(odd[win].view(np.uint8), ring.view(np.uint8))) / around
    if frac <= RING_MAX_ODD:
        return False
    area = int(blob.sum())
    if frac > RING_MAX_ODD_SPECK or area >= large:
        return True  # a large wrong patch shows: only small specks get the benefit
    strong = contrast[win][blob] >= 2 * threshold[win][blob].astype(np.int16)
    return not (_compact(area, box) and float(strong.mean()) >= 0.5)


def _blob_and_ring(
    labels: np.ndarray, label: int, box: tuple[int, int, int, int]
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The window around the blob (its box and RING px more, inside the frame), and in
    it the blob's pixels and its ring 2-4 px out."""
    h, w = labels.shape
    x, y, bw, bh = box
    r = RING
    win = slice(max(0, y - r), min(h, y + bh + r)), slice(max(0, x - r), min(w, x + bw + r))
    blob = (labels[win] == label).view(np.uint8)
    # the ellipse holds the 3x3 square: the difference of the two dilations is the ring
    ring = cv2.subtract(cv2.dilate(blob, _RING_OUT), cv2.dilate(blob, _SQUARE3))
    return win, blob.view(bool), ring.view(bool)


def _compact(area: int, box: tuple[int, int, int, int]) -> bool:
    """Whether a blob of ``area`` px fills at least half its box, at most twice as long as wide."""
    bw, bh = box[2], box[3]
    return area >= 0.5 * bw * bh and max(bw, bh) <= 2 * min(bw, bh)


def stands_out(
    luma: np.ndarray,
    labels: np.ndarray,
    label: int,
    box: tuple[int, int, int, int],
    neighbours: dict[int, Neighbour],
) -> bool:
    """Whether the blob is compact and differs from the mean of its nearest pair
    STANDOUT times more (median) than its ring 2-4 px out does (75th percentile): a
    picture the flow follows only loosely (fur, a waving limb) differs around a speck a
    little everywhere; a piece of it the flow lost differs about as much as its ring."""
    pair = next((p for p in PAIRS if set(p) <= neighbours.keys()), None)
    if pair is None:
        return False
    win, blob, ring = _blob_and_ring(labels, label, box)
    if not _compact(int(blob.sum()), box) or not ring.any():
        return False
    a, b = (neighbours[k].luma[win].astype(np.float32) for k in pair)
    dev = np.abs(luma[win] - 0.5 * (a + b))
    return float(np.median(dev[blob])) >= STANDOUT * max(1.0, float(np.percentile(dev[ring], 75)))


def one_sided(
    pair_of: np.ndarray,
    labels: np.ndarray,
    label: int,
    box: tuple[int, int, int, int],
    neighbours: dict[int, Neighbour],
) -> bool:
    """Whether the blob was found by a pair from one side only (see ONE_SIDED) while
    the other side, seeing this place, is distrusted all around it (a wide change or
    occlusion there, not just the speck unsettling the flow at its own place)."""
    h, w = labels.shape
    x, y, bw, bh = box
    found = pair_of[y : y + bh, x : x + bw][labels[y : y + bh, x : x + bw] == label]
    if found.max() <= min(ONE_SIDED):  # pair_of is the index + 1: none found one-sided
        return False
    pairs = set((found.astype(np.int16) - 1).tolist()) & set(ONE_SIDED)
    if not pairs:
        return False
    other = neighbours[-1 if PAIRS[min(pairs)][0] > 0 else 1]  # the side not looked at
    r = max(bw, bh)
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)
    # where the other side does not see this place at all (the picture's edge in a
    # pan), it knows nothing against the pair: only distrust inside it counts
    inside = other.inside[y0:y1, x0:x1]
    if inside.mean() < 0.5:
        return False
    return float(other.ok[y0:y1, x0:x1][inside].mean()) < 0.5


def found_nearby(
    luma: np.ndarray, neighbours: dict[int, Neighbour], box: tuple[int, int, int, int], radius: int
) -> bool:
    """Whether the blob with its surroundings (VERIFY_MARGIN px) is found a little off its
    place in both nearest neighbours: a piece of picture the flow put a few pixels wrong
    (the edge of a quickly drawn limb), not a speck, which no neighbour shows."""
    h, w = luma.shape
    x, y, bw, bh = box
    m = VERIFY_MARGIN
    x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)
    template = luma[y0:y1, x0:x1]
    sides = [k for k in (-1, 1) if k in neighbours] or sorted(neighbours, key=abs)[:1]
    for k in sides:
        sx0, sy0 = max(0, x0 - radius), max(0, y0 - radius)
        sx1, sy1 = min(w, x1 + radius), min(h, y1 + radius)
        res = cv2.matchTemplate(neighbours[k].luma[sy0:sy1, sx0:sx1], template, cv2.TM_SQDIFF)
        here = float(res[y0 - sy0, x0 - sx0])
        if not float(res.min()) < NEARBY_RATIO * here:
            return False
    return True


def moving_object(
    luma: np.ndarray,
    labels: np.ndarray,
    label: int,
    neighbours: dict[int, Neighbour],
    box: tuple[int, int, int, int],
    search: int,
) -> bool:
    """Whether the blob in ``box`` is found displaced near its place in two neighbours
    (before and after; at a scene's ends, two on one side) as moving at one velocity:
    then it is a real object moving on its own (a ball, a raindrop) that the flow missed.
    Only the blob's own pixels (grown a pixel) are matched: an object crosses a different
    background each frame."""
    h, w = luma.shape
    x, y, bw, bh = box
    m = VERIFY_MARGIN
    x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)
    template = luma[y0:y1, x0:x1].astype(np.float32)
    mask = cv2.dilate((labels[y0:y1, x0:x1] == label).astype(np.uint8), _SQUARE3)
    mask = mask.astype(np.float32)
    sides = [p for p in ((-1, 1), (-2, 2), (1, 2), (-1, -2)) if set(p) <= neighbours.keys()]
    if not sides:
        return False
    a, b = sides[0]
    moves = []
    for k in (a, b):
        sx0, sy0 = max(0, x0 - search), max(0, y0 - search)
        sx1, sy1 = min(w, x1 + search), min(h, y1 + search)
        area = neighbours[k].luma[sy0:sy1, sx0:sx1].astype(np.float32)
        res = cv2.matchTemplate(area, template, cv2.TM_SQDIFF, mask=mask)
        here = float(res[y0 - sy0, x0 - sx0])
        best, _, (bx, by), _ = cv2.minMaxLoc(res)
        if not best < VERIFY_RATIO * here:
            return False
        moves.append(np.array([bx + sx0 - x0, by + sy0 - y0], np.float64) / k)
    # the same motion per frame from both: a path through this frame (at a scene's
    # first or last frames, two frames on one side)
    va, vb = moves
    return bool(np.linalg.norm(va - vb) <= max(1.5, VELOCITY_TOLERANCE * np.linalg.norm(va)))


_RING_OUT = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RING + 1, 2 * RING + 1))
_SQUARE3 = np.ones((3, 3), np.uint8)
# the ring of a one-pixel blob: offsets in the ellipse, outside the 3x3 square
_RING_DY, _RING_DX = (
    v - RING for v in np.nonzero(_RING_OUT & ~np.pad(_SQUARE3, RING - 1).astype(bool))
)
