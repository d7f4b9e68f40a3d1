"""Film-gate border detection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.gate import FilmGate, GateDetector
from tests.synthetic import textured_background, with_film_gate


def test_gate_corners_are_unreliable():
    frames = []
    for seed in range(4):
        f = textured_background(120, 160, seed)
        gate = np.zeros((120, 160), np.uint8)
        cv2.rectangle(gate, (0, 0), (159, 119), 255, -1)
        corner = np.zeros_like(gate)
        cv2.rectangle(corner, (12, 12), (147, 107), 255, -1)
        cv2.circle(corner, (12, 12), 12, 255, -1)
        cv2.circle(corner, (147, 12), 12, 255, -1)
        cv2.circle(corner, (12, 107), 12, 255, -1)
        cv2.circle(corner, (147, 107), 12, 255, -1)
        corner[12:108, :] = 255
        corner[:, 12:148] = 255
        f[corner == 0] = 8
        frames.append(f)
    gd = GateDetector()
    gd.update(frames)
    m = gd.mask((160, 120))
    assert m[0:3, 0:3].all() and m[-3:, -3:].all()  # dark rounded corners
    assert not m[30:90, 30:130].any()  # picture centre
    assert m[:, 0].all()  # thin margin at the seams


def test_dark_border_content_that_changes_is_not_the_gate():
    """Dark rows at the top that differ from frame to frame (an audience the camera pans
    along) are dark on average like a gate; with ``max_cv`` only the steady dark corners
    stay unreliable."""
    rng = np.random.default_rng(3)
    frames = []
    for seed in range(24):
        f = textured_background(120, 160, seed)
        rows = rng.choice(np.uint8([5, 85]), (10, 160))  # dark on average, changing
        f[:10] = rows[..., None]
        f[110:, :12] = f[110:, -12:] = 6  # steady dark gate corners
        frames.append(f)
    masks = {}
    for max_cv in (None, 0.35):
        gd = GateDetector(max_cv=max_cv)
        gd.update(frames)
        masks[max_cv] = gd.mask((160, 120), margin=False)
    assert masks[None][:8, 40:120].all()  # the old rule takes the dark rows for a gate
    assert not masks[0.35][:8, 40:120].any()
    for m in masks.values():
        assert m[112:, :10].all() and m[112:, -10:].all()
    assert GateDetector(max_cv=0.35).copy().max_cv == 0.35
    with pytest.raises(ValueError, match="max_cv"):
        GateDetector(max_cv=0)


def gated_frames(n: int = 8, radius: int = 10) -> list[np.ndarray]:
    return [
        with_film_gate(
            np.clip(60 + 0.7 * textured_background(120, 160, s), 0, 255).astype(np.uint8), radius
        )
        for s in range(n)
    ]


def test_film_gate_with_four_notches_and_a_top_line_is_found():
    gate = FilmGate()
    gate.update(gated_frames())
    patch = gate.patch()
    assert patch is not None
    m = patch.mask
    for corner in (m[:3, :3], m[:3, -3:], m[-3:, :3], m[-3:, -3:]):
        assert corner.all()
    assert m[:2, 40:120].all()  # the top line
    assert not m[10:110, 20:140].any()  # the picture
    assert (patch.alpha >= m).all() and patch.alpha.max() == 1.0
    covered = np.zeros_like(m)
    for rows, cols in patch.rects:
        covered[rows, cols] = True
    assert covered[patch.alpha > 0].all()


def test_dark_picture_in_some_corners_is_no_film_gate():
    frames = [
        np.clip(60 + 0.7 * textured_background(120, 160, s), 0, 255).astype(np.uint8)
        for s in range(8)
    ]
    for f in frames:  # a static shot, dark at both top corners (a doorway, a shadow)
        cv2.circle(f, (0, 0), 25, (10, 10, 10), -1)
        cv2.circle(f, (159, 0), 25, (10, 10, 10), -1)
    gate = FilmGate()
    gate.update(frames)
    assert gate.patch() is None
    night = FilmGate()
    night.update([np.full((120, 160, 3), 9, np.uint8)] * 8)  # dark everywhere
    assert night.patch() is None
    few = FilmGate()
    few.update(gated_frames(2))  # too few frames to say
    assert few.patch() is None
    with pytest.raises(ValueError, match="notch_ratio"):
        FilmGate(notch_ratio=0.9)


def test_dark_pixels_can_be_kept_to_the_corners():
    frames = []
    for seed in range(8):
        f = textured_background(120, 160, seed)
        f[:12, :] = 6  # a steady dark band along the whole top (a doorway, a score bar)
        frames.append(f)
    gd = GateDetector(max_cv=0.35)
    gd.update(frames)
    full = gd.mask((160, 120), margin=False)
    corners = gd.mask((160, 120), margin=False, corners=0.1)
    assert full[:8, 40:120].all()  # along the edge: flagged by the full mask
    assert not corners[:, 20:140].any()  # kept to the corner squares (12 px)
    assert corners[:8, :8].all() and corners[:8, -8:].all()
