"""The repair stage in the chain: its options, its place first, and a whole CLI run."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stages.base import VideoInfo
from stages.repair import RepairSettings, RepairStage
from stream.cli import build_parser
from stream.errors import UsageError
from stream.options import Options
from stream.wiring import build_chain
from tests.clitools import probe, remaster
from tests.synthetic import cut_clip, encode_clip

INFO = VideoInfo(160, 120, Fraction(1, 24), Fraction(24))


def options(*argv: str) -> Options:
    return Options.from_args(build_parser().parse_args(["in.mkv", "out.mkv", *argv]))


def names(chain) -> list[str]:
    return [type(s).__name__ for s in chain.stages]


def test_repair_runs_first_when_asked_for():
    assert names(build_chain(options("--fill", "blur"), INFO)) == ["BlurPillarbox"]
    chain = build_chain(options("--fill", "blur", "--repair"), INFO)
    assert names(chain) == ["RepairStage", "BlurPillarbox"]
    assert chain.stages[0].settings == RepairSettings()
    order = ("--process-order", "outpaint,repair")
    assert names(build_chain(options("--fill", "blur", "--repair", *order), INFO)) == [
        "BlurPillarbox",
        "RepairStage",
    ]


def test_repair_options_reach_the_settings():
    o = options("--repair", "--repair-skip", "dust,grain", "--grain-strength", "0.5")
    o = Options(**{**o.__dict__, "dust_threshold": 5.0, "flicker_radius": 4})
    s = o.repair_settings()
    assert (s.dust, s.scratches, s.flicker, s.grain) == (False, True, True, False)
    assert (s.grain_strength, s.dust_threshold, s.flicker_radius) == (0.5, 5.0, 4)
    stage = build_chain(Options(repair=True, fill="blur", repair_skip=("flicker",)), INFO).stages[0]
    assert isinstance(stage, RepairStage) and not stage.settings.flicker


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grain-strength", "2"], "add --repair"),
        (["--repair-skip", "dust"], "add --repair"),
        (["--repair", "--repair-skip", "dust,mold"], "dust,mold"),
        (["--repair", "--repair-skip", "dust,dust"], "once each"),
        (["--repair", "--grain-strength", "-1"], "--grain-strength"),
        (["--repair", "--flicker-radius", "0"], "--flicker-radius"),
        (["--repair", "--process-order", "outpaint"], "add repair to it"),
    ],
)
def test_bad_repair_options_name_themselves(argv, message):
    with pytest.raises(UsageError, match=message):
        options(*argv)


def test_cli_repairs_and_widens_every_frame_across_cuts():
    clean, _ = cut_clip([9, 7], height=120, width=160)
    rng = np.random.default_rng(0)
    frames = [np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in clean]
    frames[4] = frames[4].copy()
    frames[4][100:106, 20:26] = 0  # a dust speck in one frame, on the background
    data = encode_clip(frames, fmt="nut", codec="ffv1", audio=False)
    base = [
        "-",
        "-",
        "--input-format",
        "nut",
        "-f",
        "nut",
        "--codec",
        "ffv1",
        "--pix-fmt",
        "yuv444p",
    ]
    base += ["--crop", "none"]
    run = remaster(*base, "--repair", "--fill", "blur", "-q", stdin=data)
    assert run.returncode == 0, run.stderr.decode()[-800:]
    plain = remaster(*base, "--fill", "blur", "-q", stdin=data)
    assert plain.returncode == 0
    out, unrepaired = probe(run.stdout, keep_frames=True), probe(plain.stdout, keep_frames=True)
    assert (out.width, out.height) == (214, 120)
    assert len(out.video_pts) == 16 and out.video_pts == unrepaired.video_pts
    left = (214 - 160) // 2
    centre = [f[:, left : left + 160] for f in out.frames]
    assert centre[4][100:106, 20:26].mean() > 40  # the speck went
    noisy = [f[:, left : left + 160] for f in unrepaired.frames]
    assert psnr(centre, clean) > psnr(noisy, clean) + 2  # the grain was averaged out


def psnr(a, b) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)])
    return float(10 * np.log10(255**2 / mse))
