"""Lens falloff learned from panning frames, and the outpainted sides that follow it."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from stages.base import VideoInfo, Window, widened_width
from stages.outpaint import PanoramaOutpaint
from stages.vignette import MIN_LOG_V, Vignette, offsets
from tests.synthetic import panning_clip

W, H, N = 160, 120, 40
C1 = -0.5  # log gain at the frame's corners


def shade(image: np.ndarray, c1: float, x_offset: float = 0.0, frame_width: int = W):
    """``image`` darkened by exp(c1 * rho**2), rho as in :func:`stages.vignette.offsets`."""
    u, v = offsets(image.shape[1], image.shape[0], x_offset, frame_width)
    g = np.exp(c1 * (u * u + v * v))
    return np.clip(image * g[..., None] + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip():
    return panning_clip(n=N, height=H, width=W, pan=-3.0, with_sprite=False)


def to_ref(clip):
    x0 = clip.offsets[0][0]
    return [np.array([[1, 0, x - x0], [0, 1, y], [0, 0, 1.0]]) for x, y in clip.offsets]


def test_offsets_are_one_at_the_corners_and_follow_the_placement():
    u, v = offsets(W, H)
    rho2 = u * u + v * v
    assert rho2.shape == (H, W)
    assert rho2.min() < 1e-3 and 0.97 < rho2.max() <= 1.0
    wide_u, _ = offsets(W + 40, H, -20, W)  # the frame centred in a picture 40 px wider
    assert np.allclose(wide_u[0, 20 : 20 + W], u[0])


@pytest.mark.parametrize("flicker", [False, True])
def test_falloff_is_recovered_from_a_pan(clip, flicker):
    rng = np.random.default_rng(3)
    frames = [shade(f, C1) for f in clip.frames]
    if flicker:  # old film: every frame's exposure differs, which must not matter
        frames = [np.clip(f * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8) for f in frames]
    vig = Vignette()
    Hs = to_ref(clip)
    for start in range(0, N, 20):  # two windows add up
        vig.update(frames[start : start + 20], Hs[start : start + 20], np.zeros((H, W), bool))
    c1, c2 = vig.coeffs
    corner = c1 + c2  # log V at rho = 1
    assert abs(corner - C1) < 0.08, (c1, c2)
    assert vig.active


def test_no_falloff_and_a_static_camera_leave_the_frames_alone(clip):
    flat = Vignette()
    flat.update(clip.frames[:20], to_ref(clip)[:20], np.zeros((H, W), bool))
    assert abs(sum(flat.coeffs)) < 0.03 and not flat.active
    static = Vignette()  # the same point never moves: no evidence, the prior holds
    frame = shade(clip.frames[0], C1)
    static.update([frame] * 8, [np.eye(3)] * 8, np.zeros((H, W), bool))
    assert static.coeffs == (0.0, 0.0) and not static.active


def test_falloff_never_brightens_and_is_floored():
    vig = Vignette()
    vig._b[:] = (5.0e3, -9.0e3)  # evidence for a rising quadratic and a falling quartic
    vig._N[:] = np.diag([1.0e4, 1.0e4])
    c1, c2 = vig.coeffs
    assert c1 == 0.0 and c2 < 0
    u, v = offsets(4 * W, H, -1.5 * W, W)
    lg = vig.log_gain(u, v)
    assert lg.max() <= 0 and lg.min() >= np.float32(MIN_LOG_V)


def run(frames, vignette: bool):
    # a pure pan, registered as one: the falloff is under test here, not the model choice
    # (with "auto" the strong synthetic falloff pulls the fit towards a perspective)
    stage = PanoramaOutpaint(Fraction(16, 9), vignette=vignette, model="panzoom")
    stage.configure(VideoInfo(W, H, Fraction(1, 24)))
    out = [f.image for f in stage.process(Window(frames, list(range(N)), 0, last=True))]
    stage.close()
    return out


def wide_view(clip, i: int, out_w: int) -> np.ndarray:
    """Frame ``i``'s view of the clip's background at the widened width (the truth)."""
    ox = (out_w - W) // 2
    m = np.float32([[1, 0, clip.offsets[i][0] - ox], [0, 1, 0]])
    return cv2.warpAffine(
        clip.background, m, (out_w, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )


def test_sides_continue_the_falloff_past_the_frame_edge(clip):
    out_w = widened_width(W, H, Fraction(16, 9))
    ox = (out_w - W) // 2
    frames = [shade(f, C1) for f in clip.frames]
    errors = {}
    for on in (True, False):
        out = run(frames, on)
        err = []
        for i in range(0, N, 4):
            truth = shade(wide_view(clip, i, out_w), C1, -ox, W)  # the same lens, wider
            diff = out[i].astype(float) - truth
            err.append(np.abs(np.concatenate([diff[:, :ox], diff[:, ox + W :]], 1)).mean())
            assert np.array_equal(out[i][:, ox : ox + W], frames[i])  # centre untouched
        errors[on] = float(np.mean(err))
    assert errors[True] < 0.6 * errors[False], errors


def test_light_over_255_at_the_centre_survives_in_the_sides(clip):
    """A background the camera clips at the frame centre but records below 255 towards
    the darker edges: those edge pixels, divided by V, pass 255. The panorama keeps them
    (it stores frames times the corner gain), so the sides, darker again by V, are as
    bright as the real ones instead of clipped darker."""
    out_w = widened_width(W, H, Fraction(16, 9))
    ox = (out_w - W) // 2
    light = lambda a: 120 + a.astype(np.float32) * (220 / 255)  # noqa: E731  (up to 340)
    frames = [shade(light(f), C1) for f in clip.frames]
    out = run(frames, True)
    bias = []
    for i in range(N // 2, N, 4):  # once the falloff is learned
        truth = shade(light(wide_view(clip, i, out_w)), C1, -ox, W)
        sides = [np.concatenate([a[:, :ox], a[:, ox + W :]], 1) for a in (out[i], truth)]
        bias.append(np.percentile(sides[0], 99) - np.percentile(sides[1], 99))
    assert abs(float(np.mean(bias))) < 5, bias  # clipped in the panorama: about -9


def test_a_static_shot_with_gate_weave_and_a_moving_character_says_nothing():
    clip = panning_clip(n=N, height=H, width=W, pan=0.0, with_sprite=True)
    rng = np.random.default_rng(5)
    shifts = rng.integers(-1, 2, (N, 2)).astype(float)  # a pixel of weave either way
    frames, Hs = [], []
    for f, (dx, dy) in zip(clip.frames, shifts, strict=True):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frames.append(cv2.warpAffine(f, m, (W, H), borderMode=cv2.BORDER_REFLECT))
        Hs.append(np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1.0]]))
    vig = Vignette()
    vig.update(frames[:20], Hs[:20], np.zeros((H, W), bool))
    # no pair moved enough to count: no evidence at all, whatever the noise would say
    assert not vig._N.any() and vig.coeffs == (0.0, 0.0) and not vig.active
