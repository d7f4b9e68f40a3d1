"""How far each frame's sides may trust the panorama, changing smoothly over time.

Two kinds of evidence, each in [0, 1]:

* registration (per frame, known as soon as the window is registered): 0 for a frame of
  no background segment, ``INTERPOLATED`` for one placed between registered frames by
  interpolation, and a ramp on the share of tracked points the fit explained;
* agreement (per frame, from the filled panorama): the share of the seam bands (the
  original's outermost columns) where the panorama warped into the frame agrees with the
  frame itself (see :meth:`stages.resample.Resampler.look`), the better of the two
  sides. A misregistered or unrelated panorama disagrees at both seams; a character
  crossing the frame edge usually at one, and there the panorama is still right.

Each is smoothed by :func:`smooth`, a lower envelope with a bounded slope: a frame with
low confidence pulls its neighbours down, so the sides never jump between the panorama
and the per-frame fallback; the product is the weight of the panorama in the sides.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from stages.motion import Motion

RAMP = 8  # frames over which the confidence may go from 0 to 1 (a third of a second)
# inlier shares this low say the fit barely rose above its minimum of points (registered
# dev-clip frames all lie above HIGH, and the panorama served them well even there)
SHARE_LOW, SHARE_HIGH = 0.08, 0.16
INTERPOLATED = 0.75  # a frame placed by interpolation between two registered frames
# agreement at the better seam: at least 0.55 on every registered frame of the dev clips
# (and of Popeye, One Piece and Megamind); an unrelated panorama agrees by chance only
AGREE_LOW, AGREE_HIGH = 0.25, 0.5


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, linear between."""
    return np.clip((np.asarray(x, np.float64) - lo) / (hi - lo), 0.0, 1.0)


def registration(motions: list[Motion]) -> np.ndarray:
    """Per-frame registration confidence (n,)."""
    out = np.zeros(len(motions))
    for i, m in enumerate(motions):
        if not m.placed:
            continue
        out[i] = float(ramp(m.share, SHARE_LOW, SHARE_HIGH)) if m.ok else INTERPOLATED
    return out


def smooth(values: np.ndarray, before: float | None = None, ramp: int = RAMP) -> np.ndarray:
    """The largest sequence under ``values`` (n,) whose steps between neighbours are
    at most ``1 / ramp``, also starting at most one step above ``before`` (the smoothed
    value of the frame before, if any)."""
    step = 1.0 / ramp
    out = np.array(values, np.float64)
    prev = None if before is None else np.float64(before)
    for i in range(len(out)):
        if prev is not None:
            out[i] = np.minimum(out[i], prev + step)
        prev = out[i]
    for i in range(len(out) - 2, -1, -1):
        out[i] = np.minimum(out[i], out[i + 1] + step)
    return out


def smooth_stream(
    values: Iterable[float], before: float | None = None, ramp: int = RAMP
) -> Iterator[float]:
    """:func:`smooth` of values in [0, 1] as they come: each smoothed value once ``ramp``
    later values are known, the same number as ``smooth`` gives for the whole sequence
    (a later value cannot pull it down: climbing by ``1 / ramp`` a frame, even 0 is back
    at 1 within ``ramp`` frames)."""
    step = 1.0 / ramp
    ahead: deque[float] = deque()  # after the forward pass, not yielded yet
    prev = None if before is None else float(before)

    def first() -> float:
        """The oldest value after the backward pass over what is known."""
        out = ahead[-1]
        for v in list(ahead)[-2::-1]:
            out = min(v, out + step)
        return out

    for v in values:
        prev = float(v) if prev is None else min(float(v), prev + step)
        ahead.append(prev)
        if len(ahead) > 2 * ramp:  # twice what is needed: the equality has no edge cases
            yield first()
            ahead.popleft()
    while ahead:
        yield first()
        ahead.popleft()


class Confidence:
    """Per-side weights of the panorama for the frames of one scene, part by part, with
    the smoothing carried across parts and windows."""

    def __init__(self) -> None:
        self._reg: float | None = None  # smoothed registration, last frame seen
        self._agree: float | None = None  # smoothed agreement, last frame seen

    def reset(self) -> None:
        """A new scene: nothing carries over (a cut may change everything at once)."""
        self._reg = self._agree = None

    def registration(self, motions: list[Motion]) -> np.ndarray:
        """Smoothed registration confidence of a window's frames (n,)."""
        out = smooth(registration(motions), self._reg)
        if len(out):
            self._reg = float(out[-1])
        return out

    def agreement(self, shares: Iterable[tuple[float, float]]) -> Iterator[float]:
        """Smoothed agreement weights from the seam-band agreement shares (left, right) of
        a part's frames, in order, as the shares come: each weight ``RAMP`` frames later
        (so a part's rendering need not wait for all of its frames' shares)."""
        best = (float(ramp(max(pair), AGREE_LOW, AGREE_HIGH)) for pair in shares)
        for w in smooth_stream(best, self._agree):
            self._agree = w
            yield w

    def no_panorama(self) -> None:
        """Frames rendered without a panorama went by: agreement starts from nothing."""
        self._agree = 0.0
