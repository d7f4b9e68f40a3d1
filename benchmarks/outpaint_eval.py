"""Outpainting quality on the whole dev set: widen 4:3 crops of wide clips, score the sides.

Every clip in ``../shared/data/gt/`` (each video file and each folder of frames; named by
file stem, see ``ALIASES``) is scaled to at most 854 px wide, whole; its centre is
cropped to 4:3, encoded losslessly (FFV1 in NUT) and piped through the ``remaster`` CLI
back to the original size, once per ``--fills`` entry (``cli:panorama``, the product,
and ``cli:blur``, its own blurred pillarbox). Two baselines run in this process on the
same frames: per-frame OpenCV Telea inpainting and a blurred pillarbox. Only the side
columns are scored against the real ones (PSNR, SSIM, TDE, ``benchmarks/metrics.py``),
over all side pixels and split into *seen* pixels (some frame of the same shot showed
them in its 4:3 centre; ``benchmarks/seen_masks.py`` computes that from the ground
truth alone) and *never-seen* ones, where the detail ratio (the output's mean gradient
magnitude over the truth's) tells a too-smooth fill. Writes the JSON results, a contact
sheet per clip (rows: truth, truth with never-seen side pixels tinted, each method),
evaluates the targets of issue 12 (``benchmarks/outpaint_targets.py``) and prints the
tables ``benchmarks/tables.py`` puts into ``benchmarks/README.md``.

    python benchmarks/outpaint_eval.py [--fills panorama,blur] [--clips tennis,bear]
    python benchmarks/outpaint_eval.py --fills panorama --reuse-baselines   # product only

``--reuse-baselines`` takes Telea, the blurred pillarbox and every CLI fill not run now
from the existing results JSON for each clip whose frame count and size match (and
whose seen masks were made the same way); the seen masks are cached under
``benchmarks/results/cache/`` (not committed), so such a run costs the CLI runs only.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from benchmarks.metrics import (  # noqa: E402
    centre_abs_diff,
    centre_crop_width,
    side_columns,
    split_side_scores,
)
from benchmarks.outpaint_clips import (  # noqa: E402
    blur_pillarbox,
    cli_command,
    contact_sheet,
    decode_nut,
    encode_nut,
    find_clips,
    load_clip,
    run_cli,
    scale_frames,
    telea,
    tint_never_seen,
)
from benchmarks.outpaint_targets import clip_means, targets  # noqa: E402
from benchmarks.seen_masks import MASK_VERSION, cached_seen_masks  # noqa: E402
from benchmarks.tables import render  # noqa: E402

__all__ = ["encode_nut", "evaluate_clip", "main", "reusable", "score"]

log = logging.getLogger(__name__)

DATA = (REPO / ".." / "shared" / "data").resolve()
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_CLI = (sys.executable, "-m", "stream.cli")
BASELINES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "telea": telea,
    "blur_pillarbox": blur_pillarbox,
}
SHEET_PICKS = 3  # frames per contact sheet row: first, middle, last


def score(
    out: list[np.ndarray],
    truth: list[np.ndarray],
    inputs: list[np.ndarray],
    left: int,
    right: int,
    seen: list[np.ndarray],
) -> dict:
    """Side scores (all pixels at the top level, ``seen`` and ``never_seen`` nested) and
    the largest and mean centre difference to the input."""
    worst, mean = centre_abs_diff(out, inputs, left, right)
    if worst:
        log.error("the output centre differs from the input: max %d, mean %.3f", worst, mean)
    split = split_side_scores(out, truth, left, right, seen)

    def rounded(s: dict) -> dict:
        digits = {"psnr": 3, "ssim": 4, "tde": 3, "detail_ratio": 3}
        return {k: None if s[k] is None else round(s[k], d) for k, d in digits.items()}

    return {
        **rounded(split["all"]),
        "seen": rounded(split["seen"]),
        "never_seen": rounded(split["never_seen"]),
        "centre_max_abs_diff": worst,
        "centre_mean_abs_diff": round(mean, 4),
    }


def reusable(previous: dict | None, frames: int, size: Sequence[int]) -> dict[str, dict]:
    """The methods of a previous result for one clip that may stand in for a new run:
    those without an error, when the clip had as many frames of the same size and its
    seen masks were made by this ``MASK_VERSION``; each marked ``reused``."""
    if not previous or previous.get("frames") != frames or previous.get("size") != list(size):
        return {}
    if previous.get("mask_version") != MASK_VERSION:
        return {}
    return {
        name: {**r, "reused": True}
        for name, r in previous.get("methods", {}).items()
        if "error" not in r and "never_seen" in r
    }


def evaluate_clip(
    truth: list[np.ndarray],
    rate: Fraction,
    fills: Sequence[str],
    cli: Sequence[str],
    timeout: float = 1800.0,
    reuse: dict[str, dict] | None = None,
    cache: Path | None = None,
) -> tuple[dict, np.ndarray]:
    """Scores of every method on one clip (already scaled), and its contact sheet.

    Methods in ``reuse`` (see :func:`reusable`) are not run again, except the CLI fills
    asked for; the in-process baselines are then recomputed for the sheet's frames only.
    """
    height, width = truth[0].shape[:2]
    inner = centre_crop_width(height)
    left, right = side_columns(width, inner)
    if right - left >= width:
        raise ValueError(f"clip {width}x{height} is not wider than 4:3")
    reuse = dict(reuse or {})
    inputs = [np.ascontiguousarray(f[:, left:right]) for f in truth]
    n = len(truth)
    t0 = time.perf_counter()
    seen, starts = cached_seen_masks(truth, left, right, cache, rate=float(rate))
    mask_seconds = time.perf_counter() - t0
    chosen = sorted({round(i * (n - 1) / max(1, SHEET_PICKS - 1)) for i in range(SHEET_PICKS)})
    sheet_rows = {
        "truth": [truth[i] for i in chosen],
        "never seen (tinted)": [tint_never_seen(truth[i], seen[i], left, right) for i in chosen],
    }
    methods: dict[str, dict] = {}

    def record(name: str, make: Callable[[], list[np.ndarray]]) -> None:
        t0 = time.perf_counter()
        try:
            out = make()
            seconds = time.perf_counter() - t0
            if len(out) != n or out[0].shape != truth[0].shape:
                got = out[0].shape if out else None
                raise ValueError(f"got {len(out)} frames of {got}, wanted {n} of {truth[0].shape}")
            result = score(out, truth, inputs, left, right, seen)
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired, av.FFmpegError) as e:
            log.error("%s failed: %s", name, e)
            methods[name] = {"error": str(e)}
            return
        methods[name] = result | {"seconds": round(seconds, 3), "fps": round(n / seconds, 2)}
        sheet_rows[name] = [out[i] for i in chosen]
        log.info("%s: %s", name, methods[name])

    if fills:
        data = encode_nut(inputs, rate)
        for fill in fills:
            cmd = cli_command(cli, width, height, fill)
            record(f"cli:{fill}", lambda cmd=cmd: decode_nut(run_cli(data, cmd, timeout)))
    for name, fill in BASELINES.items():
        if name in reuse:
            methods[name] = reuse.pop(name)
            sheet_rows[name] = [fill(inputs[i], width) for i in chosen]
        else:
            record(name, lambda fill=fill: [fill(f, width) for f in inputs])
    for name, r in reuse.items():  # CLI fills of the previous run not run now
        methods.setdefault(name, r)
    base = methods["telea"].get("fps") if not methods["telea"].get("reused") else None
    for r in methods.values():
        if base and "fps" in r and not r.get("reused"):
            r["speed_vs_telea"] = round(r["fps"] / base, 3)
    side_pixels = n * height * (width - (right - left))
    info = {
        "frames": n,
        "size": [width, height],
        "input_size": [inner, height],
        "side_columns": [left, width - right],
        "rate": str(rate),
        "mask_version": MASK_VERSION,
        "segment_starts": [int(s) for s in starts],
        "seen_share": round(sum(int(m.sum()) for m in seen) / side_pixels, 4),
        "mask_seconds": round(mask_seconds, 2),
        "methods": methods,
    }
    return info, contact_sheet(sheet_rows, left, right)


PRODUCT_PATHS = ("stream", "stages", "gpu", "pyproject.toml")


def git_commit() -> str | None:
    """HEAD of the repository, with ``-dirty`` when the product's code has changed."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *PRODUCT_PATHS],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fills", default="panorama,blur", help="CLI fills, comma-separated")
    p.add_argument("--clips", default="", help="clips to run (names or aliases); default all")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (holds gt/)")
    p.add_argument("--out", type=Path, default=RESULTS / "outpaint_eval.json")
    p.add_argument(
        "--reuse-baselines",
        action="store_true",
        help="take Telea, blurred pillarbox and CLI fills not run now from --out's results",
    )
    p.add_argument("--cache", type=Path, default=RESULTS / "cache", help="seen-mask cache")
    p.add_argument("--max-frames", type=int, default=None, help="default: the whole clip")
    p.add_argument("--max-width", type=int, default=854)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per CLI run")
    p.add_argument(
        "--cli", default=None, help="command that replaces `python -m stream.cli` (a stand-in)"
    )
    p.add_argument("--cli-args", default="", help="extra CLI options, e.g. '--mask u2netp'")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.fills = [f.strip() for f in args.fills.split(",") if f.strip()]
    args.clips = [c.strip() for c in args.clips.split(",") if c.strip()]
    args.cli = shlex.split(args.cli) if args.cli else list(DEFAULT_CLI)
    args.cli += shlex.split(args.cli_args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (targets may still fail), 2 when no clip was found."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    clips = find_clips(args.data / "gt")
    if not clips:
        log.error("no clips found under %s", args.data / "gt")
        return 2
    wanted = args.clips or list(clips)
    unknown = [c for c in wanted if c not in clips]
    if unknown:
        log.error("unknown clips %s; known: %s", unknown, ", ".join(clips))
        return 2
    if "blur" not in args.fills and not args.reuse_baselines:
        log.warning("cli:blur is not run: the targets against it fail (--reuse-baselines?)")
    previous = {}
    if args.reuse_baselines and args.out.exists():
        previous = json.loads(args.out.read_text()).get("clips", {})
    t_start = time.perf_counter()
    report: dict = {
        "command": [sys.argv[0], *(sys.argv[1:] if argv is None else argv)],
        "commit": git_commit(),
        "clips": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        path = clips[name]
        frames, rate = load_clip(path, args.max_frames)
        frames = scale_frames(frames, args.max_width)
        reuse = reusable(previous.get(name), len(frames), frames[0].shape[1::-1])
        info, sheet = evaluate_clip(
            frames, rate, args.fills, args.cli, args.timeout, reuse, args.cache
        )
        for r in info["methods"].values():
            r.setdefault("commit", report["commit"])
        info["source"] = str(
            path.relative_to(args.data) if path.is_relative_to(args.data) else path
        )
        sheet_path = args.out.with_name(f"{args.out.stem}_{name}.png")
        cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        info["contact_sheet"] = sheet_path.name
        report["clips"][name] = info
        log.warning("%s done (%.0f s so far)", name, time.perf_counter() - t_start)
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    report["means"] = clip_means(report["clips"])
    if args.fills:
        report["targets"] = targets(report["clips"], f"cli:{args.fills[0]}")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nwrote {args.out}; `python benchmarks/tables.py` puts the tables into the README")
    return 0


if __name__ == "__main__":
    sys.exit(main())
