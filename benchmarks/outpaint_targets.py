"""Means over clips and the targets of issue 12 for the outpaint eval's results.

Targets, for the product against the CLI's own blurred pillarbox (``cli:blur``) and
per-frame Telea (``telea``): side PSNR at least ``PSNR_MARGIN`` dB over the better of
the two on every clip; mean side PSNR at least ``MEAN_MARGIN`` dB over Telea's mean;
mean TDE at most ``TDE_RATIO`` times the blur's; SSIM ahead of both on every clip; the
centre passed through unchanged; the three pans at least ``PANS_PSNR`` dB on average;
never-seen PSNR ahead of Telea's on every clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PSNR_MARGIN = 1.0
MEAN_MARGIN = 3.0
TDE_RATIO = 0.7
PANS_PSNR = 22.0
PANS = ("tennis", "skater", "bear")
BLUR = "cli:blur"
TELEA = "telea"
KEYS = ("psnr", "ssim", "tde", "detail_ratio")
SPLIT_KEYS = ("seen", "never_seen")


def metric(clip: dict, method: str, key: str, split: str | None = None) -> float | None:
    """One score of one method on one clip (``split``: "seen" / "never_seen"), or None."""
    r = clip.get("methods", {}).get(method, {})
    if split is not None:
        r = r.get(split) or {}
    value = r.get(key)
    return None if value is None else float(value)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def clip_means(clips: dict[str, dict]) -> dict[str, dict]:
    """Per method: the mean over the clips it scored of each score (all, seen, never
    seen; a split mean covers the clips that have such pixels) and how many clips."""
    methods = sorted({m for c in clips.values() for m in c.get("methods", {})})
    means = {}
    for m in methods:
        done = [c for c in clips.values() if "psnr" in c["methods"].get(m, {})]
        row: dict = {"clips": len(done)}
        row |= {k: _mean([metric(c, m, k) for c in done]) for k in KEYS}
        for split in SPLIT_KEYS:
            row[split] = {k: _mean([metric(c, m, k, split) for c in done]) for k in KEYS}
            row[split]["clips"] = sum(metric(c, m, "psnr", split) is not None for c in done)
        means[m] = row
    return means


def _ok(*values: float | None) -> bool:
    return None not in values


def targets(clips: dict[str, dict], product: str = "cli:panorama") -> dict:
    """Pass/fail of every target, per clip and overall (a target missing a score fails)."""
    per_clip = {}
    for name, clip in clips.items():
        p, s = metric(clip, product, "psnr"), metric(clip, product, "ssim")
        pb, sb = metric(clip, BLUR, "psnr"), metric(clip, BLUR, "ssim")
        pt, st = metric(clip, TELEA, "psnr"), metric(clip, TELEA, "ssim")
        t, tb = metric(clip, product, "tde"), metric(clip, BLUR, "tde")
        pn, ptn = (
            metric(clip, product, "psnr", "never_seen"),
            metric(clip, TELEA, "psnr", "never_seen"),
        )
        centre = clip.get("methods", {}).get(product, {}).get("centre_max_abs_diff")
        margin = p - max(pb, pt) if _ok(p, pb, pt) else None
        if clip.get("seen_share") == 1.0:  # nothing never seen: nothing to beat Telea on
            ns_margin, ns_pass = None, True
        else:
            ns_margin = pn - ptn if _ok(pn, ptn) else None
            ns_pass = ns_margin is not None and ns_margin > 0
        per_clip[name] = {
            "psnr_margin_vs_best_baseline": None if margin is None else round(margin, 3),
            "psnr_margin_pass": margin is not None and margin >= PSNR_MARGIN,
            "ssim_ahead_pass": _ok(s, sb, st) and s > max(sb, st),
            "tde_ratio_vs_blur": round(t / tb, 3) if _ok(t, tb) and tb > 0 else None,
            "centre_pass": centre == 0,
            "never_seen_margin_vs_telea": None if ns_margin is None else round(ns_margin, 3),
            "never_seen_pass": ns_pass,
        }
    names = list(clips)
    ps = [metric(clips[n], product, "psnr") for n in names]
    pts = [metric(clips[n], TELEA, "psnr") for n in names]
    ts = [metric(clips[n], product, "tde") for n in names]
    tbs = [metric(clips[n], BLUR, "tde") for n in names]
    complete = bool(names) and _ok(*ps, *pts)
    mean_p = float(np.mean(ps)) if complete else None
    mean_t = float(np.mean(pts)) if complete else None
    tde_ok = bool(names) and _ok(*ts, *tbs) and float(np.mean(tbs)) > 0
    tde_ratio = float(np.mean(ts) / np.mean(tbs)) if tde_ok else None
    pans = [metric(clips[n], product, "psnr") for n in PANS if n in clips]
    pans_mean = float(np.mean(pans)) if pans and _ok(*pans) else None

    def every(key: str) -> bool:
        return bool(per_clip) and all(c[key] for c in per_clip.values())

    overall = {
        "psnr_margin_every_clip_pass": every("psnr_margin_pass"),
        "mean_psnr": None if mean_p is None else round(mean_p, 3),
        "telea_mean_psnr": None if mean_t is None else round(mean_t, 3),
        "mean_margin_vs_telea": None if mean_p is None else round(mean_p - mean_t, 3),
        "mean_margin_pass": mean_p is not None and mean_p - mean_t >= MEAN_MARGIN,
        "mean_tde_ratio_vs_blur": None if tde_ratio is None else round(tde_ratio, 3),
        "mean_tde_ratio_pass": tde_ratio is not None and tde_ratio <= TDE_RATIO,
        "ssim_every_clip_pass": every("ssim_ahead_pass"),
        "centre_every_clip_pass": every("centre_pass"),
        "pans": [n for n in PANS if n in clips],
        "pans_mean_psnr": None if pans_mean is None else round(pans_mean, 3),
        "pans_mean_pass": len(pans) == len(PANS)
        and pans_mean is not None
        and pans_mean >= PANS_PSNR,
        "never_seen_every_clip_pass": every("never_seen_pass"),
    }
    overall["all_pass"] = all(v for k, v in overall.items() if k.endswith("_pass"))
    return {
        "product": product,
        "baselines": [BLUR, TELEA],
        "need": {
            "psnr_margin_db": f">= {PSNR_MARGIN} over max({BLUR}, {TELEA}) on every clip",
            "mean_margin_vs_telea_db": f">= {MEAN_MARGIN}",
            "mean_tde_ratio_vs_blur": f"<= {TDE_RATIO}",
            "ssim": f"ahead of {BLUR} and {TELEA} on every clip",
            "centre": "max abs difference 0 on every clip",
            "pans_mean_psnr_db": f">= {PANS_PSNR} ({', '.join(PANS)})",
            "never_seen_psnr": f"ahead of {TELEA} on every clip",
        },
        "per_clip": per_clip,
        "overall": overall,
    }
