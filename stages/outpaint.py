"""Scene-panorama outpainting: widen each frame with the real background of its scene.

Per window of a scene: register every frame to the scene's first frame
(:mod:`stages.motion`), mark film-gate borders and foreground (:mod:`stages.foreground`)
on up to ``max_samples`` evenly spaced good frames, composite them into the scene's
background panorama (:mod:`stages.panorama`), fill what no frame showed once in
panorama space (``fill``, classical by default, :mod:`stages.fill`), and render each frame
from the filled panorama around its untouched original picture (:mod:`stages.resample`).

The filled panorama carries over to later windows of the scene: pixels already shown
(real or filled) keep their values unless real background arrives for them, so the fill
does not flicker at window boundaries, and memory stays one bounded canvas per scene.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from stages.base import Frame, HoleFill, Stage, VideoInfo, Window, widened_width
from stages.fill import ClassicalFill
from stages.foreground import ForegroundMasker, GateDetector, apply_gain, gain_to
from stages.motion import MotionTracker
from stages.panorama import Canvas, ScenePanorama, masked_median, move_to, quad_bounds, warp_sample
from stages.regions import needed, view_polygons, view_to_canvas
from stages.resample import Resampler

log = logging.getLogger(__name__)


@dataclass
class _Scene:
    index: int
    tracker: MotionTracker
    pano: ScenePanorama
    display: np.ndarray | None = None  # filled panorama on pano.canvas
    shown: np.ndarray | None = None  # display pixels already real or filled
    canvas: Canvas | None = None
    frames_seen: int = 0


class PanoramaOutpaint(Stage):
    """Widen frames to ``aspect`` from the scene's background panorama."""

    def __init__(
        self,
        aspect: Fraction,
        fill: HoleFill | None = None,
        segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
        dump_dir: Path | None = None,
        *,
        model: str = "auto",
        composite: str = "median",
        max_samples: int = 16,
        work_width: int = 320,
        small_width: int = 192,
        pano_height: int = 576,
        max_extent: float = 4.0,
    ):
        if aspect <= 0:
            raise ValueError(f"aspect must be positive, got {aspect}")
        if small_width < 32 or pano_height < 32 or max_extent < 1:
            raise ValueError(
                f"bad sizes: small_width {small_width}, pano_height {pano_height}, "
                f"max_extent {max_extent}"
            )
        self.aspect = Fraction(aspect)
        self.fill = fill if fill is not None else ClassicalFill()
        self.masker = ForegroundMasker(segmenter)
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.model, self.composite, self.max_samples = model, composite, max_samples
        self.work_width, self.small_width = work_width, small_width
        self.pano_height, self.max_extent = pano_height, max_extent
        MotionTracker(model=model, work_width=work_width)  # validate early
        ScenePanorama(composite, max_samples)
        self._info: VideoInfo | None = None
        self._resampler: Resampler | None = None
        self._gate = GateDetector()
        self._scene: _Scene | None = None

    def configure(self, info: VideoInfo) -> VideoInfo:
        if info.width < 16 or info.height < 16:
            raise ValueError(f"frames too small to outpaint: {info.width}x{info.height}")
        out_w = widened_width(info.width, info.height, self.aspect)
        self._info = info
        self._resampler = Resampler(info.width, out_w, info.height)
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
        log.info("outpaint %dx%d -> %dx%d", info.width, info.height, out_w, info.height)
        return info.with_size(out_w, info.height)

    def process(self, window: Window) -> Iterator[Frame]:
        if self._info is None or self._resampler is None:
            raise RuntimeError("configure() must be called before process()")
        if not window.frames:
            return
        w, h = self._info.width, self._info.height
        for i, f in enumerate(window.frames):
            if f.shape != (h, w, 3) or f.dtype != np.uint8:
                raise ValueError(f"frame {i} must be uint8 {(h, w, 3)}, got {f.dtype} {f.shape}")
        scene = self._scene
        if scene is None or not window.continues or scene.index != window.scene:
            scene = self._scene = _Scene(
                window.scene,
                MotionTracker(model=self.model, work_width=self.work_width),
                ScenePanorama(self.composite, self.max_samples),
            )
        display, view_of = self._update(scene, window)
        unreliable = self._gate.mask((w, h), margin=False)
        for frame, pts, H in zip(window.frames, window.pts, view_of, strict=True):
            out = self._resampler.render(frame, display, H, unreliable)
            yield Frame(out, pts)
        if window.last and self.dump_dir is not None:
            self._dump(scene)

    def _update(self, scene: _Scene, window: Window) -> tuple[np.ndarray, list[np.ndarray]]:
        """Register, composite and fill for one window; returns the filled panorama and each
        frame's output-to-canvas matrix."""
        assert self._info is not None and self._resampler is not None
        w, h = self._info.width, self._info.height
        out_w, ox = self._resampler.out_width, self._resampler.offset
        sw = min(self.small_width, w)
        sh = max(8, round(h * sw / w))
        to_small = np.diag([sw / w, sh / h, 1.0])
        frames = window.frames
        n = len(frames)
        pick = sorted({round(k) for k in np.linspace(0, n - 1, min(self.max_samples, n))})
        smalls = {i: cv2.resize(frames[i], (sw, sh), interpolation=cv2.INTER_AREA) for i in pick}
        self._gate.update([smalls[i] for i in pick])
        unreliable = self._gate.mask((w, h))
        motions = scene.tracker.track(frames, [~unreliable] * n)
        Hs = [m.H for m in motions]
        good = [i for i in pick if motions[i].ok]
        if len(good) < len(pick):
            log.info(
                "scene %d: %d of %d sample frames failed registration",
                scene.index,
                len(pick) - len(good),
                len(pick),
            )

        scale = min(1.0, self.pano_height / h)
        max_size = (round(self.max_extent * out_w * scale), round(self.max_extent * h * scale))
        need = quad_bounds(Hs, out_w, h, left=-ox)
        old = scene.pano.canvas
        canvas = scene.pano.grow(need, scale, max_size)

        valids, samples = [], []
        if good:
            fg_small, gains = self._foreground(
                canvas,
                [smalls[i] for i in good],
                [Hs[i] @ np.linalg.inv(to_small) for i in good],
                [frames[i] for i in good],
            )
            for k, i in enumerate(good):
                fg = (
                    cv2.resize(
                        fg_small[k].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
                    )
                    > 0
                )
                valids.append(~unreliable & ~fg)
                samples.append(apply_gain(frames[i], gains[k]))
        updated = scene.pano.add(
            samples, [Hs[i] for i in good], valids, [float(scene.frames_seen + i) for i in good]
        )
        scene.frames_seen += n

        assert scene.pano.image is not None
        if scene.display is None or scene.shown is None or old is None:
            scene.display = scene.pano.image.copy()
            scene.shown = updated.copy()
        else:
            if old != canvas:
                scene.display = move_to(scene.display, old, canvas)
                scene.shown = move_to(scene.shown, old, canvas, False)
            scene.display[updated] = scene.pano.image[updated]
            scene.shown |= updated
        from_ref = canvas.from_ref()
        polys = view_polygons(Hs, from_ref, out_w, h, ox)
        if (needed(scene.shown.shape, polys) & ~scene.shown).any():
            scene.display = self.fill(scene.display, scene.shown)
            scene.shown[:] = True
        return scene.display, [view_to_canvas(H, from_ref, ox) for H in Hs]

    def _foreground(
        self,
        canvas: Canvas,
        smalls: list[np.ndarray],
        Hs_small: list[np.ndarray],
        fulls: list[np.ndarray],
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Foreground masks and exposure gains of the sample frames, against a coarse
        median background of the same frames (at the small size)."""
        sh, sw = smalls[0].shape[:2]
        ratio = sw / fulls[0].shape[1]
        x0, y0, x1, y1 = canvas.bounds()
        coarse = Canvas(
            x0, y0, ratio, int(np.ceil((x1 - x0) * ratio)), int(np.ceil((y1 - y0) * ratio))
        )
        unrel = self._gate.mask((sw, sh))
        to_c = coarse.from_ref()
        warped = [
            warp_sample(s, ~unrel, to_c @ H, coarse) for s, H in zip(smalls, Hs_small, strict=True)
        ]
        bg = masked_median(np.stack([x[0] for x in warped]), np.stack([x[1] for x in warped]))
        known = np.stack([x[1] for x in warped]).any(0)
        masks, gains = [], []
        for s, H, full in zip(smalls, Hs_small, fulls, strict=True):
            m = to_c @ H
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            bg_view = cv2.warpPerspective(bg, m, (sw, sh), flags=flags)
            kn_view = (
                cv2.warpPerspective(known.astype(np.uint8) * 255, m, (sw, sh), flags=flags) >= 250
            )
            kn_view &= ~unrel
            fg = self.masker(s, bg_view, kn_view, full if self.masker.segmenter else None)
            masks.append(fg)
            gains.append(gain_to(bg_view, s, kn_view & ~fg))
        return masks, gains

    def _dump(self, scene: _Scene) -> None:
        assert self.dump_dir is not None
        if scene.display is None or scene.pano.known is None:
            return
        stem = self.dump_dir / f"scene{scene.index:04d}"
        cv2.imwrite(f"{stem}_panorama.png", cv2.cvtColor(scene.display, cv2.COLOR_RGB2BGR))
        cv2.imwrite(f"{stem}_known.png", scene.pano.known.astype(np.uint8) * 255)
        log.info("dumped %s_panorama.png", stem)

    def close(self) -> None:
        self._scene = None
        self.fill.close()
