"""The background panorama of one scene, in the reference frame's coordinates.

Registered background samples (gain-compensated, foreground and unreliable border pixels
excluded) are combined per pixel by a robust estimate, once per window: the temporal
median of up to ``max_samples`` evenly spaced frames (default) or the sample nearest in
time to the window's middle. The median scored at least as well on the dev clips and
also drops characters that move over the background, so median it is. Each
window's estimate then overwrites the scene panorama where it has
data, so memory is one canvas plus one window's samples however long the scene, and later
windows (closer in time) win. The canvas has a bounded size: ``scale`` shrinks large
frames and a pan that runs beyond the canvas bound (``PanoramaOutpaint``: 4 output
widths, 2 heights) drops the far, older side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

COMPOSITES = ("median", "nearest")
# the warped samples of one composite band, about (samples x pixels x 4 bytes): wider
# boxes are done a band of rows at a time, so memory does not grow with the canvas
COMPOSITE_BAND_BYTES = 32 << 20
# ``map`` or a thread pool's ``map``: runs independent parts of a composite, in order
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


@dataclass(frozen=True)
class Canvas:
    """A pixel grid over reference coordinates: canvas = (ref - origin) * scale."""

    x0: float
    y0: float
    scale: float
    width: int
    height: int

    def from_ref(self) -> np.ndarray:
        """3x3 matrix taking reference coordinates to canvas pixel coordinates."""
        s = self.scale
        return np.array([[s, 0, -self.x0 * s], [0, s, -self.y0 * s], [0, 0, 1.0]])

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) covered, in reference coordinates."""
        return (
            self.x0,
            self.y0,
            self.x0 + self.width / self.scale,
            self.y0 + self.height / self.scale,
        )

    def pixels(self, box: np.ndarray) -> tuple[slice, slice]:
        """Canvas (rows, columns) covering a reference-space ``box`` (x0, y0, x1, y1),
        grown to whole pixels and clipped to the canvas (possibly empty)."""
        x0, y0, x1, y1 = box
        px0 = int(np.clip(np.floor((x0 - self.x0) * self.scale), 0, self.width))
        py0 = int(np.clip(np.floor((y0 - self.y0) * self.scale), 0, self.height))
        px1 = int(np.clip(np.ceil((x1 - self.x0) * self.scale) + 1, px0, self.width))
        py1 = int(np.clip(np.ceil((y1 - self.y0) * self.scale) + 1, py0, self.height))
        return slice(py0, py1), slice(px0, px1)

    def crop(self, rows: slice, cols: slice) -> Canvas:
        """The part of this canvas at pixel ``rows`` x ``cols``, as a canvas of its own."""
        return Canvas(
            self.x0 + cols.start / self.scale,
            self.y0 + rows.start / self.scale,
            self.scale,
            cols.stop - cols.start,
            rows.stop - rows.start,
        )


def quad_bounds(Hs: list[np.ndarray], width: int, height: int, left: float = 0.0) -> np.ndarray:
    """(x0, y0, x1, y1) in reference coordinates of the rectangles [left, left + width) x
    [0, height) of frame coordinates mapped by each ``H``."""
    corners = np.float64([[left, 0], [left + width, 0], [left + width, height], [left, height]])
    pts = np.concatenate([cv2.perspectiveTransform(corners[None], H)[0] for H in Hs])
    return np.array([*pts.min(0), *pts.max(0)])


def fit_canvas(
    need: np.ndarray, old: Canvas | None, scale: float, max_size: tuple[int, int]
) -> Canvas:
    """Canvas covering ``need`` (x0, y0, x1, y1) and the old canvas, on the old grid,
    cropped to ``max_size`` (w, h) around ``need`` when the union is too large."""
    x0, y0, x1, y1 = need
    if old is not None:
        scale = old.scale
        ox0, oy0, ox1, oy1 = old.bounds()
        # stay on the old pixel grid: extend by whole pixels
        x0 = ox0 - np.ceil(max(0.0, ox0 - x0) * scale) / scale
        y0 = oy0 - np.ceil(max(0.0, oy0 - y0) * scale) / scale
        x1, y1 = max(x1, ox1), max(y1, oy1)
    w = int(np.ceil((x1 - x0) * scale - 1e-6))
    h = int(np.ceil((y1 - y0) * scale - 1e-6))
    mw, mh = max_size
    if w > mw:  # keep the part around what is needed now
        cx = ((need[0] + need[2]) / 2 - x0) * scale
        shift = int(np.clip(round(cx - mw / 2), 0, w - mw))
        x0, w = x0 + shift / scale, mw
    if h > mh:
        cy = ((need[1] + need[3]) / 2 - y0) * scale
        shift = int(np.clip(round(cy - mh / 2), 0, h - mh))
        y0, h = y0 + shift / scale, mh
    return Canvas(float(x0), float(y0), float(scale), max(w, 1), max(h, 1))


def carry_over(
    old: Canvas, link: np.ndarray, need: np.ndarray, max_size: tuple[int, int]
) -> tuple[Canvas, np.ndarray] | None:
    """A canvas in new reference coordinates (``link``: old reference -> new, 3x3) that
    covers ``need`` (x0, y0, x1, y1, new coordinates) and as much of ``old`` as
    ``max_size`` allows around it, and the matrix from ``old``'s pixels to its pixels.
    None when part of ``old`` lies beyond the new plane's horizon (no finite image)."""
    x0, y0, x1, y1 = old.bounds()
    corners = np.float64([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if np.any(corners @ link[2, :2] + link[2, 2] <= 1e-6):
        return None
    mapped = cv2.perspectiveTransform(corners[None], link)[0]
    lo, hi = np.minimum(mapped.min(0), need[:2]), np.maximum(mapped.max(0), need[2:])
    span = np.ceil((hi - lo) * old.scale).astype(int)
    around = Canvas(float(lo[0]), float(lo[1]), old.scale, int(span[0]), int(span[1]))
    new = fit_canvas(need, around, old.scale, max_size)
    return new, new.from_ref() @ link @ np.linalg.inv(old.from_ref())


def warp_canvas(image: np.ndarray, matrix: np.ndarray, canvas: Canvas) -> np.ndarray:
    """``image`` (uint8 colour, or a bool mask) warped by ``matrix`` onto ``canvas``; a
    mask keeps only pixels whose whole bilinear footprint was set."""
    size = (canvas.width, canvas.height)
    if image.dtype == np.bool_:
        m = cv2.warpPerspective(image.astype(np.uint8) * 255, matrix, size, flags=cv2.INTER_LINEAR)
        return m >= 250
    return cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR)


def move_to(image: np.ndarray, old: Canvas, new: Canvas, fill: int = 0) -> np.ndarray:
    """Copy ``image`` on ``old`` into a new array on ``new`` (same scale, whole-pixel shift)."""
    dx = round((old.x0 - new.x0) * new.scale)
    dy = round((old.y0 - new.y0) * new.scale)
    out = np.full((new.height, new.width, *image.shape[2:]), fill, image.dtype)
    sx0, sy0 = max(0, -dx), max(0, -dy)
    tx0, ty0 = max(0, dx), max(0, dy)
    w = min(old.width - sx0, new.width - tx0)
    h = min(old.height - sy0, new.height - ty0)
    if w > 0 and h > 0:
        out[ty0 : ty0 + h, tx0 : tx0 + w] = image[sy0 : sy0 + h, sx0 : sx0 + w]
    return out


def warp_sample(
    image: np.ndarray,
    valid: np.ndarray,
    to_canvas: np.ndarray,
    canvas: Canvas,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One frame and its valid mask warped onto the canvas (mask eroded by the bilinear
    footprint so frame-edge pixels mixed with the outside never count); written into
    ``out`` (uint8 image, bool mask, canvas size) when given, e.g. slices of a stack."""
    size = (canvas.width, canvas.height)
    img = None if out is None else out[0]
    img = cv2.warpPerspective(image, to_canvas, size, dst=img, flags=cv2.INTER_LINEAR)
    m = cv2.warpPerspective(valid.astype(np.uint8) * 255, to_canvas, size, flags=cv2.INTER_LINEAR)
    return img, np.greater_equal(m, 250, out=None if out is None else out[1])


def sorting_network(n: int) -> list[tuple[int, int]]:
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort for ``n`` inputs
    (those reaching past ``n`` dropped: they would compare with +inf and never swap)."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def sort_stack(stack: np.ndarray) -> np.ndarray:
    """``np.sort(stack, axis=0)`` as whole-array min/max comparators: about 3x faster for
    a uint8 stack of 16 canvases (the sort over a strided axis is the costly part)."""
    rows = list(stack)
    for i, j in sorting_network(len(rows)):
        rows[i], rows[j] = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
    return np.stack(rows)


MEDIAN_CHUNK_BYTES = 1 << 20  # rows of the stack sorted at a time: L2-sized, 1.4x faster


def masked_median(stack: np.ndarray, valid: np.ndarray, map_fn: MapFn = map) -> np.ndarray:
    """Per-pixel lower median over the valid samples of a uint8 stack (K, H, W, C), a band
    of rows at a time (the sort passes over a band stay in cache); ``map_fn`` (e.g. a
    thread pool's ``map``) runs the bands."""
    row_bytes = max(1, stack[:, :1].nbytes)
    rows = max(1, MEDIAN_CHUNK_BYTES // row_bytes)
    if stack.shape[1] <= rows:
        return _masked_median(stack, valid)

    def band(y: int) -> np.ndarray:
        return _masked_median(stack[:, y : y + rows], valid[:, y : y + rows])

    return np.concatenate(list(map_fn(band, range(0, stack.shape[1], rows))))


def _masked_median(stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel lower median over the valid samples of a uint8 stack (K, H, W, C).

    Invalid samples are pushed to 0 and 255 in equal numbers, so after one sort the valid
    samples' median sits at a computable index; no float NaN arithmetic."""
    k = stack.shape[0]
    if k > 255:
        raise ValueError(f"at most 255 samples, got {k}")
    invalid = ~valid
    m = invalid.sum(0, dtype=np.uint8)  # (H, W); k < 256
    rank = np.cumsum(invalid, 0, dtype=np.uint8)  # 1-based rank among invalid samples
    low = invalid & (rank <= (m // 2)[None])
    keep = valid.astype(np.uint8) * np.uint8(255)
    high = (invalid & ~low).astype(np.uint8) * np.uint8(255)
    if stack.ndim == 4:  # per-channel copies via cv2.merge: numpy's broadcasting over a
        # trailing axis of 3 is several times slower than the whole sort
        rows = keep.shape[0] * keep.shape[1]
        keep = cv2.merge([keep.reshape(rows, -1)] * stack.shape[3]).reshape(stack.shape)
        high = cv2.merge([high.reshape(rows, -1)] * stack.shape[3]).reshape(stack.shape)
    s = sort_stack((stack & keep) | high)
    n = k - m.astype(np.intp)
    idx = (m // 2 + np.maximum(n - 1, 0) // 2)[None, ..., None]
    idx = np.broadcast_to(idx, (1, *stack.shape[1:]))
    return np.take_along_axis(s, idx, 0)[0]


def composite(
    samples: np.ndarray,
    valid: np.ndarray,
    times: np.ndarray,
    mode: str = "median",
    map_fn: MapFn = map,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust per-pixel estimate from registered samples (K, H, W, 3) uint8 with valid
    masks (K, H, W); returns (image, known). ``map_fn`` runs independent parts."""
    if mode not in COMPOSITES:
        raise ValueError(f"mode must be one of {COMPOSITES}, got {mode!r}")
    known = valid.any(0)
    if mode == "median":
        img = masked_median(samples, valid, map_fn)
    else:
        order = np.argsort(-np.abs(times - times.mean()), kind="stable")  # far .. near
        img = np.zeros(samples.shape[1:], np.uint8)
        for k in order:
            img[valid[k]] = samples[k][valid[k]]
    img[~known] = 0
    return img, known


class ScenePanorama:
    """Real background seen so far in one scene, on a canvas that grows with the views."""

    def __init__(self, mode: str = "median", max_samples: int = 16, map_fn: MapFn = map):
        if mode not in COMPOSITES:
            raise ValueError(f"mode must be one of {COMPOSITES}, got {mode!r}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.mode = mode
        self.max_samples = max_samples
        self.map_fn = map_fn  # runs independent parts of the composite (a pool's map)
        self.canvas: Canvas | None = None
        self.image: np.ndarray | None = None  # (h, w, 3) uint8 real background
        self.known: np.ndarray | None = None  # (h, w) bool

    def carry(
        self, link: np.ndarray, need: np.ndarray, max_size: tuple[int, int]
    ) -> np.ndarray | None:
        """Move what is stored into new reference coordinates (``link``: old -> new
        reference), on a canvas covering ``need`` and what fits around it; returns the
        old-canvas-to-new-canvas matrix, or None (then nothing is kept)."""
        if self.canvas is None or self.image is None or self.known is None:
            return None
        moved = carry_over(self.canvas, link, need, max_size)
        if moved is None:
            self.canvas = self.image = self.known = None
            return None
        self.canvas, matrix = moved
        self.image = warp_canvas(self.image, matrix, self.canvas)
        self.known = warp_canvas(self.known, matrix, self.canvas)
        self.image[~self.known] = 0
        return matrix

    def grow(self, need: np.ndarray, scale: float, max_size: tuple[int, int]) -> Canvas:
        """Make the canvas cover ``need`` (reference coords), keeping what is stored."""
        new = fit_canvas(need, self.canvas, scale, max_size)
        if self.canvas is None or self.image is None or self.known is None:
            self.image = np.zeros((new.height, new.width, 3), np.uint8)
            self.known = np.zeros((new.height, new.width), bool)
        elif new != self.canvas:
            self.image = move_to(self.image, self.canvas, new)
            self.known = move_to(self.known, self.canvas, new, False)
        self.canvas = new
        return new

    def add(
        self,
        frames: list[np.ndarray],
        Hs: list[np.ndarray],
        valid: list[np.ndarray],
        times: list[float],
    ) -> np.ndarray:
        """Composite this window's samples (frame, frame->ref H, bool valid mask) and paste
        them over the stored panorama; returns the mask of canvas pixels updated."""
        if self.canvas is None or self.image is None or self.known is None:
            raise RuntimeError("grow() the canvas before adding samples")
        if not (len(frames) == len(Hs) == len(valid) == len(times)):
            raise ValueError(
                f"{len(frames)} frames, {len(Hs)} transforms, {len(valid)} masks, "
                f"{len(times)} times"
            )
        if not frames:
            return np.zeros_like(self.known)
        pick = np.unique(
            np.linspace(0, len(frames) - 1, min(self.max_samples, len(frames))).round().astype(int)
        )
        # work only inside the samples' bounding box: the stack of warped samples is the
        # big allocation, and a long scene's canvas is much wider than one window's views;
        # a box larger than COMPOSITE_BAND_BYTES allows is composited in bands of rows
        c = self.canvas
        h, w = frames[0].shape[:2]
        rows, cols = c.pixels(quad_bounds([Hs[i] for i in pick], w, h))
        updated = np.zeros_like(self.known)
        width = cols.stop - cols.start
        if width <= 0 or rows.stop <= rows.start:
            return updated
        step = max(1, COMPOSITE_BAND_BYTES // (len(pick) * width * 4))
        picked_times = np.asarray(times, float)[pick]
        for y in range(rows.start, rows.stop, step):
            band = slice(y, min(y + step, rows.stop))
            sub = c.crop(band, cols)
            # the samples are warped straight into their stacks (no copies to stack them)
            stack = np.empty((len(pick), sub.height, sub.width, 3), np.uint8)
            masks = np.empty(stack.shape[:3], bool)

            def warp(
                k: int, sub: Canvas = sub, out: tuple[np.ndarray, ...] = (stack, masks)
            ) -> None:
                i = pick[k]
                warp_sample(
                    frames[i], valid[i], sub.from_ref() @ Hs[i], sub, (out[0][k], out[1][k])
                )

            for _ in self.map_fn(warp, range(len(pick))):
                pass
            img, known = composite(stack, masks, picked_times, self.mode, self.map_fn)
            del stack, masks
            self.image[band, cols][known] = img[known]
            self.known[band, cols] |= known
            updated[band, cols] = known
        return updated
