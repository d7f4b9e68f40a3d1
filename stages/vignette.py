"""Lens vignetting: the radial light falloff of the camera, learned from the film itself.

A camera (or a film scanner's optics) darkens the picture towards its corners. When the
camera pans, one point of the background is seen near the centre of one frame and near
the edge of another, so a panorama composited from raw frames mixes bright and dark
versions of it, and the new side areas, which in a widescreen picture lie further from
the centre than any pixel of the 4:3 frame, come out too bright (on a dev clip, by
10-13 levels 64-128 columns out from the seam).

Model: ``log V(rho) = c1 * rho**2 + c2 * rho**4`` with ``rho`` the distance from the frame
centre over the input frame's half diagonal, and ``c1, c2 <= 0`` (V falls monotonically).
Every registered pair of sample frames gives equations ``log I_k(x) - log I_j(x') =
g_k - g_j + log V(x) - log V(x')`` for background points ``x`` of frame ``k`` seen at
``x'`` in frame ``j`` (``g``: per-frame exposure), solved robustly (iteratively reweighted
least squares, Cauchy weights) per window. The exposures are eliminated (Schur complement)
and each window's evidence on ``c`` is added to a running sum for the whole film, the
way the film-gate detector accumulates. A static camera adds no evidence (``x = x'``);
a ridge keeps ``c`` at zero until panning frames say otherwise.

Use: samples are divided by ``V`` before compositing (the panorama holds the light of the
centre of the frame) and the rendered sides multiplied by ``V`` at their position in the
widened frame, so the falloff continues past the old frame edge. Both are scaled by the
corner gain (:attr:`Vignette.corner_gain`): a pixel near the frame edge divided by ``V``
may pass 255, light the camera clipped at the centre, and a uint8 panorama must keep it.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

GRID_STEP = 6  # sample-frame pixels between the points of one pair's equations
PAIR_GAPS = (1, 2, 4, 8)  # each sample frame is paired with the ones this many later
# pairs whose points moved less than this share of the frame width are left out: with
# the small moves of a static shot (gate weave, jitter) the falloff terms are tiny, and
# moving characters and compression then decide the fit (a static Popeye shot gave a
# falloff to 0.1 at the corners)
MIN_SHIFT = 0.05
MAX_EQUATIONS = 8192  # per window, evenly strided: plenty for two unknowns of the lens
RIDGE = 4.0  # prior on (c1, c2): zero, standard deviation 0.5 (log gain at the corner)
MIN_LOG_V = np.log(0.35)  # the falloff is never extrapolated below this gain


def offsets(
    width: int, height: int, x_offset: float = 0.0, frame_width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised offsets from the frame centre, ``u`` (1, width) and ``v`` (height, 1)
    float32, for pixels of a picture whose column 0 lies at ``x_offset`` in a frame
    ``frame_width`` wide (default: the picture is the frame); the unit is that frame's
    half diagonal, so ``u**2 + v**2`` is 1 at its corners."""
    fw = width if frame_width is None else frame_width
    cx, cy = fw / 2.0, height / 2.0
    r = np.float32(np.hypot(cx, cy))
    u = (np.arange(width, dtype=np.float32) + np.float32(0.5 + x_offset - cx)) / r
    v = (np.arange(height, dtype=np.float32) + np.float32(0.5 - cy)) / r
    return u[None, :], v[:, None]


class Vignette:
    """Film-wide estimate of the lens falloff; see the module docstring."""

    def __init__(self, ridge: float = RIDGE):
        if ridge <= 0:
            raise ValueError(f"ridge must be positive, got {ridge}")
        self.ridge = ridge
        self._N = np.zeros((2, 2))  # accumulated information on (c1, c2)
        self._b = np.zeros(2)

    @property
    def coeffs(self) -> tuple[float, float]:
        """(c1, c2), both <= 0: the ridge solution, or with a positive one held at zero."""
        N = self._N + self.ridge * np.eye(2)
        c = np.linalg.solve(N, self._b)
        if (c > 0).any():
            keep = int(np.argmin(c))  # the more negative term, refitted alone
            c = np.zeros(2)
            c[keep] = min(0.0, self._b[keep] / N[keep, keep])
        return float(c[0]), float(c[1])

    def log_gain(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """log V at normalised offsets ``u``, ``v`` (float32, broadcast together),
        floored at ``MIN_LOG_V``."""
        c1, c2 = (np.float32(c) for c in self.coeffs)
        rho2 = u * u + v * v
        lg = rho2 * c1 + rho2 * rho2 * c2
        return np.maximum(lg, np.float32(MIN_LOG_V))

    @property
    def corner_gain(self) -> float:
        """V at the frame corners, the lowest of the input frame (rho = 1)."""
        return float(np.exp(self.log_gain(np.float32([[1.0]]), np.float32([[0.0]])))[0, 0])

    @property
    def active(self) -> bool:
        """Whether the falloff changes some pixel of the frame by 0.4 % or more."""
        corners = np.float32([[-0.8, 0.8]]), np.float32([[-0.6], [0.6]])
        return float(np.abs(self.log_gain(*corners)).max()) >= 0.004

    def update(
        self, smalls: list[np.ndarray], to_ref: list[np.ndarray], unreliable: np.ndarray
    ) -> None:
        """Add one window's evidence: sample frames (RGB uint8, one small size), their
        pixel -> reference matrices, and the film-gate pixels to leave out (bool)."""
        k = len(smalls)
        if k < 2:
            return
        h, w = smalls[0].shape[:2]
        logs, oks = [], []
        for s in smalls:
            y = cv2.GaussianBlur(cv2.cvtColor(s, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
            y = y.astype(np.float32)
            gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
            # flat, unclipped pixels only: at edges a fraction of a pixel of misregistration
            # changes the value more than the falloff does
            ok = (y > 16) & (y < 240) & (np.abs(gx) + np.abs(gy) < 0.06 * 8 * y) & ~unreliable
            logs.append(np.log(np.maximum(y, 1.0)))
            oks.append(ok.astype(np.uint8))
        yy, xx = np.mgrid[GRID_STEP // 2 : h : GRID_STEP, GRID_STEP // 2 : w : GRID_STEP]
        pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32) + 0.5  # pixel centres
        centre, r = np.float32([w / 2, h / 2]), np.float32(np.hypot(w / 2, h / 2))
        rows, ys = [], []
        for a in range(k):
            for b in [a + d for d in PAIR_GAPS if a + d < k]:
                m = np.linalg.inv(to_ref[b]) @ to_ref[a]  # frame a pixels -> frame b pixels
                q = cv2.perspectiveTransform(pts[None], m)[0]
                inside = (q[:, 0] > 2) & (q[:, 0] < w - 2) & (q[:, 1] > 2) & (q[:, 1] < h - 2)
                if inside.sum() < 16:
                    continue
                p, q = pts[inside], q[inside]
                if np.median(np.hypot(*(q - p).T)) < MIN_SHIFT * w:
                    continue
                ia = p.astype(int)
                la = logs[a][ia[:, 1], ia[:, 0]]
                ok_a = oks[a][ia[:, 1], ia[:, 0]] > 0
                qm = q.reshape(-1, 1, 2) - 0.5
                lb = cv2.remap(logs[b], qm[..., 0], qm[..., 1], cv2.INTER_LINEAR)[:, 0]
                ok_b = cv2.remap(oks[b], qm[..., 0], qm[..., 1], cv2.INTER_NEAREST)[:, 0] > 0
                use = ok_a & ok_b
                if use.sum() < 16:
                    continue
                # rho^2 of each point in both frames, as :func:`offsets` normalises it
                ra = (((p[use] - centre) / r) ** 2).sum(1)
                rb = (((q[use] - centre) / r) ** 2).sum(1)
                row = np.zeros((int(use.sum()), k + 2))
                row[:, a], row[:, b] = 1.0, -1.0
                row[:, k], row[:, k + 1] = ra - rb, ra * ra - rb * rb
                rows.append(row)
                ys.append(la[use] - lb[use])
        if not rows:
            return
        A, y = np.concatenate(rows), np.concatenate(ys)
        if len(y) > MAX_EQUATIONS:
            keep = np.linspace(0, len(y) - 1, MAX_EQUATIONS).astype(int)
            A, y = A[keep], y[keep]
        # unknowns: exposures g_1 .. g_{k-1} (g_0 = 0 fixes the scale), then c1 and c2
        self._add(A[:, 1:], y)

    def _add(self, A: np.ndarray, y: np.ndarray) -> None:
        """Robust fit of one window's equations; its information on (c1, c2), with the
        exposures eliminated, joins the running sums."""
        wgt = np.ones(len(y))
        n_g = A.shape[1] - 2
        try:
            for _ in range(6):
                Aw = A * wgt[:, None]
                N = Aw.T @ A + 1e-6 * np.eye(A.shape[1])
                x = np.linalg.solve(N, Aw.T @ y)
                r = y - A @ x
                scale = 1.4826 * float(np.median(np.abs(r))) + 1e-4
                wgt = 1.0 / (1.0 + (r / (2.0 * scale)) ** 2)  # Cauchy
            # each equation's weight in units of a residual at the robust scale
            Aw = A * (wgt / scale**2)[:, None]
            N, b = Aw.T @ A, Aw.T @ y
            Ngg, Ngc, Ncc = N[:n_g, :n_g], N[:n_g, n_g:], N[n_g:, n_g:]
            Ngg = Ngg + 1e-6 * np.eye(n_g)
            S = Ncc - Ngc.T @ np.linalg.solve(Ngg, Ngc)
            s = b[n_g:] - Ngc.T @ np.linalg.solve(Ngg, b[:n_g])
        except np.linalg.LinAlgError:  # a window whose equations say nothing sound
            log.debug("vignette: window left out (singular equations)")
            return
        if not (np.isfinite(S).all() and np.isfinite(s).all()):
            return
        self._N += S
        self._b += s
        log.debug("vignette: window fit %s, film-wide %s", x[n_g:], self.coeffs)

    def field(
        self, width: int, height: int, x_offset: float = 0.0, frame_width: int | None = None
    ) -> np.ndarray:
        """(height, width, 3) float32 V for a picture placed as in :func:`offsets`
        (three equal channels, for ``cv2.multiply`` with RGB frames)."""
        v = np.exp(self.log_gain(*offsets(width, height, x_offset, frame_width)))
        return cv2.merge([v, v, v])
