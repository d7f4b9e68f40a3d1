"""Camera motion on synthetic pans with known offsets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.motion import (
    LOST_AFTER,
    MAX_DISTORTION,
    MotionTracker,
    distortion,
    fit_model,
    is_flat,
)
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


@pytest.mark.parametrize("bad", [1, LOST_AFTER - 1])
def test_a_short_failure_stays_in_the_segment_and_is_interpolated(clip, bad):
    frames = [f.copy() for f in clip.frames[:20]]
    rng = np.random.default_rng(1)
    for i in range(10, 10 + bad):  # full-frame action, or a flash
        frames[i] = rng.integers(0, 256, frames[i].shape, dtype=np.uint8)
    ms = MotionTracker().track(frames)
    assert [i for i, m in enumerate(ms) if not m.ok] == list(range(10, 10 + bad))
    assert all(m.segment == 0 and m.placed for m in ms)
    x0 = clip.offsets[0][0]
    for i in range(10, 10 + bad):
        assert corner_error(ms[i].H, clip.offsets[i][0] - x0, 160, 120) < 1.5


def test_a_whip_pan_to_another_background_starts_a_new_segment():
    """Two backgrounds joined by blurred frames (no cut a detector would see as such): the
    second background's frames belong to a new segment, the blur frames to none."""
    a = panning_clip(n=20, pan=2.0, with_sprite=False, seed=1).frames
    b = panning_clip(n=20, pan=2.0, with_sprite=False, seed=2).frames
    whip = [
        cv2.blur(np.hstack([x, y]), (61, 1))[:, 80:240] for x, y in zip(a[-6:], b[:6], strict=True)
    ]
    ms = MotionTracker().track(a + whip + b)
    first, rest = ms[:20], ms[26:]
    assert all(m.ok and m.segment == 0 for m in first)
    assert all(m.segment != 0 for m in ms[20:])  # nothing after the whip joins the first
    assert len({m.segment for m in rest if m.placed}) == 1 and rest[-1].ok
    assert rest[-1].segment > 0 and rest[-1].link is None  # a break, not a new reference


def test_flat_frames_start_no_segment_and_never_register():
    clip = panning_clip(n=16, pan=1.0, with_sprite=False)
    black = [np.full_like(clip.frames[0], 3) for _ in range(4)]
    grey = np.full_like(clip.frames[0], 128)
    ms = MotionTracker().track(black + clip.frames[:8] + [grey] + clip.frames[8:])
    assert not any(m.placed for m in ms[:4])  # a fade from black: no reference
    assert ms[4].ok and ms[4].segment == 0 and np.array_equal(ms[4].H, np.eye(3))
    assert not ms[12].ok and ms[12].segment == 0  # a flat flash: interpolated, placed
    assert all(m.ok for m in ms[13:])
    assert is_flat(grey) and is_flat(black[0]) and not is_flat(clip.frames[0])


def test_a_view_far_from_the_reference_goes_on_from_a_new_one():
    """A zoom out to half the size: the reference plane shrinks the view past
    MAX_DISTORTION, and the segment goes on from the current frame, with the link."""
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 2)
    frames = [
        cv2.resize(
            cv2.warpAffine(
                texture, cv2.getRotationMatrix2D((320, 240), 0, 2 * 0.96**i), (640, 480)
            ),
            (320, 240),
            interpolation=cv2.INTER_AREA,
        )
        for i in range(30)
    ]
    ms = MotionTracker().track(frames)
    assert all(m.ok for m in ms)
    linked = [i for i, m in enumerate(ms) if m.link is not None]
    assert linked and ms[linked[0]].segment == 1
    k = linked[0]
    assert distortion(ms[k - 1].H, (320, 240)) <= MAX_DISTORTION
    assert np.array_equal(ms[k].H, np.eye(3))
    # the link takes the old reference to the new one (frame k): frame k - 1 lands where
    # it sits in frame k, the same view 4 % larger about the centre
    to_k = ms[k].link @ ms[k - 1].H
    pts = cv2.perspectiveTransform(np.float64([[[160, 120], [0, 0]]]), to_k)[0]
    assert np.allclose(pts, [[160, 120], [160 - 0.96 * 160, 120 - 0.96 * 120]], atol=1.0)


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
    assert all(m.ok and m.segment == 0 for m in ms[:12])
    # noise registers to nothing: each noise frame is either unplaced or starts a segment
    assert all(m.segment != 0 for m in ms[12:])
    assert all(not m.ok or np.array_equal(m.H, np.eye(3)) for m in ms[12:])
    for m in ms:
        assert np.isfinite(m.H).all()
        assert 0.5 < abs(np.linalg.det(m.H[:2, :2] / m.H[2, 2])) < 2.0


def test_frames_shrunk_by_the_caller_give_the_same_motions():
    clip = panning_clip(n=12, pan=2.5)
    tracker = MotionTracker()
    size = tracker.scales(clip.frames[0].shape)[0]
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in clip.frames]
    a = MotionTracker().track(clip.frames)
    b = tracker.track(clip.frames, small=small)
    assert [m.H.tolist() for m in a] == [m.H.tolist() for m in b]
    with pytest.raises(ValueError, match="small frame 0"):
        MotionTracker().track(clip.frames[:1], small=[small[0][:-2]])
