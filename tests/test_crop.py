"""Crop detection of already-boxed input, and the crop stage."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest

from stages.base import VideoInfo, Window
from stages.crop import CropBox, CropStage, detect_crop
from tests.shared_data import shared_data
from tests.synthetic import panning_clip, textured_background


def boxed(frames: list[np.ndarray], width: int, height: int, x: int, y: int) -> list[np.ndarray]:
    """Each picture placed at (x, y) on a black ``width`` x ``height`` canvas."""
    out = []
    for f in frames:
        canvas = np.zeros((height, width, 3), np.uint8)
        canvas[y : y + f.shape[0], x : x + f.shape[1]] = f
        out.append(canvas)
    return out


@pytest.mark.parametrize(
    ("pic_w", "pic_h", "width", "height", "x", "y"),
    [
        (120, 120, 160, 120, 20, 0),  # pillarbox
        (160, 90, 160, 120, 0, 14),  # letterbox (unequal bars are fine)
        (120, 90, 160, 120, 20, 16),  # windowbox: both
    ],
)
def test_boxed_clips_give_the_exact_box(pic_w, pic_h, width, height, x, y):
    clip = panning_clip(12, pic_h, pic_w, pan=2.0).frames
    box = detect_crop(boxed(clip, width, height, x, y))
    assert box == CropBox(pic_w, pic_h, x, y)


def test_picture_with_dark_edge_content_is_kept_whole():
    # the picture's own first and last columns are black in some frames only
    frames = panning_clip(10, 120, 120, pan=2.0).frames
    for i, f in enumerate(frames):
        if i % 2:
            f[:, :6] = 0
    assert detect_crop(boxed(frames, 160, 120, 20, 0)) == CropBox(120, 120, 20, 0)


def test_odd_bars_are_shrunk_to_even_without_bar_pixels():
    clip = panning_clip(6, 120, 121, pan=2.0).frames
    box = detect_crop(boxed(clip, 160, 120, 19, 0))
    assert box == CropBox(120, 120, 20, 0)


def dark_scene(
    n: int = 12,
    height: int = 120,
    width: int = 160,
    dim: float = 0.1,
    grain: float = 2.0,
    move: int = 2,
) -> list[np.ndarray]:
    """A night scene: dim (grainy) texture everywhere, a small bright thing in the middle."""
    rng = np.random.default_rng(3)
    base = textured_background(height, width, seed=5).astype(np.float32) * dim
    frames = []
    for i in range(n):
        f = base + rng.normal(0, grain, base.shape) if grain else base.copy()
        cx = width // 2 - 10 + move * i
        f[height // 2 - 22 : height // 2 + 22, cx - 22 : cx + 22] = (230, 200, 90)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


@pytest.mark.parametrize(
    ("dim", "grain", "move"),
    [(0.1, 2.0, 2), (0.04, 2.0, 0), (0.12, 0.0, 0)],
    ids=["grainy-moving", "very-dark-grainy-static", "dim-texture-no-grain-static"],
)
def test_dark_scene_is_not_cropped_to_its_content(dim, grain, move):
    frames = dark_scene(dim=dim, grain=grain, move=move)
    assert max(f.max() for f in frames) > 200  # bright content in the middle ...
    assert np.mean([f[:, :40].max() for f in frames]) <= 32  # ... and near-black sides
    assert detect_crop(frames) is None


def test_dark_scene_inside_real_bars_finds_only_the_bars():
    frames = boxed(dark_scene(height=120, width=120), 160, 120, 20, 0)
    assert detect_crop(frames) == CropBox(120, 120, 20, 0)


def test_black_fade_frames_are_ignored():
    clip = panning_clip(8, 120, 120, pan=2.0).frames
    fade = [np.zeros((120, 160, 3), np.uint8)] * 30  # mostly black opening
    assert detect_crop(fade + boxed(clip, 160, 120, 20, 0)) == CropBox(120, 120, 20, 0)
    assert detect_crop(fade) is None


def test_no_bars_or_tiny_bars_give_none():
    clip = panning_clip(6, 120, 160, pan=2.0).frames
    assert detect_crop(clip) is None
    # a 1-pixel black edge (< 1% of the width) is ignored
    edged = [f.copy() for f in clip]
    for f in edged:
        f[:, :1] = 0
    assert detect_crop(edged) is None


def test_detect_crop_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one frame"):
        detect_crop([])
    with pytest.raises(ValueError, match="frame 1"):
        detect_crop([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])
    with pytest.raises(ValueError, match="agree"):
        detect_crop([np.zeros((8, 8, 3), np.uint8)], agree=0)


def test_parse_and_format():
    box = CropBox.parse("496:360:72:0")
    assert box == CropBox(496, 360, 72, 0)
    assert str(box) == "496:360:72:0"
    assert CropBox.parse(" 2:4:6:8 ") == CropBox(2, 4, 6, 8)


@pytest.mark.parametrize("text", ["496:360:72", "a:b:c:d", "496x360+72+0", "0:360:0:0", "4:4:-2:0"])
def test_parse_errors(text):
    with pytest.raises(ValueError, match="x, y >= 0" if text == "4:4:-2:0" else re.escape(text)):
        CropBox.parse(text)


def test_crop_stage_crops_and_keeps_pts():
    frames = boxed(panning_clip(3, 120, 120).frames, 160, 120, 20, 0)
    stage = CropStage(CropBox(120, 120, 20, 0))
    info = stage.configure(VideoInfo(160, 120, Fraction(1, 24)))
    assert (info.width, info.height) == (120, 120)
    out = list(stage.process(Window(frames, [5, 6, 9], scene=0)))
    assert [f.pts for f in out] == [5, 6, 9]
    assert all(f.image.shape == (120, 120, 3) and f.image.flags.c_contiguous for f in out)
    np.testing.assert_array_equal(out[1].image, frames[1][:, 20:140])


def test_crop_stage_rejects_box_outside_frame():
    with pytest.raises(ValueError, match="does not fit in 160x120"):
        CropStage(CropBox(150, 120, 20, 0)).configure(VideoInfo(160, 120, Fraction(1, 24)))


def test_chaplin_pillarbox():
    path = shared_data("pillarboxed", "chaplin.mp4")
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 4 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 25:
                break
    box = detect_crop(frames)
    assert box is not None
    want = CropBox(496, 360, 72, 0)
    assert (
        max(
            abs(a - b)
            for a, b in zip(
                (box.w, box.h, box.x, box.y), (want.w, want.h, want.x, want.y), strict=True
            )
        )
        <= 2
    )
