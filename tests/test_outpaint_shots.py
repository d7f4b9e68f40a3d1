"""Kinds of shot that must never print the wrong background into the sides: a whip pan to
another background inside one detector scene, a fade from black, a frame whose
registration is garbage. Synthetic clips, one window each (no scene detector)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from stages.base import VideoInfo, Window, widened_width
from stages.fallback import FallbackRenderer
from stages.fill import FrameFill
from stages.outpaint import PanoramaOutpaint
from tests.synthetic import fade_clip, panning_clip, tinted, whip_clip, with_film_gate

W, H = 160, 120
OUT_W = widened_width(W, H, Fraction(16, 9))
OX = (OUT_W - W) // 2


def widen(frames: list[np.ndarray]) -> list[np.ndarray]:
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    out = [f.image for f in st.process(Window(frames, list(range(len(frames))), 0))]
    st.close()
    assert len(out) == len(frames)
    return out


def sides(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[:, :OX], image[:, OX + W :]], 1).reshape(-1, 3).astype(int)


def test_whip_pan_to_another_background_prints_none_of_the_first_into_the_second():
    frames, b0 = whip_clip()
    out = widen(frames)
    for i in range(b0, len(frames)):
        side = sides(out[i])
        red = side[:, 0] > side[:, 2] + 40  # the first shot's colour: red over blue
        assert not red.any(), f"frame {i}: {int(red.sum())} pixels of the first shot"
    # the first shot's own sides are its real background (the red one)
    assert (sides(out[b0 - 10])[:, 0] > sides(out[b0 - 10])[:, 2]).mean() > 0.95


def test_fade_from_black_leaves_no_black_in_the_sides():
    frames, _ = fade_clip()
    out = widen(frames)
    for i in range(16, len(frames)):  # faded in: the background never goes below 60
        grey = sides(out[i]).max(1)
        assert np.percentile(grey, 0.5) > 40, f"frame {i}: dark pixels in the sides"


def test_a_frame_with_garbage_registration_renders_no_panorama_pixels(monkeypatch):
    """One frame's registration is confidently wrong (ok, a good inlier share, the wrong
    place): its sides disagree with the frame at both seams, so they are the frame's own
    fill alone, not a single panorama pixel."""
    from stages import motion

    frames = panning_clip(n=30, pan=2.0, with_sprite=False, seed=6).frames
    bad = 20
    real = motion.MotionTracker.track
    seen = []

    def garbage(self, fs, masks=None, small=None):
        got = real(self, fs, masks, small)
        seen.append(1)
        if len(seen) == bad + 1:
            got[0].H = np.array([[0.7, 0.3, 90.0], [-0.3, 0.7, 60.0], [0, 0, 1.0]])
        return got

    monkeypatch.setattr(motion.MotionTracker, "track", garbage)
    out = widen(frames)
    own = FallbackRenderer(FrameFill(), W, OUT_W, H)
    assert np.array_equal(out[bad], own.render(frames[bad]))
    assert not np.array_equal(out[bad - 10], own.render(frames[bad - 10]))  # others: panorama


def test_registration_failing_on_most_frames_prints_no_other_frame_into_the_sides():
    """Every frame a different place (fast 3D animation, a shaky close-up at its worst):
    nothing registers, and each frame's sides hold its own colours only."""
    tints = [(1.1, 0.2, 0.1), (0.1, 1.1, 0.2), (0.2, 0.1, 1.1)]
    frames = [
        tinted(panning_clip(n=1, with_sprite=False, seed=10 + i).frames[0], tints[i % 3])
        for i in range(12)
    ]
    out = widen(frames)
    for i, f in enumerate(out):
        side = sides(f)
        own = int(np.argmax(tints[i % 3]))
        others = [c for c in range(3) if c != own]
        foreign = (side[:, others].max(1) > side[:, own] + 30).mean()
        assert foreign < 0.01, f"frame {i}: {foreign:.1%} of its sides from other frames"


def test_the_film_gate_inside_the_picture_is_covered_unless_kept():
    """An old film's gate (near-black corner notches, a dark top line) in every frame:
    the widened frame covers it with the picture around it, feathered, and leaves the
    rest of the original exact; ``keep_gate`` leaves the original untouched."""
    clip = panning_clip(n=24, pan=2.0, with_sprite=False, seed=7)
    frames = [with_film_gate(np.clip(60 + 0.7 * f, 0, 255).astype(np.uint8)) for f in clip.frames]
    st = PanoramaOutpaint(Fraction(16, 9))
    st.configure(VideoInfo(W, H, Fraction(1, 24)))
    out = [f.image[:, OX : OX + W] for f in st.process(Window(frames, list(range(24)), 0))]
    for f, o in zip(frames[8:], out[8:], strict=True):
        corners = [o[:4, :4], o[:4, -4:], o[-4:, :4], o[-4:, -4:]]
        assert min(float(c.mean()) for c in corners) > 50  # no near-black notch left
        assert float(o[0, 40:120].mean()) > 0.85 * float(o[6, 40:120].mean())  # no top line
        assert np.array_equal(o[15:-15, 15:-15], f[15:-15, 15:-15])  # the picture itself
    kept = PanoramaOutpaint(Fraction(16, 9), keep_gate=True)
    kept.configure(VideoInfo(W, H, Fraction(1, 24)))
    for f, o in zip(frames, kept.process(Window(frames, list(range(24)), 0)), strict=True):
        assert np.array_equal(o.image[:, OX : OX + W], f)
