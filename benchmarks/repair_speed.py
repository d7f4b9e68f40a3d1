"""Speed of the repair stage at 640x480, against the blurred pillarbox in the same run.

The CC0 fixture ``tests/fixtures/rabbit_4x3.mp4`` (640x480) is looped forwards and
backwards to ``--frames`` frames and damaged by ``benchmarks/damage.py``. Measured, in
this process, interleaved ``--repeats`` times (best of each, the machine is shared):

- the repair stage alone (``RepairStage``, windows of 8 frames of one scene), in a
  process whose C library's memory settings are the CLI's (``stream.cli.tune_malloc``:
  with glibc's defaults every frame-sized temporary is a fresh mapping, and the page
  faults cost the stage about a fifth of its speed) and BLAS on the chain's
  ``BLAS_THREADS``;
- the blurred pillarbox stage alone (``BlurPillarbox``, the ``--fill blur`` stage) on
  the same frames: the baseline the ratio is taken against;
- the repair stage's CPU per frame, of the whole process and of the thread that calls
  it (the stage runs helper threads): less bent by other jobs than the wall clock.

With ``--cli`` (once the CLI has ``--repair``), also the whole command, NUT piped in,
x264 veryfast Matroska to /dev/null: ``--fill blur`` against ``--repair --fill blur``.
Writes ``benchmarks/results/repair_speed.json``.

    python benchmarks/repair_speed.py [--frames 96] [--repeats 2] [--cli]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import cv2
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from benchmarks.damage import damage  # noqa: E402
from benchmarks.outpaint_eval import encode_nut  # noqa: E402
from benchmarks.outpaint_speed import CLIP, looped_clip  # noqa: E402
from stages.base import Stage, VideoInfo, Window  # noqa: E402
from stages.blur import BlurPillarbox  # noqa: E402
from stages.repair import RepairStage  # noqa: E402
from stream.chain import BLAS_THREADS  # noqa: E402
from stream.cli import tune_malloc  # noqa: E402

CLI = (sys.executable, "-m", "stream.cli")
WINDOW = 8


def stage_seconds(stage: Stage, frames: list, rate: Fraction) -> tuple[float, float, float]:
    """Wall seconds for ``stage`` over ``frames`` (one scene in windows of WINDOW), and the
    CPU seconds of the process and of the calling thread meanwhile."""
    h, w = frames[0].shape[:2]
    stage.configure(VideoInfo(w, h, 1 / rate, rate))
    n = 0
    t0, cpu0, own0 = time.perf_counter(), time.process_time(), time.thread_time()
    with threadpool_limits(BLAS_THREADS, user_api="blas"):  # as the chain runs a stage
        for a in range(0, len(frames), WINDOW):
            b = min(len(frames), a + WINDOW)
            window = Window(frames[a:b], list(range(a, b)), 0, a > 0, b == len(frames))
            n += sum(1 for _ in stage.process(window))
        n += sum(1 for _ in stage.finish())
    seconds = time.perf_counter() - t0
    cpu, own = time.process_time() - cpu0, time.thread_time() - own0
    if n != len(frames):
        raise RuntimeError(f"{type(stage).__name__} gave {n} frames for {len(frames)}")
    return seconds, cpu, own


def cli_seconds(data: bytes, extra: Sequence[str]) -> float:
    """Wall seconds of one CLI run (NUT on stdin, x264 veryfast Matroska to /dev/null)."""
    cmd = [
        *CLI, "-", "/dev/null", "--input-format", "nut", "-f", "matroska",
        "--preset", "veryfast", "--crop", "none", "--fill", "blur", "--quiet", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=data, capture_output=True, cwd=REPO, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-800:]}")
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cli", action="store_true", help="also time the whole CLI")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/repair_speed.json")
    args = p.parse_args(argv)
    tune_malloc()  # as the CLI runs the stage
    if args.frames < 2 * WINDOW or args.repeats < 1:
        p.error("--frames must be >= 16 and --repeats >= 1")
    frames, rate = looped_clip(CLIP, args.frames)
    frames = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA) for f in frames]
    frames = damage(frames, seed=0).frames
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}  # the repair stage's least CPU: process, calling thread
    for _ in range(args.repeats):
        for name, make in (
            ("blur", lambda: BlurPillarbox(Fraction(16, 9))),
            ("repair", RepairStage),
        ):
            s, c, own = stage_seconds(make(), frames, rate)
            best[name] = min(best.get(name, s), s)
            if name == "repair":
                cpu["process"] = min(cpu.get("process", c), c)
                cpu["thread"] = min(cpu.get("thread", own), own)
    result: dict = {
        "command": " ".join(["python", "benchmarks/repair_speed.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "clip": f"{CLIP.relative_to(REPO)} looped, damaged, 640x480",
        "frames": len(frames),
        "stage_fps": {k: round(len(frames) / v, 2) for k, v in best.items()},
    }
    result["repair_over_blur_stage_fps"] = round(best["blur"] / best["repair"], 4)
    # CPU per frame, less bent by other jobs than the wall clock: the stage's threads share
    # the cores, so on an idle 2-core machine a frame takes about the larger of the calling
    # thread's CPU and half the process's
    result["repair_cpu_ms_per_frame"] = {
        k: round(1000 * v / len(frames), 1) for k, v in cpu.items()
    }
    if args.cli:
        data = encode_nut(frames, rate, pix_fmt="yuv420p")
        cli: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, extra in (("blur", ()), ("repair+blur", ("--repair",))):
                s = cli_seconds(data, extra)
                cli[name] = min(cli.get(name, s), s)
        result["cli_fps"] = {k: round(len(frames) / v, 2) for k, v in cli.items()}
        result["cli_repair_over_blur_fps"] = round(cli["blur"] / cli["repair+blur"], 4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
