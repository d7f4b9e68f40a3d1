"""Resident memory of the panorama stage alone over the windows of one long scene.

Feeds windows of ffmpeg's testsrc2 (640x480, no cut: one scene) straight into
``PanoramaOutpaint`` and prints the process RSS, its peak so far and the canvas size after
each window, so the stage's own working memory can be told apart from the frames the CLI
buffers.

    python benchmarks/stage_memory.py [--windows 12] [--window-frames 300]
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.base import VideoInfo, Window  # noqa: E402
from stages.outpaint import PanoramaOutpaint  # noqa: E402

W, H = 640, 480


def rss_mib() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--window-frames", type=int, default=300)
    args = ap.parse_args()
    n = args.windows * args.window_frames
    cmd = [
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=24",
        "-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    stage = PanoramaOutpaint(Fraction(16, 9))
    stage.configure(VideoInfo(W, H, Fraction(1, 24)))
    size = W * H * 3
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as src:
        assert src.stdout is not None
        for k in range(args.windows):
            frames = []
            for _ in range(args.window_frames):
                data = src.stdout.read(size)
                if len(data) < size:
                    break
                frames.append(np.frombuffer(data, np.uint8).reshape(H, W, 3).copy())
            if not frames:
                break
            last = k == args.windows - 1
            start = k * args.window_frames
            window = Window(frames, list(range(start, start + len(frames))), 0, k > 0, last)
            for _ in stage.process(window):
                pass
            del frames, window
            gc.collect()
            canvas = stage.canvas
            shape = f"{canvas.width}x{canvas.height}" if canvas else "-"
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(f"window {k}: rss {rss_mib()} MiB, peak {peak} MiB, canvas {shape}", flush=True)
    stage.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
