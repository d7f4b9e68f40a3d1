"""PanoramaOutpaint end to end on synthetic pans: geometry, truth, seams, windows."""

from __future__ import annotations

import re
from fractions import Fraction

import cv2
import numpy as np
import pytest

from stages.base import VideoInfo, Window, widened_width
from stages.outpaint import PanoramaOutpaint
from stages.resample import Resampler
from tests.synthetic import panning_clip

W, H, N = 160, 120, 36
OUT_W = widened_width(W, H, Fraction(16, 9))
OX = (OUT_W - W) // 2


def run(frames, windows=(N,), **kw):
    st = PanoramaOutpaint(Fraction(16, 9), **kw)
    info = st.configure(VideoInfo(W, H, Fraction(1, 24)))
    assert (info.width, info.height) == (OUT_W, H)
    out, start = [], 0
    for k, size in enumerate(windows):
        sl = slice(start, start + size)
        win = Window(
            frames[sl],
            list(range(start, start + size)),
            0,
            continues=k > 0,
            last=k == len(windows) - 1,
        )
        out += list(st.process(win))
        start += size
    return out


@pytest.fixture(scope="module")
def clip():
    return panning_clip(n=N, pan=-2.0)


@pytest.fixture(scope="module")
def single(clip):
    return run(clip.frames)


def truth_view(clip, i):
    """The true widened view of frame i (background only, no sprite)."""
    m = np.float32([[1, 0, clip.offsets[i][0] - OX], [0, 1, 0]])
    return cv2.warpAffine(
        clip.background, m, (OUT_W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )


def test_one_frame_per_input_same_pts_pixel_exact_centre(clip, single):
    assert [f.pts for f in single] == list(range(N))
    for f, src in zip(single, clip.frames, strict=True):
        assert f.image.shape == (H, OUT_W, 3) and f.image.dtype == np.uint8
        assert np.array_equal(f.image[:, OX : OX + W], src)


def test_sides_show_the_real_background(clip, single):
    # rows the sprite never crosses: near the canvas ends only a few frames saw the
    # background, and the sprite sat there in half of them (see test_panorama for its removal)
    rows = np.r_[0:34, 86:H]
    errs = []
    for i in (14, 18, 22):  # both sides were seen by earlier or later frames
        truth = truth_view(clip, i)[rows]
        out = single[i].image[rows]
        for cols in (slice(2, OX - 2), slice(OX + W + 2, OUT_W - 2)):
            errs.append(np.abs(out[:, cols].astype(int) - truth[:, cols]).mean())
    assert max(errs) < 5.0, errs


def test_unseen_areas_are_filled(clip, single):
    # pan left: the left side of the last frame was never seen by any frame
    last = single[-1].image[:, :OX]
    assert last.min() > 0 or (last.reshape(-1, 3).sum(1) == 0).mean() < 0.001
    assert abs(float(last.mean()) - float(clip.frames[-1][:, :20].mean())) < 30


def test_seam_has_no_step(single):
    steps, inner = [], []
    for f in single[::5]:
        img = f.image.astype(np.float64)
        steps.append(np.abs(img[:, OX] - img[:, OX - 1]).mean())
        steps.append(np.abs(img[:, OX + W] - img[:, OX + W - 1]).mean())
        inner.append(np.abs(np.diff(img[:, OX + 20 : OX + W - 20], axis=1)).mean())
    assert np.mean(steps) < 2.0 * np.mean(inner)


def test_character_crossing_the_edge_fades(clip):
    # put the sprite half across the left frame edge in the middle frame
    frames = [f.copy() for f in panning_clip(n=N, pan=-2.0, with_sprite=False).frames]
    spr = np.full((40, 40, 3), (250, 40, 40), np.uint8)
    frames[18][40:80, 0:20] = spr[:, :20]
    plain = run([f.copy() for f in panning_clip(n=N, pan=-2.0, with_sprite=False).frames])
    out = run(frames)[18].image.astype(np.float64)
    band = Resampler(W, OUT_W, H).band
    # how much the character changes each column, from outside the fade into the frame
    diff = np.abs(out - plain[18].image)[42:78, OX - band - 2 : OX + 2].mean((0, 2))
    assert diff[0] < 3 and diff[-1] > 60  # gone outside the band, full inside the frame
    assert np.abs(np.diff(diff)).max() < 0.6 * diff[-1]  # no hard cut at the edge


def test_windows_give_nearly_the_same_result(clip, single):
    split = run(clip.frames, windows=(12, 12, 12))
    assert [f.pts for f in split] == list(range(N))
    for i in (20, 30, 35):  # later windows have seen what the single run saw by then
        d = np.abs(split[i].image.astype(int) - single[i].image)
        assert d.mean() < 6.0, (i, d.mean())


def test_deterministic(clip):
    a = run(clip.frames[:20], windows=(20,))
    b = run(clip.frames[:20], windows=(20,))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))


def test_dump_and_bad_input(clip, tmp_path):
    run(clip.frames[:10], windows=(10,), dump_dir=tmp_path)
    assert (tmp_path / "scene0000_panorama.png").exists()
    assert (tmp_path / "scene0000_known.png").exists()
    st = PanoramaOutpaint(Fraction(16, 9))
    with pytest.raises(RuntimeError, match="configure"):
        list(st.process(Window(clip.frames[:1], [0], 0)))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    with pytest.raises(ValueError, match="frame 0"):
        list(st.process(Window([np.zeros((H, W + 2, 3), np.uint8)], [0], 0)))
    with pytest.raises(ValueError, match="aspect"):
        PanoramaOutpaint(Fraction(0))


def test_memory_stays_bounded_over_a_long_pan():
    clip = panning_clip(n=60, pan=4.0, with_sprite=False)
    st = PanoramaOutpaint(Fraction(16, 9), max_extent=1.5)
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    widths = []
    for k in range(6):
        sl = slice(10 * k, 10 * k + 10)
        win = Window(clip.frames[sl], list(range(10 * k, 10 * k + 10)), 0, k > 0, k == 5)
        assert len(list(st.process(win))) == 10
        assert st.canvas is not None
        widths.append(st.canvas.width)
    assert max(widths) <= round(1.5 * OUT_W)  # 240 px of pan, canvas capped near 1.5 views


def test_a_long_tilt_is_bounded_by_the_height_extent():
    pan = panning_clip(n=40, height=W, width=H, pan=3.0, with_sprite=False)
    frames = [np.ascontiguousarray(f.swapaxes(0, 1)) for f in pan.frames]  # a tilt down
    st = PanoramaOutpaint(Fraction(16, 9), max_extent_y=1.25)
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    heights = []
    for k in range(4):
        sl = slice(10 * k, 10 * k + 10)
        win = Window(frames[sl], list(range(10 * k, 10 * k + 10)), 0, k > 0, k == 3)
        assert len(list(st.process(win))) == 10
        assert st.canvas is not None
        heights.append(st.canvas.height)
    assert heights[0] > H  # the tilt needs more than one frame height ...
    assert max(heights) <= round(1.25 * H)  # ... 117 px of it, the canvas capped
    with pytest.raises(ValueError, match="max_extent_y"):
        PanoramaOutpaint(Fraction(16, 9), max_extent_y=0.5)


def test_gate_corners_are_not_mirrored_outwards():
    rng = np.random.default_rng(0)
    pano = np.full((H, OUT_W, 3), 100, np.uint8)
    frame = np.full((H, W, 3), 100, np.uint8) + rng.integers(0, 3, (H, W, 3), dtype=np.uint8)
    frame[:20, :10] = 0  # a dark gate corner at the left edge
    bad = np.zeros((H, W), bool)
    bad[:20, :10] = True
    view = np.eye(3)
    out = Resampler(W, OUT_W, H).render(frame, pano, view, bad)
    assert np.array_equal(out[:, OX : OX + W], frame)
    assert out[:20, :OX].min() > 80  # the dark corner is not mirrored outwards
    unflagged = Resampler(W, OUT_W, H).render(frame, pano, view, None)
    assert unflagged[:20, OX - 1].max() < 80  # without the flag it would be


def test_mirror_fade_reaches_only_fade_columns():
    pano = np.full((H, OUT_W, 3), 100, np.uint8)
    frame = np.full((H, W, 3), 200, np.uint8)  # same colour offset everywhere: removed by
    frame[:, 8:-8] = 100  # the colour match only where the band differs from the panorama
    r = Resampler(W, OUT_W, H, band=8, fade=3)
    out = r.render(frame, pano, np.eye(3)).astype(int)
    # the bright edge columns mirror into exactly 3 columns on each side, fading outwards
    left = out[H // 2, OX - 5 : OX, 0]
    right = out[H // 2, OX + W : OX + W + 5, 0]
    assert left[0] == left[1] and left[2] < left[3] < left[4]
    assert right[4] == right[3] and right[0] > right[1] > right[2]
    with pytest.raises(ValueError, match="fade"):
        Resampler(W, OUT_W, H, band=4, fade=5)


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


BIG_W, BIG_H = 640, 480  # the phase correlation needs the strip width of a real frame
BIG_OUT = widened_width(BIG_W, BIG_H, Fraction(16, 9))
BIG_OX = (BIG_OUT - BIG_W) // 2


def textured(seed: int) -> np.ndarray:
    """A panorama of blurred noise: a clear correlation peak everywhere."""
    noise = np.random.default_rng(seed).integers(0, 255, (BIG_H + 40, BIG_OUT + 40, 3))
    return cv2.GaussianBlur(noise.astype(np.uint8), (0, 0), 2.0)


def warp(pano: np.ndarray, view: np.ndarray) -> np.ndarray:
    """The widened output frame that ``view`` (output -> panorama pixels) shows."""
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(pano, view, (BIG_OUT, BIG_H), flags=flags)


def test_side_views_undo_a_registration_error_at_the_seams():
    """The view errs by (1.6, -0.8) px: each side's view is moved back onto the truth,
    and the rendered sides match the true background better than with the view alone."""
    pano, true = textured(3), shift(20.0, 20.0)  # output pixels -> panorama pixels
    wide = warp(pano, true)
    frame = np.ascontiguousarray(wide[:, BIG_OX : BIG_OX + BIG_W])
    wrong = true @ shift(1.6, -0.8)
    r = Resampler(BIG_W, BIG_OUT, BIG_H)
    views = r.side_views(frame, pano, wrong)
    for v in views:
        assert np.abs(v - true).max() < 0.25
    cols = np.r_[0 : BIG_OX - r.fade, BIG_OX + BIG_W + r.fade : BIG_OUT]
    err = [
        np.abs(r.render(frame, pano, wrong, sides=s)[:, cols].astype(int) - wide[:, cols]).mean()
        for s in (None, views)
    ]
    assert err[1] < 0.5 * err[0]


def test_side_views_stay_put_on_flat_edges_and_large_shifts():
    """Nothing to align on, or a shift too large to be registration error: no move."""
    r, view = Resampler(BIG_W, BIG_OUT, BIG_H), shift(20.0, 20.0)
    flat = np.full((BIG_H + 40, BIG_OUT + 40, 3), 120, np.uint8)
    frame = np.full((BIG_H, BIG_W, 3), 120, np.uint8)
    assert all(np.abs(v - view).max() < 0.05 for v in r.side_views(frame, flat, view))
    pano = textured(4)
    frame = np.ascontiguousarray(warp(pano, view @ shift(8.0, 0.0))[:, BIG_OX : BIG_OX + BIG_W])
    assert all(np.array_equal(v, view) for v in r.side_views(frame, pano, view))


def test_scene_where_nothing_registers_still_gets_sides_from_its_own_frames():
    """Independent noise frames: only the reference registers (the tracker flags the rest);
    the sides still take the scene's colours from what did register, not a flat grey."""
    rng = np.random.default_rng(3)
    frames = [
        np.clip(rng.normal((200, 60, 40), 40, (120, 160, 3)), 0, 255).astype(np.uint8)
        for _ in range(12)
    ]
    stage = PanoramaOutpaint(Fraction(16, 9))
    info = stage.configure(VideoInfo(160, 120, Fraction(1, 24)))
    out = list(stage.process(Window(frames, list(range(12)), 0)))
    assert len(out) == 12 and out[0].image.shape == (120, info.width, 3)
    side = out[6].image[:, :20].reshape(-1, 3).mean(0)
    assert side[0] > 150 and side[1] < 110  # the scene's red, not mid grey


def test_frames_of_no_segment_take_their_sides_from_their_own_pixels(monkeypatch):
    """A later window of a scene whose frames all fail registration (they belong to no
    background segment): their sides come from their own pixels, not from the panorama
    of the frames before (green) nor from a fill with nothing to fill from (grey)."""
    from stages import motion

    rng = np.random.default_rng(4)
    green = panning_clip(n=4, pan=2.0, with_sprite=False).frames
    green = [np.ascontiguousarray(f[..., [2, 0, 1]]) for f in green]  # textured, greenish
    red = [
        np.clip(rng.normal((200, 60, 40), 30, (H, W, 3)), 0, 255).astype(np.uint8) for _ in range(4)
    ]
    far = np.array([[1, 0, 5000.0], [0, 1, 0], [0, 0, 1]])
    real_track = motion.MotionTracker.track
    calls = []

    def lost(self, frames, masks=None, small=None):
        calls.append(1)
        if len(calls) > 4:  # the scene's second window: nothing registers
            return [motion.Motion(far.copy(), False, segment=-1) for _ in frames]
        return real_track(self, frames, masks, small)

    monkeypatch.setattr(motion.MotionTracker, "track", lost)
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    list(st.process(Window(green, [0, 1, 2, 3], 0, continues=False, last=False)))
    out = list(st.process(Window(red, [4, 5, 6, 7], 0, continues=True, last=True)))
    for f in out:
        side = f.image[:, :OX].reshape(-1, 3).mean(0)
        assert side[0] > 150 and side[1] < 110  # the frames' red, not green, not grey


def test_canvas_with_no_background_gives_the_frames_colour_not_grey(monkeypatch):
    """When no sample lands on the canvas (views spread beyond its bound), the sides take
    the frames' colour instead of a fill's flat mid grey."""
    from stages import panorama

    def add_nothing(self, frames, Hs, valid, times):
        return np.zeros_like(self.known)

    monkeypatch.setattr(panorama.ScenePanorama, "add", add_nothing)
    rng = np.random.default_rng(5)
    red = [
        np.clip(rng.normal((200, 60, 40), 30, (H, W, 3)), 0, 255).astype(np.uint8) for _ in range(6)
    ]
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    out = list(st.process(Window(red, list(range(6)), 0)))
    side = out[3].image[:, :OX].reshape(-1, 3).mean(0)
    assert side[0] > 150 and side[1] < 110


@pytest.mark.parametrize("budget_frames", [1000, 25])
def test_registering_ahead_from_peeks_gives_the_same_frames(budget_frames, monkeypatch):
    """Frames registered as they settle in the scene buffer (peek) and frames registered
    when their window arrives give bit-identical output, across cuts, scenes shorter and
    longer than the registration lag, and the windows of a scene longer than the budget."""
    from stages import registrar
    from stream.scenes import SceneBuffer, make_detector
    from tests.synthetic import cut_clip

    frames, cuts = cut_clip([70, 20, 80])
    seen, made = [], []
    see, init = registrar.Registrar.see, registrar.Registrar.__init__
    monkeypatch.setattr(registrar.Registrar, "see", lambda r, im: (seen.append(1), see(r, im)))
    monkeypatch.setattr(
        registrar.Registrar, "__init__", lambda r, *a, **k: (made.append(r), init(r, *a, **k))[1]
    )

    def widen(peek: bool) -> tuple[list[np.ndarray], PanoramaOutpaint]:
        st = PanoramaOutpaint(Fraction(16, 9))
        st.configure(VideoInfo(W, H, Fraction(1, 24)))
        buf = SceneBuffer(
            make_detector(),
            Fraction(24),
            budget_frames * frames[0].nbytes,
            on_settled=st.peek if peek else None,
        )
        out = []
        for i, f in enumerate(frames):
            for win in buf.push(f, i):
                out += [fr.image for fr in st.process(win)]
        for win in buf.flush():
            out += [fr.image for fr in st.process(win)]
        out += [fr.image for fr in st.finish()]
        assert buf.cuts_found == cuts
        return out, st

    ahead, st = widen(True)
    assert len(seen) == len(frames)  # each frame seen once, ahead: none again at its window
    assert made and all(r.pending == 0 for r in made)  # every frame seen ahead was taken
    plain, _ = widen(False)
    assert len(ahead) == len(plain) == len(frames)
    for a, b in zip(ahead, plain, strict=True):
        assert np.array_equal(a, b)


def test_tracking_error_on_the_worker_is_raised_by_process(monkeypatch):
    """Frames are tracked on a worker thread (fed by peek); an error there comes out of
    ``process`` on the calling thread, and ``close`` stops the worker."""
    import threading

    from stages.motion import MotionTracker

    clip = panning_clip(n=N, pan=2.0)
    calls = []
    track = MotionTracker.track

    def failing(self, frames, masks=None, small=None):
        calls.append(threading.current_thread())
        if len(calls) == 5:
            raise RuntimeError("tracking broke")
        return track(self, frames, masks, small)

    monkeypatch.setattr(MotionTracker, "track", failing)
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    for i, f in enumerate(clip.frames):
        st.peek(f, 0, i == 0)
    with pytest.raises(RuntimeError, match="tracking broke"):
        list(st.process(Window(clip.frames, list(range(N)), 0)))
    assert calls and all(t.name.startswith("remaster-register") for t in calls)
    st.close()
    assert not any(t.is_alive() for t in calls)


def test_lost_motion_is_one_summary_line_at_the_end(caplog):
    """Frames the tracker cannot follow (fresh noise each frame) are logged once, at the
    end; the per-re-key messages stay at debug level."""
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(30)]
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    with caplog.at_level("INFO"):
        list(st.process(Window(noise, list(range(30)), 0)))
        assert not [r for r in caplog.records if r.levelname == "WARNING" and "motion" in r.msg]
        list(st.finish())
    lines = [r.getMessage() for r in caplog.records if "camera motion not found" in r.msg]
    assert len(lines) == 1 and re.match(r"camera motion not found on 2\d of 30 frames", lines[0])
    assert caplog.records[-1].levelname == "WARNING"
    st.close()
    caplog.clear()
    clip = panning_clip(N, H, W)
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    with caplog.at_level("INFO"):
        list(st.process(Window(clip.frames, list(range(N)), 0)))
        list(st.finish())
    assert "camera motion not found" not in caplog.text
    st.close()


def test_continuation_places_the_next_parts_frames_on_this_parts_reference():
    """The frames after a new reference, up to the next one, re-expressed through the
    link in the reference before it; nothing when the next part is not linked."""
    from stages.motion import Motion
    from stages.outpaint import continuation

    def shift(dx):
        return np.array([[1.0, 0, dx], [0, 1, 0], [0, 0, 1]])

    link = np.linalg.inv(shift(30.0))  # old reference -> new (frame 3)
    ms = [Motion(shift(10.0 * i), True, segment=0) for i in range(3)]
    ms += [Motion(np.eye(3), True, segment=1, link=link)]
    ms += [Motion(shift(10.0), True, segment=1), Motion(shift(20.0), False, segment=1)]
    ms += [Motion(np.eye(3), True, segment=2, link=link)]
    got = continuation(ms, 3)
    assert len(got) == 3  # stops at the next new reference
    for k, m in enumerate(got):
        assert np.allclose(m.H, shift(30.0 + 10.0 * k)) and m.segment == 0 and m.link is None
    assert [m.ok for m in got] == [True, True, False]
    assert continuation(ms, 2) == [] and continuation(ms, len(ms)) == []


def test_a_part_before_a_new_reference_shows_what_the_next_part_sees(clip, monkeypatch):
    """A pan that goes on from a new reference every few frames: the leading side of the
    frames before each new reference shows the real background that only the frames
    after it saw (their samples are the earlier part's too), not a fill."""
    import stages.motion

    def far(H, size):  # a new reference every 24 px of pan
        return 10.0 if abs(H[0, 2]) > 24 * size[0] / W else 1.0

    monkeypatch.setattr(stages.motion, "distortion", far)
    out = run(clip.frames)
    rows = np.r_[0:34, 86:H]
    errs = [
        np.abs(
            out[i].image[rows, 2 : OX - 2].astype(int) - truth_view(clip, i)[rows, 2 : OX - 2]
        ).mean()
        for i in (9, 10, 11)  # pan left: the left side leads; a new reference at frame 13
    ]
    assert max(errs) < 5.0, errs
