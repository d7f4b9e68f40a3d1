"""The output: encoder options checked before any work, audio resampled for its encoder,
HDR10 metadata and colour tags kept, pixel format, clean failures, outputs cut short."""

from __future__ import annotations

import io
import logging
import os
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from stages.base import VideoInfo
from stream.cli import main
from stream.decode import ColourTags, Decoder, open_input
from stream.encode import Sink
from stream.errors import UsageError
from stream.sidedata import hdr_of
from tests.clitools import REMASTER, ROOT, probe, remaster
from tests.synthetic import cut_clip, encode_clip


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    frames, _ = cut_clip([12], height=72, width=96)
    return frames


@pytest.fixture(scope="module")
def nut_input(clip, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("enc") / "in.nut"
    path.write_bytes(encode_clip(clip, fmt="nut", codec="ffv1", fps=24))
    return str(path)


@pytest.fixture
def run_main(capsys):
    """Run the command in this process (no start-up cost); logging is put back after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("av", "libav")}

    def call(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().err

    yield call
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def write_video(path: str, codec: str, pix_fmt: str, n: int = 8, **tags) -> None:
    """A small clip encoded by PyAV with the given pixel format and codec-context tags."""
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = 96, 72, pix_fmt
        options = tags.pop("options", {})
        for name, value in tags.items():
            setattr(s.codec_context, name, value)
        s.options = options
        for i in range(n):
            img = np.full((72, 96, 3), 20 * i, np.uint8)
            img[10:30, 10:40] = (200, 50, 90)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# -- options the encoder refuses: a usage error before any work ----------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--pix-fmt", "nosuch"], "--pix-fmt 'nosuch' is not a pixel format"),
        (["--pix-fmt", "rgb48le"], "libx264 cannot encode it"),
        (["--crf", "-5"], "--crf -5 is refused by libx264"),
        (["--preset", "nosuch"], "--preset nosuch is refused by libx264"),
        (["--size", "100x100000"], "libx264 cannot encode a 100x100000 picture"),
        (["--encoder-opt", "nosuch=1"], "--encoder-opt nosuch=1: libx264 has no such option"),
        (["--codec", "ffv1", "--crf", "20"], "--crf 20: ffv1 has no such option"),
        (["--codec", "nosuch"], "--codec 'nosuch': no such video encoder"),
    ],
)
def test_refused_encoder_options_are_usage_errors_naming_the_option(
    run_main, nut_input, tmp_path, args, message
):
    out = tmp_path / "out.mkv"
    code, err = run_main(nut_input, str(out), "--fill", "blur", *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_names_longer_than_the_file_system_allows(run_main, nut_input, tmp_path):
    long = str(tmp_path / ("a" * 300 + ".mkv"))
    code, err = run_main(nut_input, long, "--fill", "blur")
    assert code == 4 and "File name too long" in err and "Traceback" not in err
    code, err = run_main(long, str(tmp_path / "out.mkv"), "--fill", "blur")
    assert code == 3 and "cannot open input" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_full_device_on_stdout_is_an_output_error(nut_input):
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [*REMASTER, nut_input, "-", "--fill", "blur", "--quiet"],
            stdout=full,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == 4, result.stderr.decode()
    assert b"No space left on device" in result.stderr
    assert b"Traceback" not in result.stderr and b"Exception ignored" not in result.stderr


def test_video_is_not_written_to_a_terminal(nut_input):
    leader, follower = os.openpty()
    try:
        result = subprocess.run(
            [*REMASTER, nut_input, "-", "--fill", "blur"],
            stdout=follower,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2, result.stderr.decode()
    assert b"terminal" in result.stderr and b"> out.mkv" in result.stderr


# -- audio the output's encoder cannot take ------------------------------------------
def test_44k1_audio_into_webm_is_resampled_for_opus(tmp_path, clip):
    src = tmp_path / "in.nut"
    buf = io.BytesIO()
    with av.open(buf, "w", format="nut") as c:
        v = c.add_stream("ffv1", rate=24)
        v.width, v.height, v.pix_fmt = 96, 72, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=44100)
        a.layout = "stereo"
        for i, img in enumerate(clip):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        t = np.arange(int(44100 * len(clip) / 24)) / 44100
        tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None], format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 44100, 0
        for p in a.encode(frame):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    src.write_bytes(buf.getvalue())
    out = tmp_path / "out.webm"
    fast = ["--encoder-opt", "deadline=realtime", "--encoder-opt", "cpu-used=8"]
    result = remaster(str(src), str(out), "--fill", "blur", "--quiet", *fast)
    assert result.returncode == 0, result.stderr.decode()
    got = probe(out)
    assert len(got.video_pts) == len(clip)
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name in ("libopus", "opus")
        assert audio.codec_context.sample_rate == 48000
        samples = sum(f.samples for f in c.decode(audio=0))
    assert abs(samples / 48000 - len(clip) / 24) < 0.03


# -- what the output keeps --------------------------------------------------------------
MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


@pytest.fixture(scope="module")
def hdr_input(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("hdr") / "hdr10.mkv")
    params = f"log-level=error:master-display={MASTER}:max-cll=1000,400"
    write_video(
        path,
        "libx265",
        "yuv420p10le",
        colorspace=9,  # bt2020nc
        color_primaries=9,  # bt2020
        color_trc=16,  # smpte2084 (PQ)
        color_range=1,
        options={"x265-params": params},
    )
    return path


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_hdr10_mastering_display_and_light_level_are_kept(tmp_path, hdr_input, codec):
    with av.open(hdr_input) as c:
        want = hdr_of(next(c.decode(video=0)))
    assert want is not None and want.max_cll == 1000 and want.max_fall == 400
    out = tmp_path / "out.mkv"
    result = remaster(hdr_input, str(out), "--fill", "blur", "--quiet", "--codec", codec)
    assert result.returncode == 0, result.stderr.decode()
    assert b"x265 [info]" not in result.stderr  # x265's banner is kept off stderr
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert hdr_of(frame) == want
        assert int(frame.color_trc) == 16 and int(frame.color_primaries) == 9


def test_pixel_format_is_yuv420p_unless_asked(tmp_path):
    src = str(tmp_path / "422.mkv")
    write_video(src, "ffv1", "yuv422p")
    assert open_input(src).colour.pix_fmt == "yuv422p"
    for extra, want in (([], "yuv420p"), (["--pix-fmt", "yuv444p"], "yuv444p")):
        out = tmp_path / f"out{len(extra)}.mkv"
        result = remaster(src, str(out), "--fill", "blur", "--quiet", *extra)
        assert result.returncode == 0, result.stderr.decode()
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == want


def test_unknown_colour_range_stays_unknown(tmp_path):
    """Where the codec can say "unknown" (ffv1, mpeg4). H.264, HEVC and VP9 cannot when
    any colour tag is written: their bitstream then states a range, and it is tv, which is
    how remaster (like every player) reads and writes YUV of unknown range."""
    src = str(tmp_path / "unknown.mkv")
    write_video(src, "mpeg4", "yuv420p", colorspace=1, color_primaries=1, color_trc=1)
    assert open_input(src).colour.color_range == 0
    for codec in ("ffv1", "mpeg4"):
        out = tmp_path / f"{codec}.mkv"
        result = remaster(src, str(out), "--fill", "blur", "--quiet", "--codec", codec)
        assert result.returncode == 0, result.stderr.decode()
        with av.open(str(out)) as c:
            ctx = c.streams.video[0].codec_context
            assert (int(ctx.color_range), int(ctx.colorspace)) == (0, 1)


# -- the Sink itself ------------------------------------------------------------------
def test_sink_that_got_no_frame_leaves_no_file(tmp_path):
    info = VideoInfo(96, 72, Fraction(1, 24), Fraction(24))
    empty = tmp_path / "empty.mkv"
    sink = Sink(str(empty), info, ColourTags(), [])
    assert not empty.exists()  # created with the first packet
    sink.write(np.zeros((72, 96, 3), np.uint8), 0)
    sink.close(flush=False)  # the encoder held the frame: no video reached the file
    assert not empty.exists()
    old = tmp_path / "old.mkv"
    old.write_bytes(b"the user's file")
    Sink(str(old), info, ColourTags(), []).close()  # failed before writing anything
    assert old.read_bytes() == b"the user's file"
    kept = tmp_path / "kept.mkv"
    sink = Sink(str(kept), info, ColourTags(), [])
    sink.write(np.zeros((72, 96, 3), np.uint8), 0)
    sink.close(complete=False)  # an interrupted run keeps what it wrote
    assert len(probe(kept).video_pts) == 1


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_sink_refuses_a_terminal_before_writing():
    info = VideoInfo(96, 72, Fraction(1, 24), Fraction(24))
    terminal = _Terminal()
    with pytest.raises(UsageError, match="terminal"):
        Sink("-", info, ColourTags(), [], stdout=terminal)
    assert terminal.getvalue() == b""


@pytest.mark.parametrize("complete", [True, False])
def test_output_cut_short_ends_its_audio_with_its_video(tmp_path, clip, complete):
    data = encode_clip(clip * 4, fmt="nut", codec="ffv1", fps=24)  # 2 s, audio 2 s
    source = open_input("-", stdin=io.BytesIO(data))
    out = tmp_path / "cut.mkv"
    sink = Sink(str(out), source.info, source.colour, source.others)
    frames = Decoder(source, sink.queue_packet).frames()
    for _ in range(12):  # 0.5 s of video; the decoder read the audio further ahead
        frame = next(frames)
        sink.write(frame.image, frame.pts)
    for _ in range(12):
        next(frames)
    sink.close(complete=complete)
    source.close()
    got = probe(out)
    assert len(got.video_pts) == 12
    if complete:
        assert got.audio_seconds > 0.9
    else:
        assert 0.45 <= got.audio_seconds <= 0.5 + 0.025
