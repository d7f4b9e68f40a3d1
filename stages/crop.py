"""Find the black bars of input that is already pillarboxed or letterboxed.

Like ffmpeg's ``cropdetect``, but a column or row only counts as bar when it is
near-black *and* flat in (almost) every informative sampled frame. A dark scene's
content still varies somewhere (grain, dim detail, something moving, a later frame),
so it is not mistaken for a bar; all-black frames (fades) carry no information and
are skipped. Bars are straight: the picture must begin along (most of) the bar's inner
edge, so a small bright thing on a black background is not a picture boxed in bars.
The soft, dark columns or rows where a bar meets the picture (a scan's or encoder's
ramp) count as bar, so no dark line stays at the picture's edge.

Side (pillar) bars are cut off and filled like any new area; top and bottom
(letterbox) bars are cut off for the work and put back by :class:`PadStage`, so the
output keeps the input's height with its bars extended to the new width.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .base import Frame, Stage, VideoInfo, Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropBox:
    """The active picture: ``w`` x ``h`` pixels whose top-left corner is at (``x``, ``y``)."""

    w: int
    h: int
    x: int
    y: int

    def __post_init__(self) -> None:
        if self.w <= 0 or self.h <= 0 or self.x < 0 or self.y < 0:
            raise ValueError(f"crop box needs w, h > 0 and x, y >= 0, got {self}")

    @classmethod
    def parse(cls, text: str) -> CropBox:
        """Parse ffmpeg's ``W:H:X:Y`` (as printed by ``cropdetect``)."""
        parts = text.strip().split(":")
        if len(parts) != 4:
            raise ValueError(f"crop must look like W:H:X:Y, got {text!r}")
        try:
            w, h, x, y = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"crop must be four integers W:H:X:Y, got {text!r}") from None
        return cls(w, h, x, y)

    def __str__(self) -> str:
        return f"{self.w}:{self.h}:{self.x}:{self.y}"

    def fits(self, width: int, height: int) -> bool:
        """True when the box lies inside a ``width`` x ``height`` picture."""
        return self.x + self.w <= width and self.y + self.h <= height


def _to_luma(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if frame.ndim == 2:
        return frame
    raise ValueError(f"frames must be (H, W, 3) RGB or (H, W) grey, got shape {frame.shape}")


def _bar_votes(
    lines: np.ndarray, prev: np.ndarray | None, black: int, flat: float, still: float
) -> np.ndarray:
    """Per line (row of ``lines``): near-black, near-constant, and unchanged since ``prev``."""
    vote = (lines.max(axis=1) <= black) & (lines.std(axis=1, dtype=np.float32) <= flat)
    if prev is not None:
        change = np.abs(lines.astype(np.int16) - prev).mean(axis=1, dtype=np.float32)
        vote &= change <= still
    return vote


# share of the picture's edge line (rows along a side bar, columns along a top/bottom bar)
# that must show picture: a bar's inner edge is straight, a lone object on black is not
STRAIGHT_SHARE = 0.5
# a column/row beside a bar whose luma stays under this share of the picture's just inside
# it is the bar's soft edge (scan or encoder ramp) and counts as bar
RAMP_SHARE = 0.5
# at most this share of the width/height (and 2 px) is taken as such a ramp
MAX_RAMP = 0.006


def _edge_shows_picture(lines: np.ndarray, black: int, flat: float) -> float:
    """Share of positions along an edge line where the picture shows: ``lines`` is
    (frames, positions, depth), the first few lines inside the bar's edge. A position
    shows picture when it is brighter than ``black`` in some frame or changes over time
    more than grain-free black could (film grain in a dark scene)."""
    bright = (lines.max(axis=(0, 2)) > black).astype(bool)
    edge = lines[:, :, 0].astype(np.int16)
    varies = (edge.max(axis=0) - edge.min(axis=0)) > 2 * flat
    return float(np.mean(bright | varies))


def _ramp(lumas: np.ndarray, start: int, step: int, limit: int) -> int:
    """Lines (along axis 2 of ``lumas``, frames x rows x lines) from ``start`` inwards by
    ``step`` that are much darker than the picture just inside them in most frames."""
    n = 0
    size = lumas.shape[2]
    while n < limit:
        at = start + step * n
        ref = [at + step * k for k in range(2, 10) if 0 <= at + step * k < size]
        if not ref:
            break
        line = lumas[:, :, at].mean(axis=1)
        inside = lumas[:, :, ref].mean(axis=(1, 2))
        # the 75th percentile over frames: a ramp is dark in every frame, dark picture
        # content at the edge only in some
        if np.percentile(line, 75) >= RAMP_SHARE * max(np.percentile(inside, 75), 1.0):
            break
        n += 1
    return n


def _edge_run(is_bar: np.ndarray) -> tuple[int, int]:
    """Length of the runs of True at the start and at the end of ``is_bar``."""
    n = len(is_bar)
    false_at = np.flatnonzero(~is_bar)
    if len(false_at) == 0:
        return n, n
    return int(false_at[0]), int(n - 1 - false_at[-1])


def detect_crop(
    frames: Sequence[np.ndarray],
    black: int = 32,
    flat: float = 1.5,
    still: float = 0.75,
    agree: float = 0.95,
    min_bar: float = 0.01,
) -> CropBox | None:
    """The box of the active picture in ``frames``, or None when nothing should be cropped.

    ``frames`` are RGB ``uint8`` (H, W, 3) (or grey) pictures sampled from the opening of
    the video. A column/row is bar when, in at least ``agree`` of the frames that are not
    entirely black, its luma never exceeds ``black``, its standard deviation is at most
    ``flat`` and its mean absolute change since the previous such frame is at most
    ``still`` (film grain and dim detail of a dark scene fail these two). Only bars
    touching the edges count; a bar thinner than ``min_bar`` of the frame size is ignored.
    The box is shrunk to even coordinates so no bar pixel remains.
    """
    if not frames:
        raise ValueError("detect_crop needs at least one frame, got none")
    if not 0 < agree <= 1:
        raise ValueError(f"agree must be in (0, 1], got {agree}")
    if not 0 <= min_bar < 0.5:
        raise ValueError(f"min_bar must be in [0, 0.5), got {min_bar}")
    shape = frames[0].shape
    col_votes, row_votes, lumas = [], [], []
    prev: np.ndarray | None = None
    for i, frame in enumerate(frames):
        if frame.shape != shape or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {i} is {frame.dtype} {frame.shape}, expected uint8 {shape} like frame 0"
            )
        luma = _to_luma(frame)
        if luma.max() <= black:
            continue  # an all-black frame (fade) says nothing about where the bars are
        col_votes.append(_bar_votes(luma.T, None if prev is None else prev.T, black, flat, still))
        row_votes.append(_bar_votes(luma, prev, black, flat, still))
        lumas.append(luma)
        prev = luma
    if not col_votes:
        log.info("crop detection: all %d sampled frames are black; not cropping", len(frames))
        return None
    height, width = shape[:2]
    is_bar_col = np.mean(col_votes, axis=0) >= agree
    is_bar_row = np.mean(row_votes, axis=0) >= agree
    left, right = _edge_run(is_bar_col)
    top, bottom = _edge_run(is_bar_row)
    if left == width or top == height:
        log.info("crop detection: no stable picture found; not cropping")
        return None

    min_w, min_h = max(2, math.ceil(min_bar * width)), max(2, math.ceil(min_bar * height))
    left, right = (b if b >= min_w else 0 for b in (left, right))
    top, bottom = (b if b >= min_h else 0 for b in (top, bottom))
    stack = np.stack(lumas)  # frames x rows x columns
    rows = stack[:, top : height - bottom]
    cols = stack[:, :, left : width - right].transpose(0, 2, 1)  # frames x columns x rows
    depth = 3  # lines inside a bar's edge that must show the picture
    if left and _edge_shows_picture(rows[:, :, left : left + depth], black, flat) < STRAIGHT_SHARE:
        left = 0
    if (
        right
        and _edge_shows_picture(rows[:, :, width - right - depth : width - right], black, flat)
        < STRAIGHT_SHARE
    ):
        right = 0
    if top and _edge_shows_picture(cols[:, :, top : top + depth], black, flat) < STRAIGHT_SHARE:
        top = 0
    if (
        bottom
        and _edge_shows_picture(cols[:, :, height - bottom - depth : height - bottom], black, flat)
        < STRAIGHT_SHARE
    ):
        bottom = 0
    if left or right or top or bottom:  # the soft edges of the bars that stay
        rows = stack[:, top : height - bottom]
        cols = stack[:, :, left : width - right].transpose(0, 2, 1)
        ramp_w, ramp_h = max(2, round(MAX_RAMP * width)), max(2, round(MAX_RAMP * height))
        left += _ramp(rows, left, 1, ramp_w) if left else 0
        right += _ramp(rows, width - right - 1, -1, ramp_w) if right else 0
        top += _ramp(cols, top, 1, ramp_h) if top else 0
        bottom += _ramp(cols, height - bottom - 1, -1, ramp_h) if bottom else 0
    x0, x1 = left + left % 2, (width - right) - (width - right) % 2
    y0, y1 = top + top % 2, (height - bottom) - (height - bottom) % 2
    if (x0, y0, x1, y1) == (0, 0, width, height) or x1 - x0 < 2 or y1 - y0 < 2:
        return None
    box = CropBox(x1 - x0, y1 - y0, x0, y0)
    if box.w < width // 4 or box.h < height // 4:
        log.warning(
            "crop detection: implausibly small picture %s in %dx%d; not cropping",
            box,
            width,
            height,
        )
        return None
    log.info(
        "crop detection: picture at crop=%s in %dx%d (%d informative frames)",
        box,
        width,
        height,
        len(col_votes),
    )
    return box


class CropStage(Stage):
    """Cuts every frame down to ``box`` (the active picture found by :func:`detect_crop`).

    A frame seen ahead by :meth:`peek_through` comes out of :meth:`process` as the same
    array (a view of the input frame), so a later stage can match what it peeked at."""

    buffers_scenes = False

    def __init__(self, box: CropBox):
        self.box = box
        self._size: tuple[int, int] | None = None
        self._ahead: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(input): (input, view)

    def configure(self, info: VideoInfo) -> VideoInfo:
        if not self.box.fits(info.width, info.height):
            raise ValueError(f"crop {self.box} does not fit in {info.width}x{info.height}")
        self._size = (info.height, info.width)
        return info.with_size(self.box.w, self.box.h)

    def _view(self, img: np.ndarray) -> np.ndarray:
        if self._size is None:
            raise RuntimeError("CropStage.configure must be called before process")
        if img.shape[:2] != self._size:
            raise ValueError(
                f"frame is {img.shape[1]}x{img.shape[0]}, configured for "
                f"{self._size[1]}x{self._size[0]}"
            )
        b = self.box
        return img[b.y : b.y + b.h, b.x : b.x + b.w]

    def peek_through(self, image: np.ndarray) -> np.ndarray | None:
        """The cropped frame (a view; no copy), remembered until :meth:`process` gives it."""
        view = self._view(image)
        self._ahead[id(image)] = (image, view)
        return view

    def process(self, window: Window) -> Iterator[Frame]:
        for img, pts in zip(window.frames, window.pts, strict=True):
            seen = self._ahead.pop(id(img), None)
            if seen is not None and seen[0] is img:
                yield Frame(seen[1], pts)
            else:
                yield Frame(np.ascontiguousarray(self._view(img)), pts)

    def close(self) -> None:
        self._ahead.clear()


class PadStage(Stage):
    """Puts letterbox bars back: ``top`` and ``bottom`` rows of ``colour`` around each
    frame, at the frame's (new) width, so the output keeps the input's height."""

    buffers_scenes = False
    one_to_one = True

    def __init__(self, top: int, bottom: int, colour: tuple[int, int, int] = (0, 0, 0)):
        if top < 0 or bottom < 0 or top + bottom == 0:
            raise ValueError(f"pad needs top, bottom >= 0 and some rows, got {top}, {bottom}")
        if any(not 0 <= c <= 255 for c in colour) or len(colour) != 3:
            raise ValueError(f"colour must be three values in 0..255, got {colour}")
        self.top, self.bottom, self.colour = top, bottom, tuple(colour)
        self._size: tuple[int, int] | None = None

    def configure(self, info: VideoInfo) -> VideoInfo:
        self._size = (info.height, info.width)
        return info.with_size(info.width, info.height + self.top + self.bottom)

    def process(self, window: Window) -> Iterator[Frame]:
        if self._size is None:
            raise RuntimeError("PadStage.configure must be called before process")
        h, w = self._size
        for img, pts in zip(window.frames, window.pts, strict=True):
            if img.shape[:2] != (h, w):
                raise ValueError(f"frame is {img.shape[1]}x{img.shape[0]}, configured for {w}x{h}")
            out = np.empty((h + self.top + self.bottom, w, 3), np.uint8)
            out[: self.top] = self.colour
            out[self.top : self.top + h] = img
            out[self.top + h :] = self.colour
            yield Frame(out, pts)
