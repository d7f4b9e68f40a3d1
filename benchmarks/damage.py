"""A model of old-film damage, applied in code to clean frames, deterministically.

Applied in the order it arises (exposure and print first, then what sits on the print):

1. **Flicker**: each frame is multiplied by a gain field ``1 + a + b * (X cos t + Y sin t)``
   (X, Y in [-1, 1] across the frame): ``a`` uniform in +-8 %, a gradient ``b`` uniform in
   +-4 % in a random direction ``t``, drawn anew every frame.
2. **Grain**: signal-dependent, ``sigma(v) = 2 + 6 * sqrt(v / 255)`` levels at brightness
   ``v``; each field is Gaussian, blurred with sigma 0.6 px (film grain is a little
   larger than a pixel) and renormalised; 85 % shared by the three channels, the rest
   per channel.
3. **Scratches**: on average one scratch present per frame; each lives 12-48 frames, starts at a
   random column, drifts 0-0.6 px per frame (either way) plus 0.25 px jitter, is 1-3 px
   wide (Gaussian profile), leans up to 2 px over the height, is bright (60 %) or dark,
   30-70 levels of contrast along its length (modulated 70-100 %), and spans the whole
   height (70 %) or 50-90 % of it.
4. **Dust**: Poisson, 6 specks a frame on average at 640x480 (scaled with the area), each
   in one frame only: an ellipse of radius 1-8 px (log-uniform, so small ones are
   common; scaled with the height), axis ratio 0.5-1, soft edge, dark (60 %, 0-50) or
   bright (205-255), opacity 75-100 %.

Sizes are given for 480 lines and scale with the frame height. The model records every
speck (frame, box, coverage) so an evaluation can check what happened to each.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

FLICKER_GAIN = 0.08
FLICKER_GRADIENT = 0.04
GRAIN_BASE, GRAIN_SLOPE = 2.0, 6.0
GRAIN_BLUR = 0.6
GRAIN_MONO = 0.85
SCRATCHES_PER_FRAME = 1.0
DUST_PER_FRAME = 6.0  # at 640x480


@dataclass
class Speck:
    """One dust speck: frame index, box (x, y, w, h), its coverage (alpha, float32 in
    the box), value (0-255) and polarity (+1 bright, -1 dark)."""

    frame: int
    box: tuple[int, int, int, int]
    alpha: np.ndarray
    value: float
    polarity: int


@dataclass
class Damage:
    """Damaged frames and what was done to them."""

    frames: list[np.ndarray]
    specks: list[Speck] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)  # flicker gain at the frame centre
    # per frame: (x at mid-height, contrast) of each scratch drawn
    scratches: list[list[tuple[float, float]]] = field(default_factory=list)


def seed_of(name: str) -> int:
    """A stable seed for a clip name (the same on every machine and Python)."""
    return zlib.crc32(name.encode())


def damage(
    frames: list[np.ndarray],
    seed: int,
    flicker: bool = True,
    grain: bool = True,
    scratches: bool = True,
    dust: bool = True,
) -> Damage:
    """Apply the module's damage model to RGB uint8 ``frames`` (all one size)."""
    if not frames:
        raise ValueError("no frames to damage")
    rng = np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    s = h / 480
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    lines = _scratch_events(rng, len(frames), w, s) if scratches else []
    out = Damage([])
    for t, clean in enumerate(frames):
        if clean.shape != frames[0].shape or clean.dtype != np.uint8:
            raise ValueError(
                f"frame {t}: {clean.dtype} {clean.shape}, expected uint8 {frames[0].shape}"
            )
        img = clean.astype(np.float32)
        a = rng.uniform(-FLICKER_GAIN, FLICKER_GAIN) if flicker else 0.0
        b = rng.uniform(-FLICKER_GRADIENT, FLICKER_GRADIENT) if flicker else 0.0
        th = rng.uniform(0, 2 * np.pi)
        img *= (1 + a + b * (xs * np.cos(th) + ys * np.sin(th)))[..., None]
        out.gains.append(1 + a)
        if grain:
            img += _grain(rng, img, h, w)
        active = [ln for ln in lines if ln["start"] <= t < ln["start"] + ln["life"]]
        out.scratches.append([(ln["path"][t - ln["start"]], ln["contrast"]) for ln in active])
        for ln in active:
            _draw_scratch(img, ln, t - ln["start"], rng)
        if dust:
            for _ in range(rng.poisson(DUST_PER_FRAME * h * w / (640 * 480))):
                out.specks.append(_draw_speck(img, rng, t, s))
        out.frames.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return out


def _grain(rng: np.random.Generator, img: np.ndarray, h: int, w: int) -> np.ndarray:
    def field_(shape):
        n = rng.standard_normal(shape).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), GRAIN_BLUR)
        return n / max(float(n.std()), 1e-6)

    mono = field_((h, w))[..., None]
    per = field_((h, w * 3)).reshape(h, w, 3)
    n = GRAIN_MONO * mono + np.sqrt(1 - GRAIN_MONO**2) * per
    level = np.clip(img, 0, 255)
    return (GRAIN_BASE + GRAIN_SLOPE * np.sqrt(level / 255)) * n


def _scratch_events(rng: np.random.Generator, n: int, w: int, s: float) -> list[dict]:
    events = []
    mean_life = 30
    count = rng.poisson(SCRATCHES_PER_FRAME * (n + mean_life) / mean_life)
    for _ in range(count):
        life = int(rng.integers(12, 49))
        start = int(rng.integers(-life + 1, n))
        x0 = rng.uniform(0.05, 0.95) * w
        v = rng.uniform(-0.6, 0.6) * s
        path = x0 + v * np.arange(life) + np.cumsum(rng.normal(0, 0.25 * s, life))
        full = rng.random() < 0.7
        span = 1.0 if full else rng.uniform(0.5, 0.9)
        top = 0.0 if full else rng.uniform(0, 1 - span)
        events.append(
            dict(
                start=start,
                life=life,
                path=path,
                width=rng.uniform(1, 3) * s,
                lean=rng.uniform(-2, 2) * s,
                contrast=rng.uniform(30, 70) * (1 if rng.random() < 0.6 else -1),
                top=top,
                span=span,
            )
        )
    return events


def _draw_scratch(img: np.ndarray, ln: dict, age: int, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    y = np.arange(h, dtype=np.float32)
    x_line = ln["path"][age] + ln["lean"] * (y / h - 0.5)
    y0, y1 = int(ln["top"] * h), int((ln["top"] + ln["span"]) * h)
    # slow modulation along the length, fixed per frame
    mod = 0.85 + 0.15 * np.sin(y / h * rng.uniform(2, 6) * np.pi + rng.uniform(0, 2 * np.pi))
    sigma = ln["width"] / 2.355  # FWHM -> sigma
    x0 = max(0, int(np.floor(x_line.min() - 4 * sigma - 2)))
    x1 = min(w, int(np.ceil(x_line.max() + 4 * sigma + 3)))
    if x1 <= x0:
        return
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    prof = np.exp(-0.5 * ((xs - x_line[:, None]) / sigma) ** 2)
    prof[:y0] = 0
    prof[y1:] = 0
    img[:, x0:x1] += (ln["contrast"] * mod[:, None] * prof)[..., None]


def _draw_speck(img: np.ndarray, rng: np.random.Generator, t: int, s: float) -> Speck:
    h, w = img.shape[:2]
    r = float(np.exp(rng.uniform(np.log(1.0), np.log(8.0)))) * s
    ratio = rng.uniform(0.5, 1.0)
    angle = rng.uniform(0, 180)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    half = int(np.ceil(r + 3))
    bx0, by0 = max(0, int(cx) - half), max(0, int(cy) - half)
    bx1, by1 = min(w, int(cx) + half + 1), min(h, int(cy) + half + 1)
    scale = 8  # drawn at 8x and area-averaged: smooth sub-pixel edges
    big = np.zeros(((by1 - by0) * scale, (bx1 - bx0) * scale), np.float32)
    centre = (int((cx - bx0) * scale), int((cy - by0) * scale))
    axes = (max(1, int(r * scale)), max(1, int(r * ratio * scale)))
    cv2.ellipse(big, centre, axes, angle, 0, 360, 1.0, -1)
    alpha = cv2.resize(big, (bx1 - bx0, by1 - by0), interpolation=cv2.INTER_AREA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.5) * rng.uniform(0.75, 1.0)
    dark = rng.random() < 0.6
    value = rng.uniform(0, 50) if dark else rng.uniform(205, 255)
    roi = img[by0:by1, bx0:bx1]
    roi *= 1 - alpha[..., None]
    roi += value * alpha[..., None]
    return Speck(t, (bx0, by0, bx1 - bx0, by1 - by0), alpha, value, -1 if dark else 1)
