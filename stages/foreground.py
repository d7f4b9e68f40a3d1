"""Foreground masks: what must stay out of the background panorama.

Without model weights, foreground is what disagrees with the scene's registered
background model (a coarse temporal median of the window, see ``panorama.py``) after
gain matching: a per-pixel colour difference above a noise-adaptive threshold, cleaned
by morphological opening/closing and dilated so soft edges and motion blur of characters
do not smear into the background. An optional ``segmenter`` (rgb uint8 -> float32
foreground probability, e.g. ``stages.segment.U2NetpSegmenter``) is united with it,
which also catches characters that do not move relative to the background.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from stages.panorama import Canvas, MapFn, masked_median, warp_sample

log = logging.getLogger(__name__)

Segmenter = Callable[[np.ndarray], np.ndarray]


HOLE_AREA = 0.02  # enclosed holes of a foreground mask up to this share of the frame are filled
GAIN_SAMPLES = 4096  # pixels enough for a median ratio; an even stride keeps it exact


def gain_to(reference: np.ndarray, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-channel gain taking ``image`` to ``reference`` exposure over ``valid`` pixels
    (median ratio of mid-tones, clipped to [0.5, 2]); ones when too little overlap.
    At most about ``GAIN_SAMPLES`` evenly strided pixels are used."""
    ref = reference.reshape(-1, 3)
    img = image.reshape(-1, 3)
    idx = np.flatnonzero(valid.ravel())
    if len(idx) > GAIN_SAMPLES:
        idx = idx[:: len(idx) // GAIN_SAMPLES]
    r, i = ref[idx].T.astype(np.float32), img[idx].T.astype(np.float32)  # (3, n) rows
    v = (i.min(0) > 12) & (i.max(0) < 243) & (r.min(0) > 12)
    if v.sum() < 64:
        return np.ones(3, np.float32)
    ratio = np.median(r[:, v] / i[:, v], axis=1)
    return np.clip(ratio, 0.5, 2.0).astype(np.float32)


def apply_gain(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``image * gain`` per channel, rounded and clipped to uint8 (one table lookup)."""
    if np.allclose(gain, 1.0, atol=1e-3):
        return image
    levels = np.arange(256, dtype=np.float32)[:, None] * np.asarray(gain, np.float32)[None]
    table = np.clip(levels + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)
    return cv2.LUT(image, table)


def fill_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """``mask`` (uint8 0/1) with enclosed background holes up to ``max_area`` pixels set:
    the flat inside of a cel-painted character that moved little shows no change."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(1 - mask, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small = stats[:, cv2.CC_STAT_AREA] <= max_area
    small[border] = False
    small[0] = False  # label 0: the mask itself
    return np.where(small[labels], np.uint8(1), mask)


def disagrees(
    image: np.ndarray,
    reference: np.ndarray,
    valid: np.ndarray,
    min_threshold: float = 25.0,
    noise_factor: float = 4.0,
) -> np.ndarray:
    """Pixels of ``image`` that differ from ``reference`` (bool, inside ``valid``) once
    its exposure is matched: the largest channel difference, blurred, above
    ``min_threshold`` or ``noise_factor`` times its median, whichever is higher."""
    gain = gain_to(reference, image, valid)
    diff = cv2.absdiff(apply_gain(image, gain), reference).max(2)
    d = cv2.GaussianBlur(diff.astype(np.float32), (5, 5), 0)
    noise = float(np.median(d[valid])) if valid.any() else 0.0
    return (d > max(min_threshold, noise_factor * noise)) & valid


def moving(
    small: np.ndarray,
    other: np.ndarray,
    to_other: np.ndarray,
    min_threshold: float = 25.0,
    noise_factor: float = 4.0,
) -> np.ndarray:
    """Pixels of ``small`` that change against a nearby frame ``other`` once the camera's
    motion (``to_other``, pixel -> pixel) is undone (bool): what moves by itself. The
    threshold adapts to the noise as the background difference's does."""
    h, w = small.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    b = cv2.warpPerspective(other, to_other, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpPerspective(np.full((h, w), 255, np.uint8), to_other, (w, h), flags=flags)
    # the neighbour matched to this frame's exposure, so its own pixels keep their values
    return disagrees(b, small, cover >= 250, min_threshold, noise_factor)


class ForegroundMasker:
    """Foreground (bool, True = character) of small frames against their background.

    Defaults (threshold 25, dilation 1.5 % of the height): lower thresholds and wider
    dilation gave masks about twice the true area (``benchmarks/mask_iou.py``)."""

    def __init__(
        self,
        segmenter: Segmenter | None = None,
        min_threshold: float = 25.0,
        noise_factor: float = 4.0,
        dilate: float = 0.015,
        seg_threshold: float = 0.5,
    ):
        if min_threshold <= 0 or noise_factor <= 0:
            raise ValueError(f"thresholds must be positive, got {min_threshold}, {noise_factor}")
        if not 0 <= dilate < 0.5:
            raise ValueError(f"dilate (fraction of frame height) must be in [0, 0.5), got {dilate}")
        self.segmenter = segmenter
        self.min_threshold = min_threshold
        self.noise_factor = noise_factor
        self.dilate = dilate
        self.seg_threshold = seg_threshold

    def __call__(
        self,
        small: np.ndarray,
        background: np.ndarray,
        bg_known: np.ndarray,
        full: np.ndarray | None = None,
        neighbour: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Mask at ``small``'s size. ``background`` is the scene background warped into this
        frame's view, ``bg_known`` where it exists; ``full`` is the full-size frame handed to
        the segmenter (if any); ``neighbour`` is a nearby frame at ``small``'s size and the
        matrix taking ``small``'s pixels to its pixels: what changes between the two once
        the camera's motion is undone moves by itself (:func:`moving`), which catches a
        character the camera follows, who covers the same background in most samples and
        so is part of the median background."""
        if small.shape != background.shape or bg_known.shape != small.shape[:2]:
            raise ValueError(
                f"frame {small.shape}, background {background.shape}, known {bg_known.shape}"
            )
        h, w = small.shape[:2]
        inner = cv2.erode(bg_known.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        fg = disagrees(small, background, inner, self.min_threshold, self.noise_factor)
        if neighbour is not None:
            fg |= moving(small, *neighbour, self.min_threshold, self.noise_factor)
        k3 = np.ones((3, 3), np.uint8)
        fg8 = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, k3)
        fg8 = cv2.morphologyEx(
            fg8, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        )
        fg8 = fill_holes(fg8, HOLE_AREA * h * w)
        if self.segmenter is not None:
            prob = np.asarray(self.segmenter(small if full is None else full), np.float32)
            if prob.ndim != 2:
                raise ValueError(f"segmenter must return (H, W) probabilities, got {prob.shape}")
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_AREA)
            fg8 |= (prob > self.seg_threshold).astype(np.uint8)
        r = max(1, round(self.dilate * h))
        if r:
            fg8 = cv2.dilate(fg8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
        return fg8 > 0


def sample_masks(
    masker: ForegroundMasker,
    canvas: Canvas,
    smalls: list[np.ndarray],
    to_ref: list[np.ndarray],
    fulls: list[np.ndarray],
    neighbours: list[tuple[np.ndarray, np.ndarray] | None],
    unreliable: np.ndarray,
    map_fn: MapFn = map,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Foreground masks and exposure gains of a window's sample frames (``smalls``, one
    small size, with their pixel -> reference matrices ``to_ref``), against a coarse
    median background of the same frames on ``canvas``'s area and, where given, a nearby
    frame with its pixel-to-pixel matrix (``neighbours``, see :func:`moving`).
    ``fulls`` are the full-size frames (their width sets the coarse scale; the segmenter
    sees them); ``unreliable`` (bool, small size) marks film-gate pixels to leave out."""
    sh, sw = smalls[0].shape[:2]
    ratio = sw / fulls[0].shape[1]
    x0, y0, x1, y1 = canvas.bounds()
    coarse = Canvas(x0, y0, ratio, int(np.ceil((x1 - x0) * ratio)), int(np.ceil((y1 - y0) * ratio)))
    to_c = coarse.from_ref()
    warped = [
        warp_sample(s, ~unreliable, to_c @ H, coarse) for s, H in zip(smalls, to_ref, strict=True)
    ]
    bg = masked_median(np.stack([x[0] for x in warped]), np.stack([x[1] for x in warped]))
    known = np.stack([x[1] for x in warped]).any(0)
    known8 = known.astype(np.uint8) * 255

    def one(k: int) -> tuple[np.ndarray, np.ndarray]:
        m = to_c @ to_ref[k]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        bg_view = cv2.warpPerspective(bg, m, (sw, sh), flags=flags)
        kn_view = cv2.warpPerspective(known8, m, (sw, sh), flags=flags) >= 250
        kn_view &= ~unreliable
        full = fulls[k] if masker.segmenter else None
        fg = masker(smalls[k], bg_view, kn_view, full, neighbours[k])
        return fg, gain_to(bg_view, smalls[k], kn_view & ~fg)

    done = list(map_fn(one, range(len(smalls))))
    return [d[0] for d in done], [d[1] for d in done]
