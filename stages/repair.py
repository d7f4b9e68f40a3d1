"""Old-film repair: dust, vertical scratches, brightness flicker and grain, per scene.

Every frame is repaired from its motion-compensated neighbours up to two frames either
side (``stages/repair_align.py``), never across a cut, holding only a few frames: a
frame leaves the stage four frames after it came in (two frames of neighbours, and two
more so that those neighbours' own scratches are already known). The steps, in order:

1. scratches (``repair_scratch.py``): found per frame as it arrives, confirmed over the
   frames around it, filled from their sides, then from the trusted neighbours;
2. dust (``repair_dust.py``): one-frame specks replaced from agreeing neighbour pairs;
3. grain (``repair_grain.py``): weighted temporal average of the aligned neighbours;
4. flicker (``repair_flicker.py``): the frame brought to its smoothed brightness trend.

Each frame's brightness level is measured against the frame before as it arrives, and
the frame is stored brought to its level as smoothed over the frames before it (uneven
gradients gone); a neighbour then differs from the repaired frame's brightness by one
gain and offset, applied by a lookup table before it is compared or averaged, so flicker
does not look like dust and is not averaged in. Same input, same output.

Two threads help (OpenCV lets go of the GIL): one takes the frames in as they arrive
(registration, brightness), a couple of frames ahead; the other aligns a frame's
neighbours onto it while the frame before is repaired. Each does the same work on the
same data as one thread would, so the output does not depend on them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields

import cv2
import numpy as np

from . import repair_dust, repair_flicker, repair_grain, repair_scratch
from .base import Frame, Stage, VideoInfo, Window
from .repair_align import Aligner, Link, Neighbour, Small, compose, fill_holes, nonzero, warp
from .repair_flicker import Level

log = logging.getLogger(__name__)

# Frames a frame is held: two of neighbours, two more for those neighbours' scratches.
LOOKAHEAD = 4
OFFSETS = (-2, -1, 1, 2)
# Frames made ready (registered, levelled) ahead of the one being taken in, in a thread:
# enough to keep it busy, and no more (each holds a picture).
ARRIVE_AHEAD = 2
# Largest luma spread (levels) of the trusted neighbours at a scratch pixel for their
# mean to replace the fill from the sides.
SCRATCH_AGREE = 12.0
# Largest distrusted hole in a neighbour's flow that is filled from around it, in largest
# speck diameters (a speck unsettles the flow a little beyond itself).
HOLE_SPECKS = 2.0


@dataclass(frozen=True)
class RepairSettings:
    """What the repair does; every part can be switched off. Sizes relative to the frame
    are fractions of its height (``_size``) or width (``_search``)."""

    dust: bool = True
    scratches: bool = True
    flicker: bool = True
    grain: bool = True
    grain_strength: float = 1.0  # 0: no averaging; larger: averages larger differences
    dust_threshold: float = 3.0  # a speck differs by this many (smoothed) grain sigmas ...
    dust_min_contrast: float = 12.0  # ... and at least this many levels
    dust_max_size: float = 0.05  # largest speck diameter, fraction of the height
    dust_search: float = 0.06  # how far a fast real object is looked for, of the width
    scratch_max_width: float = 0.007  # widest scratch, fraction of the width
    scratch_min_contrast: float = 6.0  # levels above the picture's own fine texture
    flicker_radius: int = 8  # frames either side in the brightness trend
    flow_width: int = 256  # width at which neighbours are registered

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise TypeError(f"{f.name} must be True or False, got {value!r}")
            elif not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"{f.name} must be a number, got {value!r}")
            elif value < 0 or not np.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")
        if self.flicker_radius < 1:
            raise ValueError(f"flicker_radius must be >= 1, got {self.flicker_radius}")
        if self.flow_width < 32:
            raise ValueError(f"flow_width must be >= 32, got {self.flow_width}")
        if not 0 < self.dust_max_size <= 0.5:
            raise ValueError(f"dust_max_size must be in (0, 0.5], got {self.dust_max_size}")


_Neighbours = dict[int, Neighbour]  # offset -> the frame there aligned onto this one


@dataclass
class _Slot:
    image: np.ndarray  # uint8 RGB; scratches filled from the sides once confirmed
    luma: np.ndarray  # uint8, of image
    pts: int
    small: Small
    link: Link | None  # registration with the frame before (None: first of the scene)
    level: Level  # brightness of the frame as it came, relative to the scene's first
    norm: Level  # the brightness level ``image`` was brought to
    lines: list[repair_scratch.Line]
    levels: list[tuple[int, Level]]  # the scene's levels up to this frame (the last few)
    scratch: np.ndarray | None = None  # bool mask of the filled scratch pixels


class RepairStage(Stage):
    """Repairs old-film damage frame by frame with a few neighbours (see the module)."""

    buffers_scenes = False
    one_to_one = True

    def __init__(self, settings: RepairSettings | None = None):
        self.settings = settings or RepairSettings()
        if not isinstance(self.settings, RepairSettings):
            raise TypeError(f"settings must be RepairSettings, got {type(settings).__name__}")
        self._aligner = Aligner(self.settings.flow_width)
        self._shape: tuple[int, int, int] | None = None
        self._side: ThreadPoolExecutor | None = None  # while ``process`` runs
        self._reset()

    def _reset(self) -> None:
        self._slots: dict[int, _Slot] = {}
        self._levels: list[tuple[int, Level]] = []
        # frames whose neighbours are being made, and the brightness each is brought to
        self._ahead: dict[int, tuple[Future[_Neighbours] | _Neighbours, Level]] = {}
        self._next = self._decided = self._prepared = self._done = 0

    def configure(self, info: VideoInfo) -> VideoInfo:
        self._shape = (info.height, info.width, 3)
        return info

    def process(self, window: Window) -> Iterator[Frame]:
        if not window.continues:  # a new scene: nothing carries over
            yield from self._drain()
        # as the window's frames arrive they are registered and brought to their brightness
        # trend in order in a thread of their own (what that gives depends only on the
        # scene's frames so far), and each frame's neighbours are made in another while the
        # frame before it is repaired here (OpenCV lets go of the GIL): the same work on the
        # same data as one thread would do
        ahead = ThreadPoolExecutor(1, thread_name_prefix="repair-arrive")
        self._side = ThreadPoolExecutor(1, thread_name_prefix="repair-neighbours")
        try:
            frames = list(zip(window.frames, window.pts, strict=True))
            first, made = self._next, 0
            last: Future[_Slot] | _Slot | None = self._slots.get(first - 1)
            arrivals: deque[Future[_Slot]] = deque()
            for i in range(len(frames)):
                while made < min(len(frames), i + 1 + ARRIVE_AHEAD):
                    img, pts = frames[made]
                    self._check(img)
                    last = ahead.submit(self._arrive, img, pts, first + made, last)
                    arrivals.append(last)
                    made += 1
                slot = arrivals.popleft().result()
                self._slots[self._next] = slot
                self._levels = slot.levels
                self._next += 1
                yield from self._ready(final=False, flush=i == len(frames) - 1)
        finally:
            ahead.shutdown(cancel_futures=True)
            self._side.shutdown()
            self._side = None
        if window.last:
            yield from self._drain()

    def finish(self) -> Iterator[Frame]:
        yield from self._drain()

    def _check(self, img: np.ndarray) -> None:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"frame must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        if self._shape is None:
            self._shape = img.shape
        elif img.shape != self._shape:
            raise ValueError(f"frame has shape {img.shape}, expected {self._shape}")

    def _drain(self) -> Iterator[Frame]:
        yield from self._ready(final=True)
        self._reset()

    # -- per frame as it arrives --------------------------------------------------------
    def _arrive(
        self, img: np.ndarray, pts: int, n: int, prev: Future[_Slot] | _Slot | None
    ) -> _Slot:
        """Frame ``n`` of the scene as it came: registered with the frame before (``prev``,
        or the future of it; None at the scene's first frame), its brightness level measured
        and brought to the trend of the frames so far, its scratch candidates found."""
        s = self.settings
        small = self._aligner.small(img)
        link, level, levels = None, Level(), []
        if prev is not None:
            before = prev.result() if isinstance(prev, Future) else prev
            link = self._aligner.link(before.small, small)
            step = Level()
            if s.flicker:
                back = cv2.remap(before.small.luma, link.back, None, cv2.INTER_LINEAR)
                step = repair_flicker.fit_step(small.luma, back, link.back_ok)
                level = before.level.then(step)
            self._aligner.fall_back(link, step.g0 * before.small.luma + step.o, small.luma)
            levels = before.levels
        levels = [*levels[-(s.flicker_radius + LOOKAHEAD) :], (n, level)]
        norm = level
        if s.flicker:  # brought to the trend of the frames so far
            norm = repair_flicker.trend(levels, n, s.flicker_radius)
            if not repair_flicker.is_identity(level, norm):
                img = repair_flicker.apply(img, level, norm)
        luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        lines = []
        if s.scratches:
            lines = repair_scratch.candidates(luma, self._max_width(img), s.scratch_min_contrast)
        return _Slot(img, luma, pts, small, link, level, norm, lines, levels)

    def _ready(self, final: bool, flush: bool = True) -> Iterator[Frame]:
        """Decide, prepare and repair what can be now. A frame is prepared (its neighbours
        made in the side thread, its brightness target fixed) once its neighbours are
        decided, and repaired once the frame after it is prepared too, or at once where
        ``flush`` (the window's end) or ``final`` (the scene's)."""
        while self._decided < self._next and (final or self._decided + 2 < self._next):
            self._decide(self._decided)
            self._decided += 1
        while self._prepared < self._decided and (final or self._prepared + 2 < self._decided):
            self._prepare(self._prepared)
            self._prepared += 1
        while self._done < self._prepared - (0 if final or flush else 1):
            c = self._done
            yield Frame(self._repair(c), self._slots[c].pts)
            self._slots.pop(c - 2, None)
            self._done += 1

    def _prepare(self, c: int) -> None:
        s = self.settings
        target = self._slots[c].norm
        if s.flicker:  # the trend as known now (the same however the scene is cut)
            target = repair_flicker.trend(self._levels, c, s.flicker_radius)
        side = self._side
        self._ahead[c] = (side.submit(self._neighbours, c) if side else self._neighbours(c), target)

    def _max_width(self, img: np.ndarray) -> int:
        return max(1, round(self.settings.scratch_max_width * img.shape[1]))

    # -- scratches, two frames later ----------------------------------------------------
    def _decide(self, j: int) -> None:
        slot = self._slots[j]
        if not slot.lines:
            return
        others = {o: self._slots[j + o].lines for o in OFFSETS if j + o in self._slots}
        sw = slot.small.gray.shape[1]
        w = slot.image.shape[1]
        mid = slot.small.gray.shape[0] / 2
        found = []
        for line in slot.lines:
            xs = (line.x + 0.5) * sw / w - 0.5
            dx = {}
            for o in others:
                m = self._motion(j, j + o)
                p = m @ np.array([xs, mid, 1.0])
                dx[o] = (p[0] / p[2] - xs) * w / sw
            if repair_scratch.confirm(line, others, dx):
                found.append(line)
        if not found:
            return
        s = self.settings
        luma = cv2.cvtColor(slot.image, cv2.COLOR_RGB2GRAY)
        holes = repair_scratch.mask(
            luma, found, self._max_width(slot.image), s.scratch_min_contrast
        )
        slot.image = repair_scratch.fill_from_sides(slot.image, holes)
        slot.scratch = holes
        log.debug("frame %d: %d scratches", j, len(found))

    def _motion(self, a: int, b: int) -> np.ndarray:
        """Global motion (small coords) from frame ``a`` to frame ``b`` of this scene."""
        m = np.eye(3)
        if b < a:
            for k in range(a, b, -1):
                m = self._slots[k].link.shift @ m  # type: ignore[union-attr]
        else:
            for k in range(a + 1, b + 1):
                m = np.linalg.inv(self._slots[k].link.shift) @ m  # type: ignore[union-attr]
        return m

    # -- the repair of one frame, four frames later -------------------------------------
    def _neighbours(self, c: int) -> _Neighbours:
        """The frames around ``c`` aligned onto it and brought to its brightness."""
        return {o: self._neighbour(c, o) for o in OFFSETS if c + o in self._slots}

    def _neighbour(self, c: int, o: int) -> Neighbour:
        slot, other = self._slots[c], self._slots[c + o]
        # largest hole in the flow (small px) a speck of this frame makes: twice the speck
        holes = max(2, round(HOLE_SPECKS * self.settings.dust_max_size * slot.small.gray.shape[0]))
        smap, ok = self._small_map(c, o)
        smap, ok = fill_holes(smap, ok, self._aligner.grid(*ok.shape[::-1]), holes)
        full, trust, seen = self._aligner.to_full(smap, ok, slot.image.shape)
        rgb = warp(other.image, full)
        if not repair_flicker.is_identity(other.norm, slot.norm):
            rgb = cv2.LUT(rgb, repair_flicker.table(other.norm, slot.norm))
        return Neighbour(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), trust, seen)

    def _small_map(self, c: int, o: int) -> tuple[np.ndarray, np.ndarray]:
        if o < 0:
            near = self._slots[c].link
            assert near is not None
            if o == -1:
                return near.back, near.back_ok
            far = self._slots[c - 1].link
            assert far is not None
            return compose(near.back, near.back_ok, far.back, far.back_ok)
        near = self._slots[c + 1].link
        assert near is not None
        if o == 1:
            return near.fwd, near.fwd_ok
        far = self._slots[c + 2].link
        assert far is not None
        return compose(near.fwd, near.fwd_ok, far.fwd, far.fwd_ok)

    def _repair(self, c: int) -> np.ndarray:
        s = self.settings
        slot = self._slots[c]
        ahead, target = self._ahead.pop(c)
        nbs = ahead.result() if isinstance(ahead, Future) else ahead
        img, luma = slot.image, slot.luma
        if not nbs:
            return img
        if s.dust:
            h, w = luma.shape
            res = repair_dust.find_and_remove(
                img,
                luma,
                nbs,
                min_contrast=s.dust_min_contrast,
                factor=s.dust_threshold,
                max_size=max(2, round(s.dust_max_size * h)),
                search=max(4, round(s.dust_search * w)),
            )
            if res.specks:
                img = res.image
                luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
                log.debug("frame %d: %d specks, %d kept as moving", c, res.specks, res.kept)
        if slot.scratch is not None:
            img = self._scratch_from_neighbours(img, slot.scratch, nbs)
            luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if s.grain:
            sigma = repair_grain.noise_sigma(luma, [nbs[o] for o in (-1, 1) if o in nbs])
            x = repair_grain.average(img, luma, nbs.values(), sigma, s.grain_strength)
        else:
            x = img.astype(np.float32)
        if s.flicker and not repair_flicker.is_identity(slot.norm, target):
            return repair_flicker.apply(x, slot.norm, target)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    @staticmethod
    def _scratch_from_neighbours(
        img: np.ndarray, holes: np.ndarray, nbs: dict[int, Neighbour]
    ) -> np.ndarray:
        """Scratch pixels (already filled from the sides) taken from the mean of the trusted
        neighbours where at least two are and they agree (a pan shows what the scratch
        hid; where the neighbours differ, the fill from the sides is the safer guess)."""
        ys, xs = nonzero(holes)
        values = [nb.colour(ys, xs) for nb in nbs.values()]
        trusted = [nb.ok[ys, xs] for nb in nbs.values()]
        if len(values) < 2:
            return img
        cols = np.stack(values)  # (k, n, 3)
        ok = np.stack(trusted)  # (k, n)
        luma = cols.mean(axis=2)
        big = np.where(ok, luma, -np.inf).max(axis=0)
        small = np.where(ok, luma, np.inf).min(axis=0)
        count = ok.sum(axis=0)
        use = (count >= 2) & (big - small <= SCRATCH_AGREE)
        mean = (cols * ok[..., None]).sum(axis=0)[use] / count[use, None]
        out = img.copy()
        out[ys[use], xs[use]] = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
        return out
