"""Synthetic clips with known content, cuts and motion, made in code for the tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, feature-rich RGB image (blobs + stripes + noise) that registers well."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for scale in (0.02, 0.05, 0.12):
        h, w = max(2, int(height * scale)), max(2, int(width * scale))
        layer = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
        img += cv2.resize(layer, (width, height), interpolation=cv2.INTER_CUBIC)
    img /= 3
    yy, xx = np.mgrid[0:height, 0:width]
    img[..., 1] += 25 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    img += rng.normal(0, 4, img.shape)
    for _ in range(max(4, width * height // 4000)):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, (x, y), int(rng.integers(2, 9)), colour, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def sprite(size: int = 40, colour: tuple[int, int, int] = (250, 40, 40)) -> np.ndarray:
    """A flat-coloured square 'character' with a dark outline (RGBA, alpha in channel 3)."""
    s = np.zeros((size, size, 4), np.uint8)
    cv2.circle(s, (size // 2, size // 2), size // 2 - 1, (*colour, 255), -1)
    cv2.circle(s, (size // 2, size // 2), size // 2 - 1, (10, 10, 10, 255), 2)
    return s


@dataclass
class PanningClip:
    """Frames cut from a wide background by a moving window, plus the ground truth."""

    frames: list[np.ndarray]
    offsets: list[tuple[float, float]]  # (x, y) of each frame's top-left in the background
    background: np.ndarray
    sprite_boxes: list[tuple[int, int, int, int]]  # (x, y, w, h) in frame coordinates


def panning_clip(
    n: int = 48,
    height: int = 120,
    width: int = 160,
    pan: float = 1.0,
    bg_width: int | None = None,
    with_sprite: bool = True,
    seed: int = 0,
) -> PanningClip:
    """A camera panning left to right by ``pan`` pixels a frame over a textured background.

    A sprite moves across the frame in the opposite direction so it is foreground.
    Sub-pixel offsets are rendered with bilinear sampling.
    """
    bg_width = bg_width or int(width + abs(pan) * n + 2 * width)
    background = textured_background(height, bg_width, seed)
    start = (bg_width - width - pan * (n - 1)) / 2
    spr = sprite(max(8, height // 3))
    frames, offsets, boxes = [], [], []
    for i in range(n):
        x0 = start + pan * i
        m = np.float32([[1, 0, x0], [0, 1, 0]])
        frame = cv2.warpAffine(
            background, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        if with_sprite:
            sh, sw = spr.shape[:2]
            sx = int(width - sw - (width - sw) * i / max(1, n - 1))
            sy = height // 2 - sh // 2
            alpha = spr[..., 3:4].astype(np.float32) / 255
            roi = frame[sy : sy + sh, sx : sx + sw].astype(np.float32)
            frame[sy : sy + sh, sx : sx + sw] = (roi * (1 - alpha) + spr[..., :3] * alpha).astype(
                np.uint8
            )
            boxes.append((sx, sy, sw, sh))
        frames.append(frame)
        offsets.append((x0, 0.0))
    return PanningClip(frames, offsets, background, boxes)


def cut_clip(
    scene_lengths: list[int], height: int = 120, width: int = 160, seed: int = 0
) -> tuple[list[np.ndarray], list[int]]:
    """Scenes of distinct panning backgrounds; returns frames and the cut frame indices."""
    frames: list[np.ndarray] = []
    cuts: list[int] = []
    for k, length in enumerate(scene_lengths):
        if k:
            cuts.append(len(frames))
        frames += panning_clip(length, height, width, pan=1.0, seed=seed + 17 * k).frames
    return frames, cuts


def encode_clip(
    frames: list[np.ndarray],
    fmt: str = "nut",
    fps: int = 24,
    codec: str = "ffv1",
    audio: bool = True,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
) -> bytes:
    """Encode RGB frames (and a 440 Hz tone the length of the video) into container bytes."""
    buf = io.BytesIO()
    time_base = time_base or Fraction(1, fps)
    with av.open(buf, "w", format=fmt) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height = frames[0].shape[1], frames[0].shape[0]
        vs.pix_fmt = "yuv420p" if codec != "ffv1" else "yuv444p"
        vs.time_base = time_base
        vs.codec_context.time_base = time_base
        as_ = None
        if audio:
            as_ = out.add_stream("pcm_s16le" if fmt != "mp4" else "aac", rate=48000)
            as_.layout = "mono" if fmt != "mp4" else "stereo"
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = pts[i] if pts is not None else i
            vf.time_base = time_base
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if as_ is not None:
            seconds = len(frames) / fps
            n = int(seconds * 48000)
            t = np.arange(n) / 48000
            tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
            channels = 1 if fmt != "mp4" else 2
            fmt_s = "s16" if fmt != "mp4" else "fltp"
            step = 1024
            for s in range(0, n, step):
                chunk = tone[s : s + step]
                if fmt_s == "s16":
                    data = chunk[None, :]
                else:
                    data = np.repeat((chunk.astype(np.float32) / 32767)[None, :], channels, 0)
                af = av.AudioFrame.from_ndarray(data, format=fmt_s, layout=as_.layout.name)
                af.sample_rate = 48000
                af.pts = s
                af.time_base = Fraction(1, 48000)
                for packet in as_.encode(af):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return buf.getvalue()


def tinted(image: np.ndarray, tint: tuple[float, float, float]) -> np.ndarray:
    """``image``'s grey levels as shades of one colour (``tint``: channel gains)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.clip(grey[..., None] * np.float32(tint) + 20, 0, 255).astype(np.uint8)


def whip_clip(
    n_a: int = 24, n_whip: int = 6, n_b: int = 30, height: int = 120, width: int = 160
) -> tuple[list[np.ndarray], int]:
    """A pan over a red background, a whip pan (frames smeared sideways across into the
    next shot), and a pan over a blue one: no hard cut. Returns the frames and the index
    of the first frame of the blue shot."""
    a = panning_clip(n_a + n_whip, height, width, pan=2.0, with_sprite=False, seed=3).frames
    b = panning_clip(n_b + n_whip, height, width, pan=2.0, with_sprite=False, seed=4).frames
    a = [tinted(f, (1.1, 0.25, 0.1)) for f in a]
    b = [tinted(f, (0.1, 0.35, 1.1)) for f in b]
    whip = []
    for k in range(n_whip):
        t = (k + 1) / (n_whip + 1)
        both = np.hstack([a[n_a + k], b[k]])  # the camera sweeps from one to the other
        x = int(round(t * width))
        whip.append(cv2.blur(both, (width // 2 + 1, 1))[:, x : x + width].copy())
    return a[:n_a] + whip + b[n_whip:], n_a + n_whip


def fade_clip(
    n_fade: int = 16, n: int = 48, height: int = 120, width: int = 160, pan: float = -2.5
) -> tuple[list[np.ndarray], PanningClip]:
    """A pan whose first ``n_fade`` frames fade in from black (the first one black), over
    a background kept away from black (levels 60-220)."""
    clip = panning_clip(n, height, width, pan=pan, with_sprite=False, seed=5)
    frames = []
    for i, f in enumerate(clip.frames):
        bright = 60 + f.astype(np.float32) * (160 / 255)
        gain = min(1.0, i / n_fade)
        frames.append(np.clip(bright * gain + 0.5, 0, 255).astype(np.uint8))
    return frames, clip


def with_film_gate(frame: np.ndarray, radius: int = 10, line: int = 2) -> np.ndarray:
    """``frame`` inside an old film's gate: near-black rounded notches at the four corners
    (``radius`` px) and a darker line ``line`` rows deep along the top."""
    h, w = frame.shape[:2]
    inside = np.zeros((h, w), np.uint8)
    cv2.rectangle(inside, (radius, 0), (w - 1 - radius, h - 1), 1, -1)
    cv2.rectangle(inside, (0, radius), (w - 1, h - 1 - radius), 1, -1)
    for x, y in ((radius, radius), (w - 1 - radius, radius), (radius, h - 1 - radius)):
        cv2.circle(inside, (x, y), radius, 1, -1)
    cv2.circle(inside, (w - 1 - radius, h - 1 - radius), radius, 1, -1)
    out = frame.copy()
    out[inside == 0] = 12
    out[:line] = (out[:line] * 0.55).astype(np.uint8)
    return out
