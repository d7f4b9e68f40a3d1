"""A before/after crop of the repair stage on a real old cartoon (Popeye, public domain).

Decodes ``--frames`` frames of a clip around frame ``--at`` at full size and runs the
repair stage over them (windows cut at scenes as the CLI cuts them). Writes the crop
``--box`` of frame ``--at``, scaled by ``--zoom``, in two rows:

1. the frames as they are: before | after | the difference times 4 (what changed);
2. the same frames damaged by ``benchmarks/damage.py`` (seed 0): damaged | repaired |
   the original, so what the stage removes can be seen on this material too.

    python benchmarks/repair_look.py [--clip PATH] [--at 1200] [--box X:Y:W:H]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from benchmarks.damage import damage  # noqa: E402
from benchmarks.repair_eval import DATA, run_repair  # noqa: E402
from stages.repair import RepairSettings  # noqa: E402

CLIP = DATA / "popeye" / "popeye_sinbad_T01-2.mkv"


def decode(path: Path, first: int, count: int) -> tuple[list[np.ndarray], Fraction]:
    """``count`` RGB frames of ``path`` from frame number ``first`` on."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or 24)
        for i, frame in enumerate(container.decode(stream)):
            if i >= first:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise ValueError(f"{path} has fewer than {first + count} frames")
    return frames, rate


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return img[y : y + h, x : x + w]


def row(panels: Sequence[np.ndarray], zoom: float) -> np.ndarray:
    """Panels side by side with white gaps, scaled by ``zoom``."""
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    parts = [p for panel in panels for p in (panel, gap)][:-1]
    out = np.concatenate(parts, axis=1)
    size = (round(out.shape[1] * zoom), round(out.shape[0] * zoom))
    return cv2.resize(out, size, interpolation=cv2.INTER_AREA)


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(np.abs(b.astype(np.int16) - a) * 4, 0, 255).astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--at", type=int, default=1200, help="frame number shown")
    p.add_argument("--frames", type=int, default=13, help="frames decoded around it")
    p.add_argument("--box", default="0:100:960:720", help="crop X:Y:W:H at full size")
    p.add_argument("--zoom", type=float, default=0.4)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/repair_popeye.png")
    args = p.parse_args(argv)
    box = tuple(int(v) for v in args.box.split(":"))
    if len(box) != 4:
        p.error(f"--box must be X:Y:W:H, got {args.box!r}")
    first = max(0, args.at - args.frames // 2)
    frames, rate = decode(args.clip, first, args.frames)
    out = run_repair(frames, rate, RepairSettings())
    hurt = damage(frames, seed=0).frames
    mended = run_repair(hurt, rate, RepairSettings())
    k = args.at - first
    a, b = crop(frames[k], box), crop(out[k], box)  # type: ignore[arg-type]
    d, m = crop(hurt[k], box), crop(mended[k], box)  # type: ignore[arg-type]
    line = np.full((6, 1, 3), 0, np.uint8)
    top, bottom = row([a, b, difference(a, b)], args.zoom), row([d, m, a], args.zoom)
    img = np.concatenate([top, np.repeat(line, top.shape[1], axis=1), bottom], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(args.out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
