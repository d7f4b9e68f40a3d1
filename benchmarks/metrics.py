"""Scores for outpainting: how close the invented side columns come to the real ones.

Only the side columns are scored (the centre is the input itself). PSNR pools the
squared error over every side pixel of every frame; SSIM is the standard
Gaussian-window SSIM (Wang et al. 2004, 11x11 window, sigma 1.5, K1 0.01, K2 0.03)
on grey levels, per frame, averaged; TDE (temporal difference error) compares the
frame-to-frame change of the output with that of the ground truth, so a fill that is
right on average but flickers or freezes while the real background moves scores badly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PSNR_CAP = 100.0  # dB reported for identical pictures (MSE 0), so the JSON stays finite
SSIM_SIGMA = 1.5
SSIM_WIN = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03


def side_columns(width: int, inner: int) -> tuple[int, int]:
    """Columns ``[left, right)`` of a picture ``inner`` px wide centred in ``width``.

    The left side gets the smaller half when ``width - inner`` is odd.
    """
    if inner <= 0 or width <= 0:
        raise ValueError(f"widths must be positive, got width={width} inner={inner}")
    if inner > width:
        raise ValueError(f"inner width {inner} is wider than the frame width {width}")
    left = (width - inner) // 2
    return left, left + inner


def centre_crop_width(height: int) -> int:
    """Width of a 4:3 picture ``height`` px high: round(height * 4 / 3) made even."""
    if height <= 0:
        raise ValueError(f"height must be positive, got {height}")
    return max(2, 2 * round(height * 2 / 3))


def split_sides(frame: np.ndarray, left: int, right: int) -> list[np.ndarray]:
    """The non-empty side strips (left of ``left``, right of ``right``) of an (H, W, ...) array."""
    return [s for s in (frame[:, :left], frame[:, right:]) if s.shape[1] > 0]


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")


def psnr_from_mse(mse: float, peak: float = 255.0, cap: float = PSNR_CAP) -> float:
    """PSNR in dB for a mean squared error, at most ``cap`` (reached when MSE is 0)."""
    if mse < 0 or math.isnan(mse):
        raise ValueError(f"mse must be >= 0, got {mse}")
    if mse == 0:
        return cap
    return min(cap, 10.0 * math.log10(peak * peak / mse))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Mean SSIM of two grey images (H, W), Gaussian window, borders cropped as skimage does."""
    _check_pair(a, b)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"ssim needs non-empty grey images (H, W), got {a.shape}")
    return float(ssim_map(a, b, peak).mean())


def _crop_like_ssim(img: np.ndarray) -> np.ndarray:
    """The part of an SSIM-sized map left after cropping the window half-width off each
    edge that is long enough (as skimage does)."""
    pad = SSIM_WIN // 2
    rows = slice(pad, -pad) if img.shape[0] > 2 * pad else slice(None)
    cols = slice(pad, -pad) if img.shape[1] > 2 * pad else slice(None)
    return img[rows, cols]


def ssim_map(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM of two grey images; the window half-width is cropped off each edge
    that is long enough (reflected borders otherwise)."""
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(
            img, (SSIM_WIN, SSIM_WIN), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT
        )

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return _crop_like_ssim(num / den)


def grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB uint8 image as float64."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)


def check_clip(out: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` unless both clips hold the same number of same-shaped RGB frames."""
    if len(out) != len(truth) or not out:
        raise ValueError(
            f"clips must be non-empty and equally long, got {len(out)} vs {len(truth)}"
        )
    for i, (o, g) in enumerate(zip(out, truth, strict=True)):
        if o.shape != g.shape or o.ndim != 3 or o.shape[2] != 3:
            raise ValueError(f"frame {i}: shapes {o.shape} vs {g.shape} (need equal (H, W, 3))")


def side_psnr(
    out: Sequence[np.ndarray], truth: Sequence[np.ndarray], left: int, right: int
) -> float:
    """PSNR (RGB) of the side columns, MSE pooled over all side pixels of all frames."""
    check_clip(out, truth)
    total, count = 0.0, 0
    for o, g in zip(out, truth, strict=True):
        for so, sg in zip(split_sides(o, left, right), split_sides(g, left, right), strict=True):
            d = so.astype(np.float64) - sg.astype(np.float64)
            total += float(np.square(d).sum())
            count += d.size
    if count == 0:
        raise ValueError(f"no side columns: left={left} right={right} width={out[0].shape[1]}")
    return psnr_from_mse(total / count)


def side_ssim(
    out: Sequence[np.ndarray], truth: Sequence[np.ndarray], left: int, right: int
) -> float:
    """Grey SSIM of the side columns: each strip scored on its own (the window never
    reaches into the centre), both strips pooled per frame, frames averaged."""
    check_clip(out, truth)
    scores = []
    for o, g in zip(out, truth, strict=True):
        maps = [
            ssim_map(grey(so), grey(sg))
            for so, sg in zip(split_sides(o, left, right), split_sides(g, left, right), strict=True)
        ]
        if not maps:
            raise ValueError(f"no side columns: left={left} right={right} width={o.shape[1]}")
        scores.append(sum(float(m.sum()) for m in maps) / sum(m.size for m in maps))
    return float(np.mean(scores))


def side_tde(
    out: Sequence[np.ndarray], truth: Sequence[np.ndarray], left: int, right: int
) -> float:
    """Mean |(o_t - o_{t-1}) - (g_t - g_{t-1})| over side pixels and channels (8-bit levels)."""
    check_clip(out, truth)
    if len(out) < 2:
        raise ValueError(f"TDE needs at least 2 frames, got {len(out)}")
    total, count = 0.0, 0
    for t in range(1, len(out)):
        o1, o0 = split_sides(out[t], left, right), split_sides(out[t - 1], left, right)
        g1, g0 = split_sides(truth[t], left, right), split_sides(truth[t - 1], left, right)
        for a1, a0, b1, b0 in zip(o1, o0, g1, g0, strict=True):
            d = (a1.astype(np.int16) - a0) - (b1.astype(np.int16) - b0)
            total += float(np.abs(d).sum())
            count += d.size
    if count == 0:
        raise ValueError(f"no side columns: left={left} right={right} width={out[0].shape[1]}")
    return total / count


def centre_abs_diff(
    out: Sequence[np.ndarray], inputs: Sequence[np.ndarray], left: int, right: int
) -> tuple[int, float]:
    """Largest and mean |output centre - input| over all frames (0 when it passes through)."""
    if len(out) != len(inputs):
        raise ValueError(f"{len(out)} output frames for {len(inputs)} input frames")
    worst, total = 0, 0.0
    for o, i in zip(out, inputs, strict=True):
        c = o[:, left:right]
        if c.shape != i.shape:
            raise ValueError(f"centre {c.shape} does not match input {i.shape}")
        d = np.abs(c.astype(np.int16) - i)
        worst = max(worst, int(d.max()))
        total += float(d.mean())
    return worst, total / max(1, len(out))


def centre_max_abs_diff(
    out: Sequence[np.ndarray], inputs: Sequence[np.ndarray], left: int, right: int
) -> int:
    """Largest |output centre - input| over all frames (0 when the centre passes through)."""
    return centre_abs_diff(out, inputs, left, right)[0]


def gradient_magnitude(g: np.ndarray) -> np.ndarray:
    """Per-pixel |grad| of a grey float image (3x3 Sobel / 8, in levels per pixel)."""
    gx = cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT) / 8
    gy = cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT) / 8
    return np.sqrt(gx * gx + gy * gy)


SPLITS = ("all", "seen", "never_seen")


@dataclass
class _Sums:
    """Running sums of one pixel set's scores over a clip."""

    sq: float = 0.0  # squared error, RGB
    n: int = 0  # pixels
    ssim: float = 0.0
    n_ssim: int = 0  # pixels of the cropped SSIM maps
    tde: float = 0.0
    n_tde: int = 0  # pixels of frames after the first
    grad_out: float = 0.0
    grad_truth: float = 0.0

    def add(self, maps: dict[str, np.ndarray], sel: np.ndarray, ssim_sel: np.ndarray) -> None:
        """Add the pixels ``sel`` of one frame's flattened side maps."""
        k = int(sel.sum())
        self.sq += float(maps["sq"][sel].sum())
        self.n += k
        self.ssim += float(maps["ssim"][ssim_sel].sum())
        self.n_ssim += int(ssim_sel.sum())
        if "tde" in maps:
            self.tde += float(maps["tde"][sel].sum())
            self.n_tde += k
        self.grad_out += float(maps["grad_out"][sel].sum())
        self.grad_truth += float(maps["grad_truth"][sel].sum())

    def scores(self) -> dict[str, float | None]:
        return {
            "pixels": self.n,
            "psnr": psnr_from_mse(self.sq / (3 * self.n)) if self.n else None,
            "ssim": self.ssim / self.n_ssim if self.n_ssim else None,
            "tde": self.tde / (3 * self.n_tde) if self.n_tde else None,
            "detail_ratio": self.grad_out / self.grad_truth
            if self.n and self.grad_truth > 0
            else None,
        }


def _side_maps(
    o: np.ndarray, g: np.ndarray, m: np.ndarray, left: int, right: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One frame's per-pixel side maps, each strip on its own (no window or gradient
    crosses the centre), flattened and joined: the maps, the mask, the SSIM map's mask."""
    maps: dict[str, list[np.ndarray]] = {k: [] for k in ("sq", "ssim", "grad_out", "grad_truth")}
    masks, ssim_masks = [], []
    for so, sg, sm in zip(
        split_sides(o, left, right), split_sides(g, left, right), split_sides(m, left, right),
        strict=True,
    ):  # fmt: skip
        go, gt = grey(so), grey(sg)
        maps["sq"].append(np.square(so.astype(np.float64) - sg).sum(axis=2).ravel())
        maps["ssim"].append(ssim_map(go, gt).ravel())
        maps["grad_out"].append(gradient_magnitude(go).ravel())
        maps["grad_truth"].append(gradient_magnitude(gt).ravel())
        masks.append(sm.ravel())
        ssim_masks.append(_crop_like_ssim(sm).ravel())
    if not masks:
        raise ValueError(f"no side columns: left={left} right={right} width={o.shape[1]}")
    joined = {k: np.concatenate(v) for k, v in maps.items()}
    return joined, np.concatenate(masks), np.concatenate(ssim_masks)


def split_side_scores(
    out: Sequence[np.ndarray],
    truth: Sequence[np.ndarray],
    left: int,
    right: int,
    seen: Sequence[np.ndarray],
) -> dict[str, dict[str, float | None]]:
    """PSNR, SSIM, TDE and detail ratio of the side columns over all side pixels, the
    ``seen`` ones (bool (H, W) per frame) and the others.

    The same definitions as :func:`side_psnr`, :func:`side_ssim` and :func:`side_tde`,
    restricted to a pixel set: PSNR pools squared error over the set's pixels; SSIM
    averages the per-strip SSIM map (:func:`side_ssim`'s) over the set's pixels of every
    frame (for "all" this equals the per-frame mean, all frames having as many side
    pixels); TDE at frame t uses frame t's set. Detail ratio: mean gradient magnitude
    of the output's grey sides over the set / the truth's there (1 = as much detail, 0 =
    flat). A set with no pixels scores None.
    """
    check_clip(out, truth)
    if len(seen) != len(out):
        raise ValueError(f"{len(seen)} seen masks for {len(out)} frames")
    sums = {k: _Sums() for k in SPLITS}
    prev = None
    for o, g, m in zip(out, truth, seen, strict=True):
        if m.shape != o.shape[:2] or m.dtype != bool:
            raise ValueError(f"seen mask {m.shape} {m.dtype} for frame {o.shape}: need bool (H, W)")
        maps, sel, ssim_sel = _side_maps(o, g, m, left, right)
        cur = [np.concatenate([s.reshape(-1, 3) for s in split_sides(x, left, right)]).astype(
            np.int16
        ) for x in (o, g)]  # fmt: skip
        if prev is not None:
            maps["tde"] = np.abs((cur[0] - prev[0]) - (cur[1] - prev[1])).sum(axis=1)
        prev = cur
        everything = np.ones_like(sel)
        sums["all"].add(maps, everything, np.ones_like(ssim_sel))
        sums["seen"].add(maps, sel, ssim_sel)
        sums["never_seen"].add(maps, ~sel, ~ssim_sel)
    return {k: v.scores() for k, v in sums.items()}
