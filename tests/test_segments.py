"""Segments: the rule, fresh stages per segment, the cut plan replayed on a worker, and
`--workers 2` giving the single run's output on a local loopback Ray."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest

from stages.base import Frame, Stage, StageChain, VideoInfo, Window, frames_of
from stages.motion import same_shot
from stream.arguments import build_parser
from stream.cli import run
from stream.errors import InputError
from stream.plan import SegmentScenes, plan_segments
from stream.scenes import SceneBuffer, make_detector
from stream.segments import SegmentedStage, SegmentRule
from stream.split import SegmentJob, _checked
from tests.clitools import ROOT
from tests.raytools import audio_packets, is_loopback, listening_addresses, local_ray, video_frames
from tests.synthetic import cut_clip, encode_clip

DASHBOARD_PORT = 8265  # Ray's default
SCENES = [30, 40, 30, 35]  # cuts at 30, 70, 100
FPS = 24


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    frames, cuts = cut_clip(SCENES)
    assert cuts == [30, 70, 100]
    return frames


@pytest.fixture(scope="module")
def ray_local():
    yield from local_ray()


def test_rule_counts_frames_at_the_nominal_rate():
    rule = SegmentRule.of(2.0, Fraction(24000, 1001))
    assert rule.frames == 48
    assert rule.starts(148, 100) and not rule.starts(147, 100)
    assert SegmentRule.of(0, Fraction(24)).frames is None
    assert not SegmentRule.of(0, Fraction(24)).starts(10_000, 0)
    assert SegmentRule.of(1, None).frames == 25  # unknown rate: 25 fps


class Recorder(Stage):
    """Passes frames on; records which windows and peeks it was given."""

    one_to_one = True
    uses_peeks = True

    def __init__(self, log: list):
        self.log = log

    def peek(self, image, scene, starts):
        self.log.append(("peek", id(self), scene, starts))

    def process(self, window: Window) -> Iterator[Frame]:
        self.log.append(("window", id(self), window.scene, len(window), window.continues))
        yield from frames_of(window)


def test_each_segment_gets_fresh_stages_and_its_own_peeks():
    events: list = []
    built: list[int] = []

    def build() -> StageChain:
        chain = StageChain([Recorder(events)])
        chain.configure(VideoInfo(8, 8, Fraction(1, 24), Fraction(24)))
        built.append(id(chain.stages[0]))
        return chain

    stage = SegmentedStage(build, SegmentRule(50))
    scenes = [(0, 30), (1, 40), (2, 30), (3, 35)]  # scene starts 0, 30, 70, 100
    image = np.zeros((8, 8, 3), np.uint8)
    out = []
    for scene, length in scenes:  # peeks of a scene come before its windows
        for k in range(length):
            stage.peek(image, scene, k == 0)
        for start in range(0, length, 20):  # windows of 20 frames at most
            n = min(20, length - start)
            window = Window([image] * n, list(range(n)), scene, start > 0, start + n == length)
            out += list(stage.process(window))
    out += list(stage.finish())
    assert len(out) == sum(n for _, n in scenes)
    # 70 is the first scene start 50 frames after 0; 100 is only 30 after 70
    assert stage.segments == 2 and len(built) == 2
    owner = {(kind, scene): who for kind, who, scene, *_ in events}
    first, second = built
    assert [owner[("window", s)] for s in range(4)] == [first, first, second, second]
    assert [owner[("peek", s)] for s in range(4)] == [first, first, second, second]


@dataclass
class Decoded:
    image: np.ndarray
    pts: int


def _buffer(on_settled=None) -> SceneBuffer:
    # 20 frames of 120x160: long scenes come in several windows
    return SceneBuffer(make_detector(), Fraction(FPS), 20 * 120 * 160 * 3, on_settled, same_shot)


def test_a_worker_gets_the_windows_and_peeks_of_the_single_run(clip):
    events: list[tuple] = []
    single = _buffer(lambda image, scene, starts: events.append(("peek", id(image), scene)))
    for k, image in enumerate(clip):
        for w in single.push(image, k):
            events.append(("window", w.pts[0], len(w), w.scene, w.continues, w.last))
    for w in single.flush():
        events.append(("window", w.pts[0], len(w), w.scene, w.continues, w.last))

    frames = [Decoded(image, k) for k, image in enumerate(clip)]
    plans = list(plan_segments(frames, _buffer(), SegmentRule(FPS)))
    assert [(p.start, p.end, p.first_scene) for p in plans] == [
        (0, 30, 0),
        (30, 70, 1),
        (70, 100, 2),
        (100, None, 3),
    ]
    replayed: list[tuple] = []
    for plan in plans:
        scenes = SegmentScenes(
            _buffer(lambda image, scene, starts: replayed.append(("peek", id(image), scene))),
            plan,
        )
        stop = plan.start + plan.feed if plan.feed is not None else len(clip)
        assert plan.feed is None or plan.start + plan.feed > plan.end  # fed past its end
        for k in range(plan.start, stop):
            for w in scenes.push(clip[k], k):
                replayed.append(("window", w.pts[0], len(w), w.scene, w.continues, w.last))
        for w in scenes.flush():
            replayed.append(("window", w.pts[0], len(w), w.scene, w.continues, w.last))
    assert replayed == events
    assert sum(1 for e in events if e[0] == "window") > len(SCENES)  # scenes were split


def test_a_frame_that_decodes_differently_after_a_seek_is_an_input_error(clip):
    frames = [Decoded(image, k) for k, image in enumerate(clip)]
    plan = next(plan_segments(frames, _buffer(), SegmentRule(FPS)))
    assert list(_checked(iter(frames), plan))[-1].pts == plan.feed - 1
    wrong = [*frames[:5], Decoded(clip[5] ^ 1, 5), *frames[6:]]
    with pytest.raises(InputError, match="frame 5 decodes differently"):
        list(_checked(iter(wrong), plan))
    assert SegmentJob.__dataclass_fields__["plan"]  # what a worker is handed


def _run(*argv: str) -> int:
    return run(build_parser().parse_args([*argv, "-q"]))


def test_workers_give_exactly_the_single_runs_output(clip, ray_local, tmp_path, caplog):
    source = tmp_path / "in.nut"
    source.write_bytes(encode_clip(clip, fmt="nut", codec="ffv1", fps=FPS))
    lossless = ["--codec", "ffv1", "--segment-seconds", "1"]
    with caplog.at_level(logging.INFO, logger="stream.segments"):
        assert _run(str(source), str(tmp_path / "one.mkv"), *lossless) == 0
    assert sum("segment" in r.message for r in caplog.records) == 3  # 4 segments
    assert _run(str(source), str(tmp_path / "two.mkv"), *lossless, "--workers", "2") == 0
    pts1, frames1 = video_frames(tmp_path / "one.mkv")
    pts2, frames2 = video_frames(tmp_path / "two.mkv")
    assert len(frames1) == len(clip) and pts2 == pts1
    assert all(np.array_equal(a, b) for a, b in zip(frames1, frames2, strict=True))
    audio = audio_packets(tmp_path / "one.mkv")
    assert audio and audio_packets(tmp_path / "two.mkv") == audio
    # x264 with B-frames: each segment's decode times continue the last one's
    lossy = ["--segment-seconds", "1", "--workers", "2"]
    assert _run(str(source), str(tmp_path / "x264.mkv"), *lossy) == 0
    assert video_frames(tmp_path / "x264.mkv")[0] == pts1


def test_the_embedded_ray_listens_on_loopback_only(ray_local):
    import os

    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux /proc")
    addresses = listening_addresses(os.getpid())
    assert len(addresses) > 3  # the Ray processes are there and listen
    assert all(is_loopback(ip) for ip, _ in addresses), addresses
    assert DASHBOARD_PORT not in {port for _, port in addresses}  # no dashboard (web UI)


@pytest.mark.skipif(
    importlib.util.find_spec("diffusers") is None, reason="needs torch and diffusers"
)
def test_workers_with_the_diffusion_fill_on_actors_give_the_single_runs_output(
    clip, ray_local, tmp_path
):
    from tests.tiny_sd import tiny_inpaint_pipeline

    tiny_inpaint_pipeline(seed=0).save_pretrained(tmp_path / "tiny")
    source = tmp_path / "in.nut"
    source.write_bytes(encode_clip(clip[:70], fmt="nut", codec="ffv1", fps=FPS))
    sd = ["--fill", "sd", "--model", str(tmp_path / "tiny"), "--device", "cpu", "--allow-cpu"]
    sd += ["--steps", "2", "--codec", "ffv1", "--segment-seconds", "1"]
    assert _run(str(source), str(tmp_path / "one.mkv"), *sd) == 0
    assert _run(str(source), str(tmp_path / "two.mkv"), *sd, "--workers", "2") == 0
    pts1, frames1 = video_frames(tmp_path / "one.mkv")
    pts2, frames2 = video_frames(tmp_path / "two.mkv")
    assert pts2 == pts1 and len(frames1) == 70
    assert all(np.array_equal(a, b) for a, b in zip(frames1, frames2, strict=True))


def test_a_run_without_workers_does_not_import_ray(clip, tmp_path):
    import subprocess
    import sys

    source = tmp_path / "in.nut"
    source.write_bytes(encode_clip(clip[:30], fmt="nut", codec="ffv1", fps=FPS))
    code = (
        "import sys; from stream.cli import main; "
        f"rc = main([{str(source)!r}, {str(tmp_path / 'out.mkv')!r}, '--fill', 'blur', '-q']); "
        "assert 'ray' not in sys.modules, 'ray imported'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
