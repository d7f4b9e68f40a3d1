"""The stage interface: what every per-scene image step receives and gives back.

The streaming chain (``stream/``) cuts the decoded video into scenes and hands each
scene to a stage as one or more consecutive :class:`Window` objects (a scene longer
than the memory budget arrives in several windows; ``continues``/``last`` say where a
window sits in its scene). A stage yields output :class:`Frame` objects, in display
order, each with its presentation timestamp. Stages may hold frames back (for example
an interpolator waiting for the next frame) and give them out on a later call or from
:meth:`Stage.finish`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """Geometry and timing of a video stream at one point of the chain."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None = None  # average rate; None when unknown

    def with_size(self, width: int, height: int) -> VideoInfo:
        return replace(self, width=width, height=height)


@dataclass
class Frame:
    """One picture: RGB ``uint8`` array of shape (H, W, 3) and its pts in ``time_base``."""

    image: np.ndarray
    pts: int


@dataclass
class Window:
    """Consecutive frames of one scene, all of the same size.

    ``continues`` is True when earlier windows of the same scene came before this one
    (stages carry their per-scene state over); ``last`` is True when this window ends
    its scene (a cut or the end of the video follows). Inside a :class:`StageChain` a
    window can be empty when an earlier stage held all its frames back.
    """

    frames: list[np.ndarray]
    pts: list[int]
    scene: int
    continues: bool = False
    last: bool = True

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.pts):
            raise ValueError(f"{len(self.frames)} frames but {len(self.pts)} timestamps")

    def __len__(self) -> int:
        return len(self.frames)


class Stage(ABC):
    """One per-scene step of the chain (outpaint, upscale, interpolate, ...)."""

    #: False for stages that work frame by frame: the chain then buffers no whole scene.
    buffers_scenes: bool = True
    #: True when the stage yields exactly one frame per input frame, in input order, maybe
    #: on a later call or from :meth:`finish`: a chain then hands each later stage those
    #: frames under the scene labels of the window they came from.
    one_to_one: bool = False
    #: True when :meth:`peek` does work: a :class:`StageChain` hands its peeks to the
    #: first such stage, through the stages before it that :meth:`peek_through`.
    uses_peeks: bool = False

    def configure(self, info: VideoInfo) -> VideoInfo:
        """Called once before any window with the input format; returns the output format."""
        return info

    def peek(self, image: np.ndarray, scene: int, starts: bool) -> None:
        """See one input frame ahead of :meth:`process`, in input order, as soon as its
        scene is known (``starts``: it is the scene's first frame). Per-frame analysis
        done here overlaps with decoding instead of waiting for the whole scene. Only
        the first stage with :attr:`uses_peeks` in a chain is given peeks, and only
        when every stage before it can :meth:`peek_through`; the default ignores them."""

    def peek_through(self, image: np.ndarray) -> np.ndarray | None:
        """The frame as this stage will hand it on, when that is cheap to know ahead (a
        crop), so a :class:`StageChain` can pass a peek on to a later stage; None (the
        default) stops peeks here. A stage that returns a frame must be one to one and
        yield that very array object for this input frame from :meth:`process` (a later
        stage matches what it peeked at by identity)."""
        return None

    @abstractmethod
    def process(self, window: Window) -> Iterator[Frame]:
        """Yield output frames for ``window`` (and any held back from earlier windows)."""

    def finish(self) -> Iterator[Frame]:
        """Yield frames still held back at the end of the video."""
        return iter(())

    def close(self) -> None:
        """Free resources; called once, also after an error."""


class StageChain(Stage):
    """Several stages run one after another on each window, in the given order."""

    def __init__(self, stages: Sequence[Stage]):
        if not stages:
            raise ValueError("a stage chain needs at least one stage")
        self.stages = list(stages)
        self.buffers_scenes = any(stage.buffers_scenes for stage in self.stages)
        self.uses_peeks = any(stage.uses_peeks for stage in self.stages)
        self.infos: list[VideoInfo] = []  # set by configure
        # per stage: [frames still owed, scene, continues, last] of windows not yet handed on
        self._owed: list[deque[list]] = [deque() for _ in self.stages]

    def configure(self, info: VideoInfo) -> VideoInfo:
        """Configure each stage with what the one before gives; ``infos`` keeps them all
        (``infos[i]`` enters stage ``i``, ``infos[-1]`` leaves the chain)."""
        self.infos = [info]
        for stage in self.stages:
            self.infos.append(stage.configure(self.infos[-1]))
        return self.infos[-1]

    def peek(self, image: np.ndarray, scene: int, starts: bool) -> None:
        """Hand the peek to the first stage that uses peeks, the frame transformed by the
        stages before it; stop at a stage that cannot say ahead what it will hand on."""
        for stage in self.stages:
            if stage.uses_peeks:
                stage.peek(image, scene, starts)
                return
            through = stage.peek_through(image)
            if through is None:
                return
            image = through

    def process(self, window: Window) -> Iterator[Frame]:
        yield from self._run(0, window)

    def finish(self) -> Iterator[Frame]:
        for i, stage in enumerate(self.stages):
            held = list(stage.finish())
            if stage.one_to_one and i + 1 < len(self.stages):
                yield from self._pay(i, held)
            elif held:
                yield from self._feed(i + 1, held, scene=-1, continues=True, last=True)

    def close(self) -> None:
        for stage in self.stages:
            stage.close()

    def _run(self, i: int, window: Window) -> Iterator[Frame]:
        out = self.stages[i].process(window)
        if i + 1 == len(self.stages):
            yield from out
        elif self.stages[i].one_to_one:
            self._owed[i].append([len(window), window.scene, window.continues, window.last])
            yield from self._pay(i, list(out))
        else:
            yield from self._feed(i + 1, list(out), window.scene, window.continues, window.last)

    def _pay(self, i: int, frames: list[Frame]) -> Iterator[Frame]:
        """Hand a one-to-one stage's frames on window by window, each part under the labels
        of the window it came from (a window may come out in several parts)."""
        owed = self._owed[i]
        while owed and (frames or owed[0][0] == 0):
            entry = owed[0]
            n, scene, continues, last = entry
            part, frames = frames[:n], frames[n:]
            entry[0] -= len(part)
            entry[2] = True  # a later part of this window continues its scene
            done = entry[0] == 0
            if done:
                owed.popleft()
            yield from self._feed(i + 1, part, scene, continues, last and done)
        if frames:
            raise RuntimeError(f"stage {i} gave {len(frames)} frames more than it was given")

    def _feed(
        self, i: int, frames: list[Frame], scene: int, continues: bool, last: bool
    ) -> Iterator[Frame]:
        if i == len(self.stages):
            yield from frames
            return
        if not frames and not last:
            return
        window = Window([f.image for f in frames], [f.pts for f in frames], scene, continues, last)
        yield from self._run(i, window)


class HoleFill(ABC):
    """Fills what no frame of a scene showed: panorama and known-mask in, filled panorama out.

    ``image`` is an RGB ``uint8`` array (H, W, 3) and ``known`` a bool array (H, W),
    True where the pixel is real. The result has the same shape and dtype, and every
    known pixel is returned unchanged. The classical fill (``stages/fill.py``) and the
    diffusion fill (``gpu/``) both implement this.
    """

    @abstractmethod
    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Free resources (GPU memory, worker threads)."""


def check_fill_inputs(image: np.ndarray, known: np.ndarray) -> None:
    """Raise ``ValueError`` naming the bad value when a fill's inputs do not match."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if known.shape != image.shape[:2] or known.dtype != np.bool_:
        raise ValueError(f"known must be bool {image.shape[:2]}, got {known.dtype} {known.shape}")


class FrameInterpolator(ABC):
    """Makes pictures between two frames of one scene (uint8 RGB (H, W, 3), same size).

    The classical interpolators (``stages/interpolate.py``) and RIFE (``gpu/rife.py``)
    implement this; the interpolation stage is handed one.
    """

    @abstractmethod
    def __call__(
        self, first: np.ndarray, second: np.ndarray, times: Sequence[float]
    ) -> list[np.ndarray]:
        """One picture per timestep in ``times`` (each in (0, 1); 0 is ``first``, 1 ``second``)."""

    def close(self) -> None:
        """Free resources (a network, GPU memory)."""


def check_pair(first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> None:
    """Raise ``ValueError`` naming the bad value when two pictures or timesteps do not fit."""
    for name, img in (("first", first), ("second", second)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
    if first.shape != second.shape:
        raise ValueError(f"pictures differ in size: {first.shape} vs {second.shape}")
    bad = [t for t in times if not 0.0 < t < 1.0]
    if bad:
        raise ValueError(f"timesteps must lie in (0, 1), got {bad}")


def frames_of(window: Window) -> Iterable[Frame]:
    """The window's pictures as :class:`Frame` objects (for stages that pass frames on)."""
    return (Frame(img, pts) for img, pts in zip(window.frames, window.pts, strict=True))


def parse_aspect(text: str) -> Fraction:
    """Parse ``16:9``, ``2.39:1``, ``854:480`` or ``1.7778`` into a positive ratio."""
    try:
        if ":" in text:
            w, h = text.split(":", 1)
            ratio = Fraction(w.strip()) / Fraction(h.strip())
        else:
            ratio = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"aspect must look like 16:9 or 2.39:1, got {text!r}") from None
    if ratio <= 0:
        raise ValueError(f"aspect must be positive, got {text!r}")
    return ratio


def widened_width(width: int, height: int, aspect: Fraction, multiple: int = 2) -> int:
    """Width for ``height`` at ``aspect``, rounded to ``multiple``; never below ``width``."""
    target = round(height * aspect / multiple) * multiple
    return max(target, width + (-width % multiple))
