"""The film gate at the seam: a static Popeye shot widened with the gate kept and covered.

Old film frames carry their own gate: near-black rounded notches at the picture's corners
and a dark line along its top. Widened, they show the old frame's outline between the
original and the new sides, unless the outpaint stage covers them (its default;
``keep_gate=True`` keeps the original untouched). This runs the stage both ways on one
static shot of the public-domain Popeye cartoon in ``../shared/data/popeye/`` and writes
a before/after image (a widened frame each, and the original's four corners enlarged)
and the outline's contrast: the mean grey level of a ring just outside the gate minus
that inside it (the film gate's own pixels, as :class:`stages.gate.FilmGate` finds
them), in the output. A dark outline gives a large positive contrast, none about zero.

    python benchmarks/popeye_gate.py [--start 1140] [--frames 96] [--out PATH.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.base import VideoInfo, Window  # noqa: E402
from stages.gate import FilmGate  # noqa: E402
from stages.outpaint import PanoramaOutpaint  # noqa: E402

CLIP = (REPO / ".." / "shared" / "data" / "popeye" / "popeye_sinbad_T00-1.mkv").resolve()


def load(path: Path, start: int, count: int, width: int) -> list[np.ndarray]:
    """``count`` RGB frames from frame ``start``, scaled to ``width`` (even height)."""
    frames = []
    with av.open(str(path)) as container:
        for i, vf in enumerate(container.decode(video=0)):
            if i < start:
                continue
            img = vf.to_ndarray(format="rgb24")
            h = 2 * round(img.shape[0] * width / img.shape[1] / 2)
            frames.append(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise ValueError(f"{path}: only {len(frames)} frames from {start}")
    return frames


def widen(frames: list[np.ndarray], keep_gate: bool) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    stage = PanoramaOutpaint(Fraction(16, 9), keep_gate=keep_gate)
    stage.configure(VideoInfo(w, h, Fraction(1, 24)))
    out = [f.image for f in stage.process(Window(frames, list(range(len(frames))), 0))]
    stage.close()
    return out


def outline_contrast(image: np.ndarray, mask: np.ndarray, ring_px: int) -> float:
    """Grey mean of a ring ``ring_px`` wide just outside ``mask`` minus that inside it."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    m8 = mask.astype(np.uint8)
    grown = cv2.dilate(m8, np.ones((2 * ring_px + 1,) * 2, np.uint8)) > 0
    ring = grown & ~cv2.dilate(m8, np.ones((2 * ring_px // 2 + 1,) * 2, np.uint8)).astype(bool)
    return float(grey[ring].mean() - grey[mask].mean())


def corners(image: np.ndarray, ox: int, w: int, size: int, zoom: int) -> np.ndarray:
    """The original's four corners with some of the sides around them, enlarged."""
    h = image.shape[0]
    a, b = size // 3, size - size // 3
    tiles = [
        image[:size, ox - a : ox + b],
        image[:size, ox + w - b : ox + w + a],
        image[h - size :, ox - a : ox + b],
        image[h - size :, ox + w - b : ox + w + a],
    ]
    gap = np.full((size, 2, 3), 255, np.uint8)
    row = np.hstack([t for tile in tiles for t in (tile, gap)][:-1])
    return cv2.resize(row, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)


def sheet(before: np.ndarray, after: np.ndarray, ox: int, w: int) -> np.ndarray:
    """Before above after: the widened frame, then its enlarged corners."""
    size = max(24, before.shape[0] // 10)
    rows = []
    for label, img in (("gate kept (keep_gate)", before), ("gate covered (default)", after)):
        zoomed = corners(img, ox, w, size, 2)
        full = cv2.resize(
            img, (zoomed.shape[1], round(img.shape[0] * zoomed.shape[1] / img.shape[1]))
        )
        block = np.vstack([full, np.full((4, full.shape[1], 3), 255, np.uint8), zoomed])
        cv2.putText(block, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
        cv2.putText(block, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
        rows += [block, np.full((8, block.shape[1], 3), 255, np.uint8)]
    return np.vstack(rows[:-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--start", type=int, default=1140, help="first frame (a static shot)")
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/popeye_gate.png")
    args = ap.parse_args(argv)
    if not args.clip.exists():
        print(f"{args.clip} not found", file=sys.stderr)
        return 2
    frames = load(args.clip, args.start, args.frames, args.width)
    h, w = frames[0].shape[:2]
    gate = FilmGate()
    gate.update(frames)
    patch = gate.patch()
    if patch is None:
        print("no film gate found in these frames", file=sys.stderr)
        return 1
    kept, covered = widen(frames, True), widen(frames, False)
    ox = (kept[0].shape[1] - w) // 2
    mid = len(frames) // 2
    ring = max(2, round(0.01 * h))
    m, c = round(0.03 * h), round(0.08 * h)
    changed = (covered[mid][:, ox : ox + w] != frames[mid]).any(2)
    interior = np.zeros((h, w), bool)
    interior[m:-m, m:-m] = True
    for rows in (slice(0, c), slice(h - c, h)):
        for cols in (slice(0, c), slice(w - c, w)):
            interior[rows, cols] = False
    wide_mask = np.zeros(kept[mid].shape[:2], bool)
    wide_mask[:, ox : ox + w] = patch.mask
    result = {
        "command": ["python", "benchmarks/popeye_gate.py", *(argv or sys.argv[1:])],
        "clip": args.clip.name,
        "frames": [args.start, args.start + args.frames],
        "size": [w, h],
        "gate_share_of_picture": round(float(patch.mask.mean()), 4),
        "outline_contrast_kept": round(outline_contrast(kept[mid], wide_mask, ring), 2),
        "outline_contrast_covered": round(outline_contrast(covered[mid], wide_mask, ring), 2),
        # the picture away from its border (3 % of the height) and its corners (8 %)
        # must stay exact
        "interior_pixels_changed": int(np.count_nonzero(changed & interior)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image = sheet(kept[mid], covered[mid], ox, w)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
