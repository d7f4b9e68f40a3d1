"""Old-film repair against ffmpeg's filter chains, on clean clips damaged in code.

Every clip of the outpainting dev set (``../shared/data/gt/``) and the two CC0 test
fixtures is cut to its first ``--frames`` frames, scaled to at most 640 px wide, and
damaged by the model of ``benchmarks/damage.py`` (seeded by the clip's name). The
damaged frames go through the repair stage (windows cut at scenes by the project's own
scene buffer, as the CLI does) and through ffmpeg filter chains a user would write
(``ffmpeg -f rawvideo ... -vf format=yuv444p,CHAIN ... -f rawvideo -``). Scores against
the clean frames:

- **PSNR** (RGB, squared error pooled over the clip's frames) and **SSIM** (grey,
  Gaussian window, mean over frames), averaged over clips;
- **flicker**: the standard deviation over frames of (mean luma of the output - mean
  luma of the clean frame), levels, averaged over clips;
- **dust removed**: of the specks the damage model drew (those visible: their body,
  where coverage is at least half the speck's peak, is on average 20 levels or more
  off the clean frame in the speck's direction), the share whose remaining difference
  in that direction is at most a quarter of the damaged one, pooled over all clips;
- **clean PSNR**: each method run on the undamaged clip, output against input (a repair
  that damages good film is no repair), averaged over clips.

ffmpeg's ``tmedian`` leaves out its first and last ``radius`` frames; those are scored
as passed through unchanged. Writes ``benchmarks/results/repair_eval.json``; with
``--readme`` it also rewrites the table in ``benchmarks/README.md`` from that JSON.

    python benchmarks/repair_eval.py [--frames 48] [--clips bear,skater] [--readme]
    python benchmarks/repair_eval.py --table-only --readme   # the README table from the JSON
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

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from benchmarks.damage import Damage, damage, seed_of  # noqa: E402
from benchmarks.metrics import psnr_from_mse, ssim  # noqa: E402
from benchmarks.outpaint_eval import load_clip  # noqa: E402
from stages.repair import RepairSettings, RepairStage  # noqa: E402
from stream.scenes import SceneBuffer, make_detector  # noqa: E402

log = logging.getLogger(__name__)

DATA = (REPO / ".." / "shared" / "data").resolve()
FIXTURES = REPO / "tests" / "fixtures"
MAX_WIDTH = 640
# ffmpeg chains as a user would write them (after format=yuv444p, so that no chroma is
# lost to subsampling; the round trip alone is ~53 dB).
CHAINS = (
    "hqdn3d",
    "atadenoise",
    "tmedian",
    "deflicker,hqdn3d",
    "removegrain=4:4:4",
    "deflicker,tmedian,hqdn3d",
)
OURS = "repair"
NONE = "damaged"  # the damaged input itself, unrepaired
VISIBLE = 20.0  # levels: a speck fainter than this on its clean background is not counted
REMOVED = 0.25  # a speck is removed when at most this share of its difference is left
TARGET_MARGIN_DB = 2.0
TARGET_DUST = 0.90
TARGET_CLEAN_DB = 40.0
README = REPO / "benchmarks" / "README.md"
SPEED = REPO / "benchmarks" / "results" / "repair_speed.json"
MARKERS = ("<!-- repair_eval table: start -->", "<!-- repair_eval table: end -->")


def clips(data: Path) -> dict[str, Path]:
    """Name -> path of every clip: the gt dev set (videos and the tennis frame folder)
    and the CC0 fixtures."""
    out = {}
    gt = data / "gt"
    if gt.is_dir():
        for p in sorted(gt.iterdir()):
            if p.suffix == ".mp4" or (p.is_dir() and p.name.endswith("_frames")):
                out[p.stem.removesuffix("_frames")] = p
    for p in sorted(FIXTURES.glob("*_4x3.mp4")):
        out[f"cc0_{p.stem.removesuffix('_4x3')}"] = p
    return out


def prepare(path: Path, frames: int) -> tuple[list[np.ndarray], Fraction]:
    """The clip's first ``frames`` frames, at most MAX_WIDTH wide (even sizes)."""
    imgs, rate = load_clip(path, frames)
    h, w = imgs[0].shape[:2]
    if w > MAX_WIDTH or w % 2 or h % 2:
        nw = min(w, MAX_WIDTH) // 2 * 2
        nh = max(2, round(h * nw / w / 2) * 2)
        imgs = [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in imgs]
    return imgs, Fraction(rate)


def run_repair(frames: list[np.ndarray], rate: Fraction, settings: RepairSettings) -> list:
    """The repair stage over ``frames``, windows cut at scenes as the CLI cuts them."""
    stage = RepairStage(settings)
    scenes = SceneBuffer(make_detector("content"), rate, budget_bytes=1)
    out = []
    for i, img in enumerate(frames):
        for window in scenes.push(img, i):
            out += stage.process(window)
    for window in scenes.flush():
        out += stage.process(window)
    out += stage.finish()
    if [f.pts for f in out] != list(range(len(frames))):
        raise RuntimeError("the repair stage did not give one frame per frame, in order")
    return [f.image for f in out]


def run_ffmpeg(frames: list[np.ndarray], rate: Fraction, chain: str) -> list[np.ndarray]:
    """``frames`` piped through ``ffmpeg -vf format=yuv444p,CHAIN`` as raw RGB."""
    h, w = frames[0].shape[:2]
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{w}x{h}", "-r", str(rate), "-i", "-", "-vf", f"format=yuv444p,{chain}",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    raw = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    proc = subprocess.run(cmd, input=raw, capture_output=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"ffmpeg -vf {chain} failed: {proc.stderr.decode()[-500:]}")
    got = list(np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3))
    skip = (len(frames) - len(got)) // 2  # tmedian drops its first and last radius frames
    return [*frames[:skip], *got, *frames[skip + len(got) :]]


def luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float64)


def scores(out: Sequence[np.ndarray], clean: Sequence[np.ndarray]) -> dict[str, float]:
    """PSNR (RGB, pooled), SSIM (grey, mean) and flicker (std of the mean-luma error)."""
    mse = float(
        np.mean([np.mean((o.astype(np.float64) - c) ** 2) for o, c in zip(out, clean, strict=True)])
    )
    yo, yc = [luma(o) for o in out], [luma(c) for c in clean]
    return {
        "psnr": psnr_from_mse(mse),
        "ssim": float(np.mean([ssim(a, b) for a, b in zip(yo, yc, strict=True)])),
        "flicker": float(np.std([a.mean() - b.mean() for a, b in zip(yo, yc, strict=True)])),
    }


def dust_removed(dmg: Damage, out: Sequence[np.ndarray], clean: Sequence[np.ndarray]):
    """(removed, visible) specks of ``dmg`` in ``out`` (see the module docstring)."""
    removed = visible = 0
    for sp in dmg.specks:
        x, y, w, h = sp.box
        body = sp.alpha >= 0.5 * sp.alpha.max()
        c = luma(clean[sp.frame][y : y + h, x : x + w])[body]
        d = luma(dmg.frames[sp.frame][y : y + h, x : x + w])[body]
        left = float(np.mean((d - c) * sp.polarity))
        if left < VISIBLE:
            continue
        visible += 1
        r = luma(out[sp.frame][y : y + h, x : x + w])[body]
        removed += float(np.mean((r - c) * sp.polarity)) <= REMOVED * left
    return removed, visible


def evaluate(names: dict[str, Path], frames: int, settings: RepairSettings) -> dict:
    methods = [NONE, OURS, *CHAINS]
    per_clip: dict[str, dict] = {}
    timing = {m: 0.0 for m in methods}
    for name, path in names.items():
        clean, rate = prepare(path, frames)
        dmg = damage(clean, seed_of(name))
        h, w = clean[0].shape[:2]
        row: dict = {"size": f"{w}x{h}", "frames": len(clean), "methods": {}}
        for m in methods:
            t0 = time.perf_counter()
            if m == NONE:
                out, on_clean = dmg.frames, clean
            elif m == OURS:
                out = run_repair(dmg.frames, rate, settings)
                on_clean = run_repair(clean, rate, settings)
            else:
                out = run_ffmpeg(dmg.frames, rate, m)
                on_clean = run_ffmpeg(clean, rate, m)
            timing[m] += time.perf_counter() - t0
            r, v = dust_removed(dmg, out, clean)
            row["methods"][m] = {
                **scores(out, clean),
                "dust_removed": r,
                "dust_visible": v,
                "clean_psnr": psnr_from_mse(
                    float(
                        np.mean(
                            [
                                np.mean((a.astype(np.float64) - b) ** 2)
                                for a, b in zip(on_clean, clean, strict=True)
                            ]
                        )
                    )
                ),
            }
        per_clip[name] = row
        log.info(
            "%s %s: %s",
            name,
            row["size"],
            {m: round(v["psnr"], 2) for m, v in row["methods"].items()},
        )
    return {"clips": per_clip, "summary": summary(per_clip, methods), "seconds": timing}


def summary(per_clip: dict[str, dict], methods: Sequence[str]) -> dict[str, dict]:
    out = {}
    for m in methods:
        rows = [c["methods"][m] for c in per_clip.values()]
        removed = sum(r["dust_removed"] for r in rows)
        visible = sum(r["dust_visible"] for r in rows)
        out[m] = {
            key: float(np.mean([r[key] for r in rows]))
            for key in ("psnr", "ssim", "flicker", "clean_psnr")
        }
        out[m]["clean_psnr_min"] = float(min(r["clean_psnr"] for r in rows))
        out[m]["dust_removed"] = removed / max(visible, 1)
        out[m]["dust_visible"] = visible
    return out


def targets(report: dict) -> dict[str, bool]:
    s = report["summary"]
    best = max(CHAINS, key=lambda m: s[m]["psnr"])
    return {
        f"psnr >= best ffmpeg chain ({best}) + {TARGET_MARGIN_DB} dB": s[OURS]["psnr"]
        >= s[best]["psnr"] + TARGET_MARGIN_DB,
        f"dust removed >= {TARGET_DUST:.0%}": s[OURS]["dust_removed"] >= TARGET_DUST,
        f"clean-input PSNR >= {TARGET_CLEAN_DB} dB (mean)": s[OURS]["clean_psnr"]
        >= TARGET_CLEAN_DB,
    }


def markdown(report: dict) -> str:
    """The README table: one row per method, means over clips."""
    s = report["summary"]
    lines = [
        f"{len(report['clips'])} clips x {report['frames']} frames, damaged by "
        "`benchmarks/damage.py`; means over clips (dust: pooled over all specks).",
        "",
        "| method | PSNR dB | SSIM | flicker (levels) | dust removed | clean-input PSNR dB "
        "(mean / worst clip) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, v in s.items():
        name = f"**{m}** (this stage)" if m == OURS else (m if m == NONE else f"`{m}`")
        clean = "-" if m == NONE else f"{v['clean_psnr']:.2f} / {v['clean_psnr_min']:.2f}"
        lines.append(
            f"| {name} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['flicker']:.2f} | "
            f"{v['dust_removed']:.1%} of {v['dust_visible']} | {clean} | "
            f"{report['seconds'][m]:.0f} |"
        )
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if ok else '**no**'} |" for k, ok in report["targets"].items()]
    lines += ["", "Per clip, PSNR dB (this stage / best ffmpeg chain on that clip):", ""]
    cells = []
    for name, c in report["clips"].items():
        chains = {m: c["methods"][m]["psnr"] for m in CHAINS}
        best = max(chains, key=chains.get)
        cells.append(f"{name} {c['methods'][OURS]['psnr']:.2f} / {chains[best]:.2f}")
    lines.append("; ".join(cells) + ".")
    if SPEED.is_file():
        lines += ["", *speed_lines(json.loads(SPEED.read_text()))]
    return "\n".join(lines) + "\n"


def speed_lines(speed: dict) -> list[str]:
    """The speed table of ``benchmarks/repair_speed.py``'s JSON."""
    fps, lines = speed["stage_fps"], []
    lines += [
        f"Speed (`{speed['command']}`, {speed['clip']}, {speed['frames']} frames, "
        f"{speed['machine']}):",
        "",
        "| what | fps | x the blurred pillarbox |",
        "|---|---|---|",
        f"| repair stage alone | {fps['repair']:.1f} | {speed['repair_over_blur_stage_fps']:.3f} |",
        f"| `--fill blur` stage alone | {fps['blur']:.0f} | 1 |",
    ]
    if "cli_fps" in speed:
        cli = speed["cli_fps"]
        lines += [
            f"| CLI `--repair --fill blur` | {cli['repair+blur']:.1f} | "
            f"{speed['cli_repair_over_blur_fps']:.3f} |",
            f"| CLI `--fill blur` | {cli['blur']:.1f} | 1 |",
        ]
    return lines


def write_readme(table: str, readme: Path = README) -> None:
    """Replace the text between MARKERS in ``readme`` with ``table``."""
    text = readme.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}{end}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--frames", type=int, default=48, help="first frames of each clip")
    p.add_argument("--clips", help="comma-separated clip names (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/repair_eval.json")
    p.add_argument("--readme", action="store_true", help="rewrite the README table")
    p.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: print (and with --readme write) the table of the JSON at --out",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.table_only:
        table = markdown(json.loads(args.out.read_text()))
        print(table)
        if args.readme:
            write_readme(table)
        return 0
    if args.frames < 8:
        p.error(f"--frames must be >= 8, got {args.frames}")
    names = clips(args.data)
    if args.clips:
        wanted = args.clips.split(",")
        unknown = [n for n in wanted if n not in names]
        if unknown:
            p.error(f"unknown clips {unknown}; known: {sorted(names)}")
        names = {n: names[n] for n in wanted}
    if not any(n for n in names if not n.startswith("cc0_")):
        log.warning("no gt clips under %s: only the CC0 fixtures are scored", args.data)
    report = {
        "command": " ".join(["python", "benchmarks/repair_eval.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "frames": args.frames,
        **evaluate(names, args.frames, RepairSettings()),
    }
    report["targets"] = targets(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    print(table)
    if args.readme:
        write_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
