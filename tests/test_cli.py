"""Command-line parsing, stage wiring, the progress display, and a few whole runs."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from fractions import Fraction

import pytest
from rich.console import Console

from stages.base import VideoInfo, parse_aspect, widened_width
from stream.chain import ChainStats
from stream.cli import build_parser
from stream.errors import UsageError
from stream.options import Options
from stream.progress import ProgressBar
from stream.wiring import build_chain
from tests.clitools import DATA, ROOT, probe, remaster

FIXTURES = ROOT / "tests" / "fixtures"


def parse(*argv: str):
    return build_parser().parse_args(["in.mkv", "out.mkv", *argv])


def options(*argv: str) -> Options:
    return Options.from_args(parse(*argv))


@pytest.mark.parametrize(
    "text, ratio",
    [
        ("16:9", Fraction(16, 9)),
        ("2.39:1", Fraction(239, 100)),
        ("854:480", Fraction(854, 480)),
        ("1.5", Fraction(3, 2)),
    ],
)
def test_aspect_forms(text, ratio):
    assert parse("--aspect", text).aspect == ratio
    assert parse_aspect(text) == ratio


@pytest.mark.parametrize("bad", ["wide", "16:0", "-4:3", "0"])
def test_bad_aspect_is_a_usage_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(f"--aspect={bad}")
    assert exit_info.value.code == 2
    assert bad in capsys.readouterr().err


def test_width_keeps_height_and_rounds_to_even():
    assert widened_width(640, 480, Fraction(16, 9)) == 854
    assert widened_width(480, 360, Fraction(16, 9)) == 640
    assert widened_width(640, 480, Fraction(239, 100)) == 1148
    assert widened_width(854, 480, Fraction(4, 3)) == 854  # never narrower than the input
    assert widened_width(135, 101, Fraction(16, 9)) % 2 == 0


def test_size_crop_order_and_encoder_options():
    args = parse(
        "--size",
        "854x480",
        "--crop",
        "496:360:72:0",
        "--process-order",
        "upscale,outpaint",
        "--encoder-opt",
        "tune=animation",
        "--crf",
        "18",
    )
    assert args.size == (854, 480) and args.crop == "496:360:72:0"
    assert args.process_order == ("upscale", "outpaint")
    assert args.encoder_opt == [("tune", "animation")] and args.crf == 18
    for bad in (
        ["--size", "854"],
        ["--encoder-opt", "novalue"],
        ["--aspect", "16:9", "--size", "854x480"],
        ["--interpolate", "2", "--fps", "60"],
    ):
        with pytest.raises(SystemExit):
            parse(*bad)
    for bad, named in (
        (["--crop", "1:2:3"], "'1:2:3'"),
        (["--process-order", "outpaint,oops"], "outpaint,oops"),
        (["--process-order", "outpaint,outpaint"], "outpaint,outpaint"),
        (["--size", "0x480"], "0x480"),
    ):
        with pytest.raises(UsageError, match=named):
            options(*bad)


def test_build_stages_in_order_with_crop_and_final_resize():
    from stages.blur import BlurPillarbox
    from stages.crop import CropBox, CropStage
    from stages.upscale import Resize, UpscaleStage

    info = VideoInfo(640, 480, Fraction(1, 25), Fraction(25))
    opts = options(
        "--fill",
        "blur",
        "--upscale",
        "2",
        "--upscale-model",
        "lanczos",
        "--process-order",
        "upscale,outpaint",
        "--size",
        "1000x500",
    )
    chain = build_chain(opts, info, CropBox(600, 480, 20, 0))
    kinds = [type(s) for s in chain.stages]
    assert kinds == [CropStage, UpscaleStage, BlurPillarbox, Resize]
    out = chain.infos[-1]
    assert (out.width, out.height) == (1000, 500)
    assert [(i.width, i.height) for i in chain.infos] == [
        (640, 480),
        (600, 480),
        (1200, 960),
        (1920, 960),  # the --size aspect, 2:1
        (1000, 500),
    ]
    assert not chain.buffers_scenes  # all frame-by-frame: no scene is held in memory


def test_vignette_is_on_by_default_and_can_be_turned_off():
    info = VideoInfo(640, 480, Fraction(1, 25), Fraction(25))
    on = build_chain(options(), info).stages[0]
    off = build_chain(options("--no-vignette"), info).stages[0]
    assert on.vignette is not None and off.vignette is None


def test_progress_bar_draws_frames_and_scenes_on_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with ProgressBar(100, console=console) as bar:
        bar.update(ChainStats(frames_in=40, frames_out=38, scenes=3), force=True)
    text = buf.getvalue()
    assert "40/100" in text and "scene 3" in text


def test_progress_bar_is_off_when_stderr_is_not_a_terminal():
    bar = ProgressBar(100)  # pytest captures stderr: not a terminal
    with bar:
        bar.update(ChainStats(frames_in=1), force=True)
    assert not bar.enabled


def test_remaster_command_is_installed():
    exe = shutil.which("remaster")
    if exe is None:
        pytest.skip("package not installed (pip install -e .)")
    result = subprocess.run([exe, "--help"], capture_output=True, timeout=60)
    assert result.returncode == 0 and b"--aspect" in result.stdout


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg CLI not installed")
def test_subtitles_and_metadata_are_copied(tmp_path):
    srt = tmp_path / "subs.srt"
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n"
    )
    src = tmp_path / "in.mkv"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=12:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=2",
            "-i",
            str(srt),
            "-map",
            "0",
            "-map",
            "1",
            "-map",
            "2",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            "-c:s",
            "srt",
            "-metadata",
            "title=Old Show",
            str(src),
        ],
        check=True,
    )
    result = remaster(str(src), "-", "-f", "matroska", "--fill", "blur", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    got = probe(result.stdout)
    assert got.streams == ["video", "audio", "subtitle"]
    import av

    with av.open(io.BytesIO(result.stdout)) as c:
        assert c.metadata.get("title") == "Old Show"
        texts = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert texts == [b"Hello", b"World"]


@pytest.mark.skipif(not (DATA / "pillarboxed").is_dir(), reason="shared/data not present")
def test_already_boxed_input_is_cropped_and_refilled():
    result = remaster(
        str(DATA / "pillarboxed" / "chaplin.mp4"),
        "-",
        "-f",
        "nut",
        "--fill",
        "blur",
        "-v",
        "--preset",
        "ultrafast",
    )
    assert result.returncode == 0, result.stderr.decode()
    # the picture (496:360:72:0) less its soft dark edge columns
    assert b"494:360:74:0" in result.stderr
    got = probe(result.stdout, keep_frames=True)
    assert (got.width, got.height) == (640, 360)
    # The old black bars are now filled: the outer columns are no longer black.
    edge = got.frames[len(got.frames) // 2][:, :60].mean()
    assert edge > 12


def test_importing_the_cli_imports_nothing_heavy():
    """Start-up imports happen inside main(), where Ctrl-C is handled."""
    code = (
        "import sys\n"
        "import stream.cli\n"
        "heavy = {'av', 'numpy', 'cv2', 'scenedetect', 'rich', 'torch'} & set(sys.modules)\n"
        "sys.exit(', '.join(sorted(heavy)) or None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_ctrl_c_during_start_up_is_one_line_and_exit_130():
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def hook(name, *a, **k):\n"
        "    if name == 'stream.decode':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = hook\n"
        "from stream.cli import main\n"
        "sys.exit(main(['in.mkv', 'out.mkv']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 130
    assert result.stderr.decode().splitlines() == ["remaster: ERROR: interrupted"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--memory", "0"], "--memory must be a positive number of MB, got 0"),
        (["--memory", "-5"], "--memory must be a positive number of MB, got -5"),
        (["--crop", "0:0:0:0"], "--crop W:H:X:Y needs a width and height above 0"),
        (["--size", "427x241"], "--size must be even in both directions (e.g. 426x240 or 428x242)"),
        (["--upscale", "2", "--process-order", "outpaint"], "add upscale to it"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(argv, message, tmp_path):
    out = tmp_path / "out.mkv"
    result = remaster(str(FIXTURES / "rabbit_4x3.mp4"), str(out), *argv)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
