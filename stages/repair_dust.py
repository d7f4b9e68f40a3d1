"""Dust and dirt: one-frame specks found against the motion-compensated neighbours.

A pixel is a defect when it differs from two aligned, trusted neighbours in the same
direction by more than a threshold while those two agree with each other (the picture
there is the same before and after; only this frame has something else). The pairs are
tried in order: the frames just before and after, then two apart, then two on one side
(the first and last frames of a scene). Found specks are grown into their faint rim and
replaced by the mean of the pair that found them, with a soft edge.

A small object that moves too fast for the flow (a ball, a raindrop) looks the same at
first; so each candidate blob large enough to be an object is looked for near its place
in both neighbours (template matching): found in both, it is real and stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .repair_align import Neighbour, median_u8

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
# match leaves at most this share of the mismatch at its own place.
NEARBY_RATIO = 0.2
NEARBY_SEARCH = 0.34
# The two velocities of a moving object may differ by this share (it speeds up, turns).
VELOCITY_TOLERANCE = 0.25
# Ring around a blob (outer radius, px) that must agree with the neighbours, and the
# largest fraction of it that may not (grain, a neighbouring speck).
RING = 4
RING_MAX_ODD = 0.25
RING_MAX_ODD_SPECK = 0.5
# Blobs of at least this many pixels (up to 480 lines; above, scaled with the area) are
# "large": they must have a calm ring around them.
LARGE_AREA = 30
# Blur (px) before comparing: thins the grain more than it dims a speck.
PRE_SIGMA = 0.6
ENV_SIGMA = 1.2
QUARTER = 3
# Brightness bins in which the grain's sigma is measured separately.
LEVEL_BINS = 8


@dataclass
class DustResult:
    """The repaired picture and what was found."""

    image: np.ndarray  # uint8 RGB
    specks: int  # blobs replaced
    kept: int  # blobs kept as real moving objects


def find_and_remove(
    image: np.ndarray,
    luma: np.ndarray,
    neighbours: dict[int, Neighbour],
    min_contrast: float,
    factor: float,
    max_size: int,
    search: int,
) -> DustResult:
    """Replace one-frame specks of ``image`` (uint8 RGB, uint8 luma ``luma``) from the
    pairs of ``neighbours`` (offset -> :class:`Neighbour`). A speck differs from both of a
    pair by ``factor`` times the grain's sigma (after a light blur, which keeps a speck
    and thins the grain) and at least ``min_contrast`` levels; ``max_size``: the largest
    speck diameter in pixels; ``search``: how far (px) a moving object is looked for."""
    smooth = _pre(luma)
    near = {k: _pre(nb.luma) for k, nb in neighbours.items()}
    level = near[min(near, key=lambda k: (abs(k), k))]
    sigma = _sigma_by_level(smooth, level, near, neighbours)
    table = np.clip(np.rint(np.maximum(min_contrast, factor * sigma)), 1, 255).astype(np.uint8)
    threshold = cv2.LUT(level, table)
    contrast, pair_of, odd = _contrast(smooth, near, neighbours, threshold)
    core = cv2.compare(contrast, threshold, cv2.CMP_GT) // 255
    if not core.any():
        return DustResult(image, 0, 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    keep = np.ones(n, bool)
    keep[0] = False
    kept = 0
    big = max_size + 2  # the light blur spreads a speck by about a pixel each way
    large = round(LARGE_AREA * max(1.0, luma.shape[0] / 480) ** 2)
    both_sides = any(k < 0 for k in neighbours) and any(k > 0 for k in neighbours)
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if w > big or h > big or area > big * big:
            keep[i] = False  # too large for a speck: a change of the picture
        elif (
            both_sides
            and _one_sided(pair_of, labels, i, (x, y, w, h), neighbours)
            or (
                _in_motion(labels, i, (x, y, w, h), odd, contrast, threshold, large)
                or _found_nearby(
                    luma, neighbours, (x, y, w, h), max(2, round(NEARBY_SEARCH * search))
                )
                or (
                    area >= VERIFY_MIN_AREA
                    and _moving_object(luma, labels, i, neighbours, (x, y, w, h), search)
                )
            )
        ):
            keep[i] = False
            kept += 1
    specks = int(keep.sum())
    if specks == 0:
        return DustResult(image, 0, kept)
    core = keep[labels].astype(np.uint8)
    # grow into the speck's faint rim (same direction, a third of the threshold), 2 px
    weak = cv2.compare(contrast, threshold // 3, cv2.CMP_GT) // 255
    grown = cv2.dilate(core, _ELLIPSE5) & weak | cv2.dilate(core, _SQUARE3)
    alpha = np.maximum(grown.astype(np.float32), cv2.blur(grown.astype(np.float32), (3, 3)))
    ys, xs = np.nonzero(alpha > 0)
    pair = pair_of[ys, xs].astype(np.int16) - 1
    valid = pair >= 0
    ys, xs, pair = ys[valid], xs[valid], pair[valid]
    out = image.copy()
    for p, (a, b) in enumerate(PAIRS):
        sel = pair == p
        if not sel.any():
            continue
        py, px = ys[sel], xs[sel]
        rep = 0.5 * (neighbours[a].colour(py, px) + neighbours[b].colour(py, px))
        al = alpha[py, px][:, None]
        mixed = out[py, px] * (1 - al) + rep * al
        out[py, px] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return DustResult(out, specks, kept)


def _pre(luma: np.ndarray) -> np.ndarray:
    """The luma the comparison is made on: lightly smoothed (grain thins, a speck stays)."""
    return cv2.GaussianBlur(luma, (0, 0), PRE_SIGMA)


def _sigma_by_level(
    smooth: np.ndarray, level: np.ndarray, near: dict[int, np.ndarray], nbs: dict[int, Neighbour]
) -> np.ndarray:
    """Sigma (levels) of the smoothed grain of one frame at each brightness 0-255: film
    grain is stronger in some tones than others. From the median absolute difference to
    the nearest trusted neighbours (every 3rd pixel each way) in LEVEL_BINS brightness
    bins, interpolated between bin centres; bins with too few pixels take the overall."""
    diffs, levels = [], []
    for k in sorted(near, key=abs)[:2]:
        sel = nbs[k].ok[::3, ::3]
        if sel.sum() > 100:
            diffs.append(cv2.absdiff(smooth[::3, ::3], near[k][::3, ::3])[sel])
            levels.append(level[::3, ::3][sel])
    if not diffs:
        return np.zeros(256)
    d, lv = np.concatenate(diffs), np.concatenate(levels)
    overall = median_u8(d)
    width = 256 // LEVEL_BINS
    bins = lv // width
    meds = np.array(
        [
            median_u8(d[bins == b]) if (bins == b).sum() >= 200 else overall
            for b in range(LEVEL_BINS)
        ]
    )
    centres = np.arange(LEVEL_BINS) * width + width / 2
    return 1.4826 * np.interp(np.arange(256), centres, meds) / np.sqrt(2)


def _contrast(
    luma: np.ndarray,
    near: dict[int, np.ndarray],
    neighbours: dict[int, Neighbour],
    threshold: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How far (uint8 levels) the frame lies beyond the first usable pair in the same
    direction from both (0 where none is trusted or the two disagree), the index + 1 of
    that pair (0: none trusted), and where the frame differs from either of them by half
    the threshold (False where no pair is trusted). ``luma`` and ``near`` (the neighbours'
    lumas) are smoothed uint8; ``threshold`` is uint8 per pixel.

    The frame is compared with each neighbour's 3x3 minimum (for dark specks) and maximum
    (bright): fine texture that the flow aligns to within a pixel then never differs.
    Everything is uint8 masks (0/255) and saturating OpenCV arithmetic: this runs on every
    pixel of every frame."""
    shape = luma.shape
    contrast = np.zeros(shape, np.uint8)
    pair_of = np.zeros(shape, np.uint8)
    odd = np.zeros(shape, np.uint8)
    free = np.full(shape, 255, np.uint8)
    ok = {k: nb.ok.view(np.uint8) * np.uint8(255) for k, nb in neighbours.items()}
    env: dict[int, tuple[np.ndarray, ...]] = {}
    half = threshold // 2
    part = threshold // QUARTER
    for p, (a, b) in enumerate(PAIRS):
        if a not in neighbours or b not in neighbours:
            continue
        usable = cv2.bitwise_and(free, cv2.bitwise_and(ok[a], ok[b]))
        if not cv2.countNonZero(usable):
            continue
        for k in (a, b):
            if k not in env:
                # a speck is judged against the neighbour's envelope with its grain thinned
                # (the envelope of raw grain swallows a faint speck), but never more than
                # a part of the threshold inside the plain one (texture the flow aligns
                # only to a pixel needs that); the ring around it against the plain one
                lo, hi = cv2.erode(near[k], _SQUARE3), cv2.dilate(near[k], _SQUARE3)
                calm = cv2.GaussianBlur(near[k], (0, 0), ENV_SIGMA)
                env[k] = (
                    cv2.min(cv2.erode(calm, _SQUARE3), cv2.add(lo, part)),
                    cv2.max(cv2.dilate(calm, _SQUARE3), cv2.subtract(hi, part)),
                    lo,
                    hi,
                )
        # saturating: how far below both minima (dark) / above both maxima (bright)
        dark = cv2.subtract(cv2.min(env[a][0], env[b][0]), luma)
        bright = cv2.subtract(luma, cv2.max(env[a][1], env[b][1]))
        size = cv2.max(dark, bright)  # at most one of them is above 0
        # outside both neighbours' plain envelopes by half the threshold: neither
        # explains the frame there (one badly aligned neighbour does not make it odd)
        outside = cv2.bitwise_and(_outside(luma, env[a], half), _outside(luma, env[b], half))
        # the neighbours agree: their difference is small beside the frame's
        gap = cv2.absdiff(near[a], near[b])
        agree = cv2.bitwise_or(
            cv2.compare(gap, threshold, cv2.CMP_LT),
            cv2.compare(cv2.add(gap, gap), size, cv2.CMP_LT),
        )
        cv2.copyTo(size, cv2.bitwise_and(usable, agree), contrast)
        cv2.bitwise_or(odd, cv2.bitwise_or(outside, cv2.bitwise_not(agree)), odd, mask=usable)
        pair_of[usable > 0] = p + 1  # trusted pair: later pairs do not overrule it
        free = cv2.bitwise_and(free, cv2.bitwise_not(usable))
        if not cv2.countNonZero(free):
            break
    return contrast, pair_of, odd > 0


def _outside(luma: np.ndarray, env: tuple[np.ndarray, ...], margin: np.ndarray) -> np.ndarray:
    """Mask (0/255) where ``luma`` lies more than ``margin`` beyond a neighbour's plain
    envelope (``env[2:]``: its 3x3 minimum and maximum)."""
    beyond = cv2.max(cv2.subtract(luma, env[3]), cv2.subtract(env[2], luma))
    return cv2.compare(beyond, margin, cv2.CMP_GT)


def _in_motion(
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
    h, w = labels.shape
    x, y, bw, bh = box
    r = RING
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)
    blob = labels[y0:y1, x0:x1] == label
    blob8 = blob.astype(np.uint8)
    ring = cv2.dilate(blob8, _RING_OUT).astype(bool) & ~cv2.dilate(blob8, _SQUARE3).astype(bool)
    if not ring.any():
        return False
    frac = float(odd[y0:y1, x0:x1][ring].mean())
    if frac <= RING_MAX_ODD:
        return False
    area = int(blob.sum())
    if frac > RING_MAX_ODD_SPECK or area >= large:
        return True  # a large wrong patch shows: only small specks get the benefit
    compact = area >= 0.5 * bw * bh and max(bw, bh) <= 2 * min(bw, bh)
    strong = contrast[y0:y1, x0:x1][blob] >= 2 * threshold[y0:y1, x0:x1][blob].astype(np.int16)
    return not (compact and float(strong.mean()) >= 0.5)


def _one_sided(
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


def _found_nearby(
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


def _moving_object(
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


_RING_OUT = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * 4 + 1, 2 * 4 + 1))
_ELLIPSE5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
_SQUARE3 = np.ones((3, 3), np.uint8)
