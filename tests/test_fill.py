"""Classical hole fill: extends a picture sideways better than OpenCV's Telea inpainting."""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stages import fill as fill_module
from stages.extrapolate import Extrapolator
from stages.fill import ClassicalFill
from tests.synthetic import textured_background

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()


def psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    d = a[m].astype(np.float64) - b[m]
    return float(10 * np.log10(255**2 / np.mean(d**2)))


def telea(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    return cv2.inpaint(image, (~known).astype(np.uint8), 3, cv2.INPAINT_TELEA)


def sides(h: int, w: int, side: int) -> np.ndarray:
    """Known mask of a picture whose ``side`` columns left and right are missing."""
    known = np.ones((h, w), bool)
    known[:, :side] = known[:, w - side :] = False
    return known


def landscape(h: int = 180, w: int = 320, seed: int = 0) -> np.ndarray:
    """Sky gradient over a horizon, ground with a diagonal road edge, a rail, fine noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    sky = yy < 0.4 * h
    img[sky] = np.stack([90 + 60 * yy[sky] / h, 140 + 40 * yy[sky] / h, 220 + 0 * yy[sky]], -1)
    img[~sky] = (70, 120, 50)
    road = (~sky) & (yy - 0.4 * h > 0.6 * (xx - 0.2 * w))  # a straight edge at ~31 degrees
    img[road] = (150, 140, 130)
    img[int(0.55 * h) : int(0.55 * h) + 5] = (60, 40, 30)  # a rail across the whole width
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene():
    img = landscape()
    return img, sides(*img.shape[:2], 60)


def test_known_pixels_unchanged_and_hole_filled(scene):
    img, known = scene
    holed = img.copy()
    holed[~known] = 0
    for fill in (ClassicalFill(), ClassicalFill(work_height=40)):
        out = fill(holed, known)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(out[known], img[known])
        assert out[~known].mean() > 60  # not left black


def test_beats_telea_extending_a_scene_sideways(scene):
    img, known = scene
    hole = ~known
    holed = img.copy()
    holed[hole] = 0
    ref = psnr(telea(holed, known), img, hole)
    assert psnr(ClassicalFill()(holed, known), img, hole) > ref + 0.3
    assert psnr(ClassicalFill(work_height=90)(holed, known), img, hole) > ref + 0.3


def test_continues_a_slanted_edge():
    """A straight edge crossing the border at 30 degrees goes on along its slope rather
    than along the rows (where a fill that only looks straight back would keep it)."""
    h, w, side = 160, 300, 80
    yy, xx = np.mgrid[0:h, 0:w]
    slope = np.tan(np.radians(30))
    img = np.where((yy - 80 < slope * (xx - 150))[..., None], 220, 40)
    img = img.astype(np.uint8).repeat(3, 2)
    known = sides(h, w, side)
    out = ClassicalFill()(img, known)
    x = w - side + 40  # 40 px into the right hole
    col = out[:, x, 0].astype(int)
    steepest = int(np.argmax(col[:-1] - col[1:]))  # where the column drops from bright to dark
    along_slope = 80 + slope * (x - 150)
    along_row = 80 + slope * (w - side - 1 - 150)  # the edge's row at the border
    assert abs(steepest - along_slope) < 4 < abs(steepest - along_row)
    assert col[int(along_slope) - 30] > 170 and col[int(along_slope) + 12] < 70


def test_no_row_streaks_far_from_the_border():
    """Fine noise at the border is not dragged along the rows: far into the hole the fill
    is the local mean colour, smooth from row to row."""
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(128, 40, (160, 300, 3)), 0, 255).astype(np.uint8)
    known = sides(160, 300, 80)
    far = ClassicalFill()(img, known)[:, :30].astype(float)  # 50 to 80 px from the border
    step = np.abs(np.diff(img[:, 80:220].astype(float), axis=0)).mean()
    assert np.abs(np.diff(far, axis=0)).mean() < 0.02 * step
    assert abs(far.mean() - 128) < 8


def test_any_mask_shape():
    """Holes inside the picture, ragged borders and a lone known pixel are filled with
    colours of the picture; tiny pictures work."""
    img = textured_background(120, 200, seed=3)
    rng = np.random.default_rng(2)
    known = np.ones((120, 200), bool)
    for y in range(120):  # ragged side holes
        known[y, : rng.integers(20, 40)] = False
        known[y, 200 - rng.integers(20, 40) :] = False
    cv2.circle(known.view(np.uint8), (100, 60), 15, 0, -1)  # a hole inside
    out = ClassicalFill()(img, known)
    assert np.array_equal(out[known], img[known])
    lo, hi = img[known].min(0), img[known].max(0)
    assert np.all(out[~known] >= lo) and np.all(out[~known] <= hi)
    one = np.zeros((40, 60), bool)
    one[20, 30] = True
    assert np.all(ClassicalFill()(img[:40, :60], one) == img[20, 30])
    for shape in ((1, 1), (1, 5), (3, 2)):
        k = np.zeros(shape, bool)
        k.flat[0] = True
        tiny = np.full((*shape, 3), 77, np.uint8)
        assert np.all(ClassicalFill()(tiny, k) == 77)


def test_deterministic_and_validated(scene):
    img, known = scene
    f = ClassicalFill()
    assert np.array_equal(f(img, known), f(img, known))
    assert np.array_equal(f(img, np.ones_like(known)), img)
    assert np.all(f(img, np.zeros_like(known)) == 128)
    with pytest.raises(ValueError, match="known"):
        f(img, known[:-1])
    with pytest.raises(ValueError, match="image"):
        f(img[..., 0], known)
    with pytest.raises(ValueError, match="edge_reach"):
        ClassicalFill(edge_reach=0)
    with pytest.raises(ValueError, match="spread"):
        Extrapolator(spread=0)
    with pytest.raises(ValueError, match="max_pixels"):
        ClassicalFill(max_pixels=10)


def test_filled_at_the_working_height(scene, monkeypatch):
    """Pictures taller than ``work_height`` (or over ``max_pixels``) are filled at that
    size and scaled up: known pixels stay exact, and the hole gets nearly what the
    full-size fill gives it."""
    img, known = scene
    sizes = []
    membrane = fill_module.membrane
    monkeypatch.setattr(
        fill_module, "membrane", lambda im, k, *a: (sizes.append(k.shape), membrane(im, k, *a))[1]
    )
    h, w = known.shape
    full = ClassicalFill(work_height=h)(img, known)
    small = ClassicalFill(work_height=h // 2)(img, known)
    capped = ClassicalFill(work_height=h, max_pixels=h * w // 16)(img, known)
    assert sizes == [(h, w), (h // 2, w // 2), (h // 4, w // 4)]
    hole = ~known
    for out in (small, capped):
        assert np.array_equal(out[known], img[known])
        assert np.abs(out[hole].astype(int) - full[hole]).mean() < 6
        assert psnr(out, img, hole) > psnr(full, img, hole) - 1.0


def first_frame(path: Path, width: int) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        h = round(frame.height * width / frame.width / 2) * 2
        return frame.to_ndarray(format="rgb24", width=width, height=h)


@pytest.mark.parametrize(
    "name", ["live_static_woman_dog_courtyard.mp4", "anime2d_static_girl_with_doll_park.mp4"]
)
def test_beats_telea_on_real_static_shots(name):
    """The 4:3 centre of a real wide static shot, its sides filled: ahead of Telea."""
    path = DATA / "gt" / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} missing in CI")
        pytest.skip("shared/data not present")
    img = first_frame(path, 640)
    h, w = img.shape[:2]
    known = sides(h, w, (w - 2 * round(h * 2 / 3)) // 2)
    holed = img.copy()
    holed[~known] = 0
    ref = psnr(telea(holed, known), img, ~known)
    assert psnr(ClassicalFill()(holed, known), img, ~known) > ref + 0.5


def test_a_notch_in_the_border_does_not_break_a_band():
    """The panorama's known region is what foreground masks left: a notch bitten out of
    the border where a dark band (a rail) meets it must not stop the band."""
    h, w, side = 160, 320, 70
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (150, 180, 230)
    img[70:90] = (60, 40, 30)
    known = sides(h, w, side)
    known[60:100, w - side - 25 : w - side] = False  # the notch
    out = ClassicalFill()(img, known)
    far = out[:, w - 20]  # 45 px beyond the notch
    assert far[80].max() < 110 and far[30].min() > 140 and far[130].min() > 140


def test_far_out_a_character_at_the_border_is_not_streaked_to_the_end():
    """A dark character at the picture's left edge (rows 40-80) on a grey wall: the
    membrane carries its colour along its rows to the far end of the hole; leaning
    towards the wide average mixes in the wall above and below there, while next to
    the border the character's colour still continues."""
    h, w, side = 120, 240, 60
    image = np.full((h, w, 3), 150, np.uint8)
    image[40:80, side : side + 12] = 30
    known = sides(h, w, side)
    leaning = ClassicalFill(work_height=h)(image, known).astype(float)
    plain = ClassicalFill(work_height=h, far_pull=0.0)(image, known).astype(float)
    far, near = (slice(40, 80), slice(0, 10)), (slice(40, 80), slice(side - 3, side))
    assert leaning[far].mean() > plain[far].mean() + 8
    assert abs(leaning[near].mean() - plain[near].mean()) < 3
    with pytest.raises(ValueError, match="far_pull"):
        ClassicalFill(far_pull=1.5)
