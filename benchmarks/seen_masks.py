"""Which side pixels of a wide ground-truth clip some frame of the same shot showed.

The outpaint eval crops the 4:3 centre of each wide frame; a side pixel of frame t is
*seen* when the scene point under it lies inside the 4:3 centre of some frame of the
same shot (so a fill could have copied it from there), *never seen* otherwise. The
masks come from the ground-truth wide frames alone, never from the product (whose
registration may be wrong):

1. Shots: PySceneDetect's ContentDetector over the frames; a reported cut across which
   the two frames still register (check 2) is dropped.
2. Registration: corners of the whole wide frame (at ``REG_WIDTH``) tracked by
   pyramidal Lucas-Kanade to the next frame, kept when the backward track returns
   within a pixel, then one RANSAC homography (``cv2.setRNGSeed`` first: deterministic).
   Of "no motion" and that homography, the one whose warp matches the other frame best
   wins (so a character moving before a still camera does not count as a pan); when
   even the best leaves a large median grey difference, the shot is split there (whip
   pan, missed cut, flash), so nothing is called seen across a break.
3. Each frame's homography to its segment's first frame is a chain of such pairs: a
   frame registers to a key frame while that match is verified, else to the frame
   before it, which becomes the key (short chains, little drift).
4. For frame t, the centre crop of every frame s of its segment, shrunk by ``margin``
   px on each edge (registration error), is mapped into t and filled; side pixels
   inside any such quad are seen. A static shot has none.

Moving foreground is not separated: "seen" is where the camera looked, not whether the
background there was uncovered. One homography per frame pair ignores parallax (a dolly
over a city), and on near-textureless footage (a grey sky) it follows whatever texture
there is; the margin absorbs small errors only. The masks are cached per clip (keyed by
the frames, the centre columns, the margin and ``MASK_VERSION``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import ContentDetector

log = logging.getLogger(__name__)

MASK_VERSION = 2  # bump when the method changes: cached masks are keyed by it
REG_WIDTH = 480  # registration size: enough corners, ~10 ms a pair
MAX_CORNERS = 400
CORNER_QUALITY = 0.005  # of the strongest corner: low-texture skies still give some
MIN_TRACKS = 12  # fewer agreeing tracks than this cannot tell a camera motion
MIN_INLIER_SHARE = 0.3  # of the good tracks: less is mostly independent motion
VERIFIED_INLIERS = 40  # a homography this well supported can overrule a detector cut
MAX_PERSPECTIVE = 2e-3  # per pixel at REG_WIDTH: more is not one frame of camera motion
MAX_MEDIAN_DIFF = 12.0  # grey levels between the warped frame and the next: more is a break
TRUNCATE = 40  # grey levels: a moving character counts as a miss, not by how much
DETECT_WIDTH = 256  # cut detection needs no detail


def _small(frame: np.ndarray, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if w <= width:
        return frame
    return cv2.resize(frame, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)


def detector_cuts(frames: Sequence[np.ndarray], rate: float = 24.0) -> list[int]:
    """Frame numbers where PySceneDetect's ContentDetector (default settings) starts a shot."""
    det = ContentDetector()
    cuts: list = []
    for i, f in enumerate(frames):
        bgr = cv2.cvtColor(_small(f, DETECT_WIDTH), cv2.COLOR_RGB2BGR)
        cuts += det.process_frame(FrameTimecode(i, rate), bgr)
    cuts += det.post_process(FrameTimecode(len(frames) - 1, rate)) or []
    nums = {c.frame_num if isinstance(c, FrameTimecode) else int(c) for c in cuts}
    return sorted(n for n in nums if 0 < n < len(frames))


def _photo_error(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> tuple[float, float]:
    """Median and truncated mean |warp(a, h) - b| (grey levels) where the warp covers b;
    infinite when it covers under a third of b."""
    rows, cols = a.shape
    warped = cv2.warpPerspective(a, h, (cols, rows), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(np.ones_like(a), h, (cols, rows), flags=cv2.INTER_NEAREST)
    cover = cv2.erode(cover, np.ones((5, 5), np.uint8)).astype(bool)
    if cover.mean() < 0.3:
        return math.inf, math.inf
    diff = np.abs(warped.astype(np.int16) - b)[cover]
    return float(np.median(diff)), float(np.minimum(diff, TRUNCATE).mean())


def _track(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Corners of ``a`` tracked into ``b`` that track back within a pixel, and how many
    corners were found."""
    pts = cv2.goodFeaturesToTrack(a, MAX_CORNERS, CORNER_QUALITY, 7, blockSize=7)
    if pts is None:
        return np.zeros((0, 1, 2), np.float32), np.zeros((0, 1, 2), np.float32), 0
    lk = {"winSize": (21, 21), "maxLevel": 4}
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, fwd, None, **lk)
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < 1.0)
    return pts[ok], fwd[ok], len(pts)


def _plausible(h: np.ndarray) -> bool:
    """A frame-to-frame camera motion: scale within 20 %, little perspective."""
    det = float(np.linalg.det(h[:2, :2]))
    return 0.65 < det < 1.55 and float(np.abs(h[2, :2]).max()) < MAX_PERSPECTIVE


def register_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Homography taking grey frame ``a``'s coordinates to ``b``'s (None: no camera link),
    and whether it is *verified* (enough agreeing tracks, not only the best guess).

    Candidates are no motion and a RANSAC homography of the tracked corners; the one
    whose warp matches ``b`` best (truncated mean grey difference) wins, so a character
    that moves before a still camera does not drag the background along. No candidate
    matching ``b`` (median difference over ``MAX_MEDIAN_DIFF``) means a break.
    """
    src, dst, found = _track(a, b)
    candidates = [(np.eye(3), False)]
    if len(src) >= MIN_TRACKS:
        cv2.setRNGSeed(0)
        h, inl = cv2.findHomography(src, dst, cv2.RANSAC, 2.0, maxIters=2000)
        if h is not None and inl is not None and _plausible(h):
            n = int(inl.sum())
            if n >= max(MIN_TRACKS, MIN_INLIER_SHARE * len(src)):
                verified = n >= VERIFIED_INLIERS and n >= 0.5 * len(src)
                candidates.append((h, verified))
    best, best_err, best_med, verified = None, math.inf, math.inf, False
    for h, strong in candidates:
        med, err = _photo_error(a, b, h)
        if err < best_err:
            best, best_err, best_med, verified = h, err, med, strong
    if best is None or best_med > MAX_MEDIAN_DIFF:
        return None, False
    return best, verified and best_med <= MAX_MEDIAN_DIFF / 2


def segments(frames: Sequence[np.ndarray], rate: float = 24.0) -> tuple[list[int], list]:
    """Segment starts and each frame's homography to its segment's first frame.

    Homographies are in full-frame pixel coordinates. Each frame registers to a key
    frame (fewer links in the chain, less drift) while that match is verified, else to
    the frame before, which becomes the key. A segment starts at frame 0, at every
    detector cut the two frames do not register across (verified), and at every frame
    that does not register to the one before.
    """
    if not frames:
        raise ValueError("segments needs at least one frame")
    w0 = frames[0].shape[1]
    greys = [cv2.cvtColor(_small(f, REG_WIDTH), cv2.COLOR_RGB2GRAY) for f in frames]
    s = greys[0].shape[1] / w0
    scale, unscale = np.diag([s, s, 1.0]), np.diag([1 / s, 1 / s, 1.0])
    cuts = set(detector_cuts(frames, rate))
    starts, homs, key = [0], [np.eye(3)], 0
    for t in range(1, len(frames)):
        pair, verified = (None, False)
        if key < t - 1 and t not in cuts:
            pair, verified = register_pair(greys[t], greys[key])  # t -> key
        if not verified:
            key = t - 1
            pair, verified = register_pair(greys[t], greys[key])  # t -> t-1
        if pair is None or (t in cuts and not verified):
            starts.append(t)
            homs.append(np.eye(3))
            key = t
            continue
        if t in cuts:
            log.info("cut at %d dropped: the frames register across it", t)
        h = homs[key] @ unscale @ pair @ scale
        homs.append(h / h[2, 2])
    return starts, homs


def seen_masks(
    frames: Sequence[np.ndarray], left: int, right: int, margin: int = 4, rate: float = 24.0
) -> tuple[list[np.ndarray], list[int]]:
    """Per frame a bool (H, W) mask of the side pixels (outside ``[left, right)``) some frame
    of the same segment showed in its centre ``[left, right)`` (shrunk by ``margin``), and
    the segment starts."""
    h, w = frames[0].shape[:2]
    if not 0 <= left < right <= w:
        raise ValueError(f"bad centre columns [{left}, {right}) for width {w}")
    if right - left <= 2 * margin or h <= 2 * margin:
        raise ValueError(f"margin {margin} leaves no centre in {right - left}x{h}")
    starts, homs = segments(frames, rate)
    quad = np.float64(
        [[left + margin, margin], [right - 1 - margin, margin],
         [right - 1 - margin, h - 1 - margin], [left + margin, h - 1 - margin]]
    )  # fmt: skip
    quad_h = np.hstack([quad, np.ones((4, 1))]).T
    bounds = [*starts, len(frames)]
    masks = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        for t in range(a, b):
            mask = np.zeros((h, w), np.uint8)
            to_t = np.linalg.inv(homs[t])
            for s in range(a, b):
                if s == t:
                    continue
                p = to_t @ homs[s] @ quad_h
                if (p[2] <= 1e-6).any():
                    continue  # the quad crosses the horizon of frame t: skip it
                pts = np.round((p[:2] / p[2]).T * 16).astype(np.int32)
                cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, shift=4)
            mask[:, left:right] = 0
            masks.append(mask.astype(bool))
    return masks, starts


def frames_key(frames: Sequence[np.ndarray], left: int, right: int, margin: int) -> str:
    """A short hash of the frames and the mask settings, the cache key."""
    d = hashlib.sha256(f"v{MASK_VERSION} {left} {right} {margin} {len(frames)}".encode())
    for f in frames:
        d.update(np.ascontiguousarray(f[::4, ::4]).tobytes())
    return d.hexdigest()[:16]


def cached_seen_masks(
    frames: Sequence[np.ndarray],
    left: int,
    right: int,
    cache: Path | None,
    margin: int = 4,
    rate: float = 24.0,
) -> tuple[list[np.ndarray], list[int]]:
    """:func:`seen_masks`, read from / written to ``cache`` (a folder) when one is given."""
    path = None
    if cache is not None:
        path = cache / f"seen_{frames_key(frames, left, right, margin)}.npz"
        if path.exists():
            with np.load(path) as z:
                h, w = frames[0].shape[:2]
                bits = np.unpackbits(z["bits"], count=len(frames) * h * w)
                return list(bits.reshape(len(frames), h, w).astype(bool)), list(z["starts"])
    masks, starts = seen_masks(frames, left, right, margin, rate)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, bits=np.packbits(np.stack(masks)), starts=np.int64(starts))
    return masks, starts
