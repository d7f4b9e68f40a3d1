"""The repair benchmark's damage model and scores (benchmarks/damage.py, repair_eval.py)."""

from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
import pytest

from benchmarks.damage import damage, seed_of
from benchmarks.repair_eval import (
    MARKERS,
    dust_removed,
    markdown,
    run_ffmpeg,
    scores,
    write_readme,
)
from tests.synthetic import panning_clip


def clean(n: int = 6) -> list[np.ndarray]:
    return panning_clip(n, 120, 160, pan=1.0).frames


def test_damage_is_deterministic_and_records_what_it_did():
    frames = clean(20)
    a, b = damage(frames, seed_of("clip")), damage(frames, seed_of("clip"))
    np.testing.assert_array_equal(np.stack(a.frames), np.stack(b.frames))
    assert seed_of("clip") == seed_of("clip") != seed_of("other")
    other = damage(frames, seed_of("other"))
    assert not np.array_equal(np.stack(a.frames), np.stack(other.frames))
    assert len(a.gains) == 20 and all(0.92 <= g <= 1.08 for g in a.gains)
    assert len(a.scratches) == 20
    for sp in a.specks:
        x, y, w, h = sp.box
        assert 0 <= sp.frame < 20 and sp.alpha.shape == (h, w) and sp.polarity in (-1, 1)
    # each part can be left out; nothing left out of nothing changes nothing
    none = damage(frames, 0, flicker=False, grain=False, scratches=False, dust=False)
    np.testing.assert_array_equal(np.stack(none.frames), np.stack(frames))
    with pytest.raises(ValueError, match="no frames"):
        damage([], 0)


def test_dust_counts_removed_only_where_the_speck_went():
    frames = clean(8)
    dmg = damage(frames, 3, flicker=False, grain=False, scratches=False)
    removed, visible = dust_removed(dmg, frames, frames)  # a perfect repair
    assert visible > 0 and removed == visible
    assert dust_removed(dmg, dmg.frames, frames) == (0, visible)  # no repair at all


def test_scores_see_flicker():
    frames = clean(8)
    same = scores(frames, frames)
    assert same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0)
    assert same["flicker"] == 0.0
    gains = [1.05, 0.95] * 4
    flick = [np.clip(f * g, 0, 255).astype(np.uint8) for f, g in zip(frames, gains, strict=True)]
    assert scores(flick, frames)["flicker"] > 3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_chains_keep_frame_count_and_order():
    frames = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(8)]
    out = run_ffmpeg(frames, Fraction(24), "tmedian")  # drops its first and last frame
    assert len(out) == 8
    assert out[0] is frames[0] and out[-1] is frames[-1]
    assert abs(int(out[3][0, 0, 0]) - 30) <= 1
    with pytest.raises(RuntimeError, match="nosuchfilter"):
        run_ffmpeg(frames, Fraction(24), "nosuchfilter")


def test_readme_table_is_written_between_the_markers(tmp_path):
    report = {
        "frames": 8,
        "clips": {"a": {"methods": {m: {"psnr": p} for m, p in (("repair", 30.0),)}}},
        "summary": {
            "repair": {
                "psnr": 30.0,
                "ssim": 0.9,
                "flicker": 1.0,
                "clean_psnr": 45.0,
                "clean_psnr_min": 44.0,
                "dust_removed": 0.9,
                "dust_visible": 10,
            }
        },
        "seconds": {"repair": 1.0},
        "targets": {"a target": True},
    }
    report["clips"]["a"]["methods"].update({m: {"psnr": 20.0} for m in _chains()})
    table = markdown(report)
    assert "| **repair** (this stage) | 30.00 | 0.9000 | 1.00 | 90.0% of 10 |" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{MARKERS[0]}\nold\n{MARKERS[1]}\ntail\n")
    write_readme(table, readme)
    text = readme.read_text()
    assert "old" not in text and table in text and text.startswith("head")
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="block"):
        write_readme(table, readme)


def _chains() -> tuple[str, ...]:
    from benchmarks.repair_eval import CHAINS

    return CHAINS
