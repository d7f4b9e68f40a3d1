"""Which frames of a window go into the background panorama, with which neighbour each is
compared for motion of its own (pure functions of the window's motions), and the
:class:`Sampler` that makes the samples."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from stages.display import SceneDisplay
from stages.foreground import ForegroundMasker, apply_gain, sample_masks
from stages.gate import FilmGate, GateDetector
from stages.motion import Motion, is_flat
from stages.panorama import MapFn
from stages.vignette import Vignette

log = logging.getLogger(__name__)

# besides the evenly spaced samples, one whenever the camera has moved this share of the
# frame width since the last sample: fast pans get the samples their views need
SAMPLE_STEP = 0.1
# frames between a sample and the frame it is compared with for motion of its own: long
# enough for a slow character to move, short enough for the view to overlap
MOTION_GAP = 8


def choose_samples(
    motions: list[Motion], width: int, height: int, max_samples: int, step: float = SAMPLE_STEP
) -> list[int]:
    """The window's sample frames: ``max_samples`` evenly spaced, plus one wherever the
    frame centre has moved ``step`` of the width from the last sample (at most
    ``max_samples`` of those, evenly spread)."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    n = len(motions)
    even = {round(k) for k in np.linspace(0, n - 1, min(max_samples, n))}
    centre = np.array([width / 2, height / 2, 1.0])
    centres = np.array([m.H @ centre for m in motions])
    centres = centres[:, :2] / centres[:, 2:]  # each frame's centre on the reference
    extra, last = [], centres[0]
    for i in range(n):
        if i in even:
            last = centres[i]
        elif np.hypot(*(centres[i] - last)) > step * width:
            extra.append(i)
            last = centres[i]
    if len(extra) > max_samples:
        extra = [extra[round(k)] for k in np.linspace(0, len(extra) - 1, max_samples)]
    return sorted(even | set(extra))


def motion_neighbours(
    samples: list[int], ok: list[bool], to_ref: list[np.ndarray], gap: int = MOTION_GAP
) -> list[tuple[int, np.ndarray] | None]:
    """For each sample frame, a registered frame ``gap`` later (earlier near the window's
    end) and the matrix taking the sample's pixels to that frame's (``to_ref``: each
    frame's pixel -> reference matrix); None where there is none."""
    n = len(ok)
    out: list[tuple[int, np.ndarray] | None] = []
    for i in samples:
        j = i + gap if i + gap < n else i - gap
        if 0 <= j < n and ok[j]:
            out.append((j, np.linalg.inv(to_ref[j]) @ to_ref[i]))
        else:
            out.append(None)
    return out


# steady dark pixels count as not background only in corner squares of this share of the
# height: along the edges they were mostly picture (a static shot's dark doorway, a score
# box), and leaving them out cost the sides there far more than it gained elsewhere
GATE_CORNER = 0.1
# samples of a part of a window at the least (a window gets ``max_samples`` in all, its
# parts their share): a segment's median needs a few, more cost time for little
MIN_SAMPLES = 6
# samples whose exposure gain to the window's background leaves this range are left out
# (frames of a fade or a flash; gain_to clips at 0.5 and 2)
MIN_GAIN, MAX_GAIN = 0.55, 1.8


class Sampler:
    """Turns the registered frames of one background segment into samples for its
    panorama: picks the sample frames, feeds the film-gate detectors and the lens falloff
    (film-wide), divides the falloff out, masks foreground and gate, and matches exposure.
    Near-black, near-white and flat frames, and frames whose exposure is far from the
    background's (fades, flashes), never become samples."""

    def __init__(
        self,
        size: tuple[int, int],
        masker: ForegroundMasker,
        gate: GateDetector,
        film: FilmGate,
        vignette: Vignette | None,
        max_samples: int,
        small_width: int,
        map_fn: MapFn = map,
    ):
        w, h = size
        self.size, self.masker, self.gate, self.film = size, masker, gate, film
        self.vignette, self.max_samples, self.map_fn = vignette, max_samples, map_fn
        sw = min(small_width, w)
        self.small = (sw, max(8, round(h * sw / w)))

    def __call__(
        self,
        display: SceneDisplay,
        frames: list[np.ndarray],
        motions: list[Motion],
        share: float = 1.0,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[int]]:
        """(samples, their frame -> reference matrices, valid masks, frame indices) for
        ``display``'s panorama, whose canvas must already cover the frames' views;
        ``share``: the frames' share of their window, which gets ``max_samples`` evenly
        spaced samples in all (a part of it its share, at least ``MIN_SAMPLES``)."""
        (w, h), (sw, sh) = self.size, self.small
        assert display.canvas is not None
        budget = max(MIN_SAMPLES, round(self.max_samples * share))
        pick = choose_samples(motions, w, h, min(self.max_samples, budget))
        smalls = {i: cv2.resize(frames[i], (sw, sh), interpolation=cv2.INTER_AREA) for i in pick}
        pick = [i for i in pick if not is_flat(smalls[i])]
        self.gate.update([smalls[i] for i in pick])
        self.film.update([frames[i] for i in pick])
        from_small = np.linalg.inv(np.diag([sw / w, sh / h, 1.0]))
        Hs_small = [m.H @ from_small for m in motions]  # small-frame pixels -> reference
        good = [i for i in pick if motions[i].ok]
        if len(good) < len(pick):
            n = len(pick) - len(good)
            log.info("scene %d: %d of %d samples failed registration", display.index, n, len(pick))
        flat = self._flatten(display, [smalls[i] for i in good], [Hs_small[i] for i in good])
        small_flat = None
        if flat is not None:
            small_flat = cv2.resize(flat, (sw, sh), interpolation=cv2.INTER_AREA)
            smalls = {i: cv2.multiply(s, small_flat, dtype=cv2.CV_8U) for i, s in smalls.items()}
        if not good:
            return [], [], [], []

        def shrink(i: int) -> np.ndarray:
            if i in smalls:  # a sample itself when the samples lie MOTION_GAP apart
                return smalls[i]
            small = cv2.resize(frames[i], (sw, sh), interpolation=cv2.INTER_AREA)
            return small if small_flat is None else cv2.multiply(small, small_flat, dtype=cv2.CV_8U)

        pairs = motion_neighbours(good, [m.ok for m in motions], Hs_small)
        fg_small, gains = sample_masks(
            self.masker,
            display.canvas,
            [smalls[i] for i in good],
            [Hs_small[i] for i in good],
            [frames[i] for i in good],
            [None if p is None else (shrink(p[0]), p[1]) for p in pairs],
            self._unreliable((sw, sh)),
            self.map_fn,
        )
        unreliable = self._unreliable((w, h))
        samples, valids = [], []
        for k, i in enumerate(good):
            fg8 = cv2.resize(fg_small[k].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            if not MIN_GAIN < float(gains[k].min()) <= float(gains[k].max()) < MAX_GAIN:
                fg8[:] = 1  # an exposure far from the background's: a fade, a flash
            valids.append(~unreliable & ~(fg8 > 0))
            f = frames[i] if flat is None else cv2.multiply(frames[i], flat, dtype=cv2.CV_8U)
            samples.append(apply_gain(f, gains[k]))
        return samples, [motions[i].H for i in good], valids, good

    def _unreliable(self, size: tuple[int, int]) -> np.ndarray:
        """Pixels (bool, at ``size``) that are not background: the film's gate, the edge
        margin, and steady dark pixels in the picture's corners (a gate's notches where
        the film gate is not recognised; elsewhere dark is picture)."""
        out = self.gate.mask(size, corners=GATE_CORNER)
        patch = self.film.patch()
        if patch is not None:
            out |= (
                cv2.resize(patch.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            )
        return out

    def _flatten(
        self, display: SceneDisplay, smalls: list[np.ndarray], to_ref: list[np.ndarray]
    ) -> np.ndarray | None:
        """Learn the lens falloff from the registered sample frames (small size, with
        their pixel -> reference matrices); returns the frame-size (h, w, 3) float32
        factor that flattens a frame into the panorama's light, or None without one."""
        if self.vignette is None:
            return None
        self.vignette.update(smalls, to_ref, self.gate.mask(self.small))
        if not self.vignette.active:
            return None
        if display.headroom is None:
            display.headroom = self.vignette.corner_gain
        return np.float32(display.headroom) / self.vignette.field(*self.size)
