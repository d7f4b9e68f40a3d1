"""Foreground masks and exposure gains."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.foreground import ForegroundMasker, apply_gain, gain_to, moving
from tests.synthetic import panning_clip, sprite, textured_background


def test_sprite_is_masked_and_background_is_not():
    clip = panning_clip(n=10, pan=1.0)
    frame = clip.frames[5]
    bg = cv2.warpAffine(
        clip.background,
        np.float32([[1, 0, clip.offsets[5][0]], [0, 1, 0]]),
        (160, 120),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    fg = ForegroundMasker()(frame, bg, np.ones((120, 160), bool))
    x, y, w, h = clip.sprite_boxes[5]
    box = np.zeros_like(fg)
    box[y + 2 : y + h - 2, x + 2 : x + w - 2] = True
    assert fg[box].mean() > 0.95
    far = np.ones_like(fg)
    far[max(0, y - 10) : y + h + 10, max(0, x - 10) : x + w + 10] = False
    assert fg[far].mean() < 0.02


def followed(n: int = 30, pan: float = -3.0):
    """A pan with a character the camera follows: it stays near the frame's left edge,
    walking a little against it, so the background it covers is mostly covered by it."""
    clip = panning_clip(n=n, pan=pan, with_sprite=False)
    spr = sprite(40)
    alpha = spr[..., 3:4].astype(np.float32) / 255
    frames, boxes = [], []
    for i, f in enumerate(clip.frames):
        x, y = 6 + i // 3, 50
        f = f.copy()
        roi = f[y : y + 40, x : x + 40].astype(np.float32)
        f[y : y + 40, x : x + 40] = (roi * (1 - alpha) + spr[..., :3] * alpha).astype(np.uint8)
        frames.append(f)
        boxes.append((x, y))
    return clip, frames, boxes


def test_moving_finds_what_the_camera_does_not_explain():
    clip, frames, boxes = followed()
    i, j = 10, 18
    shift = clip.offsets[i][0] - clip.offsets[j][0]  # frame i pixels -> frame j pixels
    to_j = np.array([[1, 0, shift], [0, 1, 0], [0, 0, 1.0]])
    mv = moving(frames[i], frames[j], to_j)
    x, y = boxes[i]
    assert mv[y + 8 : y + 32, x + 8 : x + 32].mean() > 0.5  # the character
    far = np.ones_like(mv)
    far[:, : x + 80] = False  # beyond both of its places
    assert mv[far].mean() < 0.01  # the background, once the pan is undone


def test_a_followed_character_joins_the_mask_only_with_a_neighbour():
    clip, frames, boxes = followed()
    i, j = 10, 18
    shift = clip.offsets[i][0] - clip.offsets[j][0]
    to_j = np.array([[1, 0, shift], [0, 1, 0], [0, 0, 1.0]])
    x, y = boxes[i]
    # a median background of these frames shows the character where it always is
    masker = ForegroundMasker()
    alone = masker(frames[i], frames[i], np.ones((120, 160), bool))
    assert not alone.any()
    with_nb = masker(frames[i], frames[i], np.ones((120, 160), bool), None, (frames[j], to_j))
    assert with_nb[y + 10 : y + 30, x + 10 : x + 30].all()


def test_segmenter_is_united():
    img = textured_background(120, 160)
    prob = np.zeros((120, 160), np.float32)
    prob[10:30, 10:30] = 0.9
    fg = ForegroundMasker(segmenter=lambda rgb: prob)(img, img, np.ones((120, 160), bool), img)
    assert fg[15:25, 15:25].all() and not fg[60:, 60:].any()


def test_gain_is_recovered_and_applied():
    img = textured_background(120, 160)
    dark = apply_gain(img, np.float32([0.8, 0.8, 0.8]))
    g = gain_to(img, dark, np.ones((120, 160), bool))
    assert np.allclose(g, 1.25, atol=0.03)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="dilate"):
        ForegroundMasker(dilate=0.7)
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="background"):
        ForegroundMasker()(img, np.zeros((9, 10, 3), np.uint8), np.ones((10, 10), bool))
