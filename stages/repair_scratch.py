"""Vertical scratches: thin lines that stay at (almost) the same place in the frame over
several frames while the picture moves under them.

Per frame, a horizontal top-hat (the picture minus its opening, for bright lines; the
closing minus the picture, for dark ones) leaves only structures narrower than
``max_width``; its median down each column is high only where such a line runs through
most of the frame's height, whatever the picture beneath. Those columns are a frame's
line candidates. A candidate is a scratch when lines of the same polarity sit within a
slow drift of it in at least two of the frames up to two before and after, and not where
the camera's motion would have carried a picture line (a pan tells a scratch, fixed to
the film, from a pole, fixed to the scene; with a still camera the persistence alone
decides). Scratch pixels are filled across from their left and right sides; the repair
stage then replaces them from the aligned neighbours where those are trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Share of the width at each side where no line is taken for a scratch (film gate edges).
BORDER = 0.03
# Rows sampled for the column medians (every n-th): a median needs no more.
ROW_STEP = 4
# Drift of a scratch allowed per frame of distance, pixels.
DRIFT_PER_FRAME = 1.0
# How close (px) a neighbour's line must be to where the picture's motion would put it
# for the candidate to be taken as a picture line.
PICTURE_TOLERANCE = 1.0
# Columns either side whose median response is the line's background, and how many of
# their robust spreads a line must stand above it (texture varies from column to column).
BASE_RADIUS = 16
# Share of a line's contrast above which a pixel of its strip belongs to it: the line's
# core, not the picture's own fine texture in the strip.
MASK_FRACTION = 0.3
# A pixel responding this many times more than the line's own contrast is the picture's
# (a dark stroke under a dark scratch) and is left alone.
PICTURE_LINE = 2.5
SPREAD_FACTOR = 4.0


@dataclass(frozen=True)
class Line:
    """A line candidate: column, +1 bright / -1 dark, contrast (levels above the
    column baseline)."""

    x: int
    polarity: int
    contrast: float


def candidates(luma: np.ndarray, max_width: int, min_contrast: float) -> list[Line]:
    """Near-vertical thin lines (``max_width`` px or narrower) through most of the height
    of a uint8 luma frame, ``min_contrast`` levels or more above their surroundings."""
    h, w = luma.shape
    k = 2 * max_width + 1
    rows = luma[::ROW_STEP]
    kernel = np.ones((1, k), np.uint8)
    out: list[Line] = []
    for polarity, op in ((1, cv2.MORPH_TOPHAT), (-1, cv2.MORPH_BLACKHAT)):
        resp = cv2.morphologyEx(rows, op, kernel)
        resp = cv2.dilate(resp, np.ones((1, 3), np.uint8))  # a line may wander a pixel
        mid = resp.shape[0] // 2
        col = np.partition(resp, mid, axis=0)[mid][None]  # median down each column
        # the picture's own fine texture: the columns around, and how much they vary
        base = cv2.medianBlur(col, 2 * BASE_RADIUS + 1)
        spread = 1.4826 * cv2.medianBlur(cv2.absdiff(col, base), 2 * BASE_RADIUS + 1)[0]
        prof = col[0].astype(np.float32) - base[0]
        peak = cv2.dilate(prof[None], np.ones((1, 7), np.uint8))[0]
        # a top-hat cannot see a line at the border, and the edge of a film gate (dark,
        # rounded, fixed to the frame like a scratch) runs along it: not a scratch
        margin = max(k, round(BORDER * w))
        strong = (prof >= min_contrast) & (prof >= SPREAD_FACTOR * spread) & (prof >= peak)
        for x in np.nonzero(strong)[0]:
            if margin <= x < w - margin:
                out.append(Line(int(x), polarity, float(prof[x])))
    # one line per place: the strongest; the other polarity's response beside a line
    # (the valley a closing sees next to a bright line) is no line of its own
    kept: list[Line] = []
    for line in sorted(out, key=lambda c: -c.contrast):
        if all(abs(line.x - k.x) > max(3, max_width + 1) for k in kept):
            kept.append(line)
    return sorted(kept, key=lambda c: c.x)


def confirm(
    line: Line,
    others: Mapping[int, Sequence[Line]],
    picture_dx: Mapping[int, float],
) -> bool:
    """Whether ``line`` is a scratch: ``others`` maps a frame offset (±1, ±2) to that
    frame's candidates, ``picture_dx`` the offset to how far the picture at the line moved
    horizontally between the two frames."""
    if not others:
        return False
    stays, moves = 0, 0
    for offset, lines in others.items():
        tol = 1.0 + DRIFT_PER_FRAME * abs(offset)
        dx = picture_dx.get(offset, 0.0)
        near = [c.x for c in lines if c.polarity == line.polarity]
        if not near:
            continue
        d_stay = min(abs(x - line.x) for x in near)
        d_pic = min(abs(x - (line.x + dx)) for x in near)
        tellable = abs(dx) > tol + PICTURE_TOLERANCE
        if tellable and d_pic <= PICTURE_TOLERANCE:
            moves += 1
        elif d_stay <= tol:
            stays += 1
    return moves == 0 and stays >= min(2, len(others))


def mask(luma: np.ndarray, lines: Sequence[Line], max_width: int, min_contrast: float):
    """Bool mask of the scratch pixels of ``lines`` in a uint8 luma frame: in a narrow
    strip around each line, the pixels the line brightens or darkens by MASK_FRACTION of
    its contrast (and half ``min_contrast``), grown a pixel sideways for its faint edge."""
    h, w = luma.shape
    out = np.zeros((h, w), bool)
    k = 2 * max_width + 1
    kernel = np.ones((1, k), np.uint8)
    for line in lines:
        x0, x1 = max(0, line.x - max_width - k), min(w, line.x + max_width + k + 1)
        op = cv2.MORPH_TOPHAT if line.polarity > 0 else cv2.MORPH_BLACKHAT
        resp = cv2.morphologyEx(luma[:, x0:x1], op, kernel)
        a, b = line.x - max_width - x0, line.x + max_width + 1 - x0
        strip = resp[:, a:b]
        hit = strip >= max(min_contrast / 2, MASK_FRACTION * line.contrast)
        # far more contrast than the line has: a line of the picture under it, kept
        hit &= strip <= PICTURE_LINE * line.contrast
        # per row, only around the line's own peak (it may lean or wander a pixel or
        # two): not the picture's fine detail elsewhere in the strip
        centre = line.x - x0 - a
        lo, hi = max(0, centre - 2), min(strip.shape[1], centre + 3)
        peak = lo + np.argmax(strip[:, lo:hi], axis=1)
        cols = np.arange(strip.shape[1])[None, :]
        hit &= np.abs(cols - peak[:, None]) <= max_width // 2 + 1
        out[:, x0 + a : x0 + b] |= hit
    return cv2.dilate(out.astype(np.uint8), np.ones((1, 3), np.uint8)).astype(bool)


def fill_from_sides(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """``image`` with the pixels of ``holes`` (thin, near-vertical) interpolated along
    their row from the nearest unmasked pixels to the left and right (a copy)."""
    out = image.copy()
    cols = np.nonzero(holes.any(axis=0))[0]
    if not len(cols):
        return out
    w = image.shape[1]
    # contiguous column runs, each padded with one anchor column each side
    breaks = np.nonzero(np.diff(cols) > 1)[0]
    starts = np.concatenate([[cols[0]], cols[breaks + 1]])
    ends = np.concatenate([cols[breaks], [cols[-1]]])
    for s, e in zip(starts, ends, strict=True):
        a, b = max(0, s - 1), min(w, e + 2)
        strip = out[:, a:b].astype(np.float32)
        m = holes[:, a:b].copy()
        if a == s:  # at the frame border: the hole reaches it; extend from the inside
            m[:, 0] = False
        if b == e + 1:
            m[:, -1] = False
        n = b - a
        idx = np.arange(n)[None, :].repeat(m.shape[0], 0)
        left = np.maximum.accumulate(np.where(m, 0, idx), axis=1)
        right = np.minimum.accumulate(np.where(m, n - 1, idx)[:, ::-1], axis=1)[:, ::-1]
        span = np.maximum(right - left, 1)
        t = ((idx - left) / span).astype(np.float32)[..., None]
        lv = np.take_along_axis(strip, left[..., None], axis=1)
        rv = np.take_along_axis(strip, right[..., None], axis=1)
        filled = lv * (1 - t) + rv * t
        strip = np.where(m[..., None], filled, strip)
        out[:, a:b] = np.clip(np.rint(strip), 0, 255).astype(out.dtype)
    return out
