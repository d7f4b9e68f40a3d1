"""Sample-frame choice and motion neighbours, from motions alone."""

from __future__ import annotations

import numpy as np
import pytest

from stages.motion import Motion
from stages.samples import MOTION_GAP, choose_samples, motion_neighbours

W, H = 160, 120


def pan(step: float, n: int = 200) -> list[Motion]:
    """Frame i sits ``step * i`` pixels right of the reference."""
    return [Motion(np.array([[1, 0, step * i], [0, 1, 0], [0, 0, 1.0]]), True) for i in range(n)]


def test_fast_pans_get_extra_samples_static_shots_do_not():
    static = choose_samples(pan(0.0), W, H, 8)
    assert len(static) == 8 and static[0] == 0 and static[-1] == 199
    fast = choose_samples(pan(2.0), W, H, 8)  # 400 px over the window: 25 samples' worth
    assert set(static) < set(fast) and len(fast) == 16  # capped at twice max_samples
    slow = choose_samples(pan(0.2), W, H, 8)  # 40 px: the even samples are close enough
    assert slow == static
    with pytest.raises(ValueError, match="max_samples"):
        choose_samples(pan(0.0), W, H, 0)


def test_short_window_samples_every_frame():
    assert choose_samples(pan(1.0, n=5), W, H, 16) == [0, 1, 2, 3, 4]


def test_neighbours_are_registered_frames_a_gap_away_with_pixel_matrices():
    motions = pan(3.0, n=20)
    motions[0 + MOTION_GAP].ok = False  # the frame after sample 0 failed registration
    to_ref = [m.H for m in motions]
    got = motion_neighbours([0, 5, 19], [m.ok for m in motions], to_ref)
    assert got[0] is None
    j, m = got[1]
    assert j == 5 + MOTION_GAP
    assert np.allclose(m @ [10.0, 10.0, 1.0], [10.0 - 3.0 * MOTION_GAP, 10.0, 1.0])
    assert got[2][0] == 19 - MOTION_GAP  # near the end: the frame before
