"""Speed of the panorama outpainting through the real CLI, against the blurred pillarbox.

The CC0 fixture ``tests/fixtures/rabbit_4x3.mp4`` (640x480) is looped in memory to about
``--frames`` frames (forwards then backwards, so the loop has no cut), encoded losslessly
(FFV1 in NUT) and piped through ``remaster --fill panorama`` and ``remaster --fill blur``
in the same run, with the same encoder settings (libx264 ``--preset veryfast``, Matroska
to /dev/null). ``--repeats`` runs the pair that many times, interleaved (the machine's
speed drifts by more than 15 % between runs); the result is the median of the runs'
ratios. Prints fps of both and their ratio per run; writes JSON.

    python benchmarks/outpaint_speed.py [--frames 300] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.outpaint_eval` importable
    sys.path.insert(0, str(REPO))

from benchmarks.outpaint_eval import encode_nut  # noqa: E402

CLIP = REPO / "tests" / "fixtures" / "rabbit_4x3.mp4"
CLI = (sys.executable, "-m", "stream.cli")

log = logging.getLogger(__name__)


def looped_clip(path: Path, frames: int) -> tuple[list[np.ndarray], Fraction]:
    """RGB frames of ``path`` played forwards and backwards until ``frames`` are there."""
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or 30)
        src = [vf.to_ndarray(format="rgb24") for vf in container.decode(stream)]
    if len(src) < 2:
        raise ValueError(f"{path} has {len(src)} frames, need >= 2")
    cycle = src + src[-2:0:-1]
    return [cycle[i % len(cycle)] for i in range(frames)], rate


def run_fill(data: bytes, fill: str, width: int, height: int) -> float:
    """Wall seconds of one CLI run (NUT on stdin, x264 veryfast Matroska to /dev/null)."""
    cmd = [
        *CLI, "-", "/dev/null", "--input-format", "nut", "-f", "matroska",
        "--preset", "veryfast", "--crop", "none", "--size", f"{width}x{height}",
        "--fill", fill, "--quiet",
    ]  # fmt: skip
    log.info("running %s", " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=data, capture_output=True, cwd=REPO, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        tail = proc.stderr.decode(errors="replace")[-1500:]
        raise RuntimeError(f"--fill {fill} failed ({proc.returncode}): {tail}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3, help="interleaved panorama/blur pairs")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/outpaint_speed.json")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    frames, rate = looped_clip(CLIP, args.frames)
    h, w = frames[0].shape[:2]
    out_w = 2 * round(h * 16 / 9 / 2)
    # yuv420p like most real input: decoding it is part of the cost being measured.
    data = encode_nut(frames, rate, pix_fmt="yuv420p")
    result: dict = {
        "command": [sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
        "clip": str(CLIP.relative_to(REPO)),
        "frames": len(frames),
        "size": f"{w}x{h} -> {out_w}x{h}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
    runs = []
    for k in range(args.repeats):
        run = {}
        for fill in ("panorama", "blur"):
            seconds = run_fill(data, fill, out_w, h)
            run[fill] = {"seconds": round(seconds, 3), "fps": round(len(frames) / seconds, 2)}
        run["panorama_over_blur_fps"] = round(run["panorama"]["fps"] / run["blur"]["fps"], 3)
        runs.append(run)
        print(
            f"run {k + 1}: --fill panorama {run['panorama']['fps']} fps "
            f"({run['panorama']['seconds']} s), --fill blur {run['blur']['fps']} fps "
            f"({run['blur']['seconds']} s), ratio {run['panorama_over_blur_fps']}"
        )
    result["runs"] = runs
    ratios = [r["panorama_over_blur_fps"] for r in runs]
    result["panorama_over_blur_fps"] = round(float(np.median(ratios)), 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"panorama / blur fps ratio, median of {len(runs)}: {result['panorama_over_blur_fps']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
