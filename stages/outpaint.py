"""Scene-panorama outpainting: widen each frame with the real background of its scene.

Per window of a scene: register every frame to the scene's first frame
(:mod:`stages.motion`), learn the lens falloff from the registered samples (film-wide,
:mod:`stages.vignette`) and divide it out, mark film-gate borders and foreground
(:mod:`stages.foreground`: what disagrees with the scene's median background, or changes
against the frame ``MOTION_GAP`` later once the camera's motion is undone) on
``max_samples`` evenly spaced good frames and more where the camera moved fast,
composite them into the scene's background panorama (:mod:`stages.panorama`), fill what
no frame showed once in panorama space (``fill``, classical by default,
:mod:`stages.fill`), and render each frame from the filled panorama around its untouched
original picture, shaded by the falloff at its place in the widened frame
(:mod:`stages.resample`).

Registration starts before the window is complete: :meth:`PanoramaOutpaint.peek` is
given each frame as soon as the scene buffer knows its scene, and a per-scene
:class:`_Registrar` tracks it on a worker thread while later frames decode (the output is
the same as registering at the window). The window's own work (warps, foreground masks,
median) runs on a small thread pool.

The filled panorama carries over to later windows of the scene: pixels already shown
(real or filled) keep their values unless real background arrives for them, so the fill
does not flicker at window boundaries, and memory stays one bounded canvas per scene.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stages.base import Frame, HoleFill, Stage, VideoInfo, Window, widened_width
from stages.fill import ClassicalFill
from stages.foreground import ForegroundMasker, GateDetector, apply_gain, gain_to
from stages.motion import Motion, MotionTracker, interpolate_failures
from stages.panorama import Canvas, ScenePanorama, masked_median, move_to, quad_bounds, warp_sample
from stages.regions import needed, view_polygons, view_to_canvas
from stages.resample import Resampler
from stages.vignette import Vignette

log = logging.getLogger(__name__)

FILL_CONTEXT = 0.25  # known context around the holes handed to the fill, in frame heights
# Frames a frame's registration waits for, so the gate mask that keeps its features off
# dark frame borders is made from that many more frames of the scene (side PSNR on the
# dev clips, mean: 20.82 dB at 16, 20.97 at 32, 20.98 at 64 and with a window's mask)
TRACK_LAG = 32
MASK_EVERY = 8  # frames between remakes of that mask while streaming
# frames between a sample and the frame it is compared with for motion of its own (side
# PSNR on the dev clips, mean: 21.61 dB at 4, 21.70 at 8, 21.62 at 12, 21.54 without)
MOTION_GAP = 8
# besides max_samples evenly spaced frames, a frame whenever the camera has moved this
# share of the frame width since the last sample (at most max_samples more): fast pans
# get the samples they need (stage side PSNR, mean of the dev clips: 21.69 -> 21.82 dB)
SAMPLE_STEP = 0.1
POOL_THREADS = 2  # threads for the independent parts of a window's work
# film-gate pixels must be dark in every frame, not only on average (see GateDetector):
# for the window's gate (seams, samples, foreground), not for the registrars' tracking
# masks, where dark border rows that move are poor features anyway. Side PSNR, stage on
# the dev clips (tennis / skater / bear): 25.04 / 20.58 / 19.93 dB without, 25.04 / 21.54 /
# 20.17 at 0.25, 25.04 / 21.53 / 20.16 at 0.4; on the tracking masks too, skater fell to
# 20.57 dB and its TDE rose from 9.3 to 10.9
GATE_MAX_CV = 0.35


@dataclass
class _Scene:
    index: int
    pano: ScenePanorama
    display: np.ndarray | None = None  # filled panorama on pano.canvas
    shown: np.ndarray | None = None  # display pixels already real or filled
    canvas: Canvas | None = None
    frames_seen: int = 0
    # the panorama holds frames divided by the lens falloff and multiplied by this (the
    # falloff at the frame corners, fixed at the scene's first flattened window), so
    # bright pixels near the frame edges do not clip at 255 in uint8
    headroom: float | None = None


@dataclass
class _Pending:
    """A window composited but not yet rendered: with an asynchronous fill its frames wait
    for the fill of its panorama (``future``) while the next window is worked on."""

    window: Window
    scene: _Scene
    display: np.ndarray  # the panorama to render from, once ``future`` is resolved
    future: Future[np.ndarray] | None  # the fill of ``display[rect]``
    rect: tuple[slice, slice]
    view_of: list[np.ndarray]  # output-to-canvas matrix per frame
    unreliable: np.ndarray  # gate mask at the time of the window, for the seams
    falloff: np.ndarray | None  # lens falloff over the widened frame (h, out_w, 3), if any


class PanoramaOutpaint(Stage):
    """Widen frames to ``aspect`` from the scene's background panorama."""

    one_to_one = True
    uses_peeks = True
    _pending: _Pending | None = None  # window held back while its fill runs (async fill)
    # fill future and its canvas rectangle, handed from _update to process
    _submitted: tuple[Future[np.ndarray], tuple[slice, slice]] | None = None

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
        max_extent_y: float = 2.0,
        vignette: bool = True,
    ):
        if aspect <= 0:
            raise ValueError(f"aspect must be positive, got {aspect}")
        if small_width < 32 or pano_height < 32 or max_extent < 1 or max_extent_y < 1:
            raise ValueError(
                f"bad sizes: small_width {small_width}, pano_height {pano_height}, "
                f"max_extent {max_extent}, max_extent_y {max_extent_y}"
            )
        self.aspect = Fraction(aspect)
        self.fill = fill if fill is not None else ClassicalFill()
        self.masker = ForegroundMasker(segmenter)
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.model, self.composite, self.max_samples = model, composite, max_samples
        self.work_width, self.small_width = work_width, small_width
        # the canvas holds at most max_extent output widths and max_extent_y heights: pans
        # run sideways far more often than tilts, and the canvas arrays are the stage's
        # memory that grows with a long scene (stage alone, 12 windows of testsrc2: peak
        # 460 -> 516 MiB with 4 heights, 460 -> 482 with 2)
        self.pano_height, self.max_extent = pano_height, max_extent
        self.max_extent_y = max_extent_y
        MotionTracker(model=model, work_width=work_width)  # validate early
        ScenePanorama(composite, max_samples)
        self._info: VideoInfo | None = None
        self._resampler: Resampler | None = None
        self._gate = GateDetector(max_cv=GATE_MAX_CV)
        self.vignette: Vignette | None = Vignette() if vignette else None
        self._scene: _Scene | None = None
        self._registrars: dict[int, _Registrar] = {}  # by scene index, fed by peek()
        self._last_gate: GateDetector | None = None  # of the last scene done
        self._worker: ThreadPoolExecutor | None = None  # runs the registrars' tracking
        self._pool: ThreadPoolExecutor | None = None  # runs independent parts of a window

    def configure(self, info: VideoInfo) -> VideoInfo:
        if info.width < 16 or info.height < 16:
            raise ValueError(f"frames too small to outpaint: {info.width}x{info.height}")
        out_w = widened_width(info.width, info.height, self.aspect)
        self._info = info
        self._resampler = Resampler(info.width, out_w, info.height)
        self._registrars.clear()
        self._last_gate = None
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
        log.info("outpaint %dx%d -> %dx%d", info.width, info.height, out_w, info.height)
        return info.with_size(out_w, info.height)

    def peek(self, image: np.ndarray, scene: int, starts: bool) -> None:
        """Start registering the frame while later frames are still decoding;
        :meth:`process` takes the result (the same as registering it there)."""
        if self._info is None or image.shape != (self._info.height, self._info.width, 3):
            return
        if starts or scene not in self._registrars:
            self._registrars[scene] = self._registrar(scene)
        self._registrars[scene].see(image)

    def _registrar(self, scene: int, tracker: MotionTracker | None = None) -> _Registrar:
        """A registrar for ``scene``. Its gate detector goes on from the previous scene's
        (all of whose frames it has seen, whether they came by peek or by window): the
        film gate does not move at a cut, and a short scene alone says little about it."""
        assert self._info is not None
        tracker = tracker or MotionTracker(model=self.model, work_width=self.work_width)
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="remaster-register")
        work = tracker.scales((self._info.height, self._info.width))[0]
        before = [k for k in self._registrars if k < scene]
        gate = self._registrars[max(before)].gate if before else self._last_gate
        return _Registrar(tracker, work, self._worker, gate.copy() if gate else None)

    def _motions(self, window: Window) -> list[Motion]:
        """The window's frame motions, from its scene's registrar (fed by :meth:`peek`, or
        here with the frames it has not seen)."""
        reg = self._registrars.get(window.scene)
        if reg is None or not window.continues and reg.taken:
            reg = self._registrars[window.scene] = self._registrar(window.scene)
        for old in [k for k in self._registrars if k < window.scene]:
            del self._registrars[old]  # peeked scenes that never came (not the first stage)
        motions = reg.take(window.frames)
        if motions is None:  # peeks that do not match the window: register it here
            log.debug("scene %d: frames seen ahead do not match the window", window.scene)
            reg.wait()
            reg = self._registrars[window.scene] = self._registrar(window.scene, reg.tracker)
            motions = reg.take(window.frames)
            assert motions is not None
        if window.last:
            self._last_gate = self._registrars.pop(window.scene).gate
        return motions

    def process(self, window: Window) -> Iterator[Frame]:
        """Widen the window's frames.

        With a fill that has ``submit`` (the diffusion fill, duck-typed) the fill runs in
        the background: this call registers and composites the window, submits its fill,
        and then yields the frames of the previous window; this window's frames come from
        the next call or :meth:`finish`. That path holds up to two windows of frames in
        memory (the pending one and the current one) instead of one. Output frames, order
        and pts are the same as with a synchronous fill.
        """
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
                window.scene, ScenePanorama(self.composite, 2 * self.max_samples, self._map)
            )
        display, view_of = self._update(scene, window, self._motions(window))
        future, rect = self._submitted or (None, (slice(0), slice(0)))
        self._submitted = None
        falloff = None
        if self.vignette is not None and self.vignette.active:
            out_w, ox = self._resampler.out_width, self._resampler.offset
            falloff = self.vignette.field(out_w, h, -ox, w) / np.float32(scene.headroom or 1.0)
        ready = _Pending(
            window,
            scene,
            display,
            future,
            rect,
            view_of,
            self._gate.mask((w, h), margin=False),
            falloff,
        )
        if not self._fill_async():
            yield from self._release(ready)
            return
        previous, self._pending = self._pending, ready
        if previous is not None:
            yield from self._release(previous)

    def finish(self) -> Iterator[Frame]:
        """Yield the frames of the window still waiting for its fill (async fill only)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            yield from self._release(pending)

    def _map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``map`` on ``POOL_THREADS`` threads (OpenCV and numpy release the GIL): the
        per-window work would otherwise leave the second core idle while nothing decodes
        or encodes. Results in order; deterministic."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="remaster-panorama")
        return self._pool.map(fn, items)

    def _fill_async(self) -> bool:
        return callable(getattr(self.fill, "submit", None))

    def _fill_scene(self, scene: _Scene, todo: np.ndarray, margin: int) -> None:
        """Fill what no frame showed inside the bounding box of ``todo`` (canvas pixels
        the views need) grown by ``margin`` pixels of known context: at once, or submitted
        when the fill has ``submit`` (the future goes to :meth:`process` through
        ``_submitted``). ``shown`` gets a new array so a running fill's input is never
        changed under it."""
        assert scene.display is not None and scene.shown is not None
        ys, xs = np.nonzero(todo.any(1))[0], np.nonzero(todo.any(0))[0]
        h, w = todo.shape
        rect = (
            slice(max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)),
            slice(max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)),
        )
        if not scene.shown[rect].any():  # no context around the holes: use all there is
            rect = (slice(0, h), slice(0, w))
        image = np.ascontiguousarray(scene.display[rect])
        known = np.ascontiguousarray(scene.shown[rect])
        submit = getattr(self.fill, "submit", None)
        if callable(submit):
            self._submitted = submit(image, known), rect
        else:
            scene.display[rect] = self.fill(image, known)
        scene.shown = scene.shown.copy()
        scene.shown[rect] = True

    def _await_fill(self, scene: _Scene) -> None:
        """Before compositing into ``scene``: wait for the pending window's fill of it and
        give the scene its own copy (the composite changes the panorama in place, and the
        pending window still renders from the one it was filled into)."""
        pending = self._pending
        if pending is not None and pending.scene is scene:
            scene.display = self._settle(pending).copy()

    @staticmethod
    def _settle(pending: _Pending) -> np.ndarray:
        """The window's filled panorama, waiting for its fill if it still runs (a fill error
        is raised here)."""
        if pending.future is not None:
            pending.display[pending.rect] = pending.future.result()
            pending.scene.display = pending.display
            pending.future = None
        return pending.display

    def _release(self, pending: _Pending) -> Iterator[Frame]:
        """Render and yield a window's frames from its filled panorama, in input order."""
        assert self._resampler is not None
        display = self._settle(pending)
        win = pending.window
        for frame, pts, H in zip(win.frames, win.pts, pending.view_of, strict=True):
            image = self._resampler.render(frame, display, H, pending.unreliable, pending.falloff)
            yield Frame(image, pts)
        if win.last and self.dump_dir is not None:
            self._dump(pending.scene)

    def _update(
        self, scene: _Scene, window: Window, motions: list[Motion]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Composite and fill for one registered window; returns the filled panorama and
        each frame's output-to-canvas matrix."""
        assert self._info is not None and self._resampler is not None
        w, h = self._info.width, self._info.height
        out_w, ox = self._resampler.out_width, self._resampler.offset
        sw = min(self.small_width, w)
        sh = max(8, round(h * sw / w))
        to_small = np.diag([sw / w, sh / h, 1.0])
        frames = window.frames
        n = len(frames)
        pick = self._samples(motions, w, h)
        smalls = {i: cv2.resize(frames[i], (sw, sh), interpolation=cv2.INTER_AREA) for i in pick}
        self._gate.update([smalls[i] for i in pick])
        unreliable = self._gate.mask((w, h))
        Hs = [m.H for m in motions]
        Hs_small = [H @ np.linalg.inv(to_small) for H in Hs]  # small-frame pixels -> ref
        good = [i for i in pick if motions[i].ok]
        flat: np.ndarray | None = None  # 1 / falloff at the frame size, when there is one
        if self.vignette is not None:
            self.vignette.update(
                [smalls[i] for i in good],
                [Hs_small[i] for i in good],
                self._gate.mask((sw, sh)),
            )
            if self.vignette.active:
                if scene.headroom is None:
                    scene.headroom = self.vignette.corner_gain
                flat = np.float32(scene.headroom) / self.vignette.field(w, h)
                small_flat = cv2.resize(flat, (sw, sh), interpolation=cv2.INTER_AREA)
                smalls = {
                    i: cv2.multiply(s, small_flat, dtype=cv2.CV_8U) for i, s in smalls.items()
                }
        if len(good) < len(pick):
            log.info(
                "scene %d: %d of %d sample frames failed registration",
                scene.index,
                len(pick) - len(good),
                len(pick),
            )
        if not good and not self._known_near(scene, Hs, w, h):
            # nothing registered and nothing stored where these frames are: their own
            # pixels at the held transforms beat an invented fill (full-frame action)
            good = pick

        scale = min(1.0, self.pano_height / h)
        max_size = (round(self.max_extent * out_w * scale), round(self.max_extent_y * h * scale))
        need = quad_bounds(Hs, out_w, h, left=-ox)
        old = scene.pano.canvas
        canvas = scene.pano.grow(need, scale, max_size)

        valids, samples = [], []
        if good:

            def shrink(image: np.ndarray) -> np.ndarray:
                small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
                return small if flat is None else cv2.multiply(small, small_flat, dtype=cv2.CV_8U)

            nbrs: list[tuple[np.ndarray, np.ndarray] | None] = []
            for i in good:  # a registered frame MOTION_GAP away, to see what moves by itself
                j = i + MOTION_GAP if i + MOTION_GAP < n else i - MOTION_GAP
                ok = 0 <= j < n and motions[j].ok
                to_j = np.linalg.inv(Hs_small[j]) @ Hs_small[i] if ok else None
                if to_j is None:
                    nbrs.append(None)
                else:  # a sample itself when the samples lie MOTION_GAP apart
                    nbrs.append((smalls[j] if j in smalls else shrink(frames[j]), to_j))
            fg_small, gains = self._foreground(
                canvas,
                [smalls[i] for i in good],
                [Hs_small[i] for i in good],
                [frames[i] for i in good],
                nbrs,
            )
            for k, i in enumerate(good):
                fg = (
                    cv2.resize(
                        fg_small[k].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
                    )
                    > 0
                )
                valids.append(~unreliable & ~fg)
                f = frames[i] if flat is None else cv2.multiply(frames[i], flat, dtype=cv2.CV_8U)
                samples.append(apply_gain(f, gains[k]))
        updated = scene.pano.add(
            samples, [Hs[i] for i in good], valids, [float(scene.frames_seen + i) for i in good]
        )
        scene.frames_seen += n

        self._await_fill(scene)
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
        todo = needed(scene.shown.shape, polys) & ~scene.shown
        if todo.any() and not scene.shown.any():
            # nothing on the canvas to fill from (views spread wider than its bound and
            # the samples fell outside): the frames' mean colour, which the seam's colour
            # match then shades row by row, rather than a fill's flat grey
            log.warning(
                "scene %d: no background on the canvas; sides take mean colour", scene.index
            )
            mean = np.mean([f.reshape(-1, 3).mean(0) for f in frames], axis=0)
            scene.display[todo] = np.round(mean).astype(np.uint8)
            scene.shown = scene.shown | todo
            todo[:] = False
        if todo.any():
            self._fill_scene(scene, todo, max(16, round(FILL_CONTEXT * h * canvas.scale)))
        return scene.display, [view_to_canvas(H, from_ref, ox) for H in Hs]

    def _samples(self, motions: list[Motion], w: int, h: int) -> list[int]:
        """The window's sample frames: ``max_samples`` evenly spaced, plus one wherever the
        frame centre has moved ``SAMPLE_STEP`` of the width from the last sample."""
        n = len(motions)
        even = {round(k) for k in np.linspace(0, n - 1, min(self.max_samples, n))}
        centre = np.array([w / 2, h / 2, 1.0])
        centres = np.array([m.H @ centre for m in motions])
        centres = centres[:, :2] / centres[:, 2:]  # each frame's centre on the reference
        extra, last = [], centres[0]
        for i in range(n):
            if i in even:
                last = centres[i]
            elif np.hypot(*(centres[i] - last)) > SAMPLE_STEP * w:
                extra.append(i)
                last = centres[i]
        if len(extra) > self.max_samples:
            extra = [extra[round(k)] for k in np.linspace(0, len(extra) - 1, self.max_samples)]
        return sorted(even | set(extra))

    @staticmethod
    def _known_near(scene: _Scene, Hs: list[np.ndarray], w: int, h: int) -> bool:
        """Whether the scene panorama has real background inside these frames' views."""
        pano = scene.pano
        if pano.canvas is None or pano.known is None or not pano.known.any():
            return False
        ys, xs = pano.canvas.pixels(quad_bounds(Hs, w, h))
        return bool(pano.known[ys, xs].any())

    def _foreground(
        self,
        canvas: Canvas,
        smalls: list[np.ndarray],
        Hs_small: list[np.ndarray],
        fulls: list[np.ndarray],
        nbrs: list[tuple[np.ndarray, np.ndarray] | None],
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Foreground masks and exposure gains of the sample frames, against a coarse
        median background of the same frames (at the small size) and, where given, a
        nearby frame with its pixel-to-pixel matrix (``nbrs``)."""
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
        known8 = known.astype(np.uint8) * 255

        def one(k: int) -> tuple[np.ndarray, np.ndarray]:
            m = to_c @ Hs_small[k]
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            bg_view = cv2.warpPerspective(bg, m, (sw, sh), flags=flags)
            kn_view = cv2.warpPerspective(known8, m, (sw, sh), flags=flags) >= 250
            kn_view &= ~unrel
            full = fulls[k] if self.masker.segmenter else None
            fg = self.masker(smalls[k], bg_view, kn_view, full, nbrs[k])
            return fg, gain_to(bg_view, smalls[k], kn_view & ~fg)

        done = list(self._map(one, range(len(smalls))))
        masks, gains = [d[0] for d in done], [d[1] for d in done]
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
        pending, self._pending = self._pending, None
        submitted, self._submitted = self._submitted, None
        for future in (pending.future if pending else None, submitted):
            if future is not None:
                future.cancel()  # not started yet: drop it; running: fill.close() waits
        self._scene = None
        self._registrars.clear()
        self._last_gate = None
        for pool in (self._worker, self._pool):
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        self._worker = self._pool = None
        self.fill.close()


class _Registrar:
    """Registers the frames of one scene in order, each once ``TRACK_LAG`` later frames of
    the scene (or the end of its window) have been seen: the tracking mask comes from a
    gate detector fed with the scene's own frames, and the wait lets it settle.

    Frames are either seen ahead (:meth:`PanoramaOutpaint.peek`, as they settle in the
    scene buffer) or when their window arrives; the result is the same, since a window
    ends where the scene buffer stops settling frames. The tracking itself runs on
    ``worker`` (one thread, jobs in order, the only user of ``tracker``), so it overlaps
    the decode and the cut detection; masks are made here, so what each frame is
    registered with does not depend on timing."""

    def __init__(
        self,
        tracker: MotionTracker,
        work: tuple[int, int],
        worker: Executor,
        gate: GateDetector | None = None,
    ):
        self.tracker, self.work, self.worker = tracker, work, worker
        self.gate = gate or GateDetector()  # at the tracker's working size
        self.taken = 0  # frames handed to windows
        self._queue: deque[np.ndarray] = deque()  # seen, not submitted yet
        self._done: list[Future[Motion]] = []  # submitted, not taken yet
        self._ids: deque[int] = deque()  # id() of every frame seen and not taken
        self._seen = 0
        self._mask: tuple[int, np.ndarray] | None = None  # (frames seen, tracking mask)

    def see(self, image: np.ndarray) -> None:
        self.gate.update([cv2.resize(image, self.work, interpolation=cv2.INTER_AREA)])
        self._seen += 1
        self._queue.append(image)
        self._ids.append(id(image))
        while len(self._queue) > TRACK_LAG:
            self._submit(final=False)

    def _submit(self, final: bool) -> None:
        """Hand the oldest queued frame to the worker with its mask: remade every
        ``MASK_EVERY`` frames seen, and for the frames registered when their window
        arrives (``final``)."""
        k = self._seen
        old = self._mask[0] if self._mask is not None else -1
        if old != k and (final or old // MASK_EVERY != k // MASK_EVERY):
            self._mask = k, ~self.gate.mask(self.work)
        image, mask = self._queue.popleft(), self._mask[1]
        self._done.append(self.worker.submit(lambda: self.tracker.track([image], [mask])[0]))

    def take(self, frames: list[np.ndarray]) -> list[Motion] | None:
        """Motions of the next ``frames`` of the scene (seeing those not seen yet); None
        when the frames seen ahead are not these (nothing is taken then). A tracking
        error is raised here."""
        n = len(frames)
        ahead = list(islice(self._ids, n))
        if ahead != [id(f) for f in frames[: len(ahead)]]:
            return None
        for f in frames[len(ahead) :]:
            self.see(f)
        while len(self._done) < n:
            self._submit(final=True)
        out = [f.result() for f in self._done[:n]]
        del self._done[:n]
        for _ in range(n):
            self._ids.popleft()
        self.taken += n
        interpolate_failures(out)
        return out

    def wait(self) -> None:
        """Let submitted work finish (before the tracker is handed on)."""
        for f in self._done:
            f.exception()
