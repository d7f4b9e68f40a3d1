"""Classical fill of what no frame showed (no model weights; deterministic).

Two layers, both multi-scale:

* colour: a push-pull membrane carries the local colours into the holes, rows reaching
  twice as far as columns (horizons, floors and walls go on sideways), its row streaks
  blurred across the rows with the distance, leaning far out towards an isotropic wide
  average of the known colours (what one row's border shows is not carried to the end).
  The panorama's known region is what the samples' foreground masks left: ragged,
  notched, with holes; the membrane's reach along the rows stays right there, where a
  fill that trusts the nearest border pixel goes wrong;
* structure: where a coherent edge crosses the border (a rail, a roof line, the edge of a
  court), it is continued along its own direction (:mod:`stages.extrapolate`) over the
  membrane, weighted by its coherence and fading out with the distance.

No texture is added: detail mirrored in from the border scored no better (PSNR, SSIM) on
the never-seen pixels of the dev clips than none. :class:`ClassicalFill` fills a scene's
panorama once, and is cheap enough to fill single frames too. Scored against per-frame
Telea by ``benchmarks/fill_eval.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from stages.base import HoleFill, check_fill_inputs
from stages.extrapolate import Extrapolator, KnownPyramid, enclosed_gaps

log = logging.getLogger(__name__)

GAP = 0.25  # notches narrower than this share of the picture are closed before extrapolating
# far from the known pixels the fill leans this far (full at one picture height away)
# towards an isotropic wide average of the known colours: the membrane carries each
# row's border colour along the row, so a character at the frame edge became a streak to
# the far end; the average mixes in the rows above and below (half: the rows' own
# colour still counts)
FAR_PULL = 0.5
FAR_SCALE = 0.25  # scale of that average, in picture heights


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
    further along rows than across them."""
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


def membrane(image: np.ndarray, known: np.ndarray, y_every: int, soften: float) -> np.ndarray:
    """:func:`push_pull` with rows reaching ``y_every`` times further, its row streaks
    blurred across the rows more the further they are from the known pixels (full blur,
    height / 40, at ``soften`` pixels)."""
    out = push_pull(image, known, y_every)
    dist = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 5)
    soft = cv2.GaussianBlur(out, (1, 0), sigmaX=0.1, sigmaY=max(2.0, known.shape[0] / 40))
    a = np.clip(dist / soften, 0, 1, out=dist)
    return cv2.blendLinear(out, soft, 1 - a, a)  # no (H, W, 3) weight copies


def lean_far(base: np.ndarray, image: np.ndarray, known: np.ndarray, pull: float) -> np.ndarray:
    """``base`` (float32) blended towards the normalized Gaussian average of the known
    colours (scale ``FAR_SCALE`` heights), by ``pull`` times the distance from the known
    pixels in heights (at most ``pull``); where almost nothing known is within the
    Gaussian's reach, ``base``."""
    h = known.shape[0]
    sigma = FAR_SCALE * h
    kw = known.astype(np.float32)
    num = cv2.GaussianBlur(image.astype(np.float32) * merge3(kw), (0, 0), sigma)
    den = cv2.GaussianBlur(kw, (0, 0), sigma)
    wide = num / merge3(np.maximum(den, 1e-4))
    dist = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 5)
    a = np.where(den > 1e-3, pull * np.clip(dist / h, 0, 1), 0).astype(np.float32)
    return cv2.blendLinear(base, wide, 1 - a, a)


def reduced(
    fill: Callable[[np.ndarray, np.ndarray], np.ndarray],
    image: np.ndarray,
    known: np.ndarray,
    f: float,
) -> np.ndarray:
    """``fill`` run at ``f`` times the size (area-averaged known colours; pixels over half
    known count as known), scaled back up under the holes; known pixels unchanged. No
    full-size float copy is made."""
    h, w = known.shape
    size = (max(1, int(w * f)), max(1, int(h * f)))
    known8 = known.astype(np.uint8)
    cover = cv2.resize(known8 * np.float32(1), size, interpolation=cv2.INTER_AREA)
    masked = cv2.bitwise_and(image, image, mask=known8)
    colour = cv2.resize(masked, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    small = np.clip(colour / merge3(np.maximum(cover, 1e-6)) + 0.5, 0, 255).astype(np.uint8)
    small_known = cover > 0.5 if (cover > 0.5).any() else cover > 0
    out = cv2.resize(fill(small, small_known), (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(image, known8, out)
    return out


class ClassicalFill(HoleFill):
    """Membrane plus continued edges (module docstring); known pixels unchanged.

    Runs at ``work_height`` rows (scaled down when taller, and to at most ``max_pixels``)
    and is scaled up under the holes: what it predicts is low in detail, and the working
    size makes it behave the same at any resolution. Cheap enough (a few tens of ms) to
    serve per frame too, as the fallback for frames the panorama cannot serve."""

    def __init__(
        self,
        edge_reach: float = 100.0,
        y_every: int = 2,
        soften: float = 96.0,
        work_height: int = 160,
        max_pixels: int = 500_000,
        extrapolator: Extrapolator | None = None,
        far_pull: float = FAR_PULL,
    ):
        if edge_reach <= 0 or y_every < 1 or soften <= 0:
            raise ValueError(
                f"need edge_reach > 0, y_every >= 1, soften > 0: {edge_reach}, {y_every}, {soften}"
            )
        if not 0 <= far_pull <= 1:
            raise ValueError(f"far_pull must be in [0, 1], got {far_pull}")
        if work_height < 8 or max_pixels < 64:
            raise ValueError(
                f"need work_height >= 8, max_pixels >= 64: {work_height}, {max_pixels}"
            )
        # 160 rows scored as well as full size on clean-bordered frames and better on the
        # ragged panoramas (structures of the whole picture, not of its noise, count)
        self.work_height = work_height
        self.max_pixels = max_pixels  # bounds the float buffers of a wide panorama
        # working-size pixels over which a continued edge fades out
        self.edge_reach = edge_reach
        # rows reach twice as far as columns: 2 scored above 3, 4 and 8 on the panoramas
        # of the static dev clips (colours of one row band stay out of the next)
        self.y_every = y_every
        self.soften = soften  # working-size distance at which row streaks are fully blurred
        self.edges = extrapolator or Extrapolator()
        self.far_pull = far_pull  # see FAR_PULL

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        check_fill_inputs(image, known)
        if known.all():
            return image.copy()
        if not known.any():
            log.warning("nothing known to fill from; returning mid grey")
            return np.full_like(image, 128)
        h = known.shape[0]
        f = min(1.0, self.work_height / h, (self.max_pixels / known.size) ** 0.5)
        if f < 0.95:
            return reduced(self._fill, image, known, f)
        return self._fill(image, known)

    def _fill(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        """The fill at the given size."""
        if known.all() or not known.any():
            return image.copy() if known.all() else np.full_like(image, 128)
        base = membrane(image, known, self.y_every, self.soften)
        if self.far_pull > 0:
            base = lean_far(base, image, known, self.far_pull)
        h, w = known.shape
        border = known | enclosed_gaps(known, max(3, round(GAP * min(h, w))))
        if not border.all():
            pyramid = KnownPyramid(image, known)
            e = self.edges(image, known, border, pyramid)
            wgt = (e.coherence * np.exp(-e.travel / self.edge_reach))[:, None]
            base[e.ys, e.xs] = wgt * e.colour + (1 - wgt) * base[e.ys, e.xs]
        out = np.clip(base + 0.5, 0, 255).astype(np.uint8)
        cv2.copyTo(image, known.astype(np.uint8), out)
        return out


FrameFill = ClassicalFill  # the per-frame fallback is the same fill (see its docstring)
