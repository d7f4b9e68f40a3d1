"""Camera motion of one scene: a transform from every frame to the scene's first frame.

Registration runs at a reduced working width. Each frame is tracked against a *keyframe*
whose transform to the reference (the scene's first frame) is already known, with
pyramidal Lucas-Kanade seeded by a constant-velocity prediction, and a robust RANSAC fit.
A new keyframe is taken only when too few keyframe features remain trackable, so error
accumulates once per keyframe switch (a few times per frame width of panning) instead of
once per frame as chained frame-to-frame estimates would.

Model (``auto``, per keyframe): pan+zoom unless a similarity or homography explains
clearly more points or fits the same background points clearly tighter: no single model
served every kind of shot on the dev clips; cel pans stay pan+zoom, which drifts least,
and live footage gets the homography.

Frames that fail (too few inliers: full-frame action, flashes, whip pans, cuts missed by
the scene detector) are flagged ``ok=False``. A scene's frames fall into background
*segments*: runs of frames linked by verified registration, each with its own reference
(a segment's first frame). ``LOST_AFTER`` failures in a row end a segment; the next frame
that has features enough starts a new one (a whip pan to another background, a missed
cut), so frames of one segment never reach another's panorama. Near-black, near-white
and flat frames (fades, flashes) never start a segment nor register. A failed frame
between two registered frames of one segment gets a transform interpolated from them;
one that is not (``segment == -1``) belongs to no segment. When the view has turned so
far from the reference that the reference's plane distorts it (``MAX_DISTORTION``), the
segment goes on from a new reference, the current frame; ``Motion.link`` then carries
the change of coordinates, so what was gathered can be carried over.
Tracker state carries across windows of one scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

MODELS = ("panzoom", "similarity", "homography", "auto")
LOST_AFTER = 3  # failed frames in a row that end a background segment (a flash is shorter)
# a frame's area scale on the reference (at any corner) outside [1 / this, this], or its
# corners' scales differing by this factor: the reference plane no longer suits the view
# (a wide turn, a zoom by 2), and a new reference takes over; not sooner, since each new
# reference splits a window into parts that restart the sides' following (stages.render)
MAX_DISTORTION = 4.0
# frames whose grey level spreads less than this (levels, std), or less than 4 times it
# with a mean within FLAT_MEAN of black or white, carry no geometry: fades, flashes, blanks
FLAT_STD = 3.0
FLAT_MEAN = 12.0


@dataclass
class Motion:
    """Where one frame sits in its scene."""

    H: np.ndarray  # 3x3 float64: full-resolution frame coords -> its segment's reference
    ok: bool  # False when the estimate failed (H interpolated or held)
    inliers: int = 0
    segment: int = 0  # background segment within the scene; -1: none (not placed)
    share: float = 1.0  # share of the tracked points the fit explained (0 when failed)
    # on the first frame of a segment that continues the previous one by registration:
    # the matrix from the previous segment's reference to this one's (full resolution)
    link: np.ndarray | None = None

    @property
    def placed(self) -> bool:
        """Whether the frame belongs to a segment (its H is known or interpolated)."""
        return self.segment >= 0


def is_flat(rgb: np.ndarray) -> bool:
    """Whether a frame is near-black, near-white or flat (no geometry, no background)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mean, std = cv2.meanStdDev(gray)
    m, d = float(mean[0, 0]), float(std[0, 0])
    extreme = m < FLAT_MEAN or m > 255 - FLAT_MEAN
    return d < FLAT_STD or extreme and d < 4 * FLAT_STD


def normalized_gray(rgb: np.ndarray) -> np.ndarray:
    """Gray image of ``rgb`` (already at the working size) with mean/contrast normalised,
    so flicker and flashes do not break brightness-constancy tracking."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean, std = float(gray.mean()), float(gray.std())
    np.subtract(gray, mean, out=gray)  # in place: the same float32 steps, no temporaries
    np.multiply(gray, 48.0 / max(std, 4.0), out=gray)
    np.add(gray, 128.0, out=gray)
    return np.clip(gray, 0, 255, out=gray).astype(np.uint8)


def _panzoom_ls(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares ``dst = a * src + t`` as a 3x3 matrix."""
    sm, dm = src.mean(0), dst.mean(0)
    sc, dc = src - sm, dst - dm
    a = float((sc * dc).sum() / max((sc * sc).sum(), 1e-9))
    t = dm - a * sm
    return np.array([[a, 0, t[0]], [0, a, t[1]], [0, 0, 1.0]])


def _fit_panzoom(src: np.ndarray, dst: np.ndarray, thresh: float) -> tuple[np.ndarray, int]:
    """RANSAC pan + zoom (translation and uniform scale, no rotation): the camera model
    of cel animation and rostrum work, stabler than a similarity where it holds."""
    rng = np.random.default_rng(0)
    n = len(src)
    idx = rng.integers(0, n, (128, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    s1, s2, d1, d2 = src[idx[:, 0]], src[idx[:, 1]], dst[idx[:, 0]], dst[idx[:, 1]]
    ds, dd = s2 - s1, d2 - d1
    a = (ds * dd).sum(1) / np.maximum((ds * ds).sum(1), 1e-9)
    t = (d1 + d2) / 2 - a[:, None] * (s1 + s2) / 2
    res = np.linalg.norm(a[:, None, None] * src[None] + t[:, None] - dst[None], axis=2)
    inl = res < thresh
    best = inl[int(np.argmax(inl.sum(1)))]
    m = np.eye(3)
    for _ in range(2):
        if best.sum() < 2:
            return np.eye(3), 0
        m = _panzoom_ls(src[best], dst[best])
        best = np.linalg.norm(src * m[0, 0] + m[:2, 2] - dst, axis=1) < thresh
    return m, int(best.sum())


def _fit(src: np.ndarray, dst: np.ndarray, model: str, thresh: float) -> tuple[np.ndarray, int]:
    """Robust fit of ``dst ~ T(src)``; returns (3x3, inlier count); (identity, 0) on failure."""
    eye = np.eye(3)
    if len(src) < 8:
        return eye, 0
    src, dst = src.reshape(-1, 2).astype(np.float64), dst.reshape(-1, 2).astype(np.float64)
    if model == "panzoom":
        return _fit_panzoom(src, dst, thresh)
    cv2.setRNGSeed(0)
    if model == "similarity":
        m, inl = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=thresh, maxIters=1000
        )
        if m is None:
            return eye, 0
        return np.vstack([m, [0, 0, 1]]).astype(np.float64), int(inl.sum())
    m, inl = cv2.findHomography(src, dst, cv2.RANSAC, thresh, maxIters=1000)
    if m is None or abs(np.linalg.det(m[:2, :2])) < 1e-3:
        return eye, 0
    return m / m[2, 2], int(inl.sum())


def fit_model(
    src: np.ndarray, dst: np.ndarray, model: str, thresh: float
) -> tuple[np.ndarray, int, str]:
    """Fit ``model``; ``auto`` climbs pan+zoom -> similarity -> homography, taking a richer
    model only when it explains clearly more points or fits its inliers clearly tighter
    (fewer free parameters drift less: cel pans stay pan+zoom, live footage gets the
    homography)."""
    if model != "auto":
        return (*_fit(src, dst, model, thresh), model)
    src2, dst2 = src.reshape(-1, 2).astype(np.float64), dst.reshape(-1, 2).astype(np.float64)

    def residuals(m: np.ndarray) -> np.ndarray:
        return np.linalg.norm(
            cv2.perspectiveTransform(src2[:, None], m).reshape(-1, 2) - dst2, axis=1
        )

    best, n_best = _fit(src, dst, "panzoom", thresh)
    base = residuals(best) < 2 * thresh  # the dominant background under the simplest model
    if not base.any():
        return best, n_best, "panzoom"
    name, r_best = "panzoom", float(np.median(residuals(best)[base]))
    for richer in ("similarity", "homography"):
        m, n = _fit(src, dst, richer, thresh)
        r = float(np.median(residuals(m)[base]))  # judged on the same points: no cherry-picking
        if n > 1.1 * n_best + 4 or (n >= 0.97 * n_best and r < 0.7 * r_best):
            best, n_best, name, r_best = m, n, richer, r
    return best, n_best, name


class MotionTracker:
    """Registers the frames of one scene, window by window, to the scene's first frame."""

    def __init__(
        self,
        model: str = "auto",
        work_width: int = 320,
        max_corners: int = 200,
        min_inliers: int = 20,
        rekey_fraction: float = 0.5,
        ransac_thresh: float = 1.0,
    ):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        if work_width < 32:
            raise ValueError(f"work_width must be >= 32, got {work_width}")
        if not 0 < rekey_fraction < 1:
            raise ValueError(f"rekey_fraction must be in (0, 1), got {rekey_fraction}")
        self.model = model
        self.work_width = work_width
        self.max_corners = max_corners
        self.min_inliers = min_inliers
        self.rekey_fraction = rekey_fraction
        self.ransac_thresh = ransac_thresh
        self.reset()

    def reset(self) -> None:
        """Forget the scene (call at a cut)."""
        self._keys: list[_Key] = []  # the reference, then the most recent keyframes
        self._hist: list[np.ndarray] = []  # last two work-resolution transforms
        self._fails = 0
        self._active: str | None = None  # model in use since the last keyframe
        self._segment = -1  # the current background segment

    def scales(self, shape: tuple[int, ...]) -> tuple[tuple[int, int], np.ndarray]:
        """Working size (w, h) for frames of ``shape`` and the full-to-working matrix."""
        h, w = shape[:2]
        ww = min(self.work_width, w)
        wh = max(16, round(h * ww / w))
        s = np.diag([ww / w, wh / h, 1.0])
        return (ww, wh), s

    def _add_key(self, gray: np.ndarray, H: np.ndarray, mask: np.ndarray | None) -> None:
        m = None if mask is None else mask.astype(np.uint8) * 255
        pts = cv2.goodFeaturesToTrack(gray, self.max_corners, 0.003, 6, mask=m, blockSize=5)
        pts = np.zeros((0, 1, 2), np.float32) if pts is None else pts.astype(np.float32)
        key = _Key(gray, pts, cv2.perspectiveTransform(pts.astype(np.float64), H), len(pts))
        # keep the reference (drift anchor) and the two newest keyframes
        self._keys = [*self._keys[:1], *self._keys[1:][-1:], key]

    def _predict(self) -> np.ndarray:
        """Constant velocity in reference coordinates; the last transform when that is not
        a sane camera (far zoom or a near-singular matrix, e.g. after a flash)."""
        b = self._hist[-1]
        if len(self._hist) < 2:
            return b
        a = self._hist[-2]
        pred = b @ (np.linalg.inv(a) @ b)
        pred = pred / pred[2, 2] if abs(pred[2, 2]) > 1e-9 else b
        ratio = abs(np.linalg.det(pred[:2, :2])) / max(abs(np.linalg.det(b[:2, :2])), 1e-12)
        return pred if np.isfinite(pred).all() and 0.8 < ratio < 1.25 else b

    def track(
        self,
        frames: list[np.ndarray],
        masks: list[np.ndarray] | None = None,
        small: list[np.ndarray] | None = None,
    ) -> list[Motion]:
        """Motion of each frame; ``masks`` (bool, frame size, True = static background usable
        for features) keep features off characters and film-gate borders. ``small``: the
        frames already shrunk to the working size (``cv2.INTER_AREA``, :meth:`scales`), for
        a caller that has them anyway: the result is the same."""
        if masks is not None and len(masks) != len(frames):
            raise ValueError(f"{len(masks)} masks for {len(frames)} frames")
        if small is not None and len(small) != len(frames):
            raise ValueError(f"{len(small)} small frames for {len(frames)} frames")
        if not frames:
            return []
        size, s = self.scales(frames[0].shape)
        s_inv = np.linalg.inv(s)
        out: list[Motion] = []
        for i, frame in enumerate(frames):
            if frame.shape != frames[0].shape:
                raise ValueError(f"frame {i} has shape {frame.shape}, expected {frames[0].shape}")
            if small is None:
                shrunk = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            elif small[i].shape[1::-1] != size:
                raise ValueError(f"small frame {i} is {small[i].shape}, expected size {size}")
            else:
                shrunk = small[i]
            gray = normalized_gray(shrunk)
            mask = None
            if masks is not None:
                mask = cv2.resize(masks[i].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
                mask = mask > 0
            flat = is_flat(shrunk)
            if not self._keys:
                out.append(self._start(gray, mask, flat))
                continue
            if flat:
                H, n_last, share, ok = self._hist[-1], 0, 0.0, False
            else:
                H, n_last, share, ok = self._track_one(gray, mask)
            if ok:
                self._fails = 0
                link = None
                if distortion(H, size) > MAX_DISTORTION:
                    link = self._reanchor(H)
                    H = np.eye(3)
                    log.info("view far from the reference; segment %d goes on", self._segment)
                self._hist = [*self._hist[-1:], H]
                full_link = None if link is None else s_inv @ link @ s
                out.append(Motion(s_inv @ H @ s, True, n_last, self._segment, share, full_link))
                continue
            self._fails += 1
            out.append(Motion(s_inv @ self._hist[-1] @ s, False, n_last, -1, share))
            if self._fails >= LOST_AFTER:  # a new background (or a long flash): start over
                log.info("registration lost for %d frames; background segment ends", self._fails)
                self._keys, self._hist, self._fails, self._active = [], [], 0, None
        interpolate_failures(out)
        return out

    def _start(self, gray: np.ndarray, mask: np.ndarray | None, flat: bool) -> Motion:
        """The frame as the reference of a new segment, if it has features enough."""
        if not flat:
            self._add_key(gray, np.eye(3), mask)
            if self._keys[0].n >= self.min_inliers:
                self._segment += 1
                self._hist = [np.eye(3)]
                return Motion(np.eye(3), True, self._keys[0].n, self._segment)
            self._keys = []
        return Motion(np.eye(3), False, 0, -1, 0.0)

    def _track_one(
        self, gray: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, int, float, bool]:
        """Register one frame to its segment; (work-resolution H, newest key's inliers,
        inlier share, ok). The held transform when it fails."""
        pred = self._predict()
        if self._active is None:  # first registration of the segment: choose the model
            H, n_last, share, ok = self._register(gray, pred, self._keys, self.model)
        else:
            H, n_last, share, ok = self._register(gray, pred, self._keys[-1:], self._active)
        if not ok:
            return self._hist[-1], n_last, share, False  # hold: extrapolating runs away
        if n_last < self.rekey_fraction * self._keys[-1].n or n_last < 3 * self.min_inliers:
            # new keyframe: re-fit against every kept keyframe (the reference too while in
            # view) so the key's own error is anchored, and re-choose the model
            H2, _, _, ok2 = self._register(gray, H, self._keys, self.model)
            H = H2 if ok2 else H
            self._add_key(gray, H, mask)
        return H, n_last, share, True

    def _reanchor(self, H: np.ndarray) -> np.ndarray:
        """Make the frame at ``H`` the segment's new reference; returns the old-to-new
        reference matrix (work resolution). Keyframes and history are carried over."""
        link = np.linalg.inv(H)
        link /= link[2, 2]
        for key in self._keys:
            key.ref_pts = cv2.perspectiveTransform(key.ref_pts, link)
        self._hist = [link @ h / (link @ h)[2, 2] for h in self._hist]
        self._segment += 1
        return link

    def _register(
        self, gray: np.ndarray, pred: np.ndarray, keys: list[_Key], model: str
    ) -> tuple[np.ndarray, int, float, bool]:
        """Track the features of ``keys`` into ``gray`` and fit frame -> reference to all of
        them jointly; returns (work-resolution H, newest key's inliers, share of the
        tracked points that are inliers, ok)."""
        pred_inv = np.linalg.inv(pred)
        src, dst, owner = [], [], []
        for k, key in enumerate(keys):
            if key.n < self.min_inliers:
                continue
            guess = cv2.perspectiveTransform(key.ref_pts, pred_inv).astype(np.float32)
            g = guess.reshape(-1, 2)
            inside = (np.abs(g[:, 0] - gray.shape[1] / 2) < gray.shape[1] * 0.55) & (
                np.abs(g[:, 1] - gray.shape[0] / 2) < gray.shape[0] * 0.55
            )
            if inside.sum() < self.min_inliers:
                continue
            pts, st, _ = cv2.calcOpticalFlowPyrLK(
                key.gray,
                gray,
                key.pts[inside],
                guess[inside].copy(),
                flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                **_LK,
            )
            good = st.ravel() == 1
            src.append(pts[good].reshape(-1, 2))
            dst.append(key.ref_pts[inside][good].reshape(-1, 2))
            owner.append(np.full(int(good.sum()), k))
        if not src or sum(len(p) for p in src) < self.min_inliers:
            return pred, 0, 0.0, False
        src_a, dst_a, own = np.concatenate(src), np.concatenate(dst), np.concatenate(owner)
        H, n, name = fit_model(src_a, dst_a, model, self.ransac_thresh)
        share = n / len(src_a)
        if n < self.min_inliers or not _sane(H, pred):
            return pred, n, share, False
        self._active = name
        proj = cv2.perspectiveTransform(src_a[:, None].astype(np.float64), H).reshape(-1, 2)
        inl = np.linalg.norm(proj - dst_a, axis=1) < self.ransac_thresh
        n_last = int((inl & (own == len(keys) - 1)).sum())
        return H / H[2, 2], n_last, share, True


# 11x11 windows: half the cost of 15x15 per tracked point, and no worse over the dev set
_LK = dict(
    winSize=(11, 11),
    maxLevel=3,
    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
)


@dataclass
class _Key:
    gray: np.ndarray  # normalised working-size keyframe
    pts: np.ndarray  # (N, 1, 2) float32 feature positions in the keyframe
    ref_pts: np.ndarray  # (N, 1, 2) float64 the same points in reference coordinates
    n: int


def _sane(H: np.ndarray, pred: np.ndarray) -> bool:
    """Whether ``H`` is a plausible next camera given the prediction: finite, and its area
    scale within a factor 1.5 of the prediction's (a wild fit to a few points is not)."""
    if not np.isfinite(H).all() or abs(H[2, 2]) < 1e-9:
        return False
    ratio = abs(np.linalg.det(H[:2, :2] / H[2, 2])) / max(abs(np.linalg.det(pred[:2, :2])), 1e-12)
    return 1 / 1.5 < ratio < 1.5


def interpolate_failures(motions: list[Motion]) -> None:
    """Place failed frames that lie between two registered frames of one segment in this
    window: a linear blend of those frames' transforms, and their segment. Other failed
    frames keep ``segment == -1`` (they belong to no segment)."""
    last: int | None = None  # the last registered frame
    for i, m in enumerate(motions):
        if not m.ok:
            continue
        if last is not None and i - last > 1 and motions[last].segment == m.segment:
            a, b = motions[last], m
            for k in range(last + 1, i):
                t = (k - last) / (i - last)
                H = (1 - t) * a.H / a.H[2, 2] + t * b.H / b.H[2, 2]
                motions[k].H = H / H[2, 2]
                motions[k].segment = m.segment
        last = i


def distortion(H: np.ndarray, size: tuple[int, int]) -> float:
    """How far the plane of ``H``'s target distorts a frame of ``size`` (w, h): the
    largest of its corners' area scales, their inverses, and the ratio of the largest to
    the smallest (1 for a pure shift)."""
    w, h = size
    corners = np.float64([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]])
    z = corners @ H[2]
    det = np.linalg.det(H)
    if np.any(z <= 1e-9) or det <= 0:
        return np.inf
    area = det / z**3  # the projective map's Jacobian determinant at each corner
    return float(max(area.max(), 1 / area.min(), area.max() / area.min()))


def same_shot(
    before: np.ndarray,
    after: np.ndarray,
    work_width: int = 256,
    min_inliers: float = 0.3,
    max_difference: float = 10.0,
) -> bool:
    """Whether ``after`` continues ``before``'s shot (RGB frames): corners tracked from one
    to the other fit one homography (at least ``min_inliers`` of them, and 40) and, with
    that motion undone, the median grey difference of the frames is under
    ``max_difference`` levels. A fast pan over changing content (animated boards, a crowd)
    passes; a cut, even to similar flat colours, does not."""
    h, w = before.shape[:2]
    size = (min(work_width, w), max(8, round(h * min(work_width, w) / w)))
    a = cv2.cvtColor(cv2.resize(before, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(cv2.resize(after, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    pts = cv2.goodFeaturesToTrack(a, 200, 0.01, 6, blockSize=5)
    if pts is None or len(pts) < 40:
        return False
    levels = max(1, int(np.log2(min(size) / 32)))  # the coarsest level at least 32 px
    moved, st, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, winSize=(21, 21), maxLevel=levels)
    ok = st.ravel() == 1
    if ok.sum() < 40:
        return False
    cv2.setRNGSeed(0)
    m, inl = cv2.findHomography(pts[ok], moved[ok], cv2.RANSAC, 1.5, maxIters=1000)
    if m is None or inl.sum() < max(40, min_inliers * len(pts)):
        return False
    back = cv2.warpPerspective(b, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    cover = cv2.warpPerspective(
        np.full(a.shape, 255, np.uint8), m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    inside = cover >= 250
    if inside.mean() < 0.5:
        return False
    return float(np.median(cv2.absdiff(a, back)[inside])) < max_difference
