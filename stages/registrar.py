"""Registration of each scene's frames as they arrive, on a worker thread.

The outpaint stage is shown each frame as soon as the scene buffer knows its scene
(:meth:`stages.base.Stage.peek`) and asks for a window's motions when the window comes.
:class:`Registrations` keeps one :class:`Registrar` per scene in flight; a registrar
tracks its scene's frames in order on one worker thread while later frames decode, so
the tracking overlaps the decode and the cut detection. The result is the same as
registering every frame when its window arrives (frames not seen ahead are registered
then), so the output does not depend on timing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from itertools import islice

import cv2
import numpy as np

from stages.gate import GateDetector
from stages.motion import Motion, MotionTracker, interpolate_failures

log = logging.getLogger(__name__)

# frames a frame's registration waits for, so the gate mask that keeps its features off
# dark frame borders comes from that many more frames of the scene (16 was measurably
# worse on the dev clips, 64 no better)
TRACK_LAG = 32
MASK_EVERY = 8  # frames between remakes of that mask while streaming


class Registrar:
    """Registers the frames of one scene in order, each once ``TRACK_LAG`` later frames of
    the scene (or the end of its window) have been seen: the tracking mask comes from a
    gate detector fed with the scene's own frames, and the wait lets it settle.

    Frames are either seen ahead (:meth:`see`) or when their window arrives
    (:meth:`take`); the result is the same, since a window ends where the scene buffer
    stops settling frames. The tracking itself runs on ``worker`` (one thread, jobs in
    order, the only user of ``tracker``); masks are made here, so what each frame is
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
        # seen, not submitted yet: (frame, frame at the working size)
        self._queue: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._done: list[Future[Motion]] = []  # submitted, not taken yet
        self._ids: deque[int] = deque()  # id() of every frame seen and not taken
        self._seen = 0
        self._mask: tuple[int, np.ndarray] | None = None  # (frames seen, tracking mask)

    @property
    def pending(self) -> int:
        """Frames seen and not taken yet."""
        return len(self._ids)

    def see(self, image: np.ndarray) -> None:
        """Queue the scene's next frame; frames ``TRACK_LAG`` older go to the worker."""
        small = cv2.resize(image, self.work, interpolation=cv2.INTER_AREA)
        self.gate.update([small])
        self._seen += 1
        self._queue.append((image, small))  # the tracker shrinks frames the same way
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
        assert self._mask is not None
        (image, small), mask = self._queue.popleft(), self._mask[1]
        self._done.append(
            self.worker.submit(lambda: self.tracker.track([image], [mask], [small])[0])
        )

    def take(self, frames: Sequence[np.ndarray]) -> list[Motion] | None:
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


class Registrations:
    """The registrars of the scenes in flight, by scene index, and the worker thread they
    share. Each scene's gate detector goes on from the previous scene's (all of whose
    frames it has seen): the film gate does not move at a cut, and a short scene alone
    says little about it."""

    def __init__(self, frame_size: tuple[int, int], model: str = "auto", work_width: int = 320):
        w, h = frame_size
        if w < 1 or h < 1:
            raise ValueError(f"frame size must be positive, got {frame_size}")
        self.model, self.work_width = model, work_width
        self._shape = (h, w)
        self._by_scene: dict[int, Registrar] = {}
        self._last_gate: GateDetector | None = None  # of the last scene done
        self._worker: ThreadPoolExecutor | None = None

    @property
    def in_flight(self) -> int:
        """Scenes with a registrar (seen ahead and not finished)."""
        return len(self._by_scene)

    def see(self, image: np.ndarray, scene: int, starts: bool) -> None:
        """Start registering one frame of ``scene`` (``starts``: its first frame)."""
        if starts or scene not in self._by_scene:
            self._by_scene[scene] = self._registrar(scene)
        self._by_scene[scene].see(image)

    def motions(self, frames: Sequence[np.ndarray], scene: int, continues: bool, last: bool):
        """The motions of a window's frames, from its scene's registrar (fed by
        :meth:`see`, or here with the frames it has not seen)."""
        reg = self._by_scene.get(scene)
        if reg is None or not continues and reg.taken:
            reg = self._by_scene[scene] = self._registrar(scene)
        for old in [k for k in self._by_scene if k < scene]:
            del self._by_scene[old]  # peeked scenes that never came (not the first stage)
        motions = reg.take(frames)
        if motions is None:  # peeks that do not match the window: register it here
            log.debug("scene %d: frames seen ahead do not match the window", scene)
            reg.wait()
            reg = self._by_scene[scene] = self._registrar(scene, reg.tracker)
            motions = reg.take(frames)
            assert motions is not None
        if last:
            self._last_gate = self._by_scene.pop(scene).gate
        return motions

    def _registrar(self, scene: int, tracker: MotionTracker | None = None) -> Registrar:
        tracker = tracker or MotionTracker(model=self.model, work_width=self.work_width)
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="remaster-register")
        work = tracker.scales(self._shape)[0]
        before = [k for k in self._by_scene if k < scene]
        gate = self._by_scene[max(before)].gate if before else self._last_gate
        return Registrar(tracker, work, self._worker, gate.copy() if gate else None)

    def close(self) -> None:
        """Drop the registrars and stop the worker (waiting for the job in progress)."""
        self._by_scene.clear()
        self._last_gate = None
        if self._worker is not None:
            self._worker.shutdown(cancel_futures=True)
        self._worker = None
