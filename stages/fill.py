"""Classical fill of what no frame of the scene showed (no model weights).

Two layers, both multi-scale and deterministic:

* structure: a push-pull pyramid (coarse-to-fine membrane). Known pixels are averaged
  down a Gaussian pyramid with their weights until the hole closes, then each finer
  level keeps its own data where it has it and takes the upsampled coarser fill
  elsewhere: a smooth interpolation of the surrounding colours, with no streaks;
* texture: high-frequency detail (image minus its blur) mirrored across the hole border
  from the nearest known pixel, fading with the distance into the hole, so grain and
  texture continue past the border instead of ending in a smooth blur.

Measured against ``cv2.inpaint`` (Telea) in ``tests/test_fill.py``.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from stages.base import HoleFill, check_fill_inputs

log = logging.getLogger(__name__)


def _down(a: np.ndarray, y_too: bool) -> np.ndarray:
    """Half size in x (and in y when ``y_too``), Gaussian-filtered."""
    if y_too:
        return cv2.pyrDown(a)
    a = cv2.GaussianBlur(a, (5, 1), 0, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(a, ((a.shape[1] + 1) // 2, a.shape[0]), interpolation=cv2.INTER_AREA)


def merge3(a: np.ndarray) -> np.ndarray:
    """A (H, W) array as (H, W, 3) copies: numpy broadcasting over a trailing axis of 3
    is several times slower than the same operation on equal shapes."""
    return cv2.merge([a, a, a])


def push_pull(image: np.ndarray, known: np.ndarray, y_every: int = 1) -> np.ndarray:
    """Membrane fill: float32 image where unknown pixels come from coarser levels.

    ``y_every`` > 1 halves the height only every that many levels, so colours travel
    further along rows than across them: horizons, floors and walls continue sideways
    into the new side areas instead of mixing with what is above and below."""
    img = image.astype(np.float32)
    w = known.astype(np.float32)
    levels: list[tuple[np.ndarray, np.ndarray, bool]] = []
    p, q = img * merge3(w), w
    y_too = True
    while True:
        levels.append((p, q, y_too))
        if (q > 1e-4).all() or max(q.shape) <= 2:
            break
        y_too = (len(levels) - 1) % y_every == 0 and q.shape[0] > 2 or q.shape[1] <= 2
        p, q = _down(p, y_too), _down(q, y_too)
    p, q, y_too = levels[-1]
    fill = p / np.maximum(q, 1e-6)[..., None]
    if not (q > 1e-4).all():  # nothing known at all at the top: use the mean colour
        total = max(float(w.sum()), 1e-6)
        mean = (img * w[..., None]).reshape(-1, 3).sum(0) / total
        fill[q <= 1e-4] = mean
    for k in range(len(levels) - 2, -1, -1):
        p, q, _ = levels[k]
        size = (q.shape[1], q.shape[0])
        if levels[k + 1][2]:  # the coarser level was halved both ways
            up = cv2.pyrUp(fill, dstsize=size)
        else:
            up = cv2.resize(fill, size, interpolation=cv2.INTER_LINEAR)
        if k == 0:  # full size: coverage is 0 or 1, the known pixels are put back below
            fill = up
            break
        a = merge3(np.clip(q * 4.0, 0, 1))  # partial coverage blends with the coarse fill
        fill = a * (p / merge3(np.maximum(q, 1e-6))) + (1 - a) * up
    cv2.copyTo(img, known.astype(np.uint8), fill)
    return fill


def mirrored_detail(
    image: np.ndarray, known: np.ndarray, sigma: float, reach: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detail (image - blur) reflected across the hole border: for an unknown pixel p with
    nearest known pixel q, the detail at 2q - p, weighted by exp(-|p - q| / reach)
    (left out beyond 5 reaches, where the weight is under 1 %). Returned sparse, as
    (rows, columns, (n, 3) float32 values): the detail is only computed where it is used."""
    known8 = known.astype(np.uint8)
    blur = cv2.GaussianBlur(
        cv2.bitwise_and(image, image, mask=known8).astype(np.float32), (0, 0), sigma
    )
    norm = cv2.GaussianBlur(known8.astype(np.float32), (0, 0), sigma)
    src = 1 - known8  # zeros (known pixels) are the labelled sites
    dist, labels = cv2.distanceTransformWithLabels(
        src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    sites = np.argwhere(src == 0)  # labels number the zero pixels in raster order
    h, w = known.shape
    ys, xs = np.nonzero((src > 0) & (dist < 5 * reach))
    lab = labels[ys, xs] - 1
    del labels
    qy, qx = sites[lab, 0], sites[lab, 1]
    ry, rx = 2 * qy - ys, 2 * qx - xs
    inside = (ry >= 0) & (ry < h) & (rx >= 0) & (rx < w)
    ry, rx = np.clip(ry, 0, h - 1), np.clip(rx, 0, w - 1)
    ok = inside & known[ry, rx]
    ys, xs, ry, rx = ys[ok], xs[ok], ry[ok], rx[ok]
    detail = (
        image[ry, rx].astype(np.float32) - blur[ry, rx] / np.maximum(norm[ry, rx], 1e-3)[:, None]
    )
    return ys, xs, detail * np.exp(-dist[ys, xs] / reach)[:, None]


class ClassicalFill(HoleFill):
    """Push-pull membrane plus mirrored texture; known pixels returned unchanged.

    ``y_every=4`` (rows carry colour 4x further than columns below the coarsest levels):
    stage side PSNR bear / skater / tennis 18.27 / 19.95 / 24.72 dB against
    18.48 / 19.36 / 24.67 with 2, so the mean rises."""

    def __init__(
        self,
        detail_gain: float = 0.7,
        sigma: float = 2.0,
        reach: float = 24.0,
        y_every: int = 4,
        max_pixels: int = 500_000,
    ):
        if detail_gain < 0 or sigma <= 0 or reach <= 0 or y_every < 1 or max_pixels < 64:
            raise ValueError(
                f"need detail_gain >= 0, sigma > 0, reach > 0, y_every >= 1, max_pixels >= 64: "
                f"{detail_gain}, {sigma}, {reach}, {y_every}, {max_pixels}"
            )
        self.detail_gain, self.sigma, self.reach = detail_gain, sigma, reach
        self.y_every = y_every
        # larger regions are filled at a reduced size: the float buffers of the fill are
        # the stage's biggest allocation (about 180 bytes a pixel at its peak), and must not
        # grow with the canvas. 0.5 Mpx: stage side PSNR on the dev clips as with 1.5 Mpx
        # (mean 22.25 dB both; 22.19 at 0.25 Mpx), the peak of a long pan's fill 90 -> ~30 MiB
        self.max_pixels = max_pixels

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        check_fill_inputs(image, known)
        if known.all():
            return image.copy()
        if not known.any():
            log.warning("nothing known to fill from; returning mid grey")
            return np.full_like(image, 128)
        h, w = known.shape
        if h * w > self.max_pixels:
            return self._reduced(image, known)
        out = push_pull(image, known, self.y_every)
        if self.y_every > 1:  # soften row streaks with the distance into the hole
            dist = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 5)
            sigma = max(2.0, known.shape[0] / 40)
            soft = cv2.GaussianBlur(out, (1, 0), sigmaX=0.1, sigmaY=sigma)
            a = np.clip(dist / (4 * self.reach), 0, 1, out=dist)
            out = cv2.blendLinear(out, soft, 1 - a, a)  # no (H, W, 3) weight copies
            del soft, a, dist
        if self.detail_gain > 0:
            ys, xs, detail = mirrored_detail(image, known, self.sigma, self.reach)
            out[ys, xs] += self.detail_gain * detail
        result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        cv2.copyTo(image, known.astype(np.uint8), result)
        return result

    def _reduced(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Fill at about ``max_pixels`` (area-averaged known colours; pixels over half
        known count as known), scaled back up under the holes; known pixels unchanged.
        No full-size float copy is made."""
        h, w = known.shape
        f = (self.max_pixels / (h * w)) ** 0.5
        size = (max(1, int(w * f)), max(1, int(h * f)))
        known8 = known.astype(np.uint8)
        cover = cv2.resize(known8 * np.float32(1), size, interpolation=cv2.INTER_AREA)
        masked = cv2.bitwise_and(image, image, mask=known8)
        colour = cv2.resize(masked, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        small = np.clip(colour / merge3(np.maximum(cover, 1e-6)) + 0.5, 0, 255).astype(np.uint8)
        small_known = cover > 0.5 if (cover > 0.5).any() else cover > 0
        out = cv2.resize(self(small, small_known), (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.copyTo(image, known8, out)
        return out
