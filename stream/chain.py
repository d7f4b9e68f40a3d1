"""The bounded producer/consumer chain: decode thread -> scenes + stage -> encode thread.

::

    decoder thread --frames--> [FRAME_QUEUE_DEPTH] --> main thread: SceneBuffer -> Stage
        |                                                        |
        +--other streams' packets (audio, subtitles) --+         v
                                                       +--> [OUTPUT_QUEUE_DEPTH] --> encoder thread

Every queue is bounded, so a slow stage holds the decoder back instead of filling
memory. ``EOF`` ends each queue. An exception in any thread stops the whole chain and
is re-raised on the calling thread; both worker threads are always joined, and the
encoder always finishes what it was given, so what was written plays.

Ctrl-C (SIGINT, when the chain runs on the main thread) ends the input where it is, as
ffmpeg does: the frames already decoded go through the stage, everything is encoded and
flushed, and then :class:`KeyboardInterrupt` is raised. A second Ctrl-C stops the
stage at once; what was already processed is still encoded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from stages.base import Frame, Stage, Window

log = logging.getLogger(__name__)

# Decoded frames waiting for the scene buffer; small: the scene buffer is the big store.
FRAME_QUEUE_DEPTH = 8
# Processed frames waiting for the encoder.
OUTPUT_QUEUE_DEPTH = 16
# How often (seconds) a blocked queue operation looks whether the chain was stopped.
POLL_SECONDS = 0.1
# How long a chain stopped early waits for a decoder blocked on its input (seconds).
DECODER_GRACE_SECONDS = 2.0
# BLAS threads while a chain runs: its own threads keep the cores busy, and BLAS threads
# on top wait for a core (a 480x4 by 4x321 product took 5 ms on a busy 2-core machine
# with BLAS threads, 0.1 ms on one)
BLAS_THREADS = 1

EOF = object()  # the end-of-stream sentinel on every queue


@contextlib.contextmanager
def on_sigint(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` takes Ctrl-C (SIGINT) while inside, and the handler before it is put
    back after. Off the main thread, where no signal handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ChainStopped(Exception):
    """Raised inside a worker when another part of the chain has failed or stopped."""


class FrameSource(Protocol):
    def frames(self) -> Iterator[Any]: ...


class FrameSink(Protocol):
    def write(self, image: np.ndarray, pts: int) -> None: ...
    def close(self, flush: bool = True, complete: bool = True) -> None: ...


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
        self.interrupted = False  # Ctrl-C was pressed: the input ends where it is
        self._processing = False

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
        flush = True
        try:
            while True:
                item = self._get(self.output_q)
                if item is EOF:
                    return
                try:
                    self.sink.write(item.image, item.pts)
                except BaseException:
                    flush = False  # the output failed: write nothing more
                    raise
                self.stats.frames_out += 1
        finally:
            # Close even when stopped, so what was written so far is a playable file;
            # an output cut short ends its audio where its video ends.
            self.sink.close(flush=flush, complete=not self.stop_reading.is_set())

    # -- the main thread --------------------------------------------------------------
    def run(self) -> ChainStats:
        """Run to the end; re-raise the first error of any part of the chain."""
        decoder = _Worker("remaster-decode", self._decode)
        encoder = _Worker("remaster-encode", self._encode)
        error: BaseException | None = None
        with (
            on_sigint(self._on_sigint),  # Ctrl-C ends the input instead of raising
            threadpool_limits(BLAS_THREADS, user_api="blas"),
        ):
            decoder.start()
            encoder.start()
            log.debug("chain running (Ctrl-C now ends the input)")
            try:
                self._processing = True
                self._process(decoder, encoder)
            except ChainStopped:  # the decoder or the encoder failed: raised below
                self.stop_reading.set()
            except BaseException as err:  # a stage error or a second Ctrl-C
                error = err
                self.stop_reading.set()
                _drain(self.frames_q)
            finally:
                self._processing = False
                # The encoder finishes what it was given, whatever happened.
                with contextlib.suppress(ChainStopped):
                    self._put(self.output_q, EOF, (encoder,))
                self._join(decoder, encoder)
        for err in (error, encoder.error, decoder.error):
            if err is not None:
                raise err
        if self.interrupted:
            raise KeyboardInterrupt
        return self.stats

    def _on_sigint(self, signum: int, frame: object) -> None:
        if not self.interrupted:
            self.interrupted = True
            self.stop_reading.set()
        elif self._processing:
            raise KeyboardInterrupt  # second Ctrl-C: stop the stage now

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

        told = False
        while True:
            item = self._next_frame((decoder, encoder))
            if self.interrupted and not told:
                told = True
                log.warning(
                    "interrupted: finishing the frames already read (Ctrl-C again to stop now)"
                )
            if item is EOF:
                break
            self.stats.frames_in += 1
            run(self.scenes.push(item.image, item.pts))
            self.on_progress(self.stats)
        run(self.scenes.flush())
        emit(self.stage.finish())
        self.on_progress(self.stats)

    def _next_frame(self, peers: Iterable[_Worker]) -> object:
        """The next decoded frame; EOF at the end or, once reading stopped, when none is
        waiting (the decoder may be blocked on a pipe that has not ended)."""
        while True:
            try:
                return self.frames_q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self.stop_reading.is_set():
                    return EOF
                if self.abort.is_set() or any(w.error is not None for w in peers):
                    raise ChainStopped from None

    def _join(self, decoder: _Worker, encoder: _Worker) -> None:
        """Join both threads whatever happened. The encoder finishes what it was given."""
        while encoder.is_alive():
            encoder.join(POLL_SECONDS)
        stopped_early = self.stop_reading.is_set()
        self.stop_reading.set()
        self.abort.set()
        _drain(self.frames_q)
        # Stopped early, the decoder may wait on a pipe whose writer is not ending (a
        # FIFO): the output is finished, so do not wait for the input too.
        decoder.join(DECODER_GRACE_SECONDS if stopped_early else None)
        if decoder.is_alive():
            log.debug("the input has not ended; not waiting for it")


def _drain(q: queue.Queue) -> None:
    """Empty ``q`` so a producer blocked on it can see the stop flag and exit."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
