"""Throughput and memory of the streaming chain, against ffmpeg's own filter graph.

In one run, on the same inputs and with the same encoder settings:

1. ``remaster --fill blur`` versus ffmpeg's blurred-pillarbox filter graph
   (split, scale-to-cover, boxblur, overlay) at 640x480 and 1440x1080: wall-time ratio,
   fps and peak RSS (target: remaster within 1.5x of ffmpeg at 640x480);
2. peak RSS of ``remaster`` on a 1-minute versus a 10-minute synthetic input streamed
   through a pipe (target: within 10 %), for ``--fill blur`` and ``--fill panorama``.

Usage: python benchmarks/throughput.py [--seconds 20] [--long-minutes 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REMASTER = [sys.executable, "-m", "stream.cli"]
ENCODE = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of the largest process of ``cmd`` (GNU time)."""
    cmd = ["/usr/bin/time", "-f", "%M", *cmd]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{cmd} failed: {result.stderr[-2000:]}")
    rss_kib = int(result.stderr.strip().splitlines()[-1])
    return wall, rss_kib // 1024


def rss_of(cmd: str) -> int:
    """Peak RSS (MiB) of the remaster process inside a shell pipeline."""
    wrapped = cmd.replace(
        " ".join(REMASTER), f"/usr/bin/time -f %M -o /dev/stderr {' '.join(REMASTER)}"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", wrapped], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"{cmd} failed: {result.stderr[-2000:]}")
    numbers = [int(line) for line in result.stderr.splitlines() if line.strip().isdigit()]
    return numbers[-1] // 1024


def make_input(path: Path, size: str, seconds: int) -> None:
    """A 4:3 test clip with motion and several cuts (testsrc2 / mandelbrot / life)."""
    part = seconds / 3
    w, h = size.split("x")
    graph = (
        f"testsrc2=size={size}:rate=25:duration={part},format=yuv420p[a];"
        f"mandelbrot=size={size}:rate=25,trim=duration={part},format=yuv420p[b];"
        f"life=size={size}:rate=25:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00,"
        f"trim=duration={part},scale={w}:{h},format=yuv420p[c];"
        "[a][b][c]concat=n=3:v=1:a=0[v];"
        f"sine=f=440:duration={seconds}[s]"
    )
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-map",
            "[s]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "18",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )


def ffmpeg_pillarbox(src: Path, out_w: int, h: int) -> list[str]:
    graph = (
        f"[0:v]split[fg][bg];[bg]scale={out_w}:-2,crop={out_w}:{h},boxblur=20:2,"
        f"eq=brightness=-0.06[blur];[blur][fg]overlay=(W-w)/2:0[v]"
    )
    return [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-i",
        str(src),
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-map",
        "0:a",
        "-c:a",
        "copy",
        *ENCODE,
        "-f",
        "matroska",
        "/dev/null",
    ]


def remaster_blur(src: Path) -> list[str]:
    return [
        *REMASTER,
        str(src),
        "/dev/null",
        "-f",
        "matroska",
        "--fill",
        "blur",
        "--quiet",
        "--codec",
        "libx264",
        "--preset",
        "veryfast",
        "--crf",
        "23",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=int, default=20, help="length of the speed inputs")
    ap.add_argument("--long-minutes", type=float, default=10)
    ap.add_argument("--short-minutes", type=float, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="speed runs per tool (best kept)")
    ap.add_argument("--fills", default="blur,panorama", help="fills for the memory test")
    ap.add_argument("--skip-speed", action="store_true", help="only the memory test")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/throughput.json")
    args = ap.parse_args()
    if not shutil.which("ffmpeg") or not Path("/usr/bin/time").exists():
        sys.exit("needs the ffmpeg CLI and GNU time (/usr/bin/time)")
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "speed": [],
        "memory": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size, out_w in () if args.skip_speed else (("640x480", 854), ("1440x1080", 1920)):
            src = Path(tmp) / f"in_{size}.mkv"
            make_input(src, size, args.seconds)
            frames = args.seconds * 25
            h = int(size.split("x")[1])
            best = {}
            for name, cmd in (
                ("ffmpeg", ffmpeg_pillarbox(src, out_w, h)),
                ("remaster", remaster_blur(src)),
            ):
                runs = [timed(cmd) for _ in range(args.repeats)]
                wall = min(r[0] for r in runs)
                best[name] = (wall, max(r[1] for r in runs))
            row = {
                "input": size,
                "frames": frames,
                "ffmpeg_s": round(best["ffmpeg"][0], 2),
                "remaster_s": round(best["remaster"][0], 2),
                "ratio": round(best["remaster"][0] / best["ffmpeg"][0], 2),
                "ffmpeg_fps": round(frames / best["ffmpeg"][0], 1),
                "remaster_fps": round(frames / best["remaster"][0], 1),
                "ffmpeg_rss_mib": best["ffmpeg"][1],
                "remaster_rss_mib": best["remaster"][1],
            }
            results["speed"].append(row)
            print(json.dumps(row), flush=True)
    for fill in args.fills.split(","):
        rss = {}
        for minutes in (args.short_minutes, args.long_minutes):
            seconds = int(minutes * 60)
            # Streamed from a generator through pipes: no input file of 10 minutes.
            gen = (
                f"ffmpeg -v error -f lavfi -i testsrc2=size=640x480:rate=25:duration={seconds} "
                f"-f lavfi -i sine=f=440:duration={seconds} -c:v rawvideo -c:a pcm_s16le "
                f"-f nut -"
            )
            cmd = (
                f"{gen} | {' '.join(REMASTER)} - - -f nut --fill {fill} --quiet "
                f"--codec libx264 --preset ultrafast | cat > /dev/null"
            )
            start = time.perf_counter()
            rss[minutes] = rss_of(cmd)
            elapsed = time.perf_counter() - start
            print(
                json.dumps(
                    {
                        "fill": fill,
                        "minutes": minutes,
                        "rss_mib": rss[minutes],
                        "seconds": round(elapsed, 1),
                    }
                ),
                flush=True,
            )
        short, long = rss[args.short_minutes], rss[args.long_minutes]
        row = {
            "fill": fill,
            "short_minutes": args.short_minutes,
            "long_minutes": args.long_minutes,
            "short_rss_mib": short,
            "long_rss_mib": long,
            "growth": round(long / short - 1, 3),
        }
        results["memory"].append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(
        "\n| input | ffmpeg s | remaster s | ratio | remaster fps | RSS MiB (ffmpeg / remaster) |"
    )
    print("|---|---|---|---|---|---|")
    for r in results["speed"]:
        print(
            f"| {r['input']} | {r['ffmpeg_s']} | {r['remaster_s']} | {r['ratio']} | "
            f"{r['remaster_fps']} | {r['ffmpeg_rss_mib']} / {r['remaster_rss_mib']} |"
        )
    print("\n| fill | RSS short (MiB) | RSS long (MiB) | growth |")
    print("|---|---|---|---|")
    for r in results["memory"]:
        print(
            f"| {r['fill']} | {r['short_rss_mib']} | {r['long_rss_mib']} | "
            f"{100 * r['growth']:.1f} % |"
        )


if __name__ == "__main__":
    main()
