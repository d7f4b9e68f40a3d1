"""Outpainting quality benchmark: widen 4:3 crops of wide clips, score the invented sides.

For each clip wider than 4:3 the centre is cropped to 4:3, encoded losslessly (FFV1 in
NUT) and piped through the ``remaster`` CLI back to the original size; only the side
columns, which the CLI had to invent, are compared with the real ones (PSNR, SSIM, TDE,
see ``benchmarks/metrics.py``). Two baselines run in the same process on the same
frames: a blurred pillarbox and per-frame OpenCV Telea inpainting. Writes a JSON table,
a contact sheet per clip, and prints a Markdown table.

    python benchmarks/outpaint_eval.py [--fills panorama,blur] [--out PATH] [--clips tennis]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
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
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.metrics` importable
    sys.path.insert(0, str(REPO))

from benchmarks.metrics import (  # noqa: E402
    centre_abs_diff,
    centre_crop_width,
    side_columns,
    side_psnr,
    side_ssim,
    side_tde,
)

log = logging.getLogger(__name__)

DATA = (REPO / ".." / "shared" / "data").resolve()
CLIPS = {"tennis": "gt/tennis_frames", "skater": "gt/skater.mp4", "bear": "gt/bear.mp4"}
DEFAULT_CLI = (sys.executable, "-m", "stream.cli")
BASELINES = ("blur_pillarbox", "telea")
METRICS = ("psnr", "ssim", "tde")
TARGET_PSNR = 22.0
TARGET_PSNR_MARGIN = 2.0
TARGET_TDE_RATIO = 0.7
SHEET_TILE_WIDTH = 280


def even(x: float) -> int:
    """Nearest even integer, at least 2."""
    return max(2, 2 * round(x / 2))


def load_clip(path: Path, max_frames: int = 120) -> tuple[list[np.ndarray], Fraction]:
    """RGB frames of a video file or a folder of images (sorted), and the frame rate."""
    if max_frames < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        if not files:
            raise FileNotFoundError(f"no .jpg/.png frames in {path}")
        frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[:max_frames]]
        return frames, Fraction(24)
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(24)
        for vf in container.decode(stream):
            frames.append(vf.to_ndarray(format="rgb24"))
            if len(frames) == max_frames:
                break
    if not frames:
        raise ValueError(f"no video frames decoded from {path}")
    return frames, Fraction(rate)


def scale_frames(frames: list[np.ndarray], max_width: int = 854) -> list[np.ndarray]:
    """Frames scaled down (never up) to at most ``max_width`` wide, both sides even."""
    h, w = frames[0].shape[:2]
    s = min(1.0, max_width / w)
    size = (even(w * s), even(h * s))
    if size == (w, h):
        return frames
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def encode_nut(frames: Sequence[np.ndarray], rate: Fraction, pix_fmt: str = "bgr0") -> bytes:
    """Lossless FFV1 in a NUT container, in memory (bgr0: RGB survives bit-exactly)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="nut") as out:
        stream = out.add_stream("ffv1", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf.reformat(format=pix_fmt)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode_nut(data: bytes) -> list[np.ndarray]:
    """RGB frames of the first video stream of NUT bytes."""
    with av.open(io.BytesIO(data), format="nut") as container:
        return [vf.to_ndarray(format="rgb24") for vf in container.decode(video=0)]


def cli_command(cli: Sequence[str], width: int, height: int, fill: str) -> list[str]:
    """The remaster command line reading NUT on stdin and writing FFV1/NUT on stdout
    (bgr0: the picture comes back bit-exactly)."""
    return [
        *cli, "-", "-", "--input-format", "nut", "-f", "nut", "--codec", "ffv1",
        "--pix-fmt", "bgr0", "--crop", "none", "--size", f"{width}x{height}", "--fill", fill, "--quiet",
    ]  # fmt: skip


def run_cli(data: bytes, cmd: Sequence[str], timeout: float) -> bytes:
    """Pipe ``data`` through ``cmd`` (run in the repository root); its stdout, or an error."""
    log.info("running %s", shlex.join(cmd))
    proc = subprocess.run(
        list(cmd), input=data, capture_output=True, cwd=REPO, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-1500:]
        raise RuntimeError(f"exit status {proc.returncode}: {tail}")
    return proc.stdout


def blur_pillarbox(frame: np.ndarray, width: int) -> np.ndarray:
    """The picture scaled to cover ``width``, Gaussian-blurred, with the original on top.

    The blur (sigma = height / 20) runs at a quarter of the size, which looks the same
    and costs a sixteenth.
    """
    h, w = frame.shape[:2]
    left, right = side_columns(width, w)
    tall = max(h, round(h * width / w))
    top = (tall - h) // 2
    cover = cv2.resize(frame, (width, tall), interpolation=cv2.INTER_LINEAR)[top : top + h]
    small = cv2.resize(cover, (max(1, width // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, h / 80), borderType=cv2.BORDER_REFLECT)
    out = cv2.resize(small, (width, h), interpolation=cv2.INTER_LINEAR)
    out[:, left:right] = frame
    return out


def telea(frame: np.ndarray, width: int) -> np.ndarray:
    """The side columns filled by OpenCV's Telea inpainting (radius 3), one frame alone."""
    h, w = frame.shape[:2]
    left, right = side_columns(width, w)
    canvas = np.zeros((h, width, 3), np.uint8)
    canvas[:, left:right] = frame
    mask = np.full((h, width), 255, np.uint8)
    mask[:, left:right] = 0
    out = cv2.inpaint(canvas, mask, 3, cv2.INPAINT_TELEA)
    out[:, left:right] = frame
    return out


def score(
    out: list[np.ndarray],
    truth: list[np.ndarray],
    inputs: list[np.ndarray],
    left: int,
    right: int,
) -> dict[str, float]:
    """Side PSNR / SSIM / TDE against the truth; max and mean centre difference to the input."""
    worst, mean = centre_abs_diff(out, inputs, left, right)
    if worst:
        log.error("the output centre differs from the input: max %d, mean %.3f", worst, mean)
    return {
        "psnr": round(side_psnr(out, truth, left, right), 3),
        "ssim": round(side_ssim(out, truth, left, right), 4),
        "tde": round(side_tde(out, truth, left, right), 3),
        "centre_max_abs_diff": worst,
        "centre_mean_abs_diff": round(mean, 4),
    }


def contact_sheet(
    rows: dict[str, list[np.ndarray]], left: int, right: int, tile_width: int = SHEET_TILE_WIDTH
) -> np.ndarray:
    """RGB sheet, one labelled row per method, the seams marked by ticks at top and bottom."""
    h, w = next(iter(rows.values()))[0].shape[:2]
    th = max(2, round(h * tile_width / w))
    sx = tile_width / w
    gap = 4
    lines = []
    for label, frames in rows.items():
        tiles = []
        for f in frames:
            t = cv2.resize(f, (tile_width, th), interpolation=cv2.INTER_AREA)
            for x in (round(left * sx), round(right * sx)):
                cv2.line(t, (x, 0), (x, 6), (255, 255, 0), 1)
                cv2.line(t, (x, th - 7), (x, th - 1), (255, 255, 0), 1)
            tiles.append(t)
            tiles.append(np.full((th, gap, 3), 255, np.uint8))
        line = np.hstack(tiles[:-1])
        cv2.putText(line, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
        cv2.putText(line, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        lines += [line, np.full((gap, line.shape[1], 3), 255, np.uint8)]
    return np.vstack(lines[:-1])


def evaluate_clip(
    truth: list[np.ndarray],
    rate: Fraction,
    fills: Sequence[str],
    cli: Sequence[str],
    timeout: float = 1800.0,
    picks: int = 3,
) -> tuple[dict, np.ndarray]:
    """Scores of every method on one clip (already scaled), and its contact sheet."""
    height, width = truth[0].shape[:2]
    inner = centre_crop_width(height)
    left, right = side_columns(width, inner)
    if right - left >= width:
        raise ValueError(f"clip {width}x{height} is not wider than 4:3")
    inputs = [np.ascontiguousarray(f[:, left:right]) for f in truth]
    n = len(truth)
    chosen = sorted({round(i * (n - 1) / max(1, picks - 1)) for i in range(picks)})
    sheet_rows = {"truth": [truth[i] for i in chosen]}
    methods: dict[str, dict] = {}

    def record(name: str, make: Callable[[], list[np.ndarray]]) -> None:
        t0 = time.perf_counter()
        try:
            out = make()
            seconds = time.perf_counter() - t0
            if len(out) != n or out[0].shape != truth[0].shape:
                got = out[0].shape if out else None
                raise ValueError(f"got {len(out)} frames of {got}, wanted {n} of {truth[0].shape}")
            result = score(out, truth, inputs, left, right)
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired, av.FFmpegError) as e:
            log.error("%s failed: %s", name, e)
            methods[name] = {"error": str(e)}
            return
        result |= {"seconds": round(seconds, 3), "fps": round(n / seconds, 2)}
        methods[name] = result
        sheet_rows[name] = [out[i] for i in chosen]
        log.info("%s: %s", name, result)

    if fills:
        data = encode_nut(inputs, rate)
        for fill in fills:
            cmd = cli_command(cli, width, height, fill)
            record(f"cli:{fill}", lambda cmd=cmd: decode_nut(run_cli(data, cmd, timeout)))
    record("blur_pillarbox", lambda: [blur_pillarbox(f, width) for f in inputs])
    record("telea", lambda: [telea(f, width) for f in inputs])
    base = methods["telea"].get("fps")
    for r in methods.values():
        if base and "fps" in r:
            r["speed_vs_telea"] = round(r["fps"] / base, 3)
    info = {
        "frames": n,
        "size": [width, height],
        "input_size": [inner, height],
        "side_columns": [left, width - right],
        "rate": str(rate),
        "methods": methods,
    }
    return info, contact_sheet(sheet_rows, left, right)


def _metric(clip: dict, method: str, key: str) -> float | None:
    value = clip["methods"].get(method, {}).get(key)
    return None if value is None else float(value)


def targets(clips: dict[str, dict], product: str) -> dict:
    """Pass/fail of the product's targets against the baselines, per clip and overall."""
    per_clip = {}
    psnrs, tdes, blur_tdes = [], [], []
    for name, clip in clips.items():
        p, s, t = (_metric(clip, product, k) for k in METRICS)
        pt, st = _metric(clip, "telea", "psnr"), _metric(clip, "telea", "ssim")
        sb, tb = _metric(clip, "blur_pillarbox", "ssim"), _metric(clip, "blur_pillarbox", "tde")
        ok = None not in (p, s, t, pt, st, sb, tb)
        per_clip[name] = {
            "psnr_margin_vs_telea": round(p - pt, 3) if ok else None,
            "psnr_margin_pass": ok and p - pt >= TARGET_PSNR_MARGIN,
            "ssim_ahead_of_baselines_pass": ok and s > max(sb, st),
            "tde_ratio_vs_blur": round(t / tb, 3) if ok and tb > 0 else None,
        }
        if ok:
            psnrs.append(p)
            tdes.append(t)
            blur_tdes.append(tb)
    complete = bool(clips) and len(psnrs) == len(clips)
    mean_psnr = float(np.mean(psnrs)) if complete else None
    tde_ratio = float(np.mean(tdes) / np.mean(blur_tdes)) if complete else None
    overall = {
        "mean_psnr": round(mean_psnr, 3) if mean_psnr is not None else None,
        "mean_psnr_pass": complete and mean_psnr >= TARGET_PSNR,
        "psnr_margin_every_clip_pass": complete
        and all(c["psnr_margin_pass"] for c in per_clip.values()),
        "mean_tde_ratio_vs_blur": round(tde_ratio, 3) if tde_ratio is not None else None,
        "mean_tde_ratio_pass": complete and tde_ratio <= TARGET_TDE_RATIO,
        "ssim_every_clip_pass": complete
        and all(c["ssim_ahead_of_baselines_pass"] for c in per_clip.values()),
    }
    overall["all_pass"] = all(v for k, v in overall.items() if k.endswith("_pass"))
    return {
        "product": product,
        "need": {
            "mean_psnr_db": f">= {TARGET_PSNR}",
            "psnr_margin_vs_telea_db": f">= {TARGET_PSNR_MARGIN} on every clip",
            "mean_tde_ratio_vs_blur": f"<= {TARGET_TDE_RATIO}",
            "ssim": "ahead of blur_pillarbox and telea on every clip",
        },
        "per_clip": per_clip,
        "overall": overall,
    }


def markdown(report: dict) -> str:
    """The results and the targets as Markdown tables."""

    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "pass" if v else "FAIL"
        if isinstance(v, float):
            return "inf" if math.isinf(v) else f"{v:g}"
        return "-" if v is None else str(v)

    out = [
        "| clip | size | frames | method | PSNR dB | SSIM | TDE | centre max/mean diff | s | fps "
        "| speed / Telea |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, clip in report["clips"].items():
        size = "x".join(map(str, clip["size"]))
        for method, r in clip["methods"].items():
            if "error" in r:
                err = r["error"].replace("|", "/").replace("\n", " ")[:80]
                out.append(f"| {name} | {size} | {clip['frames']} | {method} | error: {err} |")
                continue
            cells = [fmt(r[k]) for k in METRICS]
            cells.append(f"{r['centre_max_abs_diff']} / {fmt(r['centre_mean_abs_diff'])}")
            cells += [fmt(r.get(k)) for k in ("seconds", "fps", "speed_vs_telea")]
            row = " | ".join(cells)
            out.append(f"| {name} | {size} | {clip['frames']} | {method} | {row} |")
    t = report.get("targets")
    if t:
        out += ["", f"Targets for `{t['product']}`:", ""]
        out += ["| clip | PSNR margin vs Telea | >= 2 dB | SSIM ahead | TDE / blur |"]
        out += ["|---|---|---|---|---|"]
        for name, c in t["per_clip"].items():
            cells = (
                c["psnr_margin_vs_telea"],
                c["psnr_margin_pass"],
                c["ssim_ahead_of_baselines_pass"],
                c["tde_ratio_vs_blur"],
            )
            out.append(f"| {name} | " + " | ".join(fmt(v) for v in cells) + " |")
        o = t["overall"]
        out += [
            "",
            f"- mean side PSNR {fmt(o['mean_psnr'])} dB (>= {TARGET_PSNR}): "
            f"{fmt(o['mean_psnr_pass'])}",
            f"- PSNR >= {TARGET_PSNR_MARGIN} dB ahead of Telea on every clip: "
            f"{fmt(o['psnr_margin_every_clip_pass'])}",
            f"- mean TDE / blurred pillarbox's {fmt(o['mean_tde_ratio_vs_blur'])} "
            f"(<= {TARGET_TDE_RATIO}): {fmt(o['mean_tde_ratio_pass'])}",
            f"- SSIM ahead of both baselines on every clip: {fmt(o['ssim_every_clip_pass'])}",
            f"- all targets: {fmt(o['all_pass'])}",
        ]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fills", default="panorama", help="CLI fills, comma-separated ('' = none)")
    p.add_argument("--clips", default=",".join(CLIPS), help="clips to run, comma-separated")
    p.add_argument("--data", type=Path, default=DATA, help="the shared test data folder")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/outpaint_eval.json")
    p.add_argument("--max-frames", type=int, default=120)
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
    unknown = [c for c in args.clips if c not in CLIPS]
    if unknown:
        p.error(f"unknown clips {unknown}; known: {', '.join(CLIPS)}")
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
    report: dict = {"command": [sys.argv[0], *(argv or sys.argv[1:])], "clips": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.clips:
        path = args.data / CLIPS[name]
        if not path.exists():
            log.warning("%s: %s not found, skipped", name, path)
            continue
        frames, rate = load_clip(path, args.max_frames)
        frames = scale_frames(frames, args.max_width)
        info, sheet = evaluate_clip(frames, rate, args.fills, args.cli, args.timeout)
        info["source"] = str(path)
        report["clips"][name] = info
        sheet_path = args.out.with_name(f"{args.out.stem}_{name}.png")
        cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        info["contact_sheet"] = str(sheet_path)
    if not report["clips"]:
        log.error("no clips found under %s", args.data)
        return 2
    if args.fills:
        report["targets"] = targets(report["clips"], f"cli:{args.fills[0]}")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
