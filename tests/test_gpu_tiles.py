"""Tile planning, cropping, colour matching and blend weights (numpy only, no torch)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gpu.tiles import Tile, blend_weights, colour_match, crop, plan_tiles, ring_mask


def side_strips(height: int, width: int, strip: int) -> np.ndarray:
    known = np.ones((height, width), bool)
    known[:, :strip] = False
    known[:, width - strip :] = False
    return known


def random_holes(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    known = np.ones((height, width), bool)
    for _ in range(int(rng.integers(1, 6))):
        h, w = rng.integers(1, height // 2), rng.integers(1, width // 2)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        known[y : y + h, x : x + w] = False
    return known


CASES = [
    ("sides-16:9", side_strips(120, 214, 27), 64),
    ("sides-480p", side_strips(480, 854, 107), 512),
    ("all-hole", np.zeros((120, 330), bool), 64),
    ("smaller-than-tile", side_strips(50, 75, 10), 64),
    ("odd-size", random_holes(131, 257, 3), 64),
    *[(f"random-{s}", random_holes(120, 400, s), 64) for s in range(4)],
]


@pytest.mark.parametrize(("name", "known", "size"), CASES, ids=[c[0] for c in CASES])
def test_plan_covers_every_hole_pixel_and_respects_sizes(name, known, size):
    height, width = known.shape
    plan = plan_tiles(known, tile=size, overlap=size // 8, margin=size // 8)
    covered = np.zeros_like(known)
    for t in plan:
        assert t.h % 8 == 0 and t.w % 8 == 0, t
        assert t.h <= max(size, 8) and t.w <= max(size, 8), t
        assert t.y >= 0 and t.x >= 0
        # A tile leaves the image only along an axis shorter than the tile.
        assert t.y + t.h <= height or t.y == 0 and t.h == -(-height // 8) * 8, t
        assert t.x + t.w <= width or t.x == 0 and t.w == -(-width // 8) * 8, t
        ys, xs = t.region(height, width)
        assert (~known[ys, xs]).any(), f"{name}: tile {t} has no hole pixel"
        covered[ys, xs] = True
    assert covered[~known].all(), f"{name}: hole pixels not covered"


@pytest.mark.parametrize(("name", "known", "size"), CASES, ids=[c[0] for c in CASES])
def test_waves_never_share_hole_pixels_and_indices_follow_order(name, known, size):
    plan = plan_tiles(known, tile=size, overlap=size // 8, margin=size // 8)
    assert [t.index for t in plan] == list(range(len(plan)))
    assert [t.wave for t in plan] == sorted(t.wave for t in plan)
    height, width = known.shape
    for i, a in enumerate(plan):
        for b in plan[i + 1 :]:
            if a.wave != b.wave:
                continue
            ma = np.zeros_like(known)
            mb = np.zeros_like(known)
            ma[a.region(height, width)] = True
            mb[b.region(height, width)] = True
            assert not (ma & mb & ~known).any(), f"{name}: {a} and {b} share hole pixels"


def test_widescreen_sides_are_two_tiles_in_one_wave():
    plan = plan_tiles(side_strips(480, 854, 107), tile=512, overlap=64, margin=64)
    assert [(t.y, t.x, t.h, t.w, t.wave) for t in plan] == [
        (0, 0, 480, 512, 0),
        (0, 342, 480, 512, 0),
    ]


def test_small_hole_gets_known_context_margin():
    known = np.ones((300, 400), bool)
    known[140:160, 190:210] = False
    plan = plan_tiles(known, tile=64, overlap=8, margin=16)
    assert len(plan) == 1
    t = plan[0]
    assert t.y <= 140 - 16 and t.y + t.h >= 160 + 16
    assert t.x <= 190 - 16 and t.x + t.w >= 210 + 16


def test_full_hole_needs_several_waves_and_later_waves_overlap_earlier():
    plan = plan_tiles(np.zeros((64, 300), bool), tile=64, overlap=16, margin=0)
    assert {t.wave for t in plan} == {0, 1}
    later = [t for t in plan if t.wave == 1]
    assert all(any(t.overlaps(e) for e in plan if e.wave == 0) for t in later)


def test_no_hole_gives_no_tiles():
    assert plan_tiles(np.ones((120, 160), bool), tile=64) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile": 60}, "multiple of 8"),
        ({"tile": 64, "overlap": 40}, "overlap"),
        ({"tile": 64, "margin": -1}, "margin"),
    ],
)
def test_plan_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_tiles(np.zeros((64, 64), bool), **kwargs)


def test_plan_rejects_non_bool_mask():
    with pytest.raises(ValueError, match="bool"):
        plan_tiles(np.zeros((64, 64), np.uint8))


def test_crop_pads_small_images_by_reflection():
    image = np.arange(50 * 75 * 3, dtype=np.float32).reshape(50, 75, 3)
    part = crop(image, Tile(0, 0, 56, 80))
    assert part.shape == (56, 80, 3)
    np.testing.assert_array_equal(part[:50, :75], image)
    np.testing.assert_array_equal(part[50:56, :75], image[49:43:-1])  # mirrored rows
    np.testing.assert_array_equal(part[:50, 75:80], image[:, 74:69:-1])


def test_colour_match_undoes_gain_and_offset_seen_in_the_ring():
    rng = np.random.default_rng(0)
    reference = rng.uniform(40, 200, (64, 64, 3)).astype(np.float32)
    generated = reference * 0.8 + 25  # a colour drift of the whole tile
    todo = np.zeros((64, 64), bool)
    todo[20:40, 20:40] = True
    ring = ring_mask(todo, ~todo, 6)
    assert ring.any() and not (ring & todo).any()
    matched = colour_match(generated, reference, ring)
    np.testing.assert_allclose(matched[todo], reference[todo], atol=1e-3)


def test_colour_match_leaves_output_alone_without_a_ring():
    generated = np.full((8, 8, 3), 10, np.float32)
    out = colour_match(generated, generated + 50, np.zeros((8, 8), bool))
    np.testing.assert_array_equal(out, generated)


def test_blend_weights_fade_into_earlier_content_and_spare_known_pixels():
    todo = np.zeros((32, 64), bool)
    todo[:, 40:] = True
    before = np.zeros((32, 64), bool)
    before[:, 16:40] = True  # generated by an earlier tile
    w = blend_weights(todo, before, feather=8)
    assert (w[:, 40:] == 1).all()
    assert (w[:, :16] == 0).all()  # known
    row = w[0, 16:40]
    assert (np.diff(row) >= 0).all() and row[-1] > 0.8 and row[0] == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
