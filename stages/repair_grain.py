"""Grain and noise: motion-compensated temporal averaging that stops at misalignment.

Each aligned neighbour is averaged into the frame with a per-pixel weight that falls from
1 to 0 as the local (5x5 box) mean absolute luma difference rises above what the grain
alone gives. Where the neighbour is distrusted (occlusion, failed flow) or shows
something else (a limb that moved, a speck of its own) the weight is 0, so nothing
ghosts; where it matches, the grain of up to five frames averages out while edges stay
where they are (the frames are aligned, not blurred).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from .repair_align import Neighbour, median_u8

# Mean |difference| of two aligned frames from grain alone, in units of one frame's
# sigma: E|N(0, 2 sigma^2)| = 2 sigma / sqrt(pi).
GRAIN_DIFF = 2 / np.sqrt(np.pi)
# Box over which the difference is averaged: wide enough that grain does not decide.
BOX = (5, 5)


def noise_sigma(luma: np.ndarray, neighbours: Iterable[Neighbour]) -> float:
    """Grain sigma of one frame (levels), from its median absolute difference to the
    trusted pixels of aligned neighbours (uint8 lumas, every 3rd pixel each way)."""
    diffs = []
    for nb in neighbours:
        sel = nb.ok[::3, ::3]
        if sel.sum() > 100:
            diffs.append(cv2.absdiff(luma[::3, ::3], nb.luma[::3, ::3])[sel])
    if not diffs:
        return 0.0
    return 1.4826 * median_u8(np.concatenate(diffs)) / np.sqrt(2)


def weights_lut(sigma: float, strength: float) -> np.ndarray:
    """Weight (float32) for each mean absolute difference 0-255: 1 up to what grain
    gives, falling to 0 over ``2 * strength * sigma`` more (squared, so it eases out)."""
    d = np.arange(256, dtype=np.float32)
    width = max(strength * 2.0 * sigma, 0.5)
    w = np.clip(1.0 - np.maximum(d - GRAIN_DIFF * sigma, 0) / width, 0, 1) ** 2
    w[255] = 0.0  # reserved for distrusted pixels
    return w.astype(np.float32)


def average(
    image: np.ndarray,
    luma: np.ndarray,
    neighbours: Iterable[Neighbour],
    sigma: float,
    strength: float,
) -> np.ndarray:
    """``image`` (uint8 RGB, uint8 luma ``luma``) averaged with its aligned ``neighbours``
    as float32; ``strength`` scales how much difference still counts as grain (0: none)."""
    mean = image.astype(np.float32)
    if strength <= 0:
        return mean
    lut = weights_lut(sigma, strength)
    total = np.ones(luma.shape, np.float32)
    for nb in neighbours:
        diff = cv2.blur(cv2.absdiff(luma, nb.luma), BOX)
        # 255 where distrusted (an OR with the 0/255 mask of distrust: no boolean indexing)
        cv2.bitwise_or(diff, cv2.compare(nb.ok.view(np.uint8), 0, cv2.CMP_EQ), diff)
        w = cv2.LUT(diff, lut)
        # running weighted mean: (total * mean + w * nb) / (total + w)
        mean = cv2.blendLinear(mean, nb.rgb.astype(np.float32), total, w)
        total += w
    return mean
