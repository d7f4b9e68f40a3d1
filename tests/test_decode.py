"""Opening and decoding the input: orientation, first-frame checks, odd paths."""

from __future__ import annotations

import io
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stages.base import Frame
from stream.decode import Decoder, open_input
from stream.errors import InputError
from stream.sidedata import Orientation, orientation_from_matrix
from tests.clitools import probe, remaster

needs_ffmpeg = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg CLI not installed")

W, H = 64, 48  # as stored; rotated by 90 degrees it is displayed 48x64


def pattern(i: int) -> np.ndarray:
    """A picture that looks different under every rotation and mirror."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 4, yy * 5, np.full_like(xx, 40 + 10 * i)], axis=-1)
    img[4:16, 6:22] = (250, 250, 250)  # a block near the top-left corner
    return img.astype(np.uint8)


def plain_mp4(path: Path, n: int = 6) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv444p"
        s.options = {"qp": "0"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def with_rotation(tmp_path: Path, degrees: int) -> Path:
    """The plain clip with a display matrix, as a phone writes it (set by ffmpeg)."""
    plain = tmp_path / "plain.mp4"
    if not plain.exists():
        plain_mp4(plain)
    out = tmp_path / f"rot{degrees}.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy"]
        + ["-metadata:s:v:0", f"rotate={degrees}", str(out)],
        check=True,
    )
    return out


def ffmpeg_frames(path: Path, width: int, height: int) -> np.ndarray:
    """What ffmpeg shows (it applies the display matrix by default)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@needs_ffmpeg
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_display_matrix_is_applied_as_ffmpeg_does(tmp_path, degrees):
    path = with_rotation(tmp_path, degrees)
    source = open_input(str(path))
    try:
        turned = degrees != 180
        assert (source.info.width, source.info.height) == ((H, W) if turned else (W, H))
        frames = list(Decoder(source, lambda p: None).frames())
    finally:
        source.close()
    assert all(isinstance(f, Frame) for f in frames)
    want = ffmpeg_frames(path, source.info.width, source.info.height)
    got = np.stack([f.image for f in frames])
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want).mean() < 2  # the same pictures, not mirrored


def test_orientation_from_matrix_covers_rotations_and_mirrors():
    def matrix(a, b, c, d):
        return np.array([a, b, 0, c, d, 0, 0, 0, 1 << 30], np.int32) * np.int32(1)

    one = 1 << 16
    assert orientation_from_matrix(matrix(one, 0, 0, one)) == Orientation()
    assert orientation_from_matrix(matrix(0, -one, one, 0)).transpose == "cclock"
    assert orientation_from_matrix(matrix(0, one, -one, 0)).transpose == "clock"
    assert orientation_from_matrix(matrix(-one, 0, 0, -one)) == Orientation(hflip=True, vflip=True)
    assert orientation_from_matrix(matrix(-one, 0, 0, one)) == Orientation(hflip=True)
    assert orientation_from_matrix(matrix(one, 0, 0, -one)) == Orientation(vflip=True)
    img = np.arange(6).reshape(2, 3, 1)
    assert Orientation("cclock_flip").apply(img)[..., 0].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert Orientation("clock_flip").apply(img)[..., 0].tolist() == [[5, 2], [4, 1], [3, 0]]


@needs_ffmpeg
def test_rotated_phone_clip_is_widened_as_displayed_and_written_upright(tmp_path):
    path = with_rotation(tmp_path, 90)
    out = tmp_path / "out.mkv"
    result = remaster(str(path), str(out), "--fill", "blur", "--quiet", "--crop", "none")
    assert result.returncode == 0, result.stderr.decode()
    got = probe(out, keep_frames=True)
    assert (got.width, got.height) == (114, 64)  # 16:9 of the displayed 48x64, not 854x480
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == 0  # upright: no display matrix left
    # The middle of the output is the input as displayed.
    want = ffmpeg_frames(path, H, W)[0]
    middle = got.frames[0][:, 33 : 33 + H]
    assert np.abs(middle.astype(int) - want).mean() < 12


def test_video_that_never_decodes_is_an_input_error_and_leaves_no_output(tmp_path):
    """Every video packet is noise: no frame; the audio alone is not a video."""
    buf = io.BytesIO()
    rng = np.random.default_rng(3)
    with av.open(buf, "w", format="nut") as c:
        v = c.add_stream("mpeg4", rate=24)
        v.width, v.height, v.time_base = 64, 48, Fraction(1, 24)
        a = c.add_stream("pcm_s16le", rate=8000)
        for i in range(12):
            p = av.Packet(rng.integers(0, 256, 500, np.uint8).tobytes())
            p.stream, p.pts, p.dts, p.time_base = v, i, i, Fraction(1, 24)
            c.mux(p)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.int16), layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for p in a.encode(frame):
            c.mux(p)
    src = tmp_path / "noise.nut"
    src.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="no video frame"):
        open_input(str(src))
    out = tmp_path / "out.mkv"
    result = remaster(str(src), str(out), "--fill", "blur", "--crop", "none")
    assert result.returncode == 3, result.stderr.decode()
    assert b"no video frame" in result.stderr and b"Traceback" not in result.stderr
    assert not out.exists()


def test_input_name_longer_than_the_file_system_allows(tmp_path):
    name = str(tmp_path / ("a" * 300 + ".mkv"))
    with pytest.raises(InputError, match="cannot open input"):
        open_input(name)
