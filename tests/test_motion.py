"""Camera motion on synthetic pans with known offsets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.motion import MotionTracker, fit_model
from tests.synthetic import panning_clip


def corner_error(H: np.ndarray, shift: float, w: int, h: int) -> float:
    """Largest distance between H's image of the frame corners and the true shift."""
    corners = np.float64([[0, 0], [w, 0], [w, h], [0, h]])
    ones = np.ones((4, 1))
    p = np.hstack([corners, ones]) @ H.T
    p = p[:, :2] / p[:, 2:]
    return float(np.abs(p - (corners + [shift, 0])).max())


@pytest.fixture(scope="module")
def clip():
    return panning_clip(n=40, pan=2.5)


def test_transforms_within_a_pixel(clip):
    ms = MotionTracker().track(clip.frames)
    x0 = clip.offsets[0][0]
    errs = [
        corner_error(m.H, off[0] - x0, 160, 120) for m, off in zip(ms, clip.offsets, strict=True)
    ]
    assert all(m.ok for m in ms)
    assert max(errs) < 1.0, errs


def test_windows_continue_the_scene(clip):
    one = MotionTracker().track(clip.frames)
    t = MotionTracker()
    split = t.track(clip.frames[:15]) + t.track(clip.frames[15:])
    x0 = clip.offsets[0][0]
    assert (
        max(
            corner_error(m.H, o[0] - x0, 160, 120) for m, o in zip(split, clip.offsets, strict=True)
        )
        < 1.0
    )
    assert max(np.abs(a.H - b.H).max() for a, b in zip(one, split, strict=True)) < 1.0


def test_deterministic(clip):
    a = MotionTracker().track(clip.frames)
    b = MotionTracker().track(clip.frames)
    assert all(np.array_equal(x.H, y.H) for x, y in zip(a, b, strict=True))


def test_failed_frame_is_flagged_and_interpolated(clip):
    frames = [f.copy() for f in clip.frames[:20]]
    rng = np.random.default_rng(1)
    frames[10] = rng.integers(0, 256, frames[10].shape, dtype=np.uint8)  # full-frame action
    ms = MotionTracker().track(frames)
    assert not ms[10].ok
    assert all(m.ok for i, m in enumerate(ms) if i != 10)
    x0 = clip.offsets[0][0]
    assert corner_error(ms[10].H, clip.offsets[10][0] - x0, 160, 120) < 1.5


def test_auto_picks_pan_zoom_for_a_pure_pan():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (200, 2))
    dst = src * 1.02 + [5.0, -3.0] + rng.normal(0, 0.2, src.shape)
    H, n, name = fit_model(src, dst, "auto", 1.0)
    assert name == "panzoom" and n > 190
    assert abs(H[0, 0] - 1.02) < 1e-3 and abs(H[0, 2] - 5.0) < 0.2


def test_rejects_bad_arguments(clip):
    with pytest.raises(ValueError, match="model"):
        MotionTracker(model="affine3d")
    with pytest.raises(ValueError, match="masks"):
        MotionTracker().track(clip.frames[:3], [np.ones((120, 160), bool)])


def test_long_failure_during_a_zoom_stays_bounded():
    """A zoom, then 40 frames nothing registers in (noise): the held transform must not
    run away (extrapolating failed frames compounded the zoom until the matrix was
    singular)."""
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    zoom = [
        cv2.warpAffine(texture, cv2.getRotationMatrix2D((160, 120), 0, 1.03**i), (320, 240))
        for i in range(12)
    ]
    noise = [rng.integers(0, 256, texture.shape, dtype=np.uint8) for _ in range(40)]
    ms = MotionTracker().track(zoom + noise)
    assert all(m.ok for m in ms[:12]) and not any(m.ok for m in ms[12:])
    for m in ms:
        assert np.isfinite(m.H).all()
        assert 0.5 < abs(np.linalg.det(m.H[:2, :2] / m.H[2, 2])) < 2.0
