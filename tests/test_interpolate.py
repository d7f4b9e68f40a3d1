"""InterpolateStage and the classical DIS interpolator: quality, cuts, timestamps, determinism."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stages.base import Frame, StageChain, VideoInfo, Window
from stages.interpolate import BlendInterpolator, DisInterpolator, InterpolateStage
from stream.wiring import make_interpolator
from tests.synthetic import cut_clip, panning_clip

H, W = 120, 160


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


class Recorder(BlendInterpolator):
    """A blend that remembers the timesteps it was asked for."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []

    def __call__(self, first, second, times: Sequence[float]) -> list[np.ndarray]:
        self.calls.append(list(times))
        return super().__call__(first, second, times)


def run(stage: InterpolateStage, windows: list[Window], info: VideoInfo) -> list[Frame]:
    stage.configure(info)
    out = [f for w in windows for f in stage.process(w)]
    return out + list(stage.finish())


def windows_of(frames: list[np.ndarray], pts: list[int], splits: list[int], last=True):
    """One scene cut into windows at ``splits`` (frame indices)."""
    bounds = [0, *splits, len(frames)]
    return [
        Window(frames[a:b], pts[a:b], 0, continues=i > 0, last=last and b == len(frames))
        for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))
    ]


INFO24 = VideoInfo(W, H, Fraction(1, 24), Fraction(24))


@pytest.mark.parametrize("pan", [1.0, 4.0])
def test_dis_beats_blend_on_pan(pan: float) -> None:
    frames = panning_clip(48, H, W, pan=pan).frames
    a, gt, b = frames[20:23]
    out = DisInterpolator()(a, b, [0.5])[0]
    blend = BlendInterpolator()(a, b, [0.5])[0]
    assert psnr(out, gt) > psnr(blend, gt) + 3.0
    # Any t: a quarter of the way between frames 20 and 24 is frame 21.
    quarter = DisInterpolator()(frames[20], frames[24], [0.25])[0]
    blend_q = BlendInterpolator()(frames[20], frames[24], [0.25])[0]
    assert psnr(quarter, frames[21]) > psnr(blend_q, frames[21]) + 3.0


def test_dis_deterministic_and_static_exact() -> None:
    frames = panning_clip(12, H, W, pan=2.0).frames
    first = DisInterpolator()(frames[3], frames[5], [0.3, 0.5])
    second = DisInterpolator()(frames[3], frames[5], [0.3, 0.5])
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
    still = DisInterpolator()(frames[3], frames[3], [0.5])[0]
    assert np.abs(still.astype(int) - frames[3]).max() <= 1


@pytest.mark.parametrize("backend", ["dis", "blend"])
def test_nothing_invented_across_cut(backend: str) -> None:
    frames, cuts = cut_clip([5, 6], H, W)
    (cut,) = cuts
    windows = [
        Window(frames[:cut], list(range(cut)), 0, last=True),
        Window(frames[cut:], list(range(cut, len(frames))), 1, last=True),
    ]
    out = run(InterpolateStage(factor=3, interpolator=make_interpolator(backend)), windows, INFO24)
    assert [f.pts for f in out] == list(range(3 * len(frames)))
    for f in out[3 * (cut - 1) : 3 * cut]:  # last frame of scene 1 and its two in-betweens
        assert np.array_equal(f.image, frames[cut - 1])
    assert np.array_equal(out[3 * cut].image, frames[cut])
    # Inside a scene the in-betweens are new pictures.
    assert not np.array_equal(out[1].image, frames[0])
    # Same across a cut at a target rate.
    out = run(
        InterpolateStage(fps=Fraction(60), interpolator=make_interpolator(backend)), windows, INFO24
    )
    t_cut = Fraction(cut, 24)
    for f in out:
        if Fraction(cut - 1, 24) <= Fraction(f.pts, 60) < t_cut:
            assert np.array_equal(f.image, frames[cut - 1])


def test_factor_two_across_windows() -> None:
    frames = panning_clip(9, H, W, pan=2.0).frames
    pts = list(range(9))
    one = run(
        InterpolateStage(factor=2, interpolator=BlendInterpolator()),
        windows_of(frames, pts, []),
        INFO24,
    )
    split = run(
        InterpolateStage(factor=2, interpolator=BlendInterpolator()),
        windows_of(frames, pts, [4, 5]),
        INFO24,
    )
    assert [f.pts for f in split] == list(range(18))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(one, split, strict=True))
    for i, img in enumerate(frames):
        assert np.array_equal(split[2 * i].image, img)
    # The frame between windows (input 3 and 4) is interpolated, not a repeat.
    assert np.array_equal(split[7].image, BlendInterpolator()(frames[3], frames[4], [0.5])[0])
    assert not np.array_equal(split[7].image, frames[3])


def test_configure_time_base_and_rate() -> None:
    out = InterpolateStage(factor=2, interpolator=BlendInterpolator()).configure(INFO24)
    assert (out.time_base, out.frame_rate) == (Fraction(1, 48), Fraction(48))
    out = InterpolateStage(fps=Fraction(30000, 1001), interpolator=BlendInterpolator()).configure(
        INFO24
    )
    assert (out.time_base, out.frame_rate) == (Fraction(1001, 30000), Fraction(30000, 1001))


def test_factor_variable_frame_rate() -> None:
    frames = panning_clip(4, H, W).frames
    info = VideoInfo(W, H, Fraction(1, 1000), None)
    rec = Recorder()
    out = run(
        InterpolateStage(factor=2, interpolator=rec), windows_of(frames, [0, 2, 3, 7], []), info
    )
    assert [f.pts for f in out] == [0, 2, 4, 5, 6, 10, 14, 18]
    assert rec.calls == [[0.5]] * 3


def test_target_fps_across_windows() -> None:
    frames = panning_clip(12, H, W, pan=2.0).frames
    windows = windows_of(frames, list(range(12)), [5])
    out = run(InterpolateStage(fps=Fraction(60), interpolator=BlendInterpolator()), windows, INFO24)
    assert [f.pts for f in out] == list(range(30))
    for f in out:
        if (f.pts * 24) % 60 == 0:
            assert np.array_equal(f.image, frames[f.pts * 24 // 60])
    # Slot 12 is 0.8 of the way from input 4 to input 5, which sit in different windows.
    expect = BlendInterpolator()(frames[4], frames[5], [0.8])[0]
    assert np.array_equal(out[12].image, expect)


def test_target_fps_variable_frame_rate() -> None:
    frames = panning_clip(5, H, W).frames
    info = VideoInfo(W, H, Fraction(1, 1000), None)
    rec = Recorder()
    windows = windows_of(frames, [0, 40, 100, 120, 200], [2])
    out = run(InterpolateStage(fps=Fraction(25), interpolator=rec), windows, info)
    # Grid every 40 ms; the last frame (200 ms) is held for the last gap (80 ms): slots 5, 6.
    assert [f.pts for f in out] == [0, 1, 2, 3, 4, 5, 6]
    assert rec.calls == [[pytest.approx(2 / 3)], [0.5]]  # 80 ms and 160 ms
    assert np.array_equal(out[3].image, frames[3])  # 120 ms is an input frame
    assert np.array_equal(out[6].image, frames[4])


def test_held_frame_released_by_empty_window_and_finish() -> None:
    frames = panning_clip(3, H, W).frames
    stage = InterpolateStage(factor=2, interpolator=BlendInterpolator())
    stage.configure(INFO24)
    assert len(list(stage.process(Window(frames, [0, 1, 2], 0, last=False)))) == 4
    out = list(stage.process(Window([], [], 0, continues=True, last=True)))
    assert [f.pts for f in out] == [4, 5] and np.array_equal(out[1].image, frames[2])
    assert not list(stage.finish())
    # Without a closing window, finish() gives the held frame out.
    assert len(list(stage.process(Window(frames, [3, 4, 5], 1, last=False)))) == 4
    assert [f.pts for f in stage.finish()] == [10, 11]


def test_in_stage_chain_with_single_frame_scene() -> None:
    frames, cuts = cut_clip([1, 3], H, W)
    chain = StageChain([InterpolateStage(factor=2, interpolator=DisInterpolator())])
    assert chain.configure(INFO24).time_base == Fraction(1, 48)
    out = [
        f
        for w in (Window(frames[:1], [0], 0), Window(frames[1:], [1, 2, 3], 1))
        for f in chain.process(w)
    ]
    out += list(chain.finish())
    assert [f.pts for f in out] == list(range(8))
    assert np.array_equal(out[1].image, frames[0])  # one-frame scene: repeated


def test_stage_deterministic_with_dis() -> None:
    frames = panning_clip(6, H, W, pan=3.0).frames
    runs = [
        run(
            InterpolateStage(factor=2, interpolator=DisInterpolator()),
            windows_of(frames, list(range(6)), [3]),
            INFO24,
        )
        for _ in range(2)
    ]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(*runs, strict=True))


def test_bad_inputs() -> None:
    blend = BlendInterpolator()
    with pytest.raises(ValueError, match="exactly one"):
        InterpolateStage(blend)
    with pytest.raises(ValueError, match="0"):
        InterpolateStage(blend, factor=0)
    with pytest.raises(ValueError, match="-24"):
        InterpolateStage(blend, fps=Fraction(-24))
    with pytest.raises(ValueError, match="'x'"):
        InterpolateStage("x", factor=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'x'"):
        make_interpolator("x")
    stage = InterpolateStage(factor=2, interpolator=BlendInterpolator())
    with pytest.raises(RuntimeError, match="configure"):
        list(stage.process(Window([], [], 0)))
    stage.configure(INFO24)
    frame = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(ValueError, match="pts must increase"):
        list(stage.process(Window([frame, frame], [3, 3], 0)))
    with pytest.raises(ValueError, match=r"\(60, 80, 3\)"):
        list(stage.process(Window([frame[:60, :80]], [9], 0)))


def test_auto_backend_without_rife(monkeypatch: pytest.MonkeyPatch) -> None:
    import gpu.weights

    monkeypatch.setattr(gpu.weights, "rife_available", lambda: False)
    assert isinstance(make_interpolator("auto"), DisInterpolator)


def test_dis_stage_never_imports_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from fractions import Fraction\n"
        "from stages.base import VideoInfo, Window\n"
        "from stages.interpolate import DisInterpolator, InterpolateStage\n"
        "s = InterpolateStage(factor=2, interpolator=DisInterpolator())\n"
        "s.configure(VideoInfo(32, 24, Fraction(1, 24)))\n"
        "f = np.zeros((24, 32, 3), np.uint8)\n"
        "assert len(list(s.process(Window([f, f], [0, 1], 0)))) == 4\n"
        "sys.exit('torch' in sys.modules)\n"
    )
    root = Path(__file__).parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_overlong_scene_tail_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    frames = panning_clip(4, H, W).frames
    info = VideoInfo(W, H, Fraction(1, 1000), None)
    stage = InterpolateStage(factor=2, interpolator=BlendInterpolator())
    stage.configure(info)
    first = [f.pts for f in stage.process(Window(frames[:2], [0, 10], 0))]
    assert first == [0, 10, 20, 30]  # the tail is guessed from the last gap (10 ms)
    with caplog.at_level("WARNING"):
        second = [f.pts for f in stage.process(Window(frames[2:], [12, 20], 1))]
    assert second == [24, 32, 40, 48] and "overestimated" in caplog.text
