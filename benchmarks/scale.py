"""Scale-out on Ray: one long input over workers, and many inputs through `remaster batch`.

In one run, on this machine, with a local loopback Ray:

1. a synthetic 640x480 clip (panning scenes of ``--scene-seconds``, with audio) through
   the single process, ``--workers 1`` and ``--workers 2``, all with the same
   ``--segment-seconds`` (so all three cut the same segments): wall time, ratio to the
   single run, and the parts that do not scale: Ray's start-up and stop, and the driver's
   cut pass (decode and cut detection of the whole input, timed alone here);
2. ``--batch-inputs`` short inputs through ``remaster batch --jobs 2`` against a shell loop
   of ``remaster`` calls, one after the other.

Each command runs as its own process; the load average before and after is recorded
(the machine is shared). Writes JSON and a Markdown table (``--out``, ``.md`` beside it).

    nice -n 10 python benchmarks/scale.py [--minutes 2] [--segment-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from tests.synthetic import panning_clip  # noqa: E402

REMASTER = [sys.executable, "-m", "stream.cli"]
FPS = 24
PAN = 2.0  # pixels a frame: every scene pans, so the panorama has something to gather
SEGMENT_LINE = re.compile(r"segment \d+: \d+ frames in ([\d.]+) s on a worker")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_clip(path: Path, seconds: float, width: int, height: int, scene_seconds: float) -> int:
    """Scenes of different panning backgrounds with a tone, x264 + AAC in Matroska; one
    scene in memory at a time. Returns the number of scenes."""
    total = round(seconds * FPS)
    per_scene = round(scene_seconds * FPS)
    scenes = 0
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "18"}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        done = 0
        while done < total:
            n = min(per_scene, total - done)
            for img in panning_clip(n, height, width, pan=PAN, seed=scenes).frames:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = done
                frame.time_base = Fraction(1, FPS)
                out.mux(video.encode(frame))
                done += 1
            scenes += 1
        out.mux(video.encode(None))
        t = np.arange(round(seconds * 48000)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = np.ascontiguousarray(np.stack([tone[start : start + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return scenes


def timed(cmd: list[str] | str) -> dict:
    """Wall seconds of ``cmd`` (a shell line when a string) and the load average around it."""
    before = load()
    start = time.perf_counter()
    line = cmd if isinstance(cmd, str) else shlex.join(cmd)
    result = subprocess.run(line, shell=True, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{cmd} failed ({result.returncode}): {result.stderr[-3000:]}")
    run = {"seconds": round(wall, 2), "load_before": before, "load_after": load()}
    segments = [float(m) for m in SEGMENT_LINE.findall(result.stderr)]
    if segments:  # a --workers run with -v says what each segment cost on its worker
        run["segment_seconds"] = segments
    return run


RAY_START = """
import time
from stream import cluster
t0 = time.perf_counter()
cm = cluster.connect(None, cpus=2)
cm.__enter__()
t1 = time.perf_counter()
cm.__exit__(None, None, None)
print(round(t1 - t0, 2), round(time.perf_counter() - t1, 2))
"""


def ray_overhead() -> dict:
    """Seconds to start and to stop the embedded local Ray (a process of its own)."""
    out = subprocess.run(
        [sys.executable, "-c", RAY_START], cwd=ROOT, capture_output=True, text=True, check=True
    )
    start, stop = (float(x) for x in out.stdout.split())
    return {"start_seconds": start, "stop_seconds": stop}


def cut_pass(path: Path, segment_seconds: float) -> dict:
    """The driver's plan alone: decode and cut detection of the whole input."""
    from stream import wiring
    from stream.decode import Decoder, open_input
    from stream.options import Options
    from stream.plan import plan_segments
    from stream.segments import SegmentRule

    options = Options(segment_seconds=segment_seconds)
    start = time.perf_counter()
    source = open_input(str(path))
    try:
        info = source.info
        chain = wiring.build_chain(options, info)
        scenes = wiring.scene_buffer(options, info, chain)
        chain.close()
        scenes.on_settled = None
        rule = SegmentRule.of(segment_seconds, info.frame_rate)
        plans = list(plan_segments(Decoder(source, lambda p: None).frames(), scenes, rule))
    finally:
        source.close()
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "segments": len(plans),
        "frames": sum(p.frames for p in plans),
        "segment_frames": [p.frames for p in plans],
    }


def long_input(args: argparse.Namespace, work: Path) -> dict:
    width, height = (int(v) for v in args.size.split("x"))
    clip = work / "long.mkv"
    scenes = make_clip(clip, args.minutes * 60, width, height, args.scene_seconds)
    common = ["--segment-seconds", str(args.segment_seconds)]
    runs = {}
    for workers in (0, 1, 2):
        name = f"workers {workers}" if workers else "single"
        extra = ["--workers", str(workers), "-v"] if workers else ["-q"]
        out = work / f"long-{workers}.mkv"
        runs[name] = timed([*REMASTER, str(clip), str(out), *common, *extra])
    single = runs["single"]["seconds"]
    for run in runs.values():
        run["ratio_to_single"] = round(run["seconds"] / single, 3)
    return {
        "input": f"{args.minutes} min {args.size} at {FPS} fps, {scenes} scenes, x264 + AAC",
        "segment_seconds": args.segment_seconds,
        "command": f"remaster long.mkv out.mkv {' '.join(common)} [--workers N]",
        "runs": runs,
        "ray": ray_overhead(),
        "cut_pass": cut_pass(clip, args.segment_seconds),
    }


def batch(args: argparse.Namespace, work: Path) -> dict:
    width, height = (int(v) for v in args.batch_size.split("x"))
    inputs = work / "in"
    inputs.mkdir()
    for k in range(args.batch_inputs):
        make_clip(inputs / f"ep{k}.mkv", args.batch_seconds, width, height, args.batch_seconds / 2)
    loop_out, batch_out = work / "loop", work / "batch"
    loop_out.mkdir()
    remaster = shlex.join(REMASTER)
    loop = f'for f in {inputs}/*.mkv; do {remaster} "$f" {loop_out}/"$(basename "$f")" -q; done'
    runs = {
        "shell loop": timed(loop),
        "batch --jobs 2": timed(
            [*REMASTER, "batch", f"{inputs}/*.mkv", "-o", str(batch_out), "--jobs", "2", "-q"]
        ),
    }
    runs["batch --jobs 2"]["ratio_to_loop"] = round(
        runs["batch --jobs 2"]["seconds"] / runs["shell loop"]["seconds"], 3
    )
    return {
        "inputs": f"{args.batch_inputs} x {args.batch_seconds} s {args.batch_size}, 2 scenes each",
        "loop": loop.replace(str(work), "$WORK"),
        "runs": runs,
    }


def table(result: dict) -> str:
    """The Markdown tables of a result."""
    long, many = result["long"], result["batch"]
    lines = [
        f"One input: {long['input']}, `--segment-seconds {long['segment_seconds']}` "
        f"({long['cut_pass']['segments']} segments).",
        "",
        "| run | wall s | ratio to single | load before → after |",
        "|---|---|---|---|",
    ]
    for name, run in long["runs"].items():
        lines.append(
            f"| {name} | {run['seconds']:.1f} | {run['ratio_to_single']:.2f} | "
            f"{run['load_before'][0]} → {run['load_after'][0]} |"
        )
    ray, cuts = long["ray"], long["cut_pass"]
    costs = long["runs"]["workers 1"].get("segment_seconds", [])
    lines += [
        "",
        f"Parts that do not scale: Ray start {ray['start_seconds']:.1f} s and stop "
        f"{ray['stop_seconds']:.1f} s; the driver's cut pass over all "
        f"{cuts['frames']} frames {cuts['seconds']:.1f} s (timed alone).",
    ]
    if costs:
        lines += [
            "",
            f"Per segment on a worker (`--workers 1`): {', '.join(f'{c:.1f}' for c in costs)} s "
            f"(sum {sum(costs):.1f} s, longest {max(costs):.1f} s).",
        ]
    lines += [
        "",
        f"Many inputs: {many['inputs']}.",
        "",
        "| run | wall s | ratio to the loop | load before → after |",
        "|---|---|---|---|",
    ]
    for name, run in many["runs"].items():
        ratio = run.get("ratio_to_loop", 1.0)
        lines.append(
            f"| {name} | {run['seconds']:.1f} | {ratio:.2f} | "
            f"{run['load_before'][0]} → {run['load_after'][0]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--size", default="640x480")
    p.add_argument("--scene-seconds", type=float, default=15.0)
    p.add_argument("--segment-seconds", type=float, default=30.0)
    p.add_argument("--batch-inputs", type=int, default=8)
    p.add_argument("--batch-seconds", type=float, default=6.0)
    p.add_argument("--batch-size", default="320x240")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="remaster-scale-") as tmp:
        work = Path(tmp)
        result = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"),
            "command": shlex.join(["python", "benchmarks/scale.py", *sys.argv[1:]]),
            "long": long_input(args, work),
            "batch": batch(args, work),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    markdown = table(result)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
