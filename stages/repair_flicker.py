"""Brightness flicker: per-frame, spatially smooth gain and offset against a smoothed trend.

Each frame's brightness relative to the frame before it is fitted on the aligned, trusted
pixels of the pair at the flow size: ``v -> g(x, y) * v + o`` with ``g`` a plane over the
frame (an uneven lamp or exposure, a gradient) and ``o`` one offset. Chained from the
scene's first frame this gives every frame's brightness :class:`Level`. The trend a frame
should have is a local linear fit of those levels over the neighbouring frames: a fade or
a lighting change is (locally) linear and stays, the frame-to-frame jitter goes. Only a
few numbers per frame are kept, so the trend window costs no frame memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Ridge weights (in units of the data's own scale) that pull an ill-posed fit (a flat or
# dark picture cannot tell gain from offset) towards a pure gain with no gradient.
RIDGE_OFFSET = 0.05
RIDGE_SLOPE = 0.02
# Correction gains allowed per pixel: beyond these a fit has failed (a flash, a wipe).
MIN_GAIN, MAX_GAIN = 0.6, 1.6
# Grid on which gain/offset fields are evaluated before being scaled to the frame.
FIELD_GRID = (16, 12)


@dataclass(frozen=True)
class Level:
    """Brightness map ``v -> (g0 + gx * X + gy * Y) * v + o``, X and Y in [-1, 1]."""

    g0: float = 1.0
    gx: float = 0.0
    gy: float = 0.0
    o: float = 0.0

    def then(self, r: Level) -> Level:
        """This map followed by ``r`` (the product of the planes kept to first order)."""
        return Level(
            self.g0 * r.g0,
            self.g0 * r.gx + self.gx * r.g0,
            self.g0 * r.gy + self.gy * r.g0,
            r.g0 * self.o + r.o,
        )

    def as_array(self) -> np.ndarray:
        return np.array([self.g0, self.gx, self.gy, self.o])

    def gain(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.g0 + self.gx * xs + self.gy * ys


def _unit_grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    xs = np.linspace(-1, 1, w, dtype=np.float64)[None, :].repeat(h, 0)
    ys = np.linspace(-1, 1, h, dtype=np.float64)[:, None].repeat(w, 1)
    return xs, ys


def fit_step(cur: np.ndarray, prev: np.ndarray, ok: np.ndarray) -> Level:
    """Level of ``cur`` relative to ``prev`` (both float luma at the flow size, ``prev``
    aligned to ``cur``) from the trusted pixels ``ok``; robust to specks (two reweighting
    passes drop pixels far off the fit). The identity when too few pixels are trusted."""
    h, w = cur.shape
    if ok.sum() < 0.05 * h * w or ok.sum() < 32:
        return Level()
    xs, ys = _unit_grid(w, h)
    step = (slice(None, None, 2), slice(None, None, 2))  # every 4th pixel is plenty
    sel = ok[step]
    v, y = prev[step][sel].astype(np.float64), cur[step][sel].astype(np.float64)
    a = np.stack([v, v * xs[step][sel], v * ys[step][sel], np.ones_like(v)], axis=1)
    scale = max(float(np.mean(v * v)), 1.0)
    # ridge: no gradient and no offset unless the data ask for them (the gain is free)
    reg = np.diag([0.0, RIDGE_SLOPE * scale, RIDGE_SLOPE * scale, RIDGE_OFFSET])
    weight = np.ones_like(v)
    coef = np.array([1.0, 0.0, 0.0, 0.0])
    for _ in range(3):
        aw = a * weight[:, None]
        n = max(float(weight.sum()), 1.0)
        lhs = aw.T @ a / n + reg
        rhs = aw.T @ y / n
        coef = np.linalg.solve(lhs, rhs)
        res = np.abs(a @ coef - y)
        spread = max(1.4826 * float(np.median(res)), 0.5)
        weight = (res < 3 * spread).astype(np.float64)
    return Level(*(float(c) for c in coef))


def trend(levels: Sequence[tuple[int, Level]], at: int, radius: int) -> Level:
    """The level frame ``at`` should have: a local linear fit (tricube weights over
    ``radius`` frames either side) of the known levels, evaluated at ``at``."""
    pts = [(i, lv) for i, lv in levels if abs(i - at) <= radius]
    if len(pts) < 3:
        return dict(levels).get(at, Level())
    t = np.array([i - at for i, _ in pts], np.float64)
    vals = np.stack([lv.as_array() for _, lv in pts])
    wts = (1 - (np.abs(t) / (radius + 1)) ** 3) ** 3
    design = np.stack([np.ones_like(t), t], axis=1)
    lhs = design.T @ (design * wts[:, None])
    rhs = design.T @ (vals * wts[:, None])
    coef = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return Level(*(float(c) for c in coef[0]))


def mapping(
    src: Level, dst: Level, shape: tuple[int, ...], channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel gain and offset (H, W) float32, or (H, W, channels) with ``channels`` > 1,
    that take a picture at level ``src`` to level ``dst``:
    ``v -> g_dst / g_src * (v - o_src) + o_dst``."""
    gw, gh = FIELD_GRID
    xs, ys = _unit_grid(gw, gh)
    g_src = np.maximum(src.gain(xs, ys), 1e-3)
    ratio = np.clip(dst.gain(xs, ys) / g_src, MIN_GAIN, MAX_GAIN)
    offset = dst.o - ratio * src.o
    size = (shape[1], shape[0])
    fields = []
    for f in (ratio, offset):
        f = f.astype(np.float32)
        if channels > 1:  # resized as channels at once: no merge of full-size planes
            f = np.repeat(f[..., None], channels, axis=2)
        fields.append(cv2.resize(f, size, interpolation=cv2.INTER_LINEAR))
    return fields[0], fields[1]


def apply(image: np.ndarray, src: Level, dst: Level) -> np.ndarray:
    """RGB ``image`` (uint8 or float32) taken from level ``src`` to ``dst``, as uint8."""
    gain, off = mapping(src, dst, image.shape, channels=3)
    # OpenCV's mixed-type arithmetic rounds and saturates into uint8 in one pass
    return cv2.add(cv2.multiply(image, gain, dtype=cv2.CV_32F), off, dtype=cv2.CV_8U)


def table(src: Level, dst: Level) -> np.ndarray:
    """Lookup table (256 uint8) for the mapping ``src`` -> ``dst`` at the frame centre:
    for pictures whose levels differ by a gain and offset only (gradients already gone)."""
    ratio = np.clip(dst.g0 / max(src.g0, 1e-3), MIN_GAIN, MAX_GAIN)
    v = ratio * (np.arange(256) - src.o) + dst.o
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def is_identity(src: Level, dst: Level, tol: float = 1e-3) -> bool:
    """Whether mapping ``src`` to ``dst`` changes no pixel by more than ~0.25 levels."""
    d = np.abs(src.as_array() - dst.as_array())
    return bool(d[:3].max() < tol and d[3] < 0.25)
