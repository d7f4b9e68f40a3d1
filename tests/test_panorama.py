"""Scene panorama: robust compositing, canvas growth, sprite removal."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from stages import panorama
from stages.base import VideoInfo, Window
from stages.outpaint import PanoramaOutpaint
from stages.panorama import (
    Canvas,
    ScenePanorama,
    composite,
    fit_canvas,
    masked_median,
    move_to,
    sort_stack,
)
from tests.synthetic import panning_clip


def test_masked_median_matches_brute_force():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (7, 9, 11, 3), dtype=np.uint8)
    valid = rng.random((7, 9, 11)) < 0.6
    med = masked_median(stack, valid)
    for y in range(9):
        for x in range(11):
            v = stack[valid[:, y, x], y, x]
            if len(v):
                expect = np.sort(v, axis=0)[(len(v) - 1) // 2]
                assert np.array_equal(med[y, x], expect)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 13, 16, 17])
def test_sort_stack_equals_numpy_sort(k):
    rng = np.random.default_rng(k)
    stack = rng.integers(0, 256, (k, 6, 5, 3), dtype=np.uint8)
    assert np.array_equal(sort_stack(stack), np.sort(stack, axis=0))


def test_median_drops_a_passing_object_nearest_keeps_time_order():
    stack = np.full((5, 4, 4, 3), 100, np.uint8)
    stack[1, :2] = 250  # an object passes over the top half in one sample
    valid = np.ones((5, 4, 4), bool)
    img, known = composite(stack, valid, np.arange(5.0), "median")
    assert known.all() and (img == 100).all()
    img, _ = composite(stack, valid, np.arange(5.0), "nearest")
    assert (img == 100).all()  # the middle sample (2) wins


def test_canvas_grows_on_its_grid_and_keeps_content():
    old = Canvas(0.0, 0.0, 0.5, 50, 20)
    img = np.arange(50 * 20, dtype=np.uint16).reshape(20, 50)
    new = fit_canvas(np.array([-30.0, 0.0, 100.0, 40.0]), old, 1.0, (1000, 1000))
    assert new.scale == 0.5 and new.x0 == -30.0 and new.width == 65
    moved = move_to(img, old, new)
    assert np.array_equal(moved[:, 15:], img)
    cropped = fit_canvas(np.array([500.0, 0.0, 600.0, 40.0]), new, 1.0, (80, 1000))
    assert cropped.width == 80 and cropped.bounds()[2] >= 600.0


def test_scene_panorama_bounded_samples():
    clip = panning_clip(n=30, pan=2.0, with_sprite=False)
    pano = ScenePanorama(max_samples=5)
    Hs = [
        np.array([[1, 0, o[0] - clip.offsets[0][0]], [0, 1, 0], [0, 0, 1.0]]) for o in clip.offsets
    ]
    pano.grow(np.array([0.0, 0.0, 160.0 + 58, 120.0]), 1.0, (10_000, 10_000))
    pano.add(clip.frames, Hs, [np.ones((120, 160), bool)] * 30, list(map(float, range(30))))
    assert pano.known is not None and pano.image is not None
    assert pano.known[:, 1:-1].all()
    x0 = int(clip.offsets[0][0])
    truth = clip.background[:, x0 : x0 + pano.image.shape[1]]
    err = np.abs(pano.image.astype(int) - truth)[:, 2:-2].mean()
    assert err < 4.0


def test_composite_in_bands_of_rows_matches_one_piece(monkeypatch):
    """A box too large for the band budget is composited a band of rows at a time (so
    memory does not grow with the canvas); the panorama is the same, up to bilinear
    rounding where a band's warp starts."""
    clip = panning_clip(n=30, pan=2.0, with_sprite=False)
    Hs = [
        np.array([[1.02, 0.01, o[0] - clip.offsets[0][0]], [-0.01, 1.02, 3], [0, 0, 1.0]])
        for o in clip.offsets
    ]
    valid = [np.ones((120, 160), bool)] * 30

    def run() -> ScenePanorama:
        pano = ScenePanorama(max_samples=8)
        pano.grow(np.array([-10.0, -10.0, 240.0, 140.0]), 1.0, (10_000, 10_000))
        pano.add(clip.frames, Hs, valid, list(map(float, range(30))))
        return pano

    whole = run()
    monkeypatch.setattr(panorama, "COMPOSITE_BAND_BYTES", 8 * 260 * 4 * 10)  # ~10 rows
    banded = run()
    assert banded.known is not None and whole.known is not None
    assert np.array_equal(banded.known, whole.known)
    diff = np.abs(banded.image.astype(int) - whole.image)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    # camera pans left while the sprite walks left faster: it moves over the background,
    # which is what the weight-free foreground (disagreement with the median) can see
    clip = panning_clip(n=36, pan=-2.0)
    d = tmp_path_factory.mktemp("dump")
    st = PanoramaOutpaint(Fraction(16, 9), dump_dir=d)
    st.configure(VideoInfo(160, 120, Fraction(1, 24)))
    list(st.process(Window(clip.frames, list(range(36)), 3)))
    pano = cv2.cvtColor(cv2.imread(str(d / "scene0003_panorama.png")), cv2.COLOR_BGR2RGB)
    known = cv2.imread(str(d / "scene0003_known.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert st.canvas is not None
    return clip, pano, known, st.canvas


def test_panorama_matches_background_without_the_sprite(dumped):
    clip, pano, known, canvas = dumped
    # canvas pixel u -> reference x0 + u / scale -> background + first frame's offset
    s = canvas.scale
    m = np.float32([[1 / s, 0, canvas.x0 + clip.offsets[0][0]], [0, 1 / s, canvas.y0]])
    truth = cv2.warpAffine(
        clip.background,
        m,
        (pano.shape[1], pano.shape[0]),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    inner = cv2.erode(known.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    err = np.abs(pano.astype(int) - truth)[inner].mean()
    assert err < 5.0, err
    red = (pano[..., 0] > 200) & (pano[..., 1] < 90) & (pano[..., 2] < 90)
    red_truth = (truth[..., 0] > 200) & (truth[..., 1] < 90) & (truth[..., 2] < 90)
    assert red[inner].sum() <= red_truth[inner].sum() + 10  # the sprite is not printed
