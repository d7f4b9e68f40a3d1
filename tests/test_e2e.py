"""End to end through real pipes: ffmpeg and gst-launch-1.0 upstream and downstream."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.clitools import REMASTER, ROOT, probe, remaster
from tests.shared_data import shared_data
from tests.synthetic import cut_clip, encode_clip

needs_ffmpeg = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg CLI not installed")
needs_gst = pytest.mark.skipif(not shutil.which("gst-launch-1.0"), reason="gst-launch-1.0 missing")


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    frames, _ = cut_clip([20, 28], height=120, width=160)
    return frames


@pytest.fixture(scope="module")
def nut_input(clip) -> bytes:
    return encode_clip(clip, fmt="nut", codec="ffv1", fps=24)


def sh(cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=timeout, cwd=ROOT
    )


@needs_ffmpeg
def test_ffmpeg_pipe_in_and_out_keeps_frames_pts_and_audio(tmp_path, nut_input):
    src = tmp_path / "in.nut"
    src.write_bytes(nut_input)
    out = tmp_path / "out.mkv"
    cmd = (
        f"ffmpeg -v error -i {src} -c copy -f nut - | {' '.join(REMASTER)} - - -f nut "
        f"--fill blur --quiet | ffmpeg -v error -y -f nut -i - -c copy {out}"
    )
    result = sh(cmd)
    assert result.returncode == 0, result.stderr.decode()
    got, want = probe(out), probe(nut_input)
    assert (got.width, got.height) == (214, 120)  # 16:9 of 120 rows, even
    assert len(got.video_pts) == len(want.video_pts) == 48
    seconds = lambda p: np.array([float(x * p.time_base) for x in p.video_pts])  # noqa: E731
    assert np.abs(seconds(got) - seconds(want)).max() <= 0.0005  # matroska stores ms
    assert got.audio_packets > 0
    assert abs(got.audio_seconds - want.audio_seconds) < 0.05


@needs_gst
def test_gstreamer_fdsrc_fdsink_pipe(tmp_path):
    out = tmp_path / "gst.mkv"
    up = (
        "gst-launch-1.0 -q videotestsrc num-buffers=40 pattern=smpte ! "
        "video/x-raw,format=I420,width=320,height=240,framerate=25/1 ! y4menc ! fdsink fd=1"
    )
    down = (
        "gst-launch-1.0 -q fdsrc fd=0 ! matroskademux ! h264parse ! matroskamux ! "
        f"filesink location={out}"
    )
    result = sh(
        f"{up} | {' '.join(REMASTER)} - - --input-format yuv4mpegpipe -f matroska "
        f"--fill blur --quiet | {down}"
    )
    assert result.returncode == 0, result.stderr.decode()
    got = probe(out)
    assert (got.width, got.height) == (426, 240)
    assert len(got.video_pts) == 40


@pytest.mark.parametrize(
    "fmt, codec",
    [
        ("nut", None),
        ("matroska", None),
        ("mpegts", None),
        ("mp4", None),
        ("yuv4mpegpipe", None),
        ("nut", "ffv1"),
    ],
)
def test_output_formats_on_stdout(nut_input, fmt, codec):
    args = ["-", "-", "-f", fmt, "--fill", "blur", "--quiet"] + (
        ["--codec", codec] if codec else []
    )
    result = remaster(*args, stdin=nut_input)
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout)
    assert (got.width, got.height) == (214, 120)
    assert len(got.video_pts) == 48
    if fmt != "yuv4mpegpipe":
        tb = got.time_base
        assert [round(float(p * tb) * 24) for p in got.video_pts] == list(range(48))
        assert got.audio_packets > 0  # pcm does not fit mp4 or mpegts: re-encoded


def test_streamable_mp4_on_stdin_works_and_index_at_end_fails_fast(tmp_path, clip):
    fragmented = io.BytesIO()
    with av.open(
        fragmented, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}
    ) as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for i, img in enumerate(clip):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    ok = remaster("-", "-", "--fill", "blur", "--quiet", stdin=fragmented.getvalue())
    assert ok.returncode == 0, ok.stderr.decode()
    assert len(probe(ok.stdout).video_pts) == len(clip)

    index_at_end = encode_clip(clip, fmt="mp4", codec="libx264")
    start = time.monotonic()
    bad = remaster("-", "-", "--fill", "blur", stdin=index_at_end + b"\0" * (4 << 20))
    assert bad.returncode == 3
    assert b"-f nut" in bad.stderr and b"Traceback" not in bad.stderr
    assert bad.stdout == b""
    assert time.monotonic() - start < 30


def test_variable_frame_rate_pts_are_kept(clip):
    pts = [0, 1, 2, 4, 5, 9, 10, 11, 15, 16, 20, 21]
    data = encode_clip(
        clip[: len(pts)],
        fmt="matroska",
        codec="ffv1",
        pts=pts,
        time_base=Fraction(1, 24),
        audio=False,
    )
    result = remaster("-", "-", "-f", "matroska", "--fill", "blur", "--quiet", stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout)
    assert [round(float(p * got.time_base) * 24) for p in got.video_pts] == pts


def test_colour_tags_carry_over(tmp_path):
    src = tmp_path / "bt709.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        ctx = s.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 1, 1, 1, 2
        for i in range(12):
            f = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 20 * i, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "out.mkv"
    result = remaster(str(src), str(out), "--fill", "blur", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    with av.open(str(out)) as c:
        ctx = c.streams.video[0].codec_context
        assert (int(ctx.colorspace), int(ctx.color_primaries), int(ctx.color_trc)) == (1, 1, 1)
        assert int(ctx.color_range) == 2


def test_help_explains_options_and_exit_codes():
    result = remaster("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for word in ("--aspect", "--fill", "--crop", "exit codes", "| remaster - -", "141"):
        assert word in text


@pytest.mark.parametrize(
    "args, stdin, code, message",
    [
        (["/no/such/file.mkv", "out.mkv"], None, 3, b"not found"),
        (["-", "-"], b"this is not a video at all" * 100, 3, b"cannot read"),
        (["-", "-", "--input-format", "nosuchformat"], b"x" * 100, 3, b"nosuchformat"),
        (["-", "-", "--aspect", "wide"], b"", 2, b"16:9"),
        (["-", "-", "--crop", "1:2"], b"", 2, b"W:H:X:Y"),
        (["-", "-"], b"", 3, b"nothing was piped"),
    ],
)
def test_bad_input_gives_a_clear_message_and_exit_code(args, stdin, code, message):
    result = remaster(*args, stdin=stdin)
    assert result.returncode == code, result.stderr.decode()
    assert message in result.stderr
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""


def test_audio_only_input_says_no_video_stream(tmp_path):
    buf = io.BytesIO()
    with av.open(buf, "w", format="nut") as c:
        a = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 8000, 0
        for p in a.encode(frame):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    result = remaster("-", "-", stdin=buf.getvalue())
    assert result.returncode == 3
    assert b"no video stream" in result.stderr


def test_output_may_not_overwrite_the_input(tmp_path, nut_input):
    src = tmp_path / "in.nut"
    src.write_bytes(nut_input)
    result = remaster(str(src), str(src), "--fill", "blur")
    assert result.returncode == 2 and b"overwrite" in result.stderr
    assert src.read_bytes() == nut_input


def test_unknown_output_format_and_missing_folder(nut_input, tmp_path):
    result = remaster("-", str(tmp_path / "x.mkv"), "-f", "nosuchformat", stdin=nut_input)
    assert result.returncode == 4 and b"-f" in result.stderr
    result = remaster("-", str(tmp_path / "no" / "dir" / "x.mkv"), stdin=nut_input)
    assert result.returncode == 4 and b"does not exist" in result.stderr


def test_odd_frame_size_is_padded_to_even(tmp_path):
    frames = [np.full((101, 135, 3), 10 * i, np.uint8) for i in range(10)]
    data = encode_clip(frames, fmt="nut", codec="ffv1", audio=False)
    result = remaster("-", "-", "--fill", "blur", "--quiet", "--crop", "none", stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout)
    assert got.width % 2 == 0 and got.height == 102
    assert len(got.video_pts) == 10


def test_downstream_closing_the_pipe_stops_quietly(nut_input):
    proc = subprocess.Popen(
        [*REMASTER, "-", "-", "--fill", "blur", "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )

    def feed():
        try:
            proc.stdin.write(nut_input)
            proc.stdin.close()
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed)
    writer.start()
    proc.stdout.read(1000)
    proc.stdout.close()  # the reader goes away
    writer.join(60)
    err = proc.stderr.read()
    code = proc.wait(60)
    assert code == 141, err.decode()
    assert b"Traceback" not in err


def test_ctrl_c_closes_the_output_file_so_it_plays(tmp_path):
    frames, _ = cut_clip([20] * 12, height=120, width=160)
    data = encode_clip(frames, fmt="nut", codec="ffv1")
    out = tmp_path / "partial.mkv"
    proc = subprocess.Popen(
        [*REMASTER, "-", str(out), "--fill", "blur", "--quiet"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Feed the input slowly, like a live upstream, and press Ctrl-C half way.
    step = len(data) // 40
    for i in range(0, len(data) // 2, step):
        proc.stdin.write(data[i : i + step])
        proc.stdin.flush()
        time.sleep(0.05)
    time.sleep(3)  # let the first scenes through the chain
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.stdin.close()  # upstream ends too, as it does when the terminal sends Ctrl-C
    err = proc.stderr.read()
    assert proc.wait(60) == 130, err.decode()
    assert b"Traceback" not in err and b"interrupted" in err
    got = probe(out)  # decodable to the end: the file was closed properly
    assert 20 <= len(got.video_pts) < len(frames)


# -- real damaged clips ---------------------------------------------------------------
@pytest.fixture
def bad_dir() -> Path:
    return shared_data("badinput")


def test_corrupt_packets_are_skipped_with_a_warning(bad_dir):
    result = remaster(
        str(bad_dir / "megamind_corrupt_frames.avi"),
        "-",
        "-f",
        "nut",
        "--fill",
        "blur",
        "--crop",
        "none",
        "--preset",
        "ultrafast",
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    got = probe(result.stdout)
    assert len(got.video_pts) > 200
    assert got.video_pts == sorted(got.video_pts)


def test_broken_audio_is_copied_or_skipped_but_video_is_complete(bad_dir):
    src = bad_dir / "failing_audio.mp4"
    result = remaster(
        str(src), "-", "-f", "matroska", "--fill", "blur", "--quiet", "--preset", "ultrafast"
    )
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout)
    want = probe(src)
    assert len(got.video_pts) == len(want.video_pts)
    assert (got.width, got.height) == (640, 360)


def test_garbage_packets_are_skipped_with_a_warning(clip):
    """Packets whose payload is noise: the decoder fails on them; the rest goes through."""
    clean = encode_clip(clip, fmt="nut", codec="mpeg4", audio=False)
    damaged = io.BytesIO()
    rng = np.random.default_rng(0)
    with av.open(io.BytesIO(clean)) as src, av.open(damaged, "w", format="nut") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(src.demux(video=0)):
            if packet.size == 0:
                continue
            if i in (10, 11, 30):
                noise = av.Packet(rng.integers(0, 256, packet.size, np.uint8).tobytes())
                noise.pts, noise.dts, noise.time_base = packet.pts, packet.dts, packet.time_base
                packet = noise
            packet.stream = out
            dst.mux(packet)
    result = remaster("-", "-", "--fill", "blur", "--crop", "none", stdin=damaged.getvalue())
    assert result.returncode == 0, result.stderr.decode()
    assert b"corrupt" in result.stderr and b"Traceback" not in result.stderr
    got = probe(result.stdout)
    assert len(clip) - 3 <= len(got.video_pts) <= len(clip)
    assert got.video_pts == sorted(got.video_pts)


def test_truncated_stream_finishes_and_closes_output(nut_input):
    cut = nut_input[: len(nut_input) * 2 // 3]
    result = remaster("-", "-", "-f", "matroska", "--fill", "blur", "--quiet", stdin=cut)
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout)
    assert 10 < len(got.video_pts) < 48


def test_restoration_chain_in_one_pipe(nut_input):
    """outpaint -> upscale x2 -> interpolate x2: size, twice the frames, timestamps, audio."""
    result = remaster(
        "-",
        "-",
        "-f",
        "nut",
        "--quiet",
        "--process-order",
        "outpaint,upscale,interpolate",
        "--upscale",
        "2",
        "--upscale-model",
        "lanczos",
        "--interpolate",
        "2",
        "--interp-model",
        "dis",
        stdin=nut_input,
    )
    assert result.returncode == 0, result.stderr.decode()
    got, want = probe(result.stdout), probe(nut_input)
    assert (got.width, got.height) == (428, 240)
    assert len(got.video_pts) == 2 * len(want.video_pts)
    seconds = np.array([float(p * got.time_base) for p in got.video_pts])
    assert np.allclose(np.diff(seconds), 1 / 48, atol=1e-4)  # 24 fps -> 48 fps, evenly spaced
    assert seconds[0] == 0.0
    assert abs(got.audio_seconds - want.audio_seconds) < 0.05
