"""Fast benchmark of the hole fill alone on never-seen side pixels (no CLI, no registration).

Every GT clip is scaled to at most 854 wide, its 4:3 centre kept and the sides treated as
unknown, as if no frame of the scene had shown them: a pessimistic proxy for the pixels
the panorama never saw (every clip is handled as a static shot). Three modes per fill:

* ``scene``: the temporal median of each shot's centre crops is filled once and its sides
  pasted beside every frame of the shot (what the product does for a static shot);
* ``panorama``: what the fill is really handed: each shot's centre crops go through the
  outpaint stage (``stages.outpaint``) in-process, and the panorama and known mask its
  fill receives (foreground masked, ragged borders) are recorded once; kept only where
  the panorama lines up with the frames (static shots), and scored like ``scene``;
* ``frame``: each scored frame is filled on its own (the low-confidence fallback).

Scores on the side pixels of evenly spaced frames: PSNR (MSE pooled), SSIM, and the detail
ratio (mean gradient magnitude of the fill over the truth's; 1 = as much detail as the
truth). Per-frame Telea (radius 3) and the blurred pillarbox run in the same process as
baselines. Writes JSON and the Markdown tables beside it (``results/fill_eval.md``).

    python benchmarks/fill_eval.py [--fills new,old] [--clips bear,skater] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import shlex
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from benchmarks.metrics import centre_crop_width, grey, side_columns, side_psnr, side_ssim  # noqa: E402
from benchmarks.outpaint_eval import blur_pillarbox, load_clip, scale_frames, telea  # noqa: E402
from stages.base import HoleFill  # noqa: E402

log = logging.getLogger(__name__)

GT = (REPO / ".." / "shared" / "data" / "gt").resolve()
SCORED_FRAMES = 12  # evenly spaced frames scored per clip
FRAME_MODE_FRAMES = 6  # of those, the ones filled one by one in ``frame`` mode
CUT_DIFF = 30.0  # mean abs grey difference of 64-px thumbnails that starts a new shot


def gt_clips() -> dict[str, Path]:
    """Name -> path of every clip in the GT folder (files and frame folders)."""
    return {p.stem: p for p in sorted(GT.iterdir()) if p.is_dir() or p.suffix == ".mp4"}


def shots(frames: Sequence[np.ndarray]) -> list[int]:
    """Shot index of each frame: a new shot where consecutive thumbnails differ a lot."""
    thumbs = [cv2.resize(grey(f), (64, 36), interpolation=cv2.INTER_AREA) for f in frames]
    out = [0]
    for a, b in zip(thumbs, thumbs[1:], strict=False):
        out.append(out[-1] + int(np.abs(a - b).mean() > CUT_DIFF))
    return out


class Clip:
    """One GT clip prepared for the fill: scored truth frames, their shots, shot medians."""

    def __init__(self, path: Path, max_frames: int = 150):
        frames, _ = load_clip(path, max_frames)
        frames = scale_frames(frames)
        h, w = frames[0].shape[:2]
        self.left, self.right = side_columns(w, centre_crop_width(h))
        shot = shots(frames)
        n = len(frames)
        self.picks = sorted(
            {round(i * (n - 1) / (SCORED_FRAMES - 1)) for i in range(SCORED_FRAMES)}
        )
        self.truth = [frames[i] for i in self.picks]
        self.shot = [shot[i] for i in self.picks]
        self.medians: dict[int, np.ndarray] = {}
        self.panoramas: dict[int, tuple[np.ndarray, np.ndarray, int, int] | None] = {}
        extra = w - (self.right - self.left)
        for s in sorted(set(self.shot)):
            crops = [
                f[:, self.left : self.right] for f, k in zip(frames, shot, strict=True) if k == s
            ]
            self.medians[s] = np.median(np.stack(crops), axis=0).astype(np.uint8)
            self.panoramas[s] = panorama_input(crops, self.medians[s], extra, s)
        self.cuts = max(shot)

    def canvas(self, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The centre on a black canvas of the clip's width, and the known mask."""
        h, w = self.truth[0].shape[:2]
        image = np.zeros((h, w, 3), np.uint8)
        image[:, self.left : self.right] = centre
        known = np.zeros((h, w), bool)
        known[:, self.left : self.right] = True
        return image, known


class _Recorder(HoleFill):
    """A fill that records its first input and returns the known colours' mean."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        self.calls.append((image.copy(), known.copy()))
        out = image.copy()
        out[~known] = image[known].mean(0) if known.any() else 128
        return out

    def close(self) -> None:
        pass


def panorama_input(
    crops: list[np.ndarray], median: np.ndarray, extra: int, scene: int
) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """The (panorama, known, row, column of the full frame's top-left) the outpaint stage
    hands its fill for one shot of 4:3 ``crops`` widened by ``extra`` columns, or None
    when the panorama does not line up with the frames within 3 grey levels (moving
    camera) or was never filled."""
    from stages.base import VideoInfo, Window
    from stages.outpaint import PanoramaOutpaint

    h, w = crops[0].shape[:2]
    rec = _Recorder()
    stage = PanoramaOutpaint(Fraction(w + extra, h), fill=rec)
    stage.configure(VideoInfo(w, h, Fraction(1, 24)))
    for i, crop in enumerate(crops):
        stage.peek(crop, scene, i == 0)
    list(stage.process(Window(list(crops), list(range(len(crops))), scene)))
    stage.close()
    if not rec.calls:
        return None
    image, known = rec.calls[0]
    ch, cw = known.shape
    if ch > 1.25 * h or cw > 1.25 * (w + extra):
        return None
    best = (np.inf, 0, 0)
    for dy in range(ch - h + 1):
        for dx in range(cw - w + 1):
            k = known[dy : dy + h, dx : dx + w]
            if k.mean() > 0.3:
                err = np.abs(image[dy : dy + h, dx : dx + w][k].astype(np.float32) - median[k])
                best = min(best, (float(err.mean()), dy, dx))
    err, dy, dx = best
    left = dx - extra // 2
    if err > 3 or left < 0 or dy + h > ch or left + w + extra > cw:
        return None
    return image, known, dy, left


def cached_clip(path: Path, cache: Path | None) -> Clip:
    """A :class:`Clip`, pickled in ``cache`` (when given) for the next run."""
    if cache is None:
        return Clip(path)
    file = cache / f"{path.stem}.pkl"
    if file.exists():
        return pickle.loads(file.read_bytes())
    clip = Clip(path)
    cache.mkdir(parents=True, exist_ok=True)
    file.write_bytes(pickle.dumps(clip))
    return clip


Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]


def detail_ratio(
    out: Sequence[np.ndarray], truth: Sequence[np.ndarray], left: int, right: int
) -> float:
    """Mean grey gradient magnitude of ``out`` over that of ``truth`` on the side columns."""

    def grad(img: np.ndarray) -> np.ndarray:
        g = grey(img).astype(np.float32)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8
        mag = np.sqrt(gx * gx + gy * gy)
        return np.concatenate([mag[:, : left - 1].ravel(), mag[:, right + 1 :].ravel()])

    o = np.mean([grad(f).mean() for f in out])
    t = np.mean([grad(f).mean() for f in truth])
    return float(o / max(t, 1e-6))


def scores(out: list[np.ndarray], clip: Clip, idx: Sequence[int]) -> dict[str, float]:
    truth = [clip.truth[i] for i in idx]
    return {
        "psnr": round(side_psnr(out, truth, clip.left, clip.right), 3),
        "ssim": round(side_ssim(out, truth, clip.left, clip.right), 4),
        "detail": round(detail_ratio(out, truth, clip.left, clip.right), 3),
    }


def beside(filled: dict[int, np.ndarray], clip: Clip) -> list[np.ndarray]:
    """Each scored frame with the sides of its shot's filled picture."""
    out = []
    for f, s in zip(clip.truth, clip.shot, strict=True):
        o = filled[s].copy()
        o[:, clip.left : clip.right] = f[:, clip.left : clip.right]
        out.append(o)
    return out


def run_scene(fill: Fill, clip: Clip) -> tuple[list[np.ndarray], float]:
    """Each shot's median filled once, its sides pasted beside the scored frames."""
    filled, seconds = {}, 0.0
    for s, median in clip.medians.items():
        image, known = clip.canvas(median)
        t0 = time.perf_counter()
        filled[s] = fill(image, known)
        seconds += time.perf_counter() - t0
        assert np.array_equal(filled[s][known], image[known]), "fill changed known pixels"
    return beside(filled, clip), seconds / len(clip.medians)


def run_panorama(fill: Fill, clip: Clip) -> tuple[list[np.ndarray], float] | None:
    """Each shot's recorded panorama filled once, its sides pasted beside the scored
    frames; None when some shot has no usable panorama."""
    if any(p is None for p in clip.panoramas.values()):
        return None
    h, w = clip.truth[0].shape[:2]
    filled, seconds = {}, 0.0
    for s, (image, known, dy, dx) in clip.panoramas.items():
        t0 = time.perf_counter()
        filled[s] = fill(image, known)[dy : dy + h, dx : dx + w]
        seconds += time.perf_counter() - t0
    return beside(filled, clip), seconds / len(clip.panoramas)


def frame_idx(clip: Clip) -> list[int]:
    n = len(clip.truth)
    return sorted({round(i * (n - 1) / (FRAME_MODE_FRAMES - 1)) for i in range(FRAME_MODE_FRAMES)})


def run_frame(fill: Fill, clip: Clip) -> tuple[list[np.ndarray], float]:
    out, seconds = [], 0.0
    for i in frame_idx(clip):
        image, known = clip.canvas(clip.truth[i][:, clip.left : clip.right])
        t0 = time.perf_counter()
        out.append(fill(image, known))
        seconds += time.perf_counter() - t0
    return out, seconds / len(out)


def baselines(clip: Clip) -> dict[str, dict]:
    """Per-frame Telea and blurred pillarbox, scored on both frame sets."""
    w = clip.truth[0].shape[1]
    res = {}
    for name, fn in (("telea", telea), ("blur", blur_pillarbox)):
        out = [fn(np.ascontiguousarray(f[:, clip.left : clip.right]), w) for f in clip.truth]
        idx = frame_idx(clip)
        res[name] = {
            "scene": scores(out, clip, range(len(out))),
            "frame": scores([out[i] for i in idx], clip, idx),
        }
    return res


OLD_FILL_COMMIT = "da82241"  # the push-pull membrane fill this one replaced


def old_fill() -> Fill:
    """The fill of ``stages/fill.py`` at :data:`OLD_FILL_COMMIT`, loaded from git history."""
    source = subprocess.run(
        ["git", "show", f"{OLD_FILL_COMMIT}:stages/fill.py"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("old_fill")
    exec(compile(source, f"{OLD_FILL_COMMIT}:stages/fill.py", "exec"), module.__dict__)
    return module.ClassicalFill()


def telea_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """OpenCV Telea (radius 3) as a fill: in ``scene`` mode it fills the shot median."""
    out = cv2.inpaint(image, (~known).astype(np.uint8), 3, cv2.INPAINT_TELEA)
    out[known] = image[known]
    return out


def fills() -> dict[str, Callable[[], Fill]]:
    """Name -> factory of every fill this benchmark knows."""
    from stages.fill import ClassicalFill

    return {
        "new": ClassicalFill,
        "new_full_size": lambda: ClassicalFill(work_height=1 << 20, max_pixels=1 << 40),
        "old": old_fill,
        "telea_fill": lambda: telea_fill,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fills", default="new,new_full_size,old,telea_fill", help="comma-separated")
    ap.add_argument("--clips", default="", help="comma-separated clip names (default all)")
    ap.add_argument("--modes", default="scene,panorama,frame")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fill_eval.json")
    ap.add_argument("--cache", type=Path, default=None, help="folder to keep prepared clips in")
    ap.add_argument("--merge", action="store_true", help="keep other fills' entries in --out")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    known_fills = fills()
    names = [n for n in args.fills.split(",") if n]
    for n in names:
        if n not in known_fills:
            raise SystemExit(f"unknown fill {n!r}; known: {', '.join(known_fills)}")
    clips = gt_clips()
    if args.clips:
        clips = {k: v for k, v in clips.items() if any(c in k for c in args.clips.split(","))}
    modes = args.modes.split(",")
    report = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {}
    report.setdefault("clips", {})
    for cname, path in clips.items():
        clip = cached_clip(path, args.cache)
        entry = report["clips"].setdefault(cname, {})
        entry["shots"] = clip.cuts + 1
        if "telea" not in entry:
            entry.update(baselines(clip))
        for n in names:
            fill = known_fills[n]()
            entry[n] = {}
            for mode in modes:
                run = {"scene": run_scene, "panorama": run_panorama, "frame": run_frame}[mode]
                got = run(fill, clip)
                if got is None:
                    continue
                out, sec = got
                idx = frame_idx(clip) if mode == "frame" else range(len(out))
                entry[n][mode] = scores(out, clip, idx) | {"ms_per_call": round(sec * 1000, 1)}
        log.info("%s: %s", cname, {k: v for k, v in entry.items() if k != "shots"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report, names, modes)
    args.out.with_suffix(".md").write_text(f"`{shlex.join(sys.argv)}`\n{table}\n")
    print(table)
    return 0


def markdown(report: dict, names: Sequence[str], modes: Sequence[str]) -> str:
    lines = []
    methods = [*names, "telea", "blur"]
    for mode in modes:
        lines.append(f"\n{mode}: PSNR / SSIM / detail\n")
        lines.append("| clip | " + " | ".join(methods) + " |")
        lines.append("|---" * (len(methods) + 1) + "|")
        means = {m: [] for m in methods}
        for cname, e in report["clips"].items():
            cells = []
            for m in methods:
                s = e.get(m, {}).get(mode)
                if (
                    mode == "panorama"
                    and m in ("telea", "blur")
                    and any("panorama" in e.get(n, {}) for n in names)
                ):  # per-frame baselines on the same frames
                    s = e[m]["scene"]
                if s is None:
                    cells.append("-")
                    continue
                means[m].append(s["psnr"])
                cells.append(f"{s['psnr']:.2f} / {s['ssim']:.3f} / {s['detail']:.2f}")
            lines.append(f"| {cname} | " + " | ".join(cells) + " |")
        lines.append(
            "| mean PSNR | "
            + " | ".join(f"{np.mean(v):.2f}" if v else "-" for v in means.values())
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
