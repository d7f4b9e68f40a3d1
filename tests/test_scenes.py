"""Scene buffering: cuts at the right frames as frames arrive; windows of long scenes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stages.motion import same_shot
from stream.scenes import SceneBuffer, make_detector
from tests.shared_data import shared_data
from tests.synthetic import cut_clip, panning_clip


def run(frames, budget_bytes=1 << 30, detector="content", check=None):
    buf = SceneBuffer(make_detector(detector), Fraction(24), budget_bytes, same_shot=check)
    windows = []
    for i, img in enumerate(frames):
        windows += list(buf.push(img, i))
    windows += list(buf.flush())
    return buf, windows


def test_cuts_found_at_the_known_frames_of_a_synthetic_clip():
    frames, cuts = cut_clip([30, 45, 20, 33])
    buf, windows = run(frames)
    assert buf.cuts_found == cuts
    starts = [w.pts[0] for w in windows if not w.continues]
    assert starts == [0, *cuts]
    assert all(w.last for w in windows)
    assert [w.scene for w in windows] == [0, 1, 2, 3]


def test_windows_cover_every_frame_once_in_order():
    frames, cuts = cut_clip([50, 70])
    per_frame = frames[0].nbytes
    buf, windows = run(frames, budget_bytes=per_frame * 24)
    pts = [p for w in windows for p in w.pts]
    assert pts == list(range(len(frames)))
    assert max(len(w) for w in windows) <= 24
    # Scene 0 ends at the cut, whatever the window size, and scene 1 starts at it.
    ends = [w.pts[-1] + 1 for w in windows if w.last]
    assert ends == [cuts[0], len(frames)]
    for w in windows:
        assert w.continues == (w.pts[0] not in (0, cuts[0]))


def test_no_detector_means_one_scene():
    buf = SceneBuffer(None, None)
    frames, _ = cut_clip([10, 10])
    windows = [w for i, f in enumerate(frames) for w in buf.push(f, i)] + list(buf.flush())
    assert len(windows) == 1 and len(windows[0]) == 20


def test_bad_detector_name_and_budget():
    with pytest.raises(ValueError, match="nope"):
        make_detector("nope")
    with pytest.raises(ValueError, match="-1"):
        SceneBuffer(None, None, -1)


def decode(path: Path, limit: int | None = None, width: int = 320):
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if limit is not None and i >= limit:
                return
            h = round(frame.height * width / frame.width / 2) * 2
            yield frame.to_ndarray(format="rgb24", width=width, height=h)


@pytest.mark.parametrize(
    "name, cuts",
    [("bikes.mp4", [30, 76, 137, 187, 242]), ("testvideo.mp4", [30, 180, 394])],
)
def test_cuts_on_real_clips(name, cuts):
    buf, windows = run(decode(shared_data("cuts", name)), budget_bytes=64 << 20)
    found = np.array(buf.cuts_found)
    for cut in cuts:
        assert np.min(np.abs(found - cut)) <= 1, f"cut {cut} missed: {buf.cuts_found}"
    assert len(found) <= len(cuts) + 1  # fades may add at most one extra cut


@pytest.mark.parametrize("budget_frames", [1000, 24])
def test_frames_settle_once_in_order_with_their_scene_before_their_window(budget_frames):
    frames, cuts = cut_clip([50, 70, 30])
    settled: list[tuple[int, int, bool]] = []  # (frame id, scene, starts)
    ids = {id(f): i for i, f in enumerate(frames)}
    buf = SceneBuffer(
        make_detector(),
        Fraction(24),
        frames[0].nbytes * budget_frames,
        on_settled=lambda img, scene, starts: settled.append((ids[id(img)], scene, starts)),
    )
    windows = []
    for i, img in enumerate(frames):
        for w in buf.push(img, i):
            assert len(settled) >= w.pts[-1] + 1  # every frame of a window settled first
            windows.append(w)
    windows += list(buf.flush())
    assert [s[0] for s in settled] == list(range(len(frames)))
    scene_of = {p: w.scene for w in windows for p in w.pts}
    assert [s[1] for s in settled] == [scene_of[i] for i in range(len(frames))]
    assert [i for i, _, starts in settled if starts] == [0, *cuts]


def test_same_shot_tells_a_pan_from_a_cut():
    pan = panning_clip(n=12, height=240, width=320, pan=-12.0).frames  # a fast pan
    assert all(same_shot(a, b) for a, b in zip(pan[:-1], pan[1:], strict=True))
    frames, cuts = cut_clip([20, 20])
    assert not same_shot(frames[cuts[0] - 1], frames[cuts[0]])


def test_cuts_inside_one_shot_are_dropped_and_real_ones_kept():
    frames, cuts = cut_clip([30, 45, 20])
    buf, _ = run(frames, check=same_shot)
    assert buf.cuts_found == cuts and buf.cuts_dropped == []
    buf, windows = run(frames, check=lambda a, b: True)  # every cut "continues the shot"
    assert buf.cuts_found == [] and buf.cuts_dropped == cuts
    assert [w.scene for w in windows] == [0]


def test_a_fast_pan_over_animated_boards_stays_one_scene():
    with av.open(str(shared_data("gt", "skater.mp4"))) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    plain, _ = run(frames)
    assert plain.cuts_found  # the content detector fires inside the pan
    checked, _ = run(frames, check=same_shot)
    assert checked.cuts_found == [] and checked.cuts_dropped == plain.cuts_found


KNOWN_CUTS = [
    ("gt/cuts_avengers_airport_239.mp4", [20, 77, 138]),
    ("cuts/testvideo.mp4", [30, 180, 394]),
    ("cuts/bikes.mp4", [30, 76, 137, 187, 242]),
]


@pytest.mark.parametrize("path, cuts", KNOWN_CUTS)
def test_same_shot_merges_no_real_cut(path, cuts):
    """Dropping a detected cut when one camera motion explains both frames (same_shot)
    must never merge two real shots: on every clip with known cuts, each cut the detector
    finds is kept, and the frames on either side of a real cut are never the same shot."""
    clip = shared_data(path)
    around: dict[int, np.ndarray] = {}
    wanted = {c - 1 for c in cuts} | set(cuts)

    def frames():
        for i, f in enumerate(decode(clip)):
            if i in wanted:
                around[i] = f
            yield f

    plain, _ = run(frames(), budget_bytes=32 << 20)
    checked, _ = run(decode(clip), budget_bytes=32 << 20, check=same_shot)
    for cut in cuts:
        near = [c for c in plain.cuts_found if abs(c - cut) <= 1]
        assert near, f"the detector missed cut {cut}: {plain.cuts_found}"
        assert any(c in checked.cuts_found for c in near), f"cut {cut} merged"
        assert not any(abs(c - cut) <= 1 for c in checked.cuts_dropped)
        assert not same_shot(around[cut - 1], around[cut]), f"cut {cut} taken for one shot"
