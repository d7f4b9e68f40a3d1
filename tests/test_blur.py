"""Blurred-pillarbox widening stage."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from stages.base import VideoInfo, Window, widened_width
from stages.blur import BlurPillarbox
from tests.synthetic import panning_clip

INFO = VideoInfo(160, 120, Fraction(1, 24), Fraction(24))


def widen(frames, aspect=Fraction(16, 9), pts=None, info=INFO, **kwargs):
    stage = BlurPillarbox(aspect, **kwargs)
    out_info = stage.configure(info)
    pts = list(range(len(frames))) if pts is None else pts
    return out_info, list(stage.process(Window(frames, pts, scene=0)))


def two_tone(height: int = 120, width: int = 160) -> np.ndarray:
    """Left half red, right half blue, on a mid-grey textured picture with fine stripes."""
    img = panning_clip(1, height, width, with_sprite=False).frames[0] // 3 + 60
    img[:, : width // 2, 0] = 240
    img[:, width // 2 :, 2] = 240
    img[:, ::4, 1] = 200  # detail a strong blur must remove
    return img


@pytest.mark.parametrize(
    ("aspect", "size"),
    [(Fraction(16, 9), (160, 120)), (Fraction(16, 9), (640, 480)), (Fraction(21, 9), (200, 150))],
)
def test_size_and_centre_pixel_exact(aspect, size):
    w, h = size
    img = cv2.resize(two_tone(), size, interpolation=cv2.INTER_AREA)
    info, out = widen([img], aspect, info=VideoInfo(w, h, Fraction(1, 25)))
    out_w = widened_width(w, h, aspect)
    assert (info.width, info.height) == (out_w, h)
    assert info.time_base == Fraction(1, 25)
    image = out[0].image
    assert image.shape == (h, out_w, 3) and image.dtype == np.uint8
    left = (out_w - w) // 2
    np.testing.assert_array_equal(image[:, left : left + w], img)


def test_sides_are_a_blurred_darkened_picture():
    img = two_tone()
    _, out = widen([img])
    image = out[0].image.astype(np.float64)
    left = (image.shape[1] - 160) // 2
    ls, rs = image[:, :left], image[:, left + 160 :]
    for side in (ls, rs):
        assert side.std(axis=(0, 1)).max() > 1.0  # not a flat colour
    # related to the picture: red dominates on the left, blue on the right
    assert ls[..., 0].mean() > ls[..., 2].mean() + 40
    assert rs[..., 2].mean() > rs[..., 0].mean() + 40
    # darker than the picture's matching edge, and smooth (blurred: tiny local gradients)
    assert ls.mean() < img[:, :left].mean() and rs.mean() < img[:, -left:].mean()
    assert np.abs(np.diff(img.astype(np.float64), axis=1)).mean() > 10
    assert np.abs(np.diff(ls, axis=1)).mean() < 1.5


def test_sides_follow_the_picture_over_time():
    clip = panning_clip(6, 120, 160, pan=8.0).frames
    _, out = widen(clip)
    strips = [f.image[:, :20].astype(np.float64) for f in out]
    assert np.abs(strips[0] - strips[-1]).mean() > 1.0


def test_pts_pass_through_and_deterministic():
    clip = panning_clip(3, 120, 160).frames
    _, a = widen(clip, pts=[10, 12, 17])
    _, b = widen(clip, pts=[10, 12, 17])
    assert [f.pts for f in a] == [10, 12, 17]
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.image, fb.image)


def test_already_wide_input_passes_through():
    img = two_tone(90, 160)
    info, out = widen([img], info=VideoInfo(160, 90, Fraction(1, 24)))
    assert (info.width, info.height) == (160, 90)
    assert out[0].image is img


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aspect": Fraction(-1)}, "aspect must be positive"),
        ({"aspect": Fraction(16, 9), "factor": 0}, "factor must be >= 1, got 0"),
        ({"aspect": Fraction(16, 9), "darken": 1.5}, "got 1.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlurPillarbox(**kwargs)


def test_wrong_frame_size_or_no_configure():
    stage = BlurPillarbox(Fraction(16, 9))
    with pytest.raises(RuntimeError, match="configure"):
        list(stage.process(Window([two_tone()], [0], 0)))
    stage.configure(VideoInfo(200, 150, Fraction(1, 24)))
    with pytest.raises(ValueError, match=r"\(150, 200, 3\).*\(120, 160, 3\)"):
        list(stage.process(Window([two_tone()], [0], 0)))
