"""Cut the frame stream into scenes as frames arrive, and hand scenes over in windows.

PySceneDetect's detectors are fed frame by frame (no second pass, no scene files). A
scene is buffered until its cut is seen; one longer than the memory budget is handed
over in consecutive windows, each flagged ``continues``/``last`` so a stage can carry
its state across them. A detector may report a cut up to ``event_buffer_length`` frames
late, so that many frames are always kept back from a window that does not end a scene.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from fractions import Fraction

import cv2
import numpy as np
from scenedetect import FrameTimecode, SceneDetector
from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector

from stages.base import Window

log = logging.getLogger(__name__)

# Default memory for buffered frames of one scene: 512 MiB is ~110 frames of 1440x1080
# RGB. With the panorama stage's working memory, 768 MiB measured 1.74 GB peak RSS on a
# 1440x1080 scene; the design target is about 1.5 GB at 1080p.
DEFAULT_BUDGET_BYTES = 512 << 20

# Scene detection runs on frames scaled to this width: cuts do not need detail.
DETECT_WIDTH = 256

DETECTORS = {
    "content": ContentDetector,
    "adaptive": AdaptiveDetector,
    "hash": HashDetector,
}


def make_detector(name: str = "content", threshold: float | None = None) -> SceneDetector:
    """A PySceneDetect detector by name, with an optional threshold."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown scene detector {name!r}; use one of {sorted(DETECTORS)}"
        ) from None
    if threshold is None:
        return cls()
    key = "adaptive_threshold" if cls is AdaptiveDetector else "threshold"
    return cls(**{key: threshold})


class SceneBuffer:
    """Collects frames, finds cuts, and yields :class:`Window` objects of one scene each."""

    def __init__(
        self,
        detector: SceneDetector | None,
        frame_rate: Fraction | None,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        on_settled: Callable[[np.ndarray, int, bool], None] | None = None,
        same_shot: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    ):
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        self.detector = detector
        self.fps = float(frame_rate) if frame_rate else 25.0
        self.budget_bytes = budget_bytes
        self.lag = (detector.event_buffer_length if detector else 0) + 1
        self._frames: list[np.ndarray] = []
        self._pts: list[int] = []
        self._first = 0  # frame number of self._frames[0]
        self._count = 0  # frames seen
        self._cuts: list[int] = []  # pending cut frame numbers (first frame of a new scene)
        self.scene = 0
        self._continues = False
        self.cuts_found: list[int] = []
        # called as (frame, scene, starts_scene) for each frame once no later cut can
        # change its scene, in order, always before the window holding it is yielded
        self.on_settled = on_settled
        self._settled = 0  # frames reported to on_settled
        self._settled_scene = -1
        # asked (frame before, frame after) at each cut a detector reports; True drops the
        # cut (e.g. :func:`stages.motion.same_shot`: one camera motion explains both)
        self.same_shot = same_shot
        self.cuts_dropped: list[int] = []

    def _max_frames(self) -> int:
        if not self._frames:
            return 1
        per_frame = self._frames[0].nbytes
        return max(self.lag + 2, self.budget_bytes // per_frame)

    def push(self, image: np.ndarray, pts: int) -> Iterator[Window]:
        """Add one frame; yield any windows that are complete now."""
        number = self._count
        self._count += 1
        self._frames.append(image)
        self._pts.append(pts)
        if self.detector is not None:
            small = _small(image)
            cuts = self.detector.process_frame(FrameTimecode(number, self.fps), small)
            self._note_cuts(cuts)
        # a detector reports a cut at most event_buffer_length frames after it: frames
        # older than ``lag`` keep their scene
        self._settle(self._count - self.lag)
        yield from self._drain(final=False)

    def flush(self) -> Iterator[Window]:
        """End of the video: yield what is left, the last window ending its scene."""
        if self.detector is not None and self._count:
            self._note_cuts(self.detector.post_process(FrameTimecode(self._count - 1, self.fps)))
        self._settle(self._count)
        yield from self._drain(final=True)

    def _note_cuts(self, cuts) -> None:
        for cut in cuts or ():
            number = cut.frame_num if isinstance(cut, FrameTimecode) else int(cut)
            if number > self._first and number not in self._cuts and number < self._count:
                k = number - self._first
                if self.same_shot is not None and self.same_shot(
                    self._frames[k - 1], self._frames[k]
                ):
                    self.cuts_dropped.append(number)
                    log.info("frame %d: a cut was detected inside one continuous shot", number)
                    continue
                self._cuts.append(number)
                self.cuts_found.append(number)
                log.debug("cut at frame %d", number)
        self._cuts.sort()

    def _settle(self, upto: int) -> None:
        """Report frames numbered below ``upto`` (those not reported yet) to on_settled."""
        if self.on_settled is None:
            return
        for number in range(self._settled, upto):
            scene = self.scene + sum(1 for c in self._cuts if c <= number)  # pending cuts
            starts, self._settled_scene = scene != self._settled_scene, scene
            self.on_settled(self._frames[number - self._first], scene, starts)
            self._settled = number + 1

    def _drain(self, final: bool) -> Iterator[Window]:
        while self._cuts:
            cut = self._cuts.pop(0)
            yield from self._emit(cut - self._first, last=True)
        if final:
            if self._frames:
                yield from self._emit(len(self._frames), last=True)
            return
        if len(self._frames) >= self._max_frames():
            yield from self._emit(len(self._frames) - self.lag, last=False)

    def _emit(self, n: int, last: bool) -> Iterator[Window]:
        if n <= 0:
            return
        self._settle(self._first + n)  # in case a detector reported a cut later than it says
        window = Window(self._frames[:n], self._pts[:n], self.scene, self._continues, last)
        del self._frames[:n]
        del self._pts[:n]
        self._first += n
        if last:
            self.scene += 1
            self._continues = False
        else:
            self._continues = True
        yield window


def _small(image: np.ndarray) -> np.ndarray:
    """The frame scaled down for cut detection, in BGR as PySceneDetect expects.

    Shrunk by a whole factor to at most ``DETECT_WIDTH`` wide: area averaging over whole
    pixel blocks is several times faster than over fractional ones."""
    h, w = image.shape[:2]
    k = -(-w // DETECT_WIDTH)
    if k > 1:
        # cropped to whole blocks first: with a fractional factor (640 / 213) OpenCV takes
        # its generic area path, about 2x slower
        sw, sh = w // k, max(1, h // k)
        image = cv2.resize(image[: sh * k, : sw * k], (sw, sh), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
