"""Confidence of the panorama per frame: evidence, and smoothing without popping."""

from __future__ import annotations

import numpy as np

from stages.confidence import (
    INTERPOLATED,
    RAMP,
    SHARE_HIGH,
    SHARE_LOW,
    Confidence,
    registration,
    smooth,
    smooth_stream,
)
from stages.motion import Motion


def test_smooth_stays_under_the_values_with_bounded_steps():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, 200)
    values[50:60] = 0.0
    out = smooth(values)
    assert (out <= values + 1e-12).all()
    assert np.abs(np.diff(out)).max() <= 1 / RAMP + 1e-12
    assert out[55] == 0.0 and out[50 - RAMP // 2] <= 0.5 + 1e-12  # ramps down ahead
    one = smooth(np.ones(RAMP + 2), before=0.0)  # carried from a frame with nothing
    assert np.allclose(one[:RAMP], np.arange(1, RAMP + 1) / RAMP) and one[-1] == 1.0


def test_smooth_stream_gives_the_same_numbers_as_smooth():
    """Streamed, each value comes RAMP-odd frames later and is exactly the batch one,
    for runs of zeros, ones, exact steps and carried-in values."""
    rng = np.random.default_rng(1)
    for t in range(400):
        values = rng.uniform(0, 1, int(rng.integers(0, 5 * RAMP)))
        values[rng.uniform(size=len(values)) < 0.2 * (t % 3)] = float(t % 2)
        if t % 5 == 0:
            values = np.round(values * RAMP) / RAMP
        before = None if t % 4 == 0 else float(rng.uniform())
        got = np.array(list(smooth_stream(values, before)))
        assert np.array_equal(got, smooth(values, before)), t


def test_registration_evidence():
    eye = np.eye(3)
    motions = [
        Motion(eye, True, 100, 0, share=0.9),
        Motion(eye, True, 20, 0, share=(SHARE_LOW + SHARE_HIGH) / 2),
        Motion(eye, False, 0, 0, share=0.0),  # placed by interpolation
        Motion(eye, False, 0, -1, share=0.0),  # no segment
        Motion(eye, True, 20, 1, share=SHARE_LOW / 2),
    ]
    assert np.allclose(registration(motions), [1.0, 0.5, INTERPOLATED, 0.0, 0.0])


def test_agreement_takes_the_better_seam_and_carries_across_parts():
    c = Confidence()
    # a character over one seam does not count; both seams disagreeing does
    got = np.array(list(c.agreement([(1.0, 0.0)] * (RAMP + 2) + [(0.1, 0.2)])))
    assert np.allclose(got[:2], 1.0) and got[-1] == 0.0
    assert np.isclose(got[-2], 1 / RAMP)  # ramps down ahead of the bad frame
    nxt = np.array(list(c.agreement([(1.0, 1.0)] * 3)))  # the next part starts from there
    assert np.allclose(nxt, np.arange(1, 4) / RAMP)
    c.reset()
    assert np.allclose(list(c.agreement([(1.0, 1.0)])), 1.0)
