"""The outpainting benchmark: baselines, lossless pipes, seen masks, split scores, reuse,
targets and the README tables, end to end on tiny clips with a stand-in CLI."""

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
from benchmarks import outpaint_targets as tg
from benchmarks import seen_masks as sm
from benchmarks import tables
from benchmarks.metrics import (
    PSNR_CAP,
    side_columns,
    side_psnr,
    side_ssim,
    side_tde,
    split_side_scores,
)
from benchmarks.outpaint_clips import (
    SHEET_TILE_WIDTH,
    blur_pillarbox,
    cli_command,
    decode_nut,
    encode_nut,
    find_clips,
    scale_frames,
    telea,
)
from tests.synthetic import cut_clip, encode_clip, panning_clip

# Stands in for `python -m stream.cli`: mirrors the picture into the sides, FFV1/NUT pipes.
STAND_IN = """
import argparse, io, sys
import av, cv2
p = argparse.ArgumentParser()
p.add_argument("inp")
p.add_argument("out")
p.add_argument("--size")
for opt in ("--fill", "--input-format", "-f", "--codec", "--crop"):
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
    for fill in (blur_pillarbox, telea):
        out = fill(frame, width)
        assert out.shape == (72, width, 3) and out.dtype == np.uint8
        assert np.array_equal(out[:, left:right], frame)
        assert out[:, :left].std() > 0  # the side is filled, not left black


def test_blur_pillarbox_is_blurred_picture() -> None:
    frame = wide_clip(1, 72, 96)[0]
    out = blur_pillarbox(frame, 128)
    # The left side continues the picture's own left edge colours, smoothly.
    assert np.abs(np.diff(out[:, :16].astype(float), axis=1)).mean() < 3
    assert np.abs(out[:, 15].astype(float).mean(0) - frame[:, :8].mean((0, 1))).max() < 40


def test_ffv1_nut_round_trip_is_lossless() -> None:
    frames = wide_clip(4, 31 * 2, 45 * 2)
    back = decode_nut(encode_nut(frames, Fraction(24)))
    assert len(back) == 4
    assert all(np.array_equal(a, b) for a, b in zip(frames, back, strict=True))


def test_scale_frames_even_and_never_up() -> None:
    frames = [np.zeros((512, 960, 3), np.uint8)]
    assert scale_frames(frames, 854)[0].shape == (456, 854, 3)
    small = [np.zeros((90, 160, 3), np.uint8)]
    assert scale_frames(small, 854)[0] is small[0]


def test_cli_command_matches_the_pipe_contract() -> None:
    cmd = cli_command(["remaster"], 854, 480, "blur")
    assert cmd[:3] == ["remaster", "-", "-"]
    assert cmd[cmd.index("--size") + 1] == "854x480"
    assert cmd[cmd.index("--fill") + 1] == "blur"
    assert cmd[cmd.index("--crop") + 1] == "none"
    assert "--quiet" in cmd


def test_find_clips_lists_videos_and_frame_folders(tmp_path: Path) -> None:
    (tmp_path / "tennis_frames").mkdir()
    cv2.imwrite(str(tmp_path / "tennis_frames" / "00000.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "empty").mkdir()
    for name in ("bear.mp4", "live_static_woman_dog_courtyard.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    clips = find_clips(tmp_path)
    assert list(clips) == ["bear", "courtyard", "tennis"]  # aliases, sorted
    assert clips["tennis"].name == "tennis_frames"
    assert find_clips(tmp_path / "absent") == {}


# --- seen masks -------------------------------------------------------------------


def expected_seen(offsets: list[float], w: int, left: int, right: int, margin: int) -> list:
    """Per frame, for each side column, whether some other frame's shrunk centre covers it
    (a pure horizontal pan: background x = offset + column)."""
    out = []
    for t, ot in enumerate(offsets):
        xs = ot + np.arange(w)
        hit = np.zeros(w, bool)
        for s, os_ in enumerate(offsets):
            if s != t:
                hit |= (xs >= os_ + left + margin) & (xs <= os_ + right - 1 - margin)
        hit[left:right] = False
        out.append(hit)
    return out


def test_seen_masks_of_a_pan_are_where_the_camera_went() -> None:
    clip = panning_clip(24, 120, 214, pan=3.0, seed=3)
    h, w = 120, 214
    left, right = side_columns(w, 160)
    masks, starts = sm.seen_masks(clip.frames, left, right, margin=4)
    assert starts == [0]
    want = expected_seen([o[0] for o in clip.offsets], w, left, right, 4)
    agree = np.mean(
        [(m[h // 4 : 3 * h // 4] == e).mean() for m, e in zip(masks, want, strict=True)]
    )
    assert agree > 0.97  # columns within a pixel or two of the analytic edge may differ
    # the camera pans right: the first frame's right side was seen later, its left never
    # (rows in the margin from the top and bottom stay unseen unless registration drifts)
    assert masks[0][4:-4, right + 4 :].all() and not masks[0][:, :left].any()
    assert masks[-1][4:-4, : left - 4].all() and not masks[-1][:, right:].any()
    assert not any(m[:, left:right].any() for m in masks)  # the centre is never a side pixel


def test_a_static_shot_has_no_seen_side_pixels() -> None:
    frames = panning_clip(20, 120, 214, pan=0.0, seed=4).frames  # a sprite moves, no camera
    left, right = side_columns(214, 160)
    masks, starts = sm.seen_masks(frames, left, right)
    assert starts == [0]
    assert not any(m.any() for m in masks)


def test_nothing_is_seen_across_a_cut() -> None:
    frames, cuts = cut_clip([18, 18], 120, 214, seed=2)
    left, right = side_columns(214, 160)
    masks, starts = sm.seen_masks(frames, left, right)
    assert starts == [0, *cuts]
    # the last frame of the first shot: pans right, so its right side is seen only by
    # later frames of its own shot, which do not exist
    assert not masks[cuts[0] - 1][:, right:].any()
    assert masks[0][:, right + 4 :].any()


def test_seen_masks_check_their_input_and_cache(tmp_path: Path) -> None:
    frames = panning_clip(6, 60, 107, pan=2.0, seed=1).frames
    with pytest.raises(ValueError, match="bad centre"):
        sm.seen_masks(frames, 50, 40)
    with pytest.raises(ValueError, match="margin"):
        sm.seen_masks(frames, 10, 16, margin=4)
    first, starts = sm.cached_seen_masks(frames, 13, 93, tmp_path)
    fresh, _ = sm.seen_masks(frames, 13, 93)  # deterministic: the same masks again
    assert all(np.array_equal(a, b) for a, b in zip(first, fresh, strict=True))
    assert len(list(tmp_path.glob("seen_*.npz"))) == 1
    again, starts2 = sm.cached_seen_masks(frames, 13, 93, tmp_path)
    assert starts2 == starts
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


# --- split scores -------------------------------------------------------------------


def test_split_scores_all_matches_the_plain_scores() -> None:
    truth = wide_clip(5)
    out = [cv2.GaussianBlur(f, (5, 5), 2) for f in truth]
    rng = np.random.default_rng(0)
    seen = [rng.random(f.shape[:2]) < 0.4 for f in truth]
    s = split_side_scores(out, truth, 16, 112, seen)
    assert s["all"]["psnr"] == pytest.approx(side_psnr(out, truth, 16, 112))
    assert s["all"]["ssim"] == pytest.approx(side_ssim(out, truth, 16, 112))
    assert s["all"]["tde"] == pytest.approx(side_tde(out, truth, 16, 112))
    assert s["all"]["pixels"] == 5 * 72 * 32
    assert s["seen"]["pixels"] + s["never_seen"]["pixels"] == s["all"]["pixels"]


def test_split_scores_tell_seen_from_never_seen() -> None:
    truth = wide_clip(4, 72, 200)  # sides [0, 40) and [160, 200)
    seen = [np.zeros(f.shape[:2], bool) for f in truth]
    for m in seen:
        m[:, :15] = True  # the outer part of the left side is "seen" (SSIM window: 5 px)
    out = []
    for f in truth:
        o = f.copy()
        o[:, 20:40] = o[:, 20:40].mean(axis=(0, 1))  # never-seen left part: flat colour
        o[:, 160:] = o[:, 160:].mean(axis=(0, 1))  # never-seen right side: flat
        out.append(o)
    s = split_side_scores(out, truth, 40, 160, seen)
    assert s["seen"]["psnr"] == PSNR_CAP and s["seen"]["ssim"] == pytest.approx(1.0)
    assert s["seen"]["detail_ratio"] == pytest.approx(1.0)
    assert s["never_seen"]["psnr"] < 30 and s["never_seen"]["detail_ratio"] < 0.3
    nothing = split_side_scores(out, truth, 40, 160, [np.zeros_like(m) for m in seen])
    assert nothing["seen"]["psnr"] is None and nothing["never_seen"] == nothing["all"]
    with pytest.raises(ValueError, match="masks"):
        split_side_scores(out, truth, 40, 160, seen[:2])


# --- eval, reuse, targets, tables ---------------------------------------------------


def test_evaluate_clip_with_stand_in(stand_in: list[str], tmp_path: Path) -> None:
    truth = wide_clip(12)
    info, sheet = ev.evaluate_clip(truth, Fraction(24), ["mirror"], stand_in, cache=tmp_path)
    assert info["size"] == [128, 72] and info["input_size"] == [96, 72]
    assert info["side_columns"] == [16, 16] and info["segment_starts"] == [0]
    assert 0 < info["seen_share"] < 1 and info["mask_version"] == sm.MASK_VERSION
    m = info["methods"]
    assert set(m) == {"cli:mirror", "blur_pillarbox", "telea"}
    for r in m.values():
        assert "error" not in r, r
        assert r["centre_max_abs_diff"] == 0
        assert 0 < r["psnr"] < PSNR_CAP and -1 <= r["ssim"] < 1 and r["tde"] > 0
        assert r["seen"]["psnr"] is not None and r["never_seen"]["detail_ratio"] is not None
        assert r["fps"] > 0
    assert sheet.shape[1] == 3 * SHEET_TILE_WIDTH + 2 * 4
    th = round(72 * SHEET_TILE_WIDTH / 128)
    assert sheet.shape[0] == 5 * th + 4 * 4  # truth, tinted truth, three methods


def test_cli_failure_is_recorded_not_fatal() -> None:
    fail = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    info, _ = ev.evaluate_clip(wide_clip(3), Fraction(24), ["panorama"], fail)
    assert "boom" in info["methods"]["cli:panorama"]["error"]
    assert "psnr" in info["methods"]["telea"]


def test_reusable_needs_the_same_clip_and_masks() -> None:
    telea_r = {"psnr": 17.0, "never_seen": {"psnr": 16.0}}
    prev = {
        "frames": 10,
        "size": [128, 72],
        "mask_version": sm.MASK_VERSION,
        "methods": {"telea": telea_r, "cli:blur": {"error": "boom"}},
    }
    assert ev.reusable(prev, 10, (128, 72)) == {"telea": {**telea_r, "reused": True}}
    assert ev.reusable(prev, 11, (128, 72)) == {}
    assert ev.reusable(prev, 10, (130, 72)) == {}
    assert ev.reusable({**prev, "mask_version": -1}, 10, (128, 72)) == {}
    assert ev.reusable(None, 10, (128, 72)) == {}


def test_evaluate_clip_takes_reused_baselines(stand_in: list[str]) -> None:
    reused = {
        "telea": {"psnr": 1.5, "ssim": 0.1, "tde": 9.0, "never_seen": {}, "reused": True},
        "cli:blur": {"psnr": 2.5, "never_seen": {}, "reused": True},
    }
    info, sheet = ev.evaluate_clip(wide_clip(6), Fraction(24), ["m"], stand_in, reuse=reused)
    m = info["methods"]
    assert m["telea"] == reused["telea"] and m["cli:blur"] == reused["cli:blur"]
    assert not m["blur_pillarbox"].get("reused") and not m["cli:m"].get("reused")
    assert "speed_vs_telea" not in m["cli:m"]  # no Telea timing in this process
    th = round(72 * SHEET_TILE_WIDTH / 128)
    assert sheet.shape[0] == 5 * th + 4 * 4  # Telea's row recomputed for the sheet


def clip_result(p: float, s: float, t: float, ns: float, pan: str = "x") -> dict:
    def r(psnr: float, ssim: float, tde: float, never: float) -> dict:
        return {"psnr": psnr, "ssim": ssim, "tde": tde, "never_seen": {"psnr": never}}

    ours = r(p, s, t, ns) | {"centre_max_abs_diff": 0}
    return {
        "seen_share": 0.5,
        "methods": {
            "cli:panorama": ours,
            "telea": r(20.0, 0.5, 9.0, 17.0),
            "cli:blur": r(18.0, 0.6, 10.0, 15.0),
        },
    }


def test_targets_pass_and_fail() -> None:
    good = tg.targets(
        {
            "tennis": clip_result(25, 0.7, 5, 18),
            "skater": clip_result(23, 0.65, 6, 17.5),
            "bear": clip_result(24, 0.7, 6, 18),
        }
    )
    assert good["overall"]["all_pass"], good
    assert good["per_clip"]["tennis"]["psnr_margin_vs_best_baseline"] == 5
    assert good["overall"]["pans_mean_psnr"] == 24
    bad = tg.targets(
        {
            "tennis": clip_result(25, 0.7, 5, 18),
            "courtyard": clip_result(20.5, 0.55, 10, 16.5),
        }
    )
    o, c = bad["overall"], bad["per_clip"]["courtyard"]
    assert not c["psnr_margin_pass"] and not c["ssim_ahead_pass"] and not c["never_seen_pass"]
    assert c["never_seen_margin_vs_telea"] == -0.5
    assert not o["mean_margin_pass"] and not o["mean_tde_ratio_pass"]
    assert not o["pans_mean_pass"] and o["pans"] == ["tennis"]  # 25 >= 22 but only one pan
    assert not o["all_pass"]
    missing = tg.targets({"tennis": {"methods": {"telea": {}}}})
    assert not missing["overall"]["all_pass"]
    assert missing["per_clip"]["tennis"]["psnr_margin_vs_best_baseline"] is None


def test_clip_means_split_over_clips_with_such_pixels() -> None:
    a, b = clip_result(25, 0.7, 5, 18), clip_result(23, 0.6, 7, 16)
    a["methods"]["telea"]["seen"] = {"psnr": 30.0}
    means = tg.clip_means({"a": a, "b": b})
    assert means["cli:panorama"]["psnr"] == 24 and means["cli:panorama"]["clips"] == 2
    assert means["cli:panorama"]["never_seen"]["psnr"] == 17
    assert means["telea"]["seen"] == {
        "psnr": 30.0, "ssim": None, "tde": None, "detail_ratio": None, "clips": 1,
    }  # fmt: skip


def test_main_runs_reuses_and_feeds_the_readme(
    tmp_path: Path, stand_in: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "gt").mkdir(parents=True)
    frames = wide_clip(8, 90, 160)
    (data / "gt" / "skater.mp4").write_bytes(encode_clip(frames, "mp4", codec="libx264"))
    out = tmp_path / "res" / "eval.json"
    cli = " ".join(stand_in)
    base = ["--data", str(data), "--cli", cli, "--out", str(out), "--cache", str(tmp_path / "c")]
    assert ev.main([*base, "--fills", "m,blur"]) == 0
    report = json.loads(out.read_text())
    clip = report["clips"]["skater"]
    assert clip["frames"] == 8 and clip["size"] == [160, 90]
    assert clip["source"] == "gt/skater.mp4"
    assert report["targets"]["product"] == "cli:m"
    assert report["means"]["telea"]["clips"] == 1
    assert cv2.imread(str(tmp_path / "res" / "eval_skater.png")) is not None
    table = capsys.readouterr().out
    assert "| skater | " in table and "all targets" in table
    first_telea = clip["methods"]["telea"]

    # a product-only re-run: Telea and cli:blur come from the first run
    assert ev.main([*base, "--fills", "m", "--reuse-baselines"]) == 0
    again = json.loads(out.read_text())["clips"]["skater"]["methods"]
    assert again["telea"] == {**first_telea, "reused": True}
    assert again["cli:blur"]["reused"] and not again["cli:m"].get("reused")
    assert list(tmp_path.joinpath("c").glob("seen_*.npz"))  # the masks were cached

    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{tables.BEGIN}\nold\n{tables.END}\n\ntail text\n")
    argv = ["--json", str(out), "--readme", str(readme)]
    assert tables.main([*argv, "--check"]) == 1
    assert tables.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# intro\n") and text.endswith("\n\ntail text\n")
    assert "old" not in text and "| skater |" in text and "`cli:blur`" in text  # reused noted
    assert tables.main([*argv, "--check"]) == 0

    assert ev.main(["--data", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert ev.main([*base, "--clips", "nope"]) == 2


def test_render_tables_from_results() -> None:
    clips = {"tennis": clip_result(25, 0.7, 5, 18), "bear": clip_result(21, 0.6, 8, 16)}
    for c in clips.values():
        c |= {"size": [854, 480], "frames": 10, "segment_starts": [0], "source": "gt/x"}
        c["methods"]["telea"]["seen"] = {"psnr": 22.0}
    report = {"clips": clips, "means": tg.clip_means(clips), "targets": tg.targets(clips)}
    md = tables.render(report)
    assert "| clip | cli:panorama | cli:blur | telea |" in md  # the product first
    assert "| tennis | 25.00 / – / 18.00 | 18.00 / – / 15.00 | 20.00 / 22.00 / 17.00 |" in md
    assert "| **mean** | 23.00 / – / 17.00 |" in md
    assert "| bear | 1.00 | pass |" in md  # 21 - max(18, 20)
    assert "all targets: **FAIL**" in md  # bear's SSIM is not ahead of blur's 0.6
    with pytest.raises(ValueError, match="marker"):
        tables.update_section("no markers here", md)


def test_committed_readme_tables_match_the_committed_results() -> None:
    """benchmarks/README.md's eval tables are the ones rendered from the results JSON."""
    assert tables.main(["--check"]) == 0, "run `python benchmarks/tables.py`"


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
    assert ours["seen"]["psnr"] > real_cli_run["methods"]["telea"]["seen"]["psnr"]


@pytest.mark.slow
@needs_cli
def test_real_cli_keeps_the_centre(real_cli_run: dict) -> None:
    """The original picture passes through the lossless FFV1 path bit-exactly."""
    ours = real_cli_run["methods"]["cli:panorama"]
    assert "error" not in ours, ours
    assert ours["centre_max_abs_diff"] == 0, ours
