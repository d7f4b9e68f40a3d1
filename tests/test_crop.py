"""Crop detection of already-boxed input, and the crop stage."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.base import VideoInfo, Window
from stages.crop import CropBox, CropStage, PadStage, detect_crop
from tests.synthetic import panning_clip, textured_background

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()


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
    path = DATA / "pillarboxed" / "chaplin.mp4"
    if not path.exists():
        pytest.skip(f"{path} not available")
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
    # no dark line left at the picture's edges: the outer columns of the box are as
    # bright as the picture a few columns in
    luma = np.stack(frames).mean(axis=(0, 1, 3))
    for edge, inner in ((box.x, box.x + 6), (box.x + box.w - 1, box.x + box.w - 7)):
        assert luma[edge] > 0.7 * luma[inner], (edge, luma[edge], luma[inner])
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


def ball_on_black(n: int = 24, height: int = 120, width: int = 160) -> list[np.ndarray]:
    """A white ball moving sideways across a black background (no bars)."""
    frames = []
    for i in range(n):
        f = np.zeros((height, width, 3), np.uint8)
        cv2.circle(f, (50 + 2 * i, height // 2), 12, (255, 255, 255), -1)
        frames.append(f)
    return frames


def test_dark_background_is_not_a_bar():
    # black columns either side of the ball are flat and still, but no picture edge runs
    # along them: the ball must not be cut off
    assert detect_crop(ball_on_black()) is None


def test_dark_background_inside_real_bars_finds_the_bars():
    frames = boxed([f[:, 20:140] for f in ball_on_black()], 160, 120, 20, 0)
    for f in frames:  # a picture with visible edges: a grey frame line around it
        cv2.rectangle(f, (20, 0), (139, 119), (90, 90, 90), 2)
    assert detect_crop(frames) == CropBox(120, 120, 20, 0)


def test_soft_bar_edge_counts_as_bar():
    # a dark ramp column between bar and picture (as scans and encoders leave) is bar too,
    # so no dark line stays at the picture's edge
    frames = boxed(panning_clip(8, 120, 120, pan=2.0).frames, 160, 120, 20, 0)
    for f in frames:
        f[:, 20] = f[:, 20] // 4
        f[:, 139] = f[:, 139] // 4
    box = detect_crop(frames)
    assert box is not None and box.x > 20 and box.x + box.w < 139 and box.w >= 114


def test_pad_stage_puts_bars_back_at_the_new_width():
    stage = PadStage(10, 6, (1, 2, 3))
    info = stage.configure(VideoInfo(200, 100, Fraction(1, 24)))
    assert (info.width, info.height) == (200, 116)
    img = np.full((100, 200, 3), 77, np.uint8)
    (out,) = stage.process(Window([img], [4], scene=0))
    assert out.pts == 4 and out.image.shape == (116, 200, 3)
    assert (out.image[:10] == (1, 2, 3)).all() and (out.image[110:] == (1, 2, 3)).all()
    assert (out.image[10:110] == 77).all()
    with pytest.raises(ValueError, match="some rows"):
        PadStage(0, 0)


@pytest.mark.parametrize("fill", ["blur", "panorama"])
def test_letterboxed_input_keeps_its_height_with_black_bars(fill):
    # a 320x180 picture between black bars in a 320x240 frame: the picture is widened to
    # the 16:9 width (426), the bars stay black at that width, the height stays 240
    from tests.clitools import probe, remaster
    from tests.synthetic import encode_clip

    frames = boxed(panning_clip(24, 180, 320, pan=3.0).frames, 320, 240, 0, 30)
    result = remaster("-", "-", "-f", "nut", "--codec", "ffv1", "--fill", fill, "-q",
                      stdin=encode_clip(frames, audio=False))  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout, keep_frames=True)
    assert (got.width, got.height) == (426, 240)
    for f in got.frames:
        assert f[:30].max() <= 8 and f[210:].max() <= 8  # bars: black over the whole width
        assert f[34:206, :40].mean() > 30 and f[34:206, -40:].mean() > 30  # sides filled


def test_letterbox_bars_put_back_after_the_outpaint_stage():
    from stages.crop import CropStage, PadStage
    from stream.options import Options
    from stream.wiring import build_chain

    info = VideoInfo(320, 240, Fraction(1, 24), Fraction(24))
    chain = build_chain(Options(fill="blur"), info, CropBox(320, 180, 0, 30))
    kinds = [type(s).__name__ for s in chain.stages]
    assert kinds[0] == CropStage.__name__ and PadStage.__name__ in kinds
    assert [(i.width, i.height) for i in chain.infos][-1] == (426, 240)
    pad = chain.stages[kinds.index(PadStage.__name__)]
    assert (pad.top, pad.bottom) == (30, 30)
    # side bars alone are filled like new area: no pad
    chain = build_chain(Options(fill="blur"), info, CropBox(240, 240, 40, 0))
    assert PadStage.__name__ not in [type(s).__name__ for s in chain.stages]
    assert (chain.infos[-1].width, chain.infos[-1].height) == (426, 240)
