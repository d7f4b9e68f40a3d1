"""The bounded producer/consumer chain: decode thread -> scenes + stage -> encode thread.

::

    decoder thread --frames--> [FRAME_QUEUE_DEPTH] --> main thread: SceneBuffer -> Stage
        |                                                        |
        +--other streams' packets (audio, subtitles) --+         v
                                                       +--> [OUTPUT_QUEUE_DEPTH] --> encoder thread

Every queue is bounded, so a slow stage holds the decoder back instead of filling
memory. ``EOF`` ends each queue. An exception in any thread stops the whole chain and
is re-raised on the calling thread; both worker threads are always joined. On Ctrl-C
the output is finished properly, so what was written plays.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stages.base import Frame, Stage, Window

log = logging.getLogger(__name__)

# Decoded frames waiting for the scene buffer; small: the scene buffer is the big store.
FRAME_QUEUE_DEPTH = 8
# Processed frames waiting for the encoder.
OUTPUT_QUEUE_DEPTH = 16
# How often (seconds) a blocked queue operation looks whether the chain was stopped.
POLL_SECONDS = 0.1

EOF = object()  # the end-of-stream sentinel on every queue


class ChainStopped(Exception):
    """Raised inside a worker when another part of the chain has failed or stopped."""


class FrameSource(Protocol):
    def frames(self) -> Iterator[Any]: ...


class FrameSink(Protocol):
    def write(self, image: np.ndarray, pts: int) -> None: ...
    def close(self, flush: bool = True) -> None: ...


class WindowSource(Protocol):
    def push(self, image: np.ndarray, pts: int) -> Iterator[Window]: ...
    def flush(self) -> Iterator[Window]: ...


@dataclass
class ChainStats:
    """Counts for the progress display and the final log line."""

    frames_in: int = 0
    frames_out: int = 0
    scenes: int = 0
    windows: int = 0


class _Worker(threading.Thread):
    """A thread that records its exception instead of printing it."""

    def __init__(self, name: str, target: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except ChainStopped:
            pass
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.error = err


class Chain:
    """Runs decoder -> scene buffer -> stage -> encoder with bounded queues."""

    def __init__(
        self,
        decoder: FrameSource,
        scenes: WindowSource,
        stage: Stage,
        sink: FrameSink,
        on_progress: Callable[[ChainStats], None] | None = None,
        frame_depth: int = FRAME_QUEUE_DEPTH,
        output_depth: int = OUTPUT_QUEUE_DEPTH,
    ):
        self.decoder = decoder
        self.scenes = scenes
        self.stage = stage
        self.sink = sink
        self.on_progress = on_progress or (lambda stats: None)
        self.frames_q: queue.Queue = queue.Queue(frame_depth)
        self.output_q: queue.Queue = queue.Queue(output_depth)
        self.stop_reading = threading.Event()  # the decoder stops; the rest finishes
        self.abort = threading.Event()  # everything stops at once
        self.stats = ChainStats()

    # -- queue helpers that never block forever -------------------------------------
    def _put(self, q: queue.Queue, item: object, peers: Iterable[_Worker] = ()) -> None:
        while True:
            if self.abort.is_set() or any(w.error is not None for w in peers):
                raise ChainStopped
            try:
                q.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue, peers: Iterable[_Worker] = ()) -> object:
        while True:
            try:
                return q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self.abort.is_set() or any(w.error is not None for w in peers):
                    raise ChainStopped from None

    # -- the two worker threads -----------------------------------------------------
    def _decode(self) -> None:
        for item in self.decoder.frames():
            if self.stop_reading.is_set():
                break
            self._put(self.frames_q, item)
        self._put(self.frames_q, EOF)

    def _encode(self) -> None:
        flush = False
        try:
            while True:
                item = self._get(self.output_q)
                if item is EOF:
                    flush = True
                    return
                self.sink.write(item.image, item.pts)
                self.stats.frames_out += 1
        finally:
            # Close even when stopped, so what was written so far is a playable file.
            self.sink.close(flush=flush)

    # -- the main thread --------------------------------------------------------------
    def run(self) -> ChainStats:
        """Run to the end; re-raise the first error of any part of the chain."""
        decoder = _Worker("remaster-decode", self._decode)
        encoder = _Worker("remaster-encode", self._encode)
        decoder.start()
        encoder.start()
        error: BaseException | None = None
        try:
            self._process(decoder, encoder)
            self._put(self.output_q, EOF, (encoder,))
        except ChainStopped:
            pass
        except BaseException as err:  # a stage error or Ctrl-C: finish what was written
            error = err
            self.stop_reading.set()
            _drain(self.frames_q)
            with contextlib.suppress(ChainStopped):
                self._put(self.output_q, EOF, (encoder,))
        finally:
            self._join(decoder, encoder)
        for err in (error, encoder.error, decoder.error):
            if err is not None:
                raise err
        return self.stats

    def _process(self, decoder: _Worker, encoder: _Worker) -> None:
        def emit(frames: Iterable[Frame]) -> None:
            for frame in frames:
                self._put(self.output_q, frame, (encoder,))

        def run(windows: Iterable[Window]) -> None:
            # The loop variable dies with this call: a finished window's frames are freed
            # before the scene buffer fills the next one.
            for window in windows:
                self.stats.windows += 1
                if not window.continues:
                    self.stats.scenes += 1
                emit(self.stage.process(window))

        while True:
            item = self._get(self.frames_q, (decoder, encoder))
            if item is EOF:
                break
            self.stats.frames_in += 1
            run(self.scenes.push(item.image, item.pts))
            self.on_progress(self.stats)
        run(self.scenes.flush())
        emit(self.stage.finish())
        self.on_progress(self.stats)

    def _join(self, decoder: _Worker, encoder: _Worker) -> None:
        """Join both threads whatever happened. The encoder finishes what it was given."""
        while encoder.is_alive():
            encoder.join(POLL_SECONDS)
            if decoder.error is not None:
                self.abort.set()
        self.stop_reading.set()
        self.abort.set()
        _drain(self.frames_q)
        decoder.join()


def _drain(q: queue.Queue) -> None:
    """Empty ``q`` so a producer blocked on it can see the stop flag and exit."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
