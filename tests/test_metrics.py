"""Outpainting metrics on inputs whose scores are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.metrics import (
    PSNR_CAP,
    centre_crop_width,
    centre_max_abs_diff,
    psnr_from_mse,
    side_columns,
    side_psnr,
    side_ssim,
    side_tde,
    split_sides,
    ssim,
)
from tests.synthetic import panning_clip, textured_background


def pan_frames(n: int = 6, h: int = 40, w: int = 64) -> list[np.ndarray]:
    return panning_clip(n, h, w, pan=3.0, with_sprite=False, seed=1).frames


def test_psnr_identical_is_capped_and_known_mse() -> None:
    frames = pan_frames()
    assert side_psnr(frames, frames, 10, 54) == PSNR_CAP
    assert psnr_from_mse(0.0) == PSNR_CAP
    assert psnr_from_mse(100.0) == pytest.approx(10 * math.log10(255**2 / 100))
    with pytest.raises(ValueError, match="-1"):
        psnr_from_mse(-1.0)


def test_psnr_pools_only_the_sides() -> None:
    truth = [np.full((10, 20, 3), 100, np.uint8) for _ in range(3)]
    out = [t.copy() for t in truth]
    for o in out:
        o[:, :5] += 10  # left side off by 10 -> squared error 100 on half of the side pixels
        o[:, 5:15] = 0  # centre is not scored
    assert side_psnr(out, truth, 5, 15) == pytest.approx(10 * math.log10(255**2 / 50))


def test_ssim_identical_is_one_and_noise_lowers_it() -> None:
    img = textured_background(60, 80, seed=2)[..., 1].astype(np.float64)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(0)
    weak = np.clip(img + rng.normal(0, 5, img.shape), 0, 255)
    strong = np.clip(img + rng.normal(0, 40, img.shape), 0, 255)
    assert 1.0 > ssim(img, weak) > ssim(img, strong)
    assert ssim(img, strong) < 0.6


def test_ssim_of_flat_images_follows_the_luminance_term() -> None:
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 110.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(a, b) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\(20, 20\) vs \(20, 21\)"):
        ssim(a, np.zeros((20, 21)))


def test_side_ssim_ignores_the_centre() -> None:
    truth = pan_frames()
    out = [t.copy() for t in truth]
    for o in out:
        o[:, 10:54] = 0
    assert side_ssim(out, truth, 10, 54) == pytest.approx(1.0, abs=1e-9)
    out[2][:, :10] = 255 - out[2][:, :10]
    assert side_ssim(out, truth, 10, 54) < 0.99
    assert side_ssim(out[2:3], truth[2:3], 10, 54) < 0.8  # one strip of two inverted


def test_tde_zero_for_identical_motion() -> None:
    truth = pan_frames()
    assert side_tde([t.copy() for t in truth], truth, 10, 54) == 0.0
    # A constant offset changes every frame the same way: no temporal error.
    flat = [np.full_like(t, 50) for t in truth]
    shifted = [f + 7 for f in flat]
    assert side_tde(shifted, flat, 10, 54) == 0.0


def test_tde_rises_for_frozen_sides() -> None:
    truth = pan_frames()
    frozen = [truth[0].copy() for _ in truth]
    tde = side_tde(frozen, truth, 10, 54)
    # With the output frozen the error is the truth's own frame-to-frame change.
    expected = np.mean(
        [
            np.abs(np.concatenate([s.ravel() for s in split_sides(d, 10, 54)]))
            for d in (
                truth[t].astype(np.int16) - truth[t - 1].astype(np.int16)
                for t in range(1, len(truth))
            )
        ]
    )
    assert tde == pytest.approx(expected)
    assert tde > 5
    with pytest.raises(ValueError, match="at least 2"):
        side_tde(truth[:1], truth[:1], 10, 54)


@pytest.mark.parametrize(
    ("width", "inner", "left", "right"),
    [(160, 120, 20, 140), (161, 120, 20, 140), (161, 121, 20, 141), (9, 4, 2, 6), (8, 8, 0, 8)],
)
def test_side_columns_geometry(width: int, inner: int, left: int, right: int) -> None:
    assert side_columns(width, inner) == (left, right)
    img = np.zeros((3, width, 3), np.uint8)
    strips = split_sides(img, left, right)
    assert sum(s.shape[1] for s in strips) == width - inner
    assert all(s.shape[1] > 0 for s in strips)


def test_side_columns_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="121"):
        side_columns(120, 121)
    with pytest.raises(ValueError, match="-3"):
        side_columns(-3, 2)


@pytest.mark.parametrize(("height", "width"), [(480, 640), (360, 480), (456, 608), (455, 606)])
def test_centre_crop_width_is_even_4_3(height: int, width: int) -> None:
    assert centre_crop_width(height) == width
    assert width % 2 == 0 and abs(width - height * 4 / 3) <= 1


def test_metrics_on_odd_frame_sizes() -> None:
    truth = panning_clip(4, 31, 57, pan=2.0, with_sprite=False).frames
    left, right = side_columns(57, 40)
    assert (left, right) == (8, 48)
    inputs = [t[:, left:right].copy() for t in truth]
    out = [t.copy() for t in truth]
    assert centre_max_abs_diff(out, inputs, left, right) == 0
    out[1][5, left + 3] ^= 0xFF
    assert centre_max_abs_diff(out, inputs, left, right) > 0
    assert side_psnr(out, truth, left, right) == PSNR_CAP  # the change is in the centre
    out[1][5, 56] ^= 0xFF  # last column of the 9 px right side
    assert side_psnr(out, truth, left, right) < PSNR_CAP
    assert side_ssim(out, truth, left, right) < 1.0
    assert side_tde(out, truth, left, right) > 0


def test_clip_checks_name_the_mismatch() -> None:
    a = pan_frames()
    with pytest.raises(ValueError, match="6 vs 5"):
        side_psnr(a, a[:5], 10, 54)
    with pytest.raises(ValueError, match=r"frame 0"):
        side_ssim([a[0][:, :60]] + a[1:], a, 10, 54)


def test_ssim_matches_the_reference_formula() -> None:
    """Same as skimage's gaussian_weights=True SSIM, written with scipy's Gaussian filter."""
    ndimage = pytest.importorskip("scipy.ndimage")
    a = textured_background(60, 80, seed=1)[..., 0].astype(np.float64)
    b = np.clip(a + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255)

    def f(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, 1.5, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = f(a), f(b)
    vx, vy, cxy = f(a * a) - mx * mx, f(b * b) - my * my, f(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    assert ssim(a, b) == pytest.approx(s[5:-5, 5:-5].mean(), abs=1e-9)
