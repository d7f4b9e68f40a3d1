"""Old-film repair stage: frame bookkeeping, scenes, and each kind of damage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stages.base import StageChain, Window
from stages.repair import LOOKAHEAD, RepairSettings, RepairStage
from tests.synthetic import panning_clip

H, W = 240, 320


def clip(n: int = 16, pan: float = 2.0, seed: int = 0, sprite: bool = True) -> list[np.ndarray]:
    return panning_clip(n, H, W, pan=pan, with_sprite=sprite, seed=seed).frames


def repair(frames, settings=None, windows=None, scenes=None) -> list[np.ndarray]:
    """Run the stage over ``frames`` cut into windows of ``windows`` frames (default: one
    window per scene); ``scenes`` lists the first frame of every scene after the first."""
    stage = RepairStage(settings)
    starts = [0, *(scenes or []), len(frames)]
    out = []
    for s, (a, b) in enumerate(zip(starts, starts[1:], strict=False)):
        size = windows or (b - a)
        for w0 in range(a, b, size):
            w1 = min(b, w0 + size)
            window = Window(frames[w0:w1], list(range(w0, w1)), s, w0 > a, w1 == b)
            out += stage.process(window)
    out += stage.finish()
    assert [f.pts for f in out] == list(range(len(frames)))
    return [f.image for f in out]


def psnr(a, b) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)])
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def grain(frames, sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def speck(img: np.ndarray, x: int, y: int, r: int, value: int) -> np.ndarray:
    out = img.copy()
    cv2.circle(out, (x, y), r, (value, value, value), -1)
    return out


# -- bookkeeping -----------------------------------------------------------------------


def test_settings_are_checked():
    with pytest.raises(ValueError, match="grain_strength"):
        RepairSettings(grain_strength=-1)
    with pytest.raises(ValueError, match="flicker_radius"):
        RepairSettings(flicker_radius=0)
    with pytest.raises(TypeError, match="dust"):
        RepairSettings(dust="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dust_max_size"):
        RepairSettings(dust_max_size=0.9)
    with pytest.raises(TypeError, match="RepairSettings"):
        RepairStage({"dust": True})  # type: ignore[arg-type]


def test_bad_frames_are_refused():
    stage = RepairStage()
    with pytest.raises(ValueError, match="uint8"):
        list(stage.process(Window([np.zeros((8, 8, 3), np.float32)], [0], 0)))
    stage = RepairStage()
    list(stage.process(Window([np.zeros((8, 8, 3), np.uint8)], [0], 0, last=False)))
    with pytest.raises(ValueError, match="shape"):
        list(stage.process(Window([np.zeros((8, 10, 3), np.uint8)], [1], 0, continues=True)))


@pytest.mark.parametrize("windows", [1, 3, 7, None])
def test_one_frame_per_frame_whatever_the_windows(windows):
    frames = clip(12)
    assert RepairStage.one_to_one
    out = repair(frames, windows=windows, scenes=[5])
    assert len(out) == 12
    # the same output however the scene is cut into windows
    np.testing.assert_array_equal(np.stack(out), np.stack(repair(frames, scenes=[5])))


def test_never_looks_across_a_cut():
    a, b = clip(10, seed=0), clip(10, seed=5, pan=-3)
    alone = repair(a)
    joined = repair(a + b, windows=4, scenes=[10])
    np.testing.assert_array_equal(np.stack(joined[:10]), np.stack(alone))
    np.testing.assert_array_equal(np.stack(joined[10:]), np.stack(repair(b)))


def test_a_missed_cut_does_not_leak():
    """Two shots handed over as one scene (a cut the detector missed): nothing of one
    shot is averaged or patched into the other."""
    a, b = clip(8, seed=0), clip(8, seed=5, pan=-3)
    clean = a + b
    frames = grain(clean, 6)
    out = repair(frames)
    for t in (6, 7, 8, 9):
        assert psnr([out[t]], [clean[t]]) > psnr([frames[t]], [clean[t]]) - 0.5, t


def test_something_new_before_a_wild_change_stays():
    """A thing that comes into view in the last frame before the picture changes
    altogether (a missed cut, a flash) differs from the frames before it like a speck
    would, but nothing after it can be trusted: it is left alone."""
    a, b = clip(8, seed=0), clip(8, seed=5, pan=-3)
    a[7] = a[7].copy()
    cv2.rectangle(a[7], (200, 190), (205, 201), (250, 250, 250), -1)  # 6x12 px
    out = repair(a + b, RepairSettings(grain=False, flicker=False))
    assert out[7][191:201, 201:205].min() > 200


def test_short_scenes_and_chain():
    frames = clip(4)
    out = repair(frames, scenes=[1, 2])  # scenes of 1, 1 and 2 frames
    np.testing.assert_array_equal(out[0], frames[0])  # nothing to compare a lone frame with
    chain = StageChain([RepairStage(), RepairStage()])
    got = list(chain.process(Window(frames, [0, 1, 2, 3], 0))) + list(chain.finish())
    assert [f.pts for f in got] == [0, 1, 2, 3]


def test_holds_only_a_few_frames():
    stage = RepairStage()
    frames = clip(30)
    held = 0
    for i, f in enumerate(frames):
        list(stage.process(Window([f], [i], 0, continues=i > 0, last=i == len(frames) - 1)))
        held = max(held, len(stage._slots))
    assert held <= LOOKAHEAD + 3


def test_deterministic():
    frames = grain(clip(10), 6)
    np.testing.assert_array_equal(np.stack(repair(frames)), np.stack(repair(frames)))


def test_clean_input_is_left_alone():
    frames = clip(16)
    assert psnr(repair(frames), frames) > 42


# -- dust ------------------------------------------------------------------------------


def test_dust_is_removed():
    clean = clip(12)
    frames = [f.copy() for f in clean]
    # dark and bright, 2-5 px; the sprite (rows 80-160) moves 22 px a frame and hides
    # what is next to it from one side or the other, so the specks stay clear of it
    spots = [(5, 60, 40, 4, 10), (6, 200, 200, 3, 250), (7, 120, 200, 5, 20), (8, 260, 40, 2, 245)]
    for t, x, y, r, v in spots:
        frames[t] = speck(frames[t], x, y, r, v)
    out = repair(frames, RepairSettings(grain=False, flicker=False, scratches=False))
    for t, x, y, r, _ in spots:
        sl = (slice(y - r, y + r + 1), slice(x - r, x + r + 1))
        before = np.abs(frames[t][sl].astype(int) - clean[t][sl]).mean()
        after = np.abs(out[t][sl].astype(int) - clean[t][sl]).mean()
        assert after < 0.2 * before, (t, x, y, before, after)


def test_fast_small_object_survives():
    """A ball crossing the frame at 14 px a frame over a panning background (the flow at
    reduced size cannot follow it) is kept, while a speck of the same size is not."""
    clean = clip(14, sprite=False)
    frames = []
    for t, f in enumerate(clean):
        f = speck(f, 30 + 14 * t, 60 + 5 * t, 4, 250)  # the ball, every frame
        frames.append(f)
    frames[7] = speck(frames[7], 250, 200, 4, 250)  # a speck of the same look, one frame
    out = repair(frames, RepairSettings(grain=False, flicker=False))
    for t in range(1, 13):
        x, y = 30 + 14 * t, 60 + 5 * t
        ball = out[t][y - 2 : y + 3, x - 2 : x + 3].astype(int)
        assert ball.min() > 200, f"ball lost in frame {t}"
    assert out[7][198:203, 248:253].max() < 200  # the speck went


def test_raindrop_survives():
    """A thin bright streak falling 18 px a frame (rain) is a real moving object."""
    clean = clip(14, sprite=False)
    frames = []
    for t, f in enumerate(clean):
        f = f.copy()
        cv2.line(f, (160, 10 + 18 * t), (161, 19 + 18 * t), (245, 245, 245), 2)
        frames.append(f)
    out = repair(frames, RepairSettings(grain=False, flicker=False))
    for t in range(1, 12):
        y = 10 + 18 * t
        assert out[t][y + 2 : y + 8, 160:162].min() > 200, f"raindrop lost in frame {t}"


def test_dust_on_a_moving_sprite_background_kept_sprite():
    """The flow follows the sprite (it moves on its own against the pan); a speck on the
    background next to it goes, the sprite's outline stays."""
    clean = clip(12)
    frames = [f.copy() for f in clean]
    frames[6] = speck(frames[6], 40, 30, 3, 0)
    out = repair(frames, RepairSettings(grain=False, flicker=False, scratches=False))
    assert np.abs(out[6][27:34, 37:44].astype(int) - clean[6][27:34, 37:44]).mean() < 12
    others = [t for t in range(12) if t != 6]
    assert psnr([out[t] for t in others], [clean[t] for t in others]) > 40


# -- scratches -------------------------------------------------------------------------


def scratched(frames, xs, value=60, width=2):
    out = []
    for f, x in zip(frames, xs, strict=True):
        f = f.astype(np.float32)
        cols = np.arange(f.shape[1], dtype=np.float32)
        prof = np.exp(-0.5 * ((cols - x) / (width / 2.355)) ** 2)
        out.append(np.clip(f + value * prof[None, :, None], 0, 255).astype(np.uint8))
    return out


def test_scratch_is_removed_while_the_picture_pans():
    clean = clip(16, pan=3.0)
    xs = [150 + 0.3 * t for t in range(16)]
    frames = scratched(clean, xs)
    out = repair(frames, RepairSettings(dust=False, grain=False, flicker=False))
    ratios = []
    for t in range(16):
        x = round(xs[t])
        before = np.abs(frames[t][:, x - 2 : x + 3].astype(int) - clean[t][:, x - 2 : x + 3])
        after = np.abs(out[t][:, x - 2 : x + 3].astype(int) - clean[t][:, x - 2 : x + 3])
        ratios.append(after.mean() / before.mean())
    # what is left is mostly where the scratch runs along the sprite's moving outline
    assert np.mean(ratios) < 0.2 and max(ratios) < 0.4, np.round(ratios, 2)


def test_picture_line_moving_with_the_pan_is_kept():
    """A thin pole of the scene moves with the picture: not a scratch."""
    wide = panning_clip(1, H, W + 64, pan=0, with_sprite=False).background
    cv2.line(wide, (200, 0), (200, H), (255, 255, 255), 2)
    frames = [
        cv2.warpAffine(wide, np.float32([[1, 0, -3 * t], [0, 1, 0]]), (W, H)) for t in range(14)
    ]
    out = repair(frames, RepairSettings(dust=False, grain=False, flicker=False))
    assert psnr(out, frames) > 45


# -- flicker ---------------------------------------------------------------------------


def means(frames) -> np.ndarray:
    return np.array([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).mean() for f in frames])


def gained(frames, gains, gradient=None):
    xs = np.linspace(-1, 1, W, dtype=np.float32)[None, :, None]
    out = []
    for i, (f, g) in enumerate(zip(frames, gains, strict=True)):
        field = g + (0 if gradient is None else gradient[i] * xs)
        out.append(np.clip(f * field, 0, 255).astype(np.uint8))
    return out


def test_flicker_is_evened_out():
    clean = clip(24, pan=1.0)
    rng = np.random.default_rng(3)
    frames = gained(clean, 1 + rng.uniform(-0.08, 0.08, 24), rng.uniform(-0.04, 0.04, 24))
    out = repair(frames, RepairSettings(dust=False, scratches=False, grain=False))
    before = np.std(means(frames) - means(clean))
    after = np.std(means(out) - means(clean))
    assert after < 0.35 * before, (before, after)


def test_fade_survives():
    clean = clip(24, pan=1.0)
    ramp = np.linspace(1.0, 0.4, 24)
    frames = gained(clean, ramp)
    out = repair(frames)
    got, want = means(out), means(frames)
    assert np.abs(got - want).max() < 2.5, np.abs(got - want)
    assert psnr(out, frames) > 36


# -- grain -----------------------------------------------------------------------------


def test_grain_is_reduced_without_ghosts():
    clean = clip(16)
    frames = grain(clean, 8)
    out = repair(frames, RepairSettings(dust=False, scratches=False, flicker=False))
    assert psnr(out, clean) > psnr(frames, clean) + 3
    # the sprite moves against the pan: its outline is where it is, not smeared behind it
    sprite = panning_clip(16, H, W, pan=2.0).sprite_boxes
    x, y, w, h = sprite[8]
    region = (slice(y, y + h), slice(max(0, x - 10), x + w + 10))
    err = np.abs(out[8][region].astype(int) - clean[8][region]).mean()
    noisy = np.abs(frames[8][region].astype(int) - clean[8][region]).mean()
    assert err < noisy


def test_grain_strength_zero_keeps_grain():
    frames = grain(clip(10), 8)
    out = repair(
        frames, RepairSettings(dust=False, scratches=False, flicker=False, grain_strength=0)
    )
    np.testing.assert_array_equal(np.stack(out), np.stack(frames))


def test_small_flow_holes_are_filled_from_around():
    """A small distrusted hole (a speck unsettling the flow) takes the motion around it
    and is trusted; a large one (an occlusion) stays distrusted."""
    from stages.repair_align import fill_holes

    h, w = 60, 80
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.dstack([xs, ys])
    smap = grid + np.float32([3.0, -1.0])  # a pan
    ok = np.ones((h, w), bool)
    smap[20:24, 30:34] = 0.0  # wild flow where the speck is
    ok[20:24, 30:34] = False
    ok[35:58, 5:40] = False  # a large occlusion
    out, trusted = fill_holes(smap, ok, grid, 6)
    assert trusted[20:24, 30:34].all()
    np.testing.assert_allclose(out[20:24, 30:34], grid[20:24, 30:34] + [3.0, -1.0], atol=0.01)
    assert not trusted[35:58, 5:40].any()


def test_nonzero_and_blobs_match_numpy_and_opencv_defaults():
    """The fast helpers give what they stand in for: np.nonzero's pixels in its order,
    and the same 8-connected blobs (as sets of pixels, with their stats) as OpenCV's
    default algorithm; nothing set gives empty arrays."""
    from stages.repair_align import blobs, nonzero

    rng = np.random.default_rng(3)
    mask = (rng.random((61, 83)) > 0.93).astype(np.uint8)
    mask[10:14, 20:23] = 1  # a blob of more than one pixel
    for m in (mask, mask.astype(bool), mask * np.uint8(7)):
        ys, xs = nonzero(m)
        want = np.nonzero(m)
        np.testing.assert_array_equal(ys, want[0])
        np.testing.assert_array_equal(xs, want[1])
    ys, xs = nonzero(np.zeros((5, 6), np.uint8))
    assert ys.size == 0 and xs.size == 0
    n, labels, stats = blobs(mask)
    n0, labels0, stats0, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    assert n == n0 > 20
    # the same partition of the pixels: each label maps to exactly one default label
    pairs = set(zip(labels.ravel().tolist(), labels0.ravel().tolist(), strict=True))
    assert len(pairs) == n
    order = {a: b for a, b in pairs}
    np.testing.assert_array_equal(stats0[[order[i] for i in range(n)]], stats)
