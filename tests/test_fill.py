"""Classical hole fill against OpenCV's Telea inpainting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.fill import ClassicalFill, push_pull
from tests.synthetic import textured_background


def psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    d = a[m].astype(np.float64) - b[m]
    return float(10 * np.log10(255**2 / np.mean(d**2)))


def detail(img: np.ndarray, m: np.ndarray) -> float:
    return float(np.std(cv2.Laplacian(img, cv2.CV_32F)[m]))


@pytest.fixture(scope="module")
def scene():
    img = textured_background(120, 200, seed=3)
    known = np.ones((120, 200), bool)
    known[40:80, 80:130] = False
    return img, known


def test_known_pixels_unchanged_and_hole_filled(scene):
    img, known = scene
    holed = img.copy()
    holed[~known] = 0
    out = ClassicalFill()(holed, known)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[known], img[known])
    assert out[~known].mean() > 40  # not left black


def test_beats_telea_on_a_texture_hole(scene):
    img, known = scene
    hole = ~known
    holed = img.copy()
    holed[hole] = 0
    ours = ClassicalFill()(holed, known)
    telea = cv2.inpaint(holed, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    assert psnr(ours, img, hole) > psnr(telea, img, hole) + 0.5
    truth = detail(img, hole)  # texture energy: ours keeps grain, Telea smears
    assert abs(detail(ours, hole) - truth) < 0.5 * abs(detail(telea, hole) - truth)


def test_push_pull_is_smooth_and_exact_on_known():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = 200
    known = np.zeros((64, 64), bool)
    known[:, :8] = True
    known[:, 56:] = True
    img[:, 56:] = 40
    out = push_pull(img, known)
    row = out[32, :, 0]
    assert np.all(np.diff(row[8:56]) <= 1e-3)  # monotone from 200 down to 40
    assert row[7] == 200 and row[56] == 40


def test_deterministic_and_validated(scene):
    img, known = scene
    f = ClassicalFill()
    assert np.array_equal(f(img, known), f(img, known))
    with pytest.raises(ValueError, match="known"):
        f(img, known[:-1])
    with pytest.raises(ValueError, match="detail_gain"):
        ClassicalFill(detail_gain=-1)


def test_large_regions_are_filled_at_a_bounded_size(scene, monkeypatch):
    """Regions over ``max_pixels`` are filled at about that many pixels (the fill's float
    buffers must not grow with the canvas); known pixels stay exact, and the hole gets
    nearly what the full-size fill gives it."""
    from stages import fill as fill_module

    img, known = scene
    sizes = []
    push = fill_module.push_pull
    monkeypatch.setattr(
        fill_module, "push_pull", lambda im, k, y: (sizes.append(k.size), push(im, k, y))[1]
    )
    full = ClassicalFill()(img, known)
    small = ClassicalFill(max_pixels=img.shape[0] * img.shape[1] // 4)(img, known)
    assert sizes[0] == known.size and sizes[1] <= known.size // 4
    assert np.array_equal(small[known], img[known])
    hole = ~known
    assert np.abs(small[hole].astype(int) - full[hole]).mean() < 6
    assert psnr(small, img, hole) > psnr(full, img, hole) - 1.5
