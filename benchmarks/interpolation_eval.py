"""Frame interpolation quality and speed on real clips: drop a frame, re-create it, score PSNR.

For each clip, evenly spread triplets (f0, f1, f2) of consecutive frames are taken; f1 is
re-created from f0 and f2 at t = 0.5 by RIFE (with its U-Net refinement, and without it:
``rife_fast``), the DIS fallback and a linear blend, and scored against the real f1.
Triplets that span a cut (PySceneDetect ContentDetector) are skipped, and so are still
ones (f0 and f2 equal to within 0.5 grey levels: nothing to interpolate, PSNR unbounded).
Held frames (cartoons animated on twos) are kept: there a blend is hard to beat. Speed is
measured on one pair scaled to 640x480 on the CPU, as milliseconds per new frame and as a
ratio against the blend in the same run.

    python benchmarks/interpolation_eval.py --out benchmarks/results/interpolation
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.base import FrameInterpolator  # noqa: E402
from stages.interpolate import BlendInterpolator, DisInterpolator  # noqa: E402

log = logging.getLogger(__name__)

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
# (name, path under the data folder, width to scale to or None)
CLIPS = [
    ("popeye_T00", "popeye/popeye_sinbad_T00-1.mkv", 640),
    ("popeye_T01", "popeye/popeye_sinbad_T01-2.mkv", 640),
    ("bear", "gt/bear.mp4", None),
    ("skater", "gt/skater.mp4", None),
    ("rabbit_cc0", "cc0/rabbit.mp4", None),
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def cut_frames(path: Path) -> set[int]:
    """Frame numbers that start a new scene, by PySceneDetect's ContentDetector."""
    from scenedetect import ContentDetector, detect

    return {start.frame_num for start, _ in detect(str(path), ContentDetector())[1:]}


def decode(path: Path, width: int | None) -> list[np.ndarray]:
    """All frames as RGB, scaled to ``width`` (even height) when given."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            img = frame.to_ndarray(format="rgb24")
            if width is not None and img.shape[1] != width:
                height = round(img.shape[0] * width / img.shape[1] / 2) * 2
                img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
            frames.append(img)
    return frames


def triplets(frames: list[np.ndarray], cuts: set[int], limit: int) -> tuple[list[int], int, int]:
    """Start indices of up to ``limit`` evenly spread usable triplets; counts of cut/still ones."""
    usable, n_cut, n_still = [], 0, 0
    for i in range(len(frames) - 2):
        if i + 1 in cuts or i + 2 in cuts:
            n_cut += 1
        elif np.mean(cv2.absdiff(frames[i], frames[i + 2])) < 0.5:
            n_still += 1
        else:
            usable.append(i)
    if len(usable) > limit:
        usable = [usable[round(k * (len(usable) - 1) / (limit - 1))] for k in range(limit)]
    return usable, n_cut, n_still


def evaluate(
    methods: dict[str, FrameInterpolator], data: Path, limit: int
) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    for name, rel, width in CLIPS:
        path = data / rel
        if not path.is_file():
            log.warning("skipping %s: %s not found", name, path)
            continue
        frames = decode(path, width)
        starts, n_cut, n_still = triplets(frames, cut_frames(path), limit)
        scores: dict[str, list[float]] = {m: [] for m in methods}
        for i in starts:
            for m, interp in methods.items():
                out = interp(frames[i], frames[i + 2], [0.5])[0]
                scores[m].append(psnr(out, frames[i + 1]))
        h, w = frames[0].shape[:2]
        results[name] = {
            "size": f"{w}x{h}",
            "frames": len(frames),
            "triplets": len(starts),
            "skipped_cut": n_cut,
            "skipped_still": n_still,
            "psnr": {m: float(np.mean(s)) for m, s in scores.items()},
        }
        log.info("%s: %s", name, results[name])
    return results


def timing(methods: dict[str, FrameInterpolator], data: Path) -> dict[str, float]:
    """Median milliseconds per new 640x480 frame for each method (first bear pair)."""
    frames = decode(data / "gt" / "bear.mp4", None)[:2]
    a, b = (cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA) for f in frames)
    out = {}
    for m, interp in methods.items():
        interp(a, b, [0.5])  # warm-up
        reps = 3 if m.startswith("rife") else 20
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            interp(a, b, [0.5])
            times.append(time.perf_counter() - t0)
        out[m] = statistics.median(times) * 1000
    return out


def markdown(
    results: dict[str, dict[str, object]], speed: dict[str, float], names: list[str]
) -> str:
    lines = [
        "| clip | size | triplets | " + " | ".join(f"{m} PSNR" for m in names) + " |",
        "|---" * (3 + len(names)) + "|",
    ]
    for clip, r in results.items():
        psnrs = r["psnr"]
        assert isinstance(psnrs, dict)
        cells = " | ".join(f"{psnrs[m]:.2f}" for m in names)
        lines.append(f"| {clip} | {r['size']} | {r['triplets']} | {cells} |")
    means = {m: np.mean([r["psnr"][m] for r in results.values()]) for m in names}  # type: ignore[index]
    lines.append("| **mean** | | | " + " | ".join(f"**{means[m]:.2f}**" for m in names) + " |")
    lines += ["", "| method | ms / frame at 640x480 (CPU) | x blend time |", "|---|---|---|"]
    for m in names:
        lines.append(f"| {m} | {speed[m]:.1f} | {speed[m] / speed['blend']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--triplets", type=int, default=20, help="per clip, evenly spread")
    parser.add_argument("--methods", default="rife,rife_fast,dis,blend")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("interpolation_eval"), help="stem")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.data.is_dir():
        sys.exit(f"no test data at {args.data}")
    if args.triplets < 2:
        sys.exit(f"--triplets must be >= 2, got {args.triplets}")
    names = args.methods.split(",")
    methods: dict[str, FrameInterpolator] = {}
    net = None
    for m in names:
        if m in ("rife", "rife_fast"):
            import torch

            from gpu.rife import RifeInterpolator, load_ifnet

            log.info("torch threads: %d", torch.get_num_threads())
            net = net or load_ifnet()
            methods[m] = RifeInterpolator(net, device=args.device, refine=m == "rife")
        elif m == "dis":
            methods[m] = DisInterpolator()
        elif m == "blend":
            methods[m] = BlendInterpolator()
        else:
            sys.exit(f"unknown method {m!r}")
    if "blend" not in methods:
        names.append("blend")
        methods["blend"] = BlendInterpolator()
    speed = timing(methods, args.data)
    results = evaluate(methods, args.data, args.triplets)
    means = {m: float(np.mean([r["psnr"][m] for r in results.values()])) for m in names}  # type: ignore[index]
    report = {"clips": results, "mean_psnr": means, "ms_per_frame_640x480": speed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = markdown(results, speed, names)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
