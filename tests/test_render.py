"""The sides follow the previous frame's (stages.render.follow): detail is damped over time
where the registration is trusted, the colour stays the current frame's, the centre is
never touched. Synthetic frames and clips."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import cv2
import numpy as np
import pytest

from stages import render
from stages.base import VideoInfo, Window, widened_width
from stages.outpaint import PanoramaOutpaint
from stages.render import FOLLOW, add_offsets, follow
from stages.resample import Resampler
from tests.synthetic import panning_clip

W, H = 160, 120
OUT_W = widened_width(W, H, Fraction(16, 9))
OX = (OUT_W - W) // 2
SIDES = [(0, OX), (OX + W, OUT_W)]


def noise(seed: int, shape: tuple[int, ...] = (40, 100, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, shape).astype(np.uint8)


def test_follow_blends_the_sides_towards_the_previous_frame_and_leaves_the_centre():
    out, previous = noise(0), noise(1)
    before = out.copy()
    sides = [(0, 20), (80, 100)]
    follow(out, previous, [np.eye(3)] * 2, sides)
    assert np.array_equal(out[:, 20:80], before[:, 20:80])
    for c0, c1 in sides:
        want = FOLLOW * before[:, c0:c1].astype(float) + (1 - FOLLOW) * previous[:, c0:c1]
        want += before[:, c0:c1].mean((0, 1)) - want.mean((0, 1))  # the mean stays out's
        assert np.abs(out[:, c0:c1] - want).max() <= 1.0


def test_follow_keeps_the_current_mean_colour():
    """A film-flicker step (the whole previous frame 40 levels darker): the side keeps the
    current frame's level, only its detail comes partly from the previous frame."""
    out = noise(2)
    previous = cv2.subtract(out, (40, 40, 40, 0))
    before = out.copy()
    follow(out, previous, [np.eye(3)] * 2, [(0, 20), (80, 100)])
    for cols in (slice(0, 20), slice(80, 100)):
        assert np.abs(out[:, cols].mean((0, 1)) - before[:, cols].mean((0, 1))).max() < 0.5


def test_follow_leaves_what_the_previous_frame_did_not_cover():
    out, previous = noise(3), noise(4)
    before = out.copy()
    shift = np.array([[1.0, 0, 30], [0, 1, 0], [0, 0, 1]])  # this frame's x -> x + 30 there
    follow(out, previous, [shift] * 2, [(0, 20), (80, 100)])
    assert np.array_equal(out[:, 80:], before[:, 80:])  # maps past the previous frame
    assert not np.array_equal(out[:, :20], before[:, :20])


def widen(frames: list[np.ndarray]) -> list[np.ndarray]:
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    out = [f.image for f in st.process(Window(frames, list(range(len(frames))), 0))]
    st.close()
    return out


def side_tde(out: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Mean |(o_t - o_t-1) - (g_t - g_t-1)| over the side columns."""
    o = np.stack([np.concatenate([f[:, :OX], f[:, OX + W :]], 1) for f in out]).astype(int)
    g = np.stack([np.concatenate([f[:, :OX], f[:, OX + W :]], 1) for f in truth]).astype(int)
    return float(np.abs(np.diff(o, axis=0) - np.diff(g, axis=0)).mean())


def grainy_pan() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A pan over a textured background with independent grain in every frame, and the
    wide frames it was cut from (clean)."""
    clip = panning_clip(n=32, pan=2.0, with_sprite=True, seed=11)
    rng = np.random.default_rng(5)
    frames = [np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in clip.frames]
    truth = []
    for x0, y0 in clip.offsets:
        m = np.float32([[1, 0, x0 - OX], [0, 1, y0]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        truth.append(cv2.warpAffine(clip.background, m, (OUT_W, H), flags=flags))
    return frames, truth


def test_following_lowers_the_temporal_error_of_the_sides(monkeypatch: pytest.MonkeyPatch):
    frames, truth = grainy_pan()
    followed = widen(frames)
    monkeypatch.setattr(render, "FOLLOW", 1.0)
    alone = widen(frames)
    for a, b, f in zip(followed, alone, frames, strict=True):
        assert np.array_equal(a[:, OX : OX + W], f) and np.array_equal(b[:, OX : OX + W], f)
    assert side_tde(followed, truth) < 0.995 * side_tde(alone, truth)


def test_the_seam_cross_fade_follows_the_panorama_under_the_mirror(monkeypatch: pytest.MonkeyPatch):
    """The panorama under the seam's cross-fade follows too (the mirrored original on top
    stays the current frame's: tests/test_outpaint.py, the character at the edge)."""
    frames, _ = grainy_pan()
    fade = Resampler(W, OUT_W, H).fade
    followed = widen(frames)
    monkeypatch.setattr(render, "FOLLOW", 1.0)
    alone = widen(frames)
    cols = np.r_[OX - fade : OX, OX + W : OX + W + fade]
    a = [f[:, cols] for f in followed]
    b = [f[:, cols] for f in alone]
    assert all(np.array_equal(x, y) for x, y in zip(a[:1], b[:1], strict=True))
    assert sum(not np.array_equal(x, y) for x, y in zip(a, b, strict=True)) > len(a) // 2


def test_mirror_afterwards_is_the_mirror_of_render():
    rng = np.random.default_rng(3)
    pano = rng.integers(0, 255, (H + 40, OUT_W + 60, 3)).astype(np.uint8)
    frame = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    view = np.array([[1.0, 0, 20.5], [0, 1, 10.25], [0, 0, 1]])
    unreliable = np.zeros((H, W), bool)
    unreliable[:10] = True
    rs = Resampler(W, OUT_W, H)
    whole = rs.render(frame, pano, view, unreliable)
    later = rs.render(frame, pano, view, unreliable, mirror=False)
    assert not np.array_equal(whole, later)
    rs.mirror(later, unreliable)
    assert np.array_equal(whole, later)


def test_film_flicker_passes_into_the_sides_at_once():
    """Every other frame 20 levels brighter: the sides step with the picture."""
    frames = [
        cv2.add(f, (20, 20, 20, 0)) if i % 2 else f
        for i, f in enumerate(panning_clip(n=32, pan=2.0, with_sprite=False, seed=12).frames)
    ]
    out = widen(frames)
    for i in range(9, 31):
        step_centre = float(out[i][:, OX : OX + W].mean()) - float(
            out[i - 1][:, OX : OX + W].mean()
        )
        step_side = float(out[i][:, :OX].mean()) - float(out[i - 1][:, :OX].mean())
        assert abs(step_side - step_centre) < 0.25 * abs(step_centre), f"frame {i}"


def test_ahead_keeps_order_and_works_at_most_depth_items_ahead():
    taken = 0

    def slow_square(i: int) -> int:
        # an item is handed out only once the one `depth` before it was taken
        assert i <= taken + 2
        time.sleep(0.002 * (i % 3))  # later items may finish first: order must hold
        return i * i

    items = [(i,) for i in range(12)]
    with ThreadPoolExecutor(2) as pool:
        out = []
        for value in render.ahead(slow_square, items, pool.submit, 2):
            out.append(value)
            taken += 1
    assert out == [i * i for i in range(12)]
    assert list(render.ahead(slow_square, items, None)) == out


def test_frames_drawn_in_threads_are_the_frames_drawn_inline(monkeypatch: pytest.MonkeyPatch):
    frames, _ = grainy_pan()
    threaded = widen(frames)
    monkeypatch.setattr(render.Renderer, "__init__", inline_renderer_init)
    inline = widen(frames)
    assert all(np.array_equal(a, b) for a, b in zip(threaded, inline, strict=True))


_init = render.Renderer.__init__


def inline_renderer_init(self, resampler, own, confidence, submit=None) -> None:  # noqa: ANN001
    _init(self, resampler, own, confidence, None)


def test_add_offsets_is_opencvs_scalar_add():
    rng = np.random.default_rng(5)
    image = rng.uniform(-20, 275, (37, 23, 3)).astype(np.float32)
    offsets = (1.37, -2.5, 0.5)
    want = cv2.add(image, (*offsets, 0.0), dtype=cv2.CV_8U)
    assert np.array_equal(add_offsets(image, offsets), want)
