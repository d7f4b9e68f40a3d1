"""A before/after crop of the repair stage on a real old cartoon (Popeye, public domain).

Decodes ``--frames`` frames of a clip from frame ``--at`` - frames // 2 at full size, runs
the repair stage over them (windows cut at scenes as the CLI cuts them) and writes the
crop ``--box`` of frame ``--at``, scaled by ``--zoom``: before | after | the difference
times 4 (what the stage changed). The default is a frame of Popeye's T00-1 with grain,
block noise and dust on a plain sky.

    python benchmarks/repair_look.py [--clip PATH] [--at 1250] [--box X:Y:W:H]
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

from benchmarks.repair_eval import DATA, run_repair  # noqa: E402
from stages.repair import RepairSettings  # noqa: E402

CLIP = DATA / "popeye" / "popeye_sinbad_T00-1.mkv"


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


def sheet(before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int], zoom: float):
    """before | after | |after - before| x 4 of ``box``, scaled by ``zoom`` (RGB)."""
    x, y, w, h = box
    a, b = before[y : y + h, x : x + w], after[y : y + h, x : x + w]
    diff = np.clip(np.abs(b.astype(np.int16) - a) * 4, 0, 255).astype(np.uint8)
    gap = np.full((h, 4, 3), 255, np.uint8)
    row = np.concatenate([a, gap, b, gap, diff], axis=1)
    size = (round(row.shape[1] * zoom), round(row.shape[0] * zoom))
    return cv2.resize(row, size, interpolation=cv2.INTER_NEAREST)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--at", type=int, default=1250, help="frame number shown")
    p.add_argument("--frames", type=int, default=13, help="frames decoded around it")
    p.add_argument("--box", default="440:60:400:260", help="crop X:Y:W:H at full size")
    p.add_argument("--zoom", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/repair_popeye.png")
    args = p.parse_args(argv)
    box = tuple(int(v) for v in args.box.split(":"))
    if len(box) != 4:
        p.error(f"--box must be X:Y:W:H, got {args.box!r}")
    first = max(0, args.at - args.frames // 2)
    frames, rate = decode(args.clip, first, args.frames)
    out = run_repair(frames, rate, RepairSettings())
    k = args.at - first
    img = sheet(frames[k], out[k], box, args.zoom)  # type: ignore[arg-type]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
