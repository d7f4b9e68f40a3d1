"""Dust and dirt: one-frame specks found against the motion-compensated neighbours.

A pixel is a defect when it differs from two aligned, trusted neighbours in the same
direction by more than a threshold while those two agree with each other (the picture
there is the same before and after; only this frame has something else). The pairs are
tried in order: the frames just before and after, then two apart, then two on one side
(where the other side is missing or distrusted: a scene's ends, occlusions). The grain's
strength is measured per brightness band, and the comparison allows for texture that the
flow aligns only to a pixel.

A piece of picture the flow did not follow looks the same at first (a ball, a raindrop,
a limb drawn in one frame); ``repair_specks.py`` judges each candidate blob. The specks
left are grown into their faint rim and replaced by the mean of the pair that found them,
with a soft edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .repair_align import Neighbour, blobs, median_u8, nonzero
from .repair_specks import PAIRS, Judge

# Blur (px) before comparing: thins the grain more than it dims a speck.
PRE_SIGMA = 0.4
# Further blur (px) of a neighbour for the envelope a speck is judged against (its grain
# thinned), which may lie at most a QUARTER-th of the threshold inside the plain envelope.
ENV_SIGMA = 1.2
QUARTER = 3
# How far (px) the envelopes reach: the blur's kernel (OpenCV: 3 sigma for uint8), then a
# 3x3 minimum or maximum, and one to spare.
ENV_REACH = round(3 * ENV_SIGMA) + 2
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
    # the threshold and its parts per pixel, by lookup of the neighbour's level
    threshold, half, part, third = (cv2.LUT(level, table // k) for k in (1, 2, QUARTER, 3))
    contrast, pair_of, odd = _contrast(smooth, near, neighbours, threshold, half, part)
    core = np.greater(contrast, threshold).view(np.uint8)  # 0/1
    if not core.any():
        return DustResult(image, 0, 0)
    n, labels, stats = blobs(core)
    keep = np.ones(n, bool)
    keep[0] = False
    big = max_size + 2  # the light blur spreads a speck by about a pixel each way
    judge = Judge(luma, labels, odd, contrast, threshold, pair_of, neighbours, search)
    # one-pixel blobs (grain makes hundreds a frame) are judged all at once by their ring
    one = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] == 1)
    one = one[one > 0]
    picture = judge.pixels_in_motion(stats[one, cv2.CC_STAT_TOP], stats[one, cv2.CC_STAT_LEFT])
    keep[one[picture]] = False
    kept = int(picture.sum())
    rows = stats.tolist()
    for i in np.flatnonzero(keep & (stats[:, cv2.CC_STAT_AREA] > 1)).tolist():
        x, y, w, h, area = rows[i]
        if w > big or h > big or area > big * big:
            keep[i] = False  # too large for a speck: a change of the picture
        elif judge.is_picture(i, (x, y, w, h), area):
            keep[i] = False
            kept += 1
    specks = int(keep.sum())
    if specks == 0:
        return DustResult(image, 0, kept)
    core = np.take(keep.view(np.uint8), labels)
    # grow into the speck's faint rim (same direction, a third of the threshold), 2 px
    weak = cv2.compare(contrast, third, cv2.CMP_GT)  # 0/255: ANDed with 0/1 gives 0/1
    grown = cv2.dilate(core, _ELLIPSE5) & weak | cv2.dilate(core, _SQUARE3)
    # soft edge: the share of the 3x3 around that is grown (1 on the grown pixels)
    around = cv2.boxFilter(grown, -1, (3, 3), normalize=False)
    ys, xs = nonzero(around)
    pair = pair_of[ys, xs].astype(np.int16) - 1
    valid = pair >= 0
    ys, xs, pair = ys[valid], xs[valid], pair[valid]
    alpha = np.maximum(grown[ys, xs], around[ys, xs] / np.float32(9))
    out = image.copy()
    for p, (a, b) in enumerate(PAIRS):
        sel = pair == p
        if not sel.any():
            continue
        py, px = ys[sel], xs[sel]
        rep = 0.5 * (neighbours[a].colour(py, px) + neighbours[b].colour(py, px))
        al = alpha[sel][:, None]
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
    # the median of each bin by counting, as median_u8 does, all bins at once
    counts = np.bincount((lv // width).astype(np.intp) * 256 + d, minlength=LEVEL_BINS * 256)
    cum = np.cumsum(counts.reshape(LEVEL_BINS, 256), axis=1)
    meds = np.array(
        [float(np.searchsorted(c, (c[-1] + 1) / 2)) if c[-1] >= 200 else overall for c in cum]
    )
    centres = np.arange(LEVEL_BINS) * width + width / 2
    return 1.4826 * np.interp(np.arange(256), centres, meds) / np.sqrt(2)


def _contrast(
    luma: np.ndarray,
    near: dict[int, np.ndarray],
    neighbours: dict[int, Neighbour],
    threshold: np.ndarray,
    half: np.ndarray,
    part: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How far (uint8 levels) the frame lies beyond the first usable pair in the same
    direction from both (0 where none is trusted or the two disagree), the index + 1 of
    that pair (0: none trusted), and where the frame differs from either of them by half
    the threshold (False where no pair is trusted). ``luma`` and ``near`` (the neighbours'
    lumas) are smoothed uint8; ``threshold`` and its ``half`` and QUARTER-th ``part`` are uint8
    per pixel.

    The frame is compared with each neighbour's 3x3 minimum (for dark specks) and maximum
    (bright): fine texture that the flow aligns to within a pixel then never differs.
    Everything is uint8 masks (0/255) and saturating OpenCV arithmetic: this runs on every
    pixel of every frame."""
    h, w = luma.shape
    contrast = np.zeros((h, w), np.uint8)
    pair_of = np.zeros((h, w), np.uint8)
    odd = np.zeros((h, w), np.uint8)
    free = np.full((h, w), 255, np.uint8)
    ok = {k: nb.ok.view(np.uint8) * np.uint8(255) for k, nb in neighbours.items()}
    env: dict[int, tuple[np.ndarray, ...]] = {}  # over the whole frame, once made
    for p, (a, b) in enumerate(PAIRS):
        if a not in neighbours or b not in neighbours:
            continue
        usable = cv2.bitwise_and(free, cv2.bitwise_and(ok[a], ok[b]))
        if not cv2.countNonZero(usable):
            continue
        # a later pair is often usable in a few places only (a strip along the picture's
        # edge, an occlusion): then it is worked out in the box around them only
        box = cv2.boundingRect(usable)
        if box[2] * box[3] > h * w // 2:
            box = (0, 0, w, h)
        x, y, bw, bh = box
        win = slice(y, y + bh), slice(x, x + bw)
        envs = []
        for k in (a, b):
            if k in env:
                envs.append(tuple(e[win] for e in env[k]))
            else:
                envs.append(_envelope(near[k], part, box))
                if box == (0, 0, w, h):
                    env[k] = envs[-1]
        ea, eb = envs
        here, use = luma[win], usable[win]
        # saturating: how far below both minima (dark) / above both maxima (bright)
        dark = cv2.subtract(cv2.min(ea[0], eb[0]), here)
        bright = cv2.subtract(here, cv2.max(ea[1], eb[1]))
        size = cv2.max(dark, bright)  # at most one of them is above 0
        # outside both neighbours' plain envelopes by half the threshold: neither
        # explains the frame there (one badly aligned neighbour does not make it odd)
        outside = cv2.bitwise_and(_outside(here, ea, half[win]), _outside(here, eb, half[win]))
        # the neighbours agree: their difference is small beside the frame's
        gap = cv2.absdiff(near[a][win], near[b][win])
        agree = cv2.bitwise_or(
            cv2.compare(gap, threshold[win], cv2.CMP_LT),
            cv2.compare(cv2.add(gap, gap), size, cv2.CMP_LT),
        )
        cv2.copyTo(size, cv2.bitwise_and(use, agree), contrast[win])
        cv2.bitwise_or(
            odd[win], cv2.bitwise_or(outside, cv2.bitwise_not(agree)), odd[win], mask=use
        )
        # trusted pair: later pairs do not overrule it (``use`` is 0 where one is set)
        cv2.bitwise_or(pair_of[win], p + 1, pair_of[win], mask=use)
        cv2.bitwise_and(free[win], cv2.bitwise_not(use), free[win])
        if not cv2.countNonZero(free):
            break
    return contrast, pair_of, odd > 0


def _envelope(
    near: np.ndarray, part: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, ...]:
    """A neighbour's envelopes in ``box`` (x, y, w, h) of the frame, made over ENV_REACH
    pixels more each way (so the same as made over the whole frame): the envelope with
    its grain thinned (the envelope of raw grain swallows a faint speck) that a speck is
    judged against, but never more than a ``part`` of the threshold inside the plain one
    (texture the flow aligns only to a pixel needs that); and the plain one (its 3x3
    minimum and maximum), that the ring around a speck is judged against."""
    x, y, bw, bh = box
    h, w = near.shape
    x0, y0 = max(0, x - ENV_REACH), max(0, y - ENV_REACH)
    x1, y1 = min(w, x + bw + ENV_REACH), min(h, y + bh + ENV_REACH)
    around, part = near[y0:y1, x0:x1], part[y0:y1, x0:x1]
    lo, hi = cv2.erode(around, _SQUARE3), cv2.dilate(around, _SQUARE3)
    calm = cv2.GaussianBlur(around, (0, 0), ENV_SIGMA)
    env = (
        cv2.min(cv2.erode(calm, _SQUARE3), cv2.add(lo, part)),
        cv2.max(cv2.dilate(calm, _SQUARE3), cv2.subtract(hi, part)),
        lo,
        hi,
    )
    inner = slice(y - y0, y - y0 + bh), slice(x - x0, x - x0 + bw)
    return tuple(e[inner] for e in env)


def _outside(luma: np.ndarray, env: tuple[np.ndarray, ...], margin: np.ndarray) -> np.ndarray:
    """Mask (0/255) where ``luma`` lies more than ``margin`` beyond a neighbour's plain
    envelope (``env[2:]``: its 3x3 minimum and maximum)."""
    beyond = cv2.max(cv2.subtract(luma, env[3]), cv2.subtract(env[2], luma))
    return cv2.compare(beyond, margin, cv2.CMP_GT)


_ELLIPSE5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
_SQUARE3 = np.ones((3, 3), np.uint8)
