"""Edges continued into a hole: known colours carried along the isophotes that cross its border.

Each unknown pixel ``p`` looks back along the edge that would run through it:

1. the nearest pixel ``q`` of the known region (its notches and enclosed holes closed, so
   that ragged borders give clean directions) is where the hole begins;
2. the structure tensor of the known pixels at ``q`` (three integration scales, the most
   coherent wins) gives the isophote direction and its coherence: 0 where the picture is
   flat or isotropic there, near 1 on one straight edge (a horizon, a rail, a roof line,
   the edge of a court); an isophote that runs along the border does not enter the hole
   and counts as none. The way back follows the isophote to the border, and on through
   closed notches to real pixels;
3. the colour is a Gaussian average of known pixels only (normalized convolution) around
   that source point, a little wider the further it is, so the edge stays sharp but
   small errors in its direction blur out.

The caller weights the result by the coherence: :class:`stages.fill.ClassicalFill` blends
it over its membrane fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAP_COLS = 1024  # cv2.remap maps are limited to 32767 rows: sample points go in rows of this


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, C) of a float32 (H, W, C) ``image`` at pixel coordinates
    ``x``, ``y`` (n,), clamped to the image."""
    n = len(x)
    rows = max(1, -(-n // MAP_COLS))
    mx = np.zeros(rows * MAP_COLS, np.float32)
    my = np.zeros(rows * MAP_COLS, np.float32)
    mx[:n], my[:n] = x, y
    out = cv2.remap(
        image,
        mx.reshape(rows, MAP_COLS),
        my.reshape(rows, MAP_COLS),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(rows * MAP_COLS, -1)[:n]


class KnownPyramid:
    """Known-weighted image (``image * known`` and ``known`` as a last channel) halved
    level by level (area average), for normalized Gaussian blurs at any scale: a blur of
    scale s runs on the level where it is about 3 pixels wide, so its cost does not grow
    with s."""

    def __init__(self, image: np.ndarray, known: np.ndarray):
        w = known.astype(np.float32)
        level = cv2.merge([*cv2.split(image.astype(np.float32) * w[..., None]), w])
        self.levels = [level]
        while min(level.shape[:2]) > 8:
            level = cv2.resize(
                level,
                ((level.shape[1] + 1) // 2, (level.shape[0] + 1) // 2),
                interpolation=cv2.INTER_AREA,
            )
            self.levels.append(level)
        self.height, self.width = known.shape

    def sample(self, sigma: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(Weighted sum, weight) blurred at scale ``sigma`` (full-size pixels) at
        full-size pixel coordinates ``x``, ``y``. Only the part of the level within four
        scales of the points is blurred (the rest could change them by < 0.1 %)."""
        k = int(np.clip(np.floor(np.log2(max(1.0, sigma / 3))), 0, len(self.levels) - 1))
        level = self.levels[k]
        lh, lw = level.shape[:2]
        fx, fy = self.width / lw, self.height / lh
        lx = np.clip((x + 0.5) / fx - 0.5, 0, lw - 1)  # outside: the nearest edge pixel
        ly = np.clip((y + 0.5) / fy - 0.5, 0, lh - 1)
        px, py = int(4 * sigma / fx) + 2, int(4 * sigma / fy) + 2
        # columns within reach of a point, in runs: the two side holes are blurred apart
        col = lx.astype(np.int32)
        reach = np.convolve(np.bincount(col, minlength=lw) > 0, np.ones(2 * px + 1), "same") > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], reach.view(np.int8), [0]])))
        runs = list(zip(edges[::2], edges[1::2], strict=True))
        run_of = np.cumsum(np.diff(np.concatenate([[0], reach.view(np.int8)])) > 0) - 1
        which = run_of[col] if len(runs) > 1 else None
        out = np.empty((len(x), level.shape[2]), np.float32)
        for r, (x0, x1) in enumerate(runs):
            sel = slice(None) if which is None else which == r
            px_, py_ = lx[sel], ly[sel]
            if not len(px_):
                continue
            y0 = max(0, int(np.floor(py_.min())) - py)
            y1 = min(lh, int(np.ceil(py_.max())) + 1 + py)
            part = cv2.GaussianBlur(
                level[y0:y1, x0:x1], (0, 0), sigmaX=sigma / fx, sigmaY=sigma / fy,
                borderType=cv2.BORDER_REFLECT,
            )  # fmt: skip
            out[sel] = sample(part, px_ - x0, py_ - y0)
        return out


def nearest_known(known: np.ndarray) -> tuple[np.ndarray, ...]:
    """For every unknown pixel: its row and column, the row and column of its nearest
    known pixel (float32) and the distance to it (at least 1)."""
    src = (~known).astype(np.uint8)
    dist, labels = cv2.distanceTransformWithLabels(
        src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    sites = np.argwhere(src == 0)  # labels number the zero (known) pixels in raster order
    ys, xs = np.nonzero(src)
    lab = labels[ys, xs] - 1
    del labels
    qy, qx = sites[lab, 0].astype(np.float32), sites[lab, 1].astype(np.float32)
    d = np.maximum(dist[ys, xs], 1.0)
    return ys, xs, qy, qx, d


def enclosed_gaps(known: np.ndarray, width: int) -> np.ndarray:
    """Unknown pixels enclosed by known ones: holes that touch no image edge, and notches
    and gaps narrower than about ``width`` (a morphological closing of the known region,
    the image padded with unknown so that holes open to an edge stay open)."""
    unknown = (~known).astype(np.uint8)
    n, labels = cv2.connectedComponents(unknown, connectivity=8)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = np.ones(n, bool)
    enclosed[edge] = False
    enclosed[0] = False  # label 0 is the known region
    gaps = enclosed[labels]
    pad = width + 1
    padded = cv2.copyMakeBorder(known.astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_CONSTANT)
    square = np.ones((width, width), np.uint8)  # separable: fast at any size
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, square)[pad:-pad, pad:-pad]
    return gaps | (closed.astype(bool) & ~known)


def isophotes(
    image: np.ndarray, known: np.ndarray, x: np.ndarray, y: np.ndarray,
    scales: tuple[float, ...], contrast: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Isophote direction (unit x, y) and coherence in [0, 1) of the known pixels at the
    points ``x``, ``y``: the structure tensor (gradients where the whole 3x3 neighbourhood
    is known, Gaussian-averaged over known pixels) at each of ``scales``, the most coherent
    one kept. Coherence is ((l1 - l2) / (l1 + l2 + contrast))^2: 0 for flat or isotropic
    patches, near 1 for one strong straight edge."""
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    valid = cv2.erode(
        known.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE
    )
    pyramid = KnownPyramid(cv2.merge([gx * gx, gx * gy, gy * gy]), valid.astype(bool))
    del g, gx, gy, valid
    best_c = np.full(len(x), -1.0, np.float32)
    best_phi = np.zeros(len(x), np.float32)
    for rho in scales:
        s = pyramid.sample(rho, x, y)
        wsum = np.maximum(s[:, 3], 1e-6)
        jxx, jxy, jyy = s[:, 0] / wsum, s[:, 1] / wsum, s[:, 2] / wsum
        spread = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2)
        c = (spread / (jxx + jyy + contrast)) ** 2
        better = c > best_c
        best_c[better] = c[better]
        best_phi[better] = 0.5 * np.arctan2(2 * jxy, jxx - jyy)[better]  # gradient angle
    return -np.sin(best_phi), np.cos(best_phi), np.maximum(best_c, 0)


def average(
    pyramid: KnownPyramid, x: np.ndarray, y: np.ndarray, sigma: np.ndarray, sharpest: float
) -> np.ndarray:
    """Normalized Gaussian average (n, 3) of known colours around (``x``, ``y``) at scale
    ``sigma`` (at least ``sharpest``), interpolated between scales a half octave apart. A
    trace of the colour at a quarter of the picture's size keeps a point where nothing is
    known defined."""
    s0 = sharpest
    pos = np.clip(2 * np.log2(np.maximum(sigma, s0) / s0), 0, None)
    order = np.argsort(pos, kind="stable")  # each scale's pixels become one slice
    pos, x, y = pos[order], x[order], y[order]
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(np.float32)
    acc = 1e-3 * pyramid.sample(max(pyramid.height, pyramid.width) / 4, x, y)
    bounds = np.searchsorted(lo, np.arange(int(lo[-1]) + 3))
    for k in range(int(lo[-1]) + 2):
        a, m, b = bounds[max(k - 1, 0)], bounds[k], bounds[k + 1]  # lo == k-1, lo == k
        if a < b:
            wk = np.concatenate([frac[a:m], 1 - frac[m:b]])
            acc[a:b] += wk[:, None] * pyramid.sample(s0 * 2 ** (k / 2), x[a:b], y[a:b])
    acc[order] = acc.copy()  # back to the callers' order
    return acc[:, :3] / np.maximum(acc[:, 3:], 1e-9)


@dataclass
class Extrapolation:
    """Colours for the unknown pixels at ``ys``, ``xs``, with the coherence of the edge
    each one continues (0: none) and the length of its way back to real pixels."""

    ys: np.ndarray
    xs: np.ndarray
    colour: np.ndarray
    coherence: np.ndarray
    travel: np.ndarray


@dataclass(frozen=True)
class Extrapolator:
    """The edge continuation of the module docstring with its tuned scales."""

    spread: float = 0.05  # blur scale per pixel travelled (0.1 blurs thin bands away)
    sharpest: float = 0.5  # blur scale right at the border, in pixels
    contrast: float = 8.0  # tensor energy (grey levels^2) below which edges count little
    tensor_scales: tuple[float, ...] = (6.0, 12.0, 24.0)

    def __post_init__(self) -> None:
        if not (self.spread > 0 and self.sharpest > 0 and self.contrast > 0):
            raise ValueError(
                f"need spread, sharpest, contrast > 0: "
                f"{self.spread}, {self.sharpest}, {self.contrast}"
            )
        if not self.tensor_scales or min(self.tensor_scales) <= 0:
            raise ValueError(f"need tensor_scales > 0: {self.tensor_scales}")

    def __call__(
        self, image: np.ndarray, known: np.ndarray, border: np.ndarray, pyramid: KnownPyramid
    ) -> Extrapolation:
        """Colours for the pixels outside ``border`` (``known`` with its gaps closed) from
        the real pixels (``known``, averaged in ``pyramid``)."""
        ys, xs, qy, qx, d = nearest_known(border)
        y, x = ys.astype(np.float32), xs.astype(np.float32)
        my, mx = (y - qy) / d, (x - qx) / d  # unit normal out of the known region
        vx, vy, c = isophotes(image, known, qx, qy, self.tensor_scales, self.contrast)
        dot = vx * mx + vy * my
        flip = dot < 0  # orient each isophote into the hole
        vx[flip], vy[flip], dot[flip] = -vx[flip], -vy[flip], -dot[flip]
        # an isophote within ~66 degrees of the border does not enter the hole: fade it out
        c *= np.clip((dot - 0.4) * 5, 0, 1)
        t = d / np.maximum(dot, 0.2)  # way back to the border along the isophote
        if not np.array_equal(border, known):  # march on to real pixels (sphere tracing)
            h, w = known.shape
            dist = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 5)
            for _ in range(4):
                sx = np.clip(x - t * vx, 0, w - 1)
                sy = np.clip(y - t * vy, 0, h - 1)
                t += sample(dist[..., None], sx, sy)[:, 0]
        sigma = self.sharpest + t * self.spread
        colour = average(pyramid, x - t * vx, y - t * vy, sigma, self.sharpest)
        return Extrapolation(ys, xs, colour, c, t)
