"""The outpainting benchmark: baselines, lossless pipes, scoring, end to end on tiny clips."""

from __future__ import annotations

import importlib.util
import json
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import outpaint_eval as ev
from benchmarks.metrics import PSNR_CAP, side_columns
from tests.synthetic import encode_clip, panning_clip

# Stands in for `python -m stream.cli`: mirrors the picture into the sides, FFV1/NUT pipes.
STAND_IN = """
import argparse, io, sys
import av, cv2
p = argparse.ArgumentParser()
p.add_argument("inp")
p.add_argument("out")
p.add_argument("--size")
for opt in ("--fill", "--input-format", "-f", "--codec", "--pix-fmt", "--crop"):
    p.add_argument(opt)
p.add_argument("--quiet", action="store_true")
a = p.parse_args()
W, H = map(int, a.size.split("x"))
buf = io.BytesIO()
src = av.open(io.BytesIO(sys.stdin.buffer.read()), format="nut")
with av.open(buf, "w", format="nut") as dst:
    s = dst.add_stream("ffv1", rate=24)
    s.width, s.height, s.pix_fmt = W, H, "bgr0"
    for i, vf in enumerate(src.decode(video=0)):
        img = vf.to_ndarray(format="rgb24")
        left = (W - img.shape[1]) // 2
        img = cv2.copyMakeBorder(img, 0, 0, left, W - img.shape[1] - left, cv2.BORDER_REFLECT)
        out = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
        out.pts = i
        for pk in s.encode(out):
            dst.mux(pk)
    for pk in s.encode():
        dst.mux(pk)
sys.stdout.buffer.write(buf.getvalue())
"""


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("cli") / "stand_in.py"
    path.write_text(STAND_IN)
    return [sys.executable, str(path)]


def wide_clip(n: int = 8, h: int = 72, w: int = 128, pan: float = 3.0) -> list[np.ndarray]:
    return panning_clip(n, h, w, pan=pan, seed=5).frames


def cli_importable() -> bool:
    try:
        return importlib.util.find_spec("stream.cli") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("width", [128, 129, 131])
def test_baselines_keep_the_centre(width: int) -> None:
    frame = wide_clip(1, 72, 96)[0]
    left, right = side_columns(width, 96)
    for fill in (ev.blur_pillarbox, ev.telea):
        out = fill(frame, width)
        assert out.shape == (72, width, 3) and out.dtype == np.uint8
        assert np.array_equal(out[:, left:right], frame)
        assert out[:, :left].std() > 0  # the side is filled, not left black


def test_blur_pillarbox_is_blurred_picture() -> None:
    frame = wide_clip(1, 72, 96)[0]
    out = ev.blur_pillarbox(frame, 128)
    # The left side continues the picture's own left edge colours, smoothly.
    assert np.abs(np.diff(out[:, :16].astype(float), axis=1)).mean() < 3
    assert np.abs(out[:, 15].astype(float).mean(0) - frame[:, :8].mean((0, 1))).max() < 40


def test_ffv1_nut_round_trip_is_lossless() -> None:
    frames = wide_clip(4, 31 * 2, 45 * 2)
    data = ev.encode_nut(frames, Fraction(24))
    back = ev.decode_nut(data)
    assert len(back) == 4
    assert all(np.array_equal(a, b) for a, b in zip(frames, back, strict=True))


def test_scale_frames_even_and_never_up() -> None:
    frames = [np.zeros((512, 960, 3), np.uint8)]
    assert ev.scale_frames(frames, 854)[0].shape == (456, 854, 3)
    small = [np.zeros((90, 160, 3), np.uint8)]
    assert ev.scale_frames(small, 854)[0] is small[0]


def test_cli_command_matches_the_pipe_contract() -> None:
    cmd = ev.cli_command(["remaster"], 854, 480, "blur")
    assert cmd[:3] == ["remaster", "-", "-"]
    assert cmd[cmd.index("--size") + 1] == "854x480"
    assert cmd[cmd.index("--fill") + 1] == "blur"
    assert cmd[cmd.index("--crop") + 1] == "none"
    assert "--quiet" in cmd


def test_evaluate_clip_with_stand_in(stand_in: list[str]) -> None:
    truth = wide_clip()
    info, sheet = ev.evaluate_clip(truth, Fraction(24), ["mirror"], stand_in)
    assert info["size"] == [128, 72] and info["input_size"] == [96, 72]
    assert info["side_columns"] == [16, 16]
    m = info["methods"]
    assert set(m) == {"cli:mirror", "blur_pillarbox", "telea"}
    for r in m.values():
        assert "error" not in r, r
        assert r["centre_max_abs_diff"] == 0
        assert 0 < r["psnr"] < PSNR_CAP and -1 <= r["ssim"] < 1 and r["tde"] > 0
        assert r["fps"] > 0
    assert sheet.shape[1] == 3 * ev.SHEET_TILE_WIDTH + 2 * 4
    assert sheet.shape[0] > 4 * 3 * 72 * ev.SHEET_TILE_WIDTH // 128 // 3  # four rows


def test_cli_failure_is_recorded_not_fatal() -> None:
    fail = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    info, _ = ev.evaluate_clip(wide_clip(3), Fraction(24), ["panorama"], fail)
    assert "boom" in info["methods"]["cli:panorama"]["error"]
    assert "psnr" in info["methods"]["telea"]


def test_targets_pass_and_fail() -> None:
    def clip(p: float, s: float, t: float) -> dict:
        return {
            "methods": {
                "cli:x": {"psnr": p, "ssim": s, "tde": t},
                "telea": {"psnr": 20.0, "ssim": 0.5, "tde": 9.0},
                "blur_pillarbox": {"psnr": 18.0, "ssim": 0.6, "tde": 10.0},
            }
        }

    good = ev.targets({"a": clip(25, 0.7, 5), "b": clip(23, 0.65, 6)}, "cli:x")
    assert good["overall"]["all_pass"]
    assert good["per_clip"]["a"]["psnr_margin_vs_telea"] == 5
    bad = ev.targets({"a": clip(25, 0.7, 5), "b": clip(21.5, 0.55, 10)}, "cli:x")
    o = bad["overall"]
    assert o["mean_psnr_pass"] and not o["psnr_margin_every_clip_pass"]
    assert not o["ssim_every_clip_pass"] and not o["mean_tde_ratio_pass"]
    assert not o["all_pass"]
    missing = ev.targets({"a": {"methods": {"telea": {}}}}, "cli:x")
    assert not missing["overall"]["all_pass"]


def test_main_writes_json_sheet_and_table(
    tmp_path: Path, stand_in: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "gt").mkdir(parents=True)
    frames = wide_clip(6, 90, 160)
    (data / "gt" / "skater.mp4").write_bytes(encode_clip(frames, "mp4", codec="libx264"))
    out = tmp_path / "res" / "eval.json"
    cli = " ".join(stand_in)
    argv = ["--data", str(data), "--clips", "skater", "--fills", "m", "--cli", cli]
    assert ev.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    clip = report["clips"]["skater"]
    assert clip["frames"] == 6 and clip["size"] == [160, 90]
    assert report["targets"]["product"] == "cli:m"
    assert cv2.imread(str(tmp_path / "res" / "eval_skater.png")) is not None
    table = capsys.readouterr().out
    assert "| skater | 160x90 | 6 | telea |" in table and "all targets" in table
    assert ev.main(["--data", str(tmp_path / "none"), "--out", str(out)]) == 2


needs_cli = pytest.mark.skipif(not cli_importable(), reason="stream.cli is not importable yet")


@pytest.fixture(scope="module")
def real_cli_run() -> dict:
    """The eval on a tiny synthetic pan through the real `python -m stream.cli`."""
    truth = wide_clip(n=24, h=72, w=128, pan=3.0)
    info, _ = ev.evaluate_clip(truth, Fraction(24), ["panorama"], list(ev.DEFAULT_CLI), 600)
    return info


@pytest.mark.slow
@needs_cli
def test_real_cli_end_to_end(real_cli_run: dict) -> None:
    """The product runs through the pipes, and real background beats Telea on a pan."""
    ours = real_cli_run["methods"]["cli:panorama"]
    assert "error" not in ours, ours
    assert ours["psnr"] > real_cli_run["methods"]["telea"]["psnr"]
    assert ours["ssim"] > real_cli_run["methods"]["telea"]["ssim"]


@pytest.mark.slow
@needs_cli
def test_real_cli_keeps_the_centre(real_cli_run: dict) -> None:
    """The original picture passes through the lossless FFV1 path bit-exactly."""
    ours = real_cli_run["methods"]["cli:panorama"]
    assert "error" not in ours, ours
    assert ours["centre_max_abs_diff"] == 0, ours
