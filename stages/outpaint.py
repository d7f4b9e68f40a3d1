"""Scene-panorama outpainting: widen each frame with the real background of its scene.

Per window of a scene: register every frame (:mod:`stages.registrar`, started ahead from
:meth:`PanoramaOutpaint.peek`; :mod:`stages.motion`), which also splits the scene into
background segments linked by verified registration; then, part by part (a run of
frames in one segment, or in none): make the segment's samples (:mod:`stages.samples`:
sample frames, lens falloff divided out, film gate and foreground masked; a part that
the segment goes on from by a new reference takes the next part's frames too), composite
them into the segment's panorama (:mod:`stages.panorama`), fill what no frame showed
once in panorama space (:mod:`stages.display`, with the ``fill`` handed in, classical by
default), and render each frame (:mod:`stages.render`): the sides from the filled
panorama as far as the confidence allows (:mod:`stages.confidence`), from the frame's
own pixels for the rest (``frame_fill``), the film gate inside the picture covered
unless ``keep_gate``, the rest of the original untouched.

A fill that runs in the background (:attr:`stages.base.HoleFill.in_background`) overlaps
the next part's registration and compositing: its frames come out of the next
:meth:`PanoramaOutpaint.process` call or :meth:`PanoramaOutpaint.finish`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from stages.base import Frame, HoleFill, Stage, VideoInfo, Window, widened_width
from stages.confidence import Confidence
from stages.display import SceneDisplay
from stages.fallback import FallbackRenderer
from stages.fill import ClassicalFill, FrameFill
from stages.foreground import ForegroundMasker
from stages.gate import FilmGate, GateDetector, GatePatch
from stages.motion import Motion, MotionTracker
from stages.panorama import Canvas, ScenePanorama, quad_bounds
from stages.regions import view_polygons, view_to_canvas
from stages.registrar import Registrations
from stages.render import Renderer
from stages.resample import Resampler
from stages.samples import Sampler
from stages.vignette import Vignette

log = logging.getLogger(__name__)

FILL_CONTEXT = 0.25  # known context around the holes handed to the fill, in frame heights
POOL_THREADS = 2  # threads for the independent parts of a window's work
# lost motion is a warning from this share of the frames on: below it the losses are short
# runs that a user cannot act on
LOST_WARN_SHARE = 0.25
# the default fill of what no frame showed works at about this many pixels: what it
# predicts is smooth, and a smoother fill scored higher on 9 of the 12 dev clips (static
# shots most) than at 500k; it is faster too
PANORAMA_FILL_PIXELS = 100_000
# film-gate pixels must be dark in every frame, not only on average (see GateDetector):
# for the window's gate (seams, samples, foreground); not for the registrars' tracking
# masks, where dark border rows that move are poor features anyway (it cost there)
GATE_MAX_CV = 0.35


@dataclass
class _Part:
    """Consecutive frames of a window in one background segment (``display``) or in none
    (``display`` None), composited and waiting to be rendered: with a fill in the
    background, while the next part is worked on."""

    frames: list[np.ndarray]
    pts: list[int]
    display: SceneDisplay | None
    views: list[np.ndarray]  # output-to-canvas matrix per frame (with a display)
    unreliable: np.ndarray  # gate mask at the time of the part, for the seams
    falloff: np.ndarray | None  # lens falloff over the widened frame (h, out_w, 3), if any
    last: bool  # the part ends its scene
    gate: GatePatch | None  # the film gate inside the picture, to be covered (if any)
    registration: np.ndarray  # smoothed registration confidence per frame (n,)
    image: np.ndarray | None = None  # the filled panorama, once the display went on


def parts(motions: list[Motion]) -> list[tuple[int, int]]:
    """(start, stop) of the runs of frames in one segment, or in none, in order."""
    out: list[tuple[int, int]] = []
    for i, m in enumerate(motions):
        if i == 0 or m.segment != motions[i - 1].segment or m.link is not None:
            out.append((i, i + 1))
        else:
            out[-1] = (out[-1][0], i + 1)
    return out


def continuation(motions: list[Motion], stop: int) -> list[Motion]:
    """The motions of the part of the window that starts at ``stop``, re-expressed in the
    reference of the part before it, when that part goes on from it by a new reference
    (``link``); else none. A fast pan's leading side shows background that only the next
    part's frames see: as samples of this part's panorama, it is real there instead of
    filled, and the fill does not jump to it at the new reference."""
    if stop >= len(motions) or motions[stop].link is None:
        return []
    back = np.linalg.inv(motions[stop].link)
    segment = motions[stop].segment
    out = []
    for m in motions[stop:]:
        if m.segment != segment or (m is not motions[stop] and m.link is not None):
            break
        H = back @ m.H
        out.append(replace(m, H=H / H[2, 2], segment=segment - 1, link=None))
    return out


class PanoramaOutpaint(Stage):
    """Widen frames to ``aspect`` from the scene's background panorama. ``fill`` fills
    what no frame showed, once per scene in panorama space; ``frame_fill`` fills a frame
    from its own pixels where the panorama cannot be trusted; ``keep_gate`` leaves an
    old film's gate inside the picture as it is instead of covering it."""

    one_to_one = True
    uses_peeks = True

    def __init__(
        self,
        aspect: Fraction,
        fill: HoleFill | None = None,
        segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
        dump_dir: Path | None = None,
        *,
        frame_fill: HoleFill | None = None,
        model: str = "auto",
        composite: str = "median",
        max_samples: int = 16,
        work_width: int = 320,
        small_width: int = 192,
        pano_height: int = 576,
        max_extent: float = 4.0,
        max_extent_y: float = 2.0,
        vignette: bool = True,
        keep_gate: bool = False,
    ):
        if aspect <= 0:
            raise ValueError(f"aspect must be positive, got {aspect}")
        if small_width < 32 or pano_height < 32 or max_extent < 1 or max_extent_y < 1:
            raise ValueError(
                f"bad sizes: small_width {small_width}, pano_height {pano_height}, "
                f"max_extent {max_extent}, max_extent_y {max_extent_y}"
            )
        for name, f in (("fill", fill), ("frame_fill", frame_fill)):
            if f is not None and not isinstance(f, HoleFill):
                raise TypeError(f"{name} must be a HoleFill, got {type(f).__name__}")
        self.aspect = Fraction(aspect)
        self.fill = fill if fill is not None else ClassicalFill(max_pixels=PANORAMA_FILL_PIXELS)
        # where the panorama cannot serve, frames are filled from their own pixels: the
        # default is ahead of full-size per-frame Telea on every dev clip
        self.frame_fill = frame_fill or FrameFill()
        self.masker = ForegroundMasker(segmenter)
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.model, self.composite, self.max_samples = model, composite, max_samples
        self.work_width, self.small_width = work_width, small_width
        # the canvas holds at most max_extent output widths and max_extent_y heights: pans
        # run sideways far more often than tilts, and the canvas is the stage's memory
        # that grows with a long scene
        self.pano_height, self.max_extent = pano_height, max_extent
        self.max_extent_y = max_extent_y
        MotionTracker(model=model, work_width=work_width)  # validate early
        ScenePanorama(composite, max_samples)
        self._info: VideoInfo | None = None
        self._resampler: Resampler | None = None
        self._gate = GateDetector(max_cv=GATE_MAX_CV)
        self._film = FilmGate()
        self.keep_gate = keep_gate
        self.vignette: Vignette | None = Vignette() if vignette else None
        self._display: SceneDisplay | None = None  # of the segment in progress
        self._registrations: Registrations | None = None  # fed by peek()
        self._renderer: Renderer | None = None
        self._sampler: Sampler | None = None
        self._pending: _Part | None = None  # part held back while its fill runs
        self._confidence = Confidence()
        self._tracked = [0, 0]  # frames registered, frames whose motion was not found
        self._pool: ThreadPoolExecutor | None = None  # runs independent parts of a window

    @property
    def canvas(self) -> Canvas | None:
        """The current scene's panorama canvas (None before the first window)."""
        return self._display.canvas if self._display is not None else None

    def configure(self, info: VideoInfo) -> VideoInfo:
        if info.width < 16 or info.height < 16:
            raise ValueError(f"frames too small to outpaint: {info.width}x{info.height}")
        out_w = widened_width(info.width, info.height, self.aspect)
        self._info = info
        self._resampler = Resampler(info.width, out_w, info.height)
        own = FallbackRenderer(self.frame_fill, info.width, out_w, info.height)
        self._renderer = Renderer(self._resampler, own, self._confidence, self._submit)
        if self._registrations is not None:
            self._registrations.close()
        self._registrations = Registrations((info.width, info.height), self.model, self.work_width)
        self._film = FilmGate()
        self._sampler = Sampler(
            (info.width, info.height),
            self.masker,
            self._gate,
            self._film,
            self.vignette,
            self.max_samples,
            self.small_width,
            self._map,
        )
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
        log.info("outpaint %dx%d -> %dx%d", info.width, info.height, out_w, info.height)
        return info.with_size(out_w, info.height)

    def peek(self, image: np.ndarray, scene: int, starts: bool) -> None:
        """Start registering the frame while later frames are still decoding;
        :meth:`process` takes the result (the same as registering it there)."""
        if self._info is None or self._registrations is None:
            return
        if image.shape != (self._info.height, self._info.width, 3):
            return
        self._registrations.see(image, scene, starts)

    def process(self, window: Window) -> Iterator[Frame]:
        """Widen the window's frames (with a fill in the background, the last part of them
        comes from the next call or :meth:`finish`, so up to two windows of frames are
        held). Output frames, order and pts do not depend on it."""
        if self._info is None or self._registrations is None:
            raise RuntimeError("configure() must be called before process()")
        if not window.frames:
            return
        w, h = self._info.width, self._info.height
        for i, f in enumerate(window.frames):
            if f.shape != (h, w, 3) or f.dtype != np.uint8:
                raise ValueError(f"frame {i} must be uint8 {(h, w, 3)}, got {f.dtype} {f.shape}")
        motions = self._registrations.motions(
            window.frames, window.scene, window.continues, window.last
        )
        self._tracked[0] += len(motions)
        self._tracked[1] += sum(not m.ok for m in motions)
        if not window.continues:
            self._confidence.reset()
        registration = self._confidence.registration(motions)
        for start, stop in parts(motions):
            part = self._part(window, start, stop, motions[start:stop], continuation(motions, stop))
            part.registration = registration[start:stop]
            if not self.fill.in_background:
                yield from self._release(part)
                continue
            previous, self._pending = self._pending, part
            if previous is not None:
                yield from self._release(previous)

    def _part(
        self,
        window: Window,
        start: int,
        stop: int,
        motions: list[Motion],
        ahead: list[Motion],
    ) -> _Part:
        """Composite the frames ``start:stop`` of the window (one segment, or none), with
        the frames from ``stop`` on as samples too, placed by ``ahead`` (see
        :func:`continuation`)."""
        assert self._info is not None
        w, h = self._info.width, self._info.height
        frames = window.frames[start:stop]
        display, views, falloff = None, [], None
        if motions[0].placed:
            continues = window.continues or start > 0
            display = self._display_for(window.scene, motions[0], continues)
            more = window.frames[stop : stop + len(ahead)]
            views = self._composite(display, frames, motions, len(window), more, ahead)
            falloff = self._falloff(display)
        last = window.last and stop == len(window)
        unreliable = self._gate.mask((w, h), margin=False)
        gate = self._film.patch()
        if gate is not None:
            unreliable |= gate.mask
        if self.keep_gate:
            gate = None
        pts = window.pts[start:stop]
        return _Part(frames, pts, display, views, unreliable, falloff, last, gate, np.ones(0))

    def _display_for(self, scene: int, first: Motion, continues: bool) -> SceneDisplay:
        """The display of ``first``'s segment: the current one, the current one carried
        into a new reference (``first.link``), or a new one."""
        d = self._display
        if d is not None and continues and d.index == scene:
            if d.segment == first.segment:
                return d
            if first.link is not None:
                pending = self._pending
                if pending is not None and pending.display is d and pending.image is None:
                    pending.image = d.detach()  # the held-back part renders from it as is
                assert self._resampler is not None and self._info is not None
                out_w, ox = self._resampler.out_width, self._resampler.offset
                need = np.array([-ox, 0.0, out_w - ox, self._info.height])
                d.carry(first.segment, first.link, need, self._canvas_limits()[1])
                return d
        pano = ScenePanorama(self.composite, 2 * self.max_samples, self._map)
        self._display = SceneDisplay(scene, pano, first.segment)
        return self._display

    def _canvas_limits(self) -> tuple[float, tuple[int, int]]:
        """The canvas scale and its largest size (w, h)."""
        assert self._info is not None and self._resampler is not None
        h, out_w = self._info.height, self._resampler.out_width
        scale = min(1.0, self.pano_height / h)
        return scale, (round(self.max_extent * out_w * scale), round(self.max_extent_y * h * scale))

    def finish(self) -> Iterator[Frame]:
        """Yield the frames of the window still waiting for its fill (background fill), and
        say in one line on how many frames the camera motion was lost."""
        pending, self._pending = self._pending, None
        if pending is not None:
            yield from self._release(pending)
        frames, lost = self._tracked
        if lost:
            log.log(
                logging.WARNING if lost >= LOST_WARN_SHARE * frames else logging.INFO,
                "camera motion not found on %d of %d frames (%.0f%%); their sides come from "
                "their own pixels",
                lost,
                frames,
                100 * lost / frames,
            )

    def _map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``map`` on ``POOL_THREADS`` threads (OpenCV and numpy release the GIL): the
        per-window work would otherwise leave the second core idle while nothing decodes
        or encodes. Results in order; deterministic."""
        return self._executor().map(fn, items)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """``fn(*args)`` on the same threads as :meth:`_map`."""
        return self._executor().submit(fn, *args)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="remaster-panorama")
        return self._pool

    def _falloff(self, display: SceneDisplay) -> np.ndarray | None:
        """The lens falloff over the widened frame, relative to the display's headroom."""
        if self.vignette is None or not self.vignette.active:
            return None
        assert self._info is not None and self._resampler is not None
        out_w, ox = self._resampler.out_width, self._resampler.offset
        field = self.vignette.field(out_w, self._info.height, -ox, self._info.width)
        return field / np.float32(display.headroom or 1.0)

    def _release(self, part: _Part) -> Iterator[Frame]:
        """Render and yield a part's frames, in input order (:mod:`stages.render`)."""
        assert self._renderer is not None
        if part.display is None:
            images = self._renderer.alone(part.frames, part.gate)
        else:
            image = part.image if part.image is not None else part.display.settle()
            images = self._renderer.from_panorama(
                part.frames,
                image,
                part.views,
                part.registration,
                part.unreliable,
                part.falloff,
                part.gate,
            )
        for out, pts in zip(images, part.pts, strict=True):
            yield Frame(out, pts)
        if part.last and part.display is not None and self.dump_dir is not None:
            part.display.dump(self.dump_dir)

    def _composite(
        self,
        display: SceneDisplay,
        frames: list[np.ndarray],
        motions: list[Motion],
        window: int,
        more: list[np.ndarray],
        ahead: list[Motion],
    ) -> list[np.ndarray]:
        """Add registered frames of one segment (of a ``window`` frames long) and the
        frames ``more`` after them (placed by ``ahead``, on the same reference) to its
        display's panorama and start the fill of what the frames' views need; returns
        each frame's output-to-canvas matrix."""
        assert self._info is not None and self._resampler is not None
        assert self._sampler is not None
        h = self._info.height
        out_w, ox = self._resampler.out_width, self._resampler.offset
        Hs = [m.H for m in motions]
        old = display.pano.canvas
        canvas = display.pano.grow(quad_bounds(Hs, out_w, h, left=-ox), *self._canvas_limits())
        samples, to_ref, valids, picked = self._sampler(
            display, [*frames, *more], [*motions, *ahead], (len(frames) + len(more)) / window
        )
        times = [float(display.frames_seen + i) for i in picked]
        updated = display.pano.add(samples, to_ref, valids, times)
        display.frames_seen += len(frames)
        pending = self._pending
        if pending is not None and pending.display is display and pending.image is None:
            pending.image = display.detach()  # the held-back part renders from it as is
        display.absorb(updated, old)
        from_ref = canvas.from_ref()
        display.fill_views(
            view_polygons(Hs, from_ref, out_w, h, ox),
            max(16, round(FILL_CONTEXT * h * canvas.scale)),
            self.fill,
            lambda: np.mean([f.reshape(-1, 3).mean(0) for f in frames], axis=0),
        )
        return [view_to_canvas(H, from_ref, ox) for H in Hs]

    def close(self) -> None:
        pending, self._pending = self._pending, None
        for display in (pending.display if pending else None, self._display):
            if display is not None:
                display.cancel()
        self.frame_fill.close()
        self._display = None
        if self._registrations is not None:
            self._registrations.close()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._pool = None
        self.fill.close()
