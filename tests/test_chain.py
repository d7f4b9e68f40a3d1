"""The bounded chain: order, EOF, back-pressure, errors re-raised, threads joined."""

from __future__ import annotations

import array
import fcntl
import io
import os
import signal
import subprocess
import termios
import threading
import time
from dataclasses import dataclass

import av
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from stages.base import Frame, Stage, Window
from stream.chain import BLAS_THREADS, FRAME_QUEUE_DEPTH, OUTPUT_QUEUE_DEPTH, Chain
from stream.scenes import SceneBuffer
from tests.clitools import REMASTER, ROOT, probe
from tests.synthetic import cut_clip, encode_clip


@dataclass
class Item:
    image: np.ndarray
    pts: int


class ListSource:
    """Yields n small frames; records how far it got (for back-pressure)."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at, self.produced = n, fail_at, 0

    def frames(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise OSError("disk on fire")
            self.produced += 1
            yield Item(np.full((4, 4, 3), i % 256, np.uint8), i)


class ListSink:
    def __init__(self, fail_at: int | None = None, delay: float = 0.0):
        self.written: list[int] = []
        self.closed_with: bool | None = None
        self.fail_at, self.delay = fail_at, delay
        self.release = threading.Event()

    def write(self, image, pts):
        if self.delay:
            self.release.wait(self.delay)
        if len(self.written) == self.fail_at:
            raise BrokenPipeError("reader went away")
        self.written.append(pts)

    def close(self, flush=True, complete=True):
        self.closed_with = flush
        self.complete = complete


class Passthrough(Stage):
    def __init__(
        self,
        fail_on_scene: int | None = None,
        interrupt: bool = False,
        fail_on_window: int | None = None,
    ):
        self.fail_on_scene, self.interrupt, self.windows = fail_on_scene, interrupt, []
        self.fail_on_window = fail_on_window

    def process(self, window: Window):
        self.windows.append(window)
        if window.scene == self.fail_on_scene or len(self.windows) - 1 == self.fail_on_window:
            if self.interrupt:
                raise KeyboardInterrupt
            raise ValueError("stage broke")
        for img, pts in zip(window.frames, window.pts, strict=True):
            yield Frame(img, pts)


def budget(frames: int) -> int:
    return frames * 4 * 4 * 3


def no_remaster_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("remaster-")]


def test_all_frames_in_order_and_eof_closes_with_flush():
    sink = ListSink()
    stats = Chain(ListSource(100), SceneBuffer(None, None, budget(30)), Passthrough(), sink).run()
    assert sink.written == list(range(100))
    assert stats.frames_in == stats.frames_out == 100
    assert sink.closed_with is True
    assert no_remaster_threads()


def blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_blas_runs_on_one_thread_while_a_chain_runs_and_is_restored_after():
    class Records(Passthrough):
        def process(self, window: Window):
            seen.append(blas_threads())
            yield from super().process(window)

    assert blas_threads(), "numpy's wheel ships OpenBLAS"
    seen: list[list[int]] = []
    with threadpool_limits(2, user_api="blas"):
        Chain(ListSource(10), SceneBuffer(None, None, budget(30)), Records(), ListSink()).run()
        after = blas_threads()
    assert seen and all(t == [BLAS_THREADS] * len(t) for t in seen)
    assert after == [2] * len(after) and BLAS_THREADS < 2


def test_long_scene_comes_in_windows_flagged_continues_and_last():
    stage = Passthrough()
    Chain(ListSource(100), SceneBuffer(None, None, budget(30)), stage, ListSink()).run()
    assert len(stage.windows) > 1
    assert [w.continues for w in stage.windows] == [False] + [True] * (len(stage.windows) - 1)
    assert [w.last for w in stage.windows][-1] is True
    assert not any(w.last for w in stage.windows[:-1])
    assert max(len(w) for w in stage.windows) <= 30


def test_back_pressure_bounds_what_is_read_ahead():
    sink = ListSink(delay=5.0)
    source = ListSource(10_000)
    chain = Chain(source, SceneBuffer(None, None, budget(4)), Passthrough(), sink)
    runner = threading.Thread(target=chain.run)
    runner.start()
    time.sleep(1.0)  # the encoder is stuck on its first frame
    ahead = source.produced
    sink.release.set()
    runner.join(60)
    # Scene buffer (lag + 2 = 3 frames at this budget) + both queues + items in hand.
    assert ahead <= FRAME_QUEUE_DEPTH + OUTPUT_QUEUE_DEPTH + 4 + 4
    assert sink.written == list(range(10_000))


def test_decoder_error_is_reraised_on_main_thread_and_threads_joined():
    sink = ListSink()
    with pytest.raises(OSError, match="disk on fire"):
        Chain(
            ListSource(100, fail_at=50), SceneBuffer(None, None, budget(8)), Passthrough(), sink
        ).run()
    assert no_remaster_threads()
    assert sink.closed_with is True and sink.complete is False  # flushed, cut short


def test_encoder_error_is_reraised_and_decoder_stops_early():
    source = ListSource(100_000)
    with pytest.raises(BrokenPipeError):
        Chain(source, SceneBuffer(None, None, budget(8)), Passthrough(), ListSink(fail_at=5)).run()
    assert source.produced < 1000
    assert no_remaster_threads()


def test_stage_error_finishes_output_that_was_written():
    sink = ListSink()
    frames = ListSource(60)
    # One scene in windows of 20 frames here; the stage fails on the third window.
    scenes = SceneBuffer(None, None, budget(20))
    scenes.lag = 0
    stage = Passthrough(fail_on_window=2)
    with pytest.raises(ValueError, match="stage broke"):
        Chain(frames, scenes, stage, sink).run()
    assert [len(w) for w in stage.windows] == [20, 20, 20]
    assert sink.written == list(range(40))  # the two windows before it were written
    assert sink.closed_with is True  # and the output finished properly ...
    assert sink.complete is False  # ... as an output cut short
    assert no_remaster_threads()


def test_ctrl_c_closes_the_output_properly_and_propagates():
    sink = ListSink()

    class CutEvery(SceneBuffer):
        def push(self, image, pts):
            self._frames.append(image)
            self._pts.append(pts)
            if len(self._frames) == 10:
                yield from self._emit(10, last=True)

    with pytest.raises(KeyboardInterrupt):
        Chain(
            ListSource(100),
            CutEvery(None, None),
            Passthrough(fail_on_scene=3, interrupt=True),
            sink,
        ).run()
    assert sink.written == list(range(30))  # three scenes done before the interrupt
    assert sink.closed_with is True
    assert no_remaster_threads()


class SlowSource(ListSource):
    def frames(self):
        for item in super().frames():
            time.sleep(0.01)
            yield item


def test_sigint_ends_the_input_and_everything_read_is_processed_and_flushed():
    """One scene held whole by the scene buffer when Ctrl-C comes: it is not lost."""
    sink, stage = ListSink(), Passthrough()
    chain = Chain(SlowSource(1000), SceneBuffer(None, None, budget(2000)), stage, sink)
    before = signal.getsignal(signal.SIGINT)  # another test's library may have changed it
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        chain.run()
    assert chain.interrupted
    assert 10 < chain.stats.frames_in < 1000
    assert sink.written == list(range(chain.stats.frames_in))  # every frame read
    assert sink.closed_with is True and sink.complete is False
    assert signal.getsignal(signal.SIGINT) is before  # put back
    assert no_remaster_threads()


# -- Ctrl-C through the whole command ------------------------------------------------
@pytest.fixture(scope="module")
def ten_seconds() -> tuple[bytes, list[int]]:
    """10 s at 24 fps in scenes of 60 frames, with audio; and where each video packet ends."""
    frames, _ = cut_clip([60, 60, 60, 60], height=96, width=128)
    data = encode_clip(frames, fmt="nut", codec="mpeg4", fps=24)
    ends = []
    with av.open(io.BytesIO(data)) as c:
        for packet in c.demux(video=0):
            if packet.size:
                ends.append(packet.pos + packet.size)
    return data, ends


def pipe_drained(fd: int, timeout: float) -> None:
    """Wait until the pipe at ``fd`` holds no unread bytes (Linux FIONREAD)."""
    deadline = time.monotonic() + timeout
    left = array.array("i", [1])
    while time.monotonic() < deadline:
        fcntl.ioctl(fd, termios.FIONREAD, left)
        if left[0] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{left[0]} bytes still unread in the pipe after {timeout} s")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("sent", [54, 216])  # inside the first scene; near the end
def test_ctrl_c_keeps_every_frame_read_and_no_audio_past_the_video(
    tmp_path, ten_seconds, suffix, sent
):
    """Early: the panorama stage still holds the first scene, which must not be lost.
    Late: the audio read ahead of the video must not run past the video's end."""
    data, ends = ten_seconds
    out = tmp_path / f"cut{suffix}"
    proc = subprocess.Popen(
        [*REMASTER, "-", str(out), "-v"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    err: list[bytes] = []
    running = threading.Event()
    whole_scenes = sent // 60  # each is taken by a stage before the last one is read

    def read_stderr() -> None:
        chain, fits = False, 0
        for line in proc.stderr:
            err.append(line)
            chain |= b"chain running" in line
            fits += b"window fit" in line  # a stage took a scene
            if chain and fits >= whole_scenes:
                running.set()

    reader = threading.Thread(target=read_stderr)
    reader.start()
    proc.stdin.write(data[: ends[sent - 1]])  # returns once the pipe took all but 64 KiB
    proc.stdin.flush()
    assert running.wait(120), b"".join(err).decode()
    # nothing holds the last scene back now: it is read, then decoded
    pipe_drained(proc.stdin.fileno(), 120)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    if sent > 100:
        time.sleep(0.5)
        proc.stdin.close()  # upstream ends too, as it does when the terminal sends Ctrl-C
    # Early, upstream stays open (a FIFO whose writer goes on): remaster must not wait.
    code = proc.wait(120)
    reader.join(60)
    proc.stdin.close()
    stderr = b"".join(err)
    assert code == 130, stderr.decode()
    assert b"Traceback" not in stderr and b"interrupted" in stderr
    got = probe(out)
    assert sent - 2 <= len(got.video_pts) <= sent, stderr.decode()
    video_end = float(got.video_pts[-1] * got.time_base) + 1 / 24
    assert video_end - 0.1 <= got.audio_seconds <= video_end + 0.025
