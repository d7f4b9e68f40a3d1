"""`remaster batch` on a local loopback Ray of two workers: outputs, a broken input, a
re-run, a worker killed mid-task, Ctrl-C, the progress display."""

from __future__ import annotations

import _thread
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from stream.arguments import build_parser
from stream.batch import expand_inputs, plan_jobs, process_input, run_batch
from stream.errors import EXIT_INTERRUPTED, DeviceError, UsageError
from tests.raytools import audio_packets, local_ray, video_frames
from tests.synthetic import cut_clip, encode_clip

FRAMES = 40


@pytest.fixture(scope="module")
def ray_local():
    yield from local_ray()


@pytest.fixture(scope="module")
def episode() -> bytes:
    frames, _ = cut_clip([20, 20], height=60, width=80)
    return encode_clip(frames, fmt="nut", codec="ffv1")


def _batch(*argv: str, work=process_input) -> int:
    return run_batch(build_parser(batch=True).parse_args([*argv, "--fill", "blur", "-q"]), work)


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_inputs_come_from_files_globs_lists_and_urls(tmp_path):
    for name in ("b.mkv", "a.mkv"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "more.txt").write_text("# episodes\n\nc.mkv\nhttp://host/d/e.mp4?x=1\n")
    items = expand_inputs([str(tmp_path / "*.mkv"), str(tmp_path / "more.txt"), "x.avi"])
    assert items == [
        str(tmp_path / "a.mkv"),
        str(tmp_path / "b.mkv"),
        str(tmp_path / "c.mkv"),
        "http://host/d/e.mp4?x=1",
        "x.avi",
    ]
    jobs = plan_jobs(items, tmp_path / "out", None)
    assert [j.output.name for j in jobs] == ["a.mkv", "b.mkv", "c.mkv", "e.mp4", "x.avi"]
    assert jobs[0].partial == tmp_path / "out" / ".a.partial.mkv"
    assert plan_jobs(["y.avi"], tmp_path, "mp4")[0].output.name == "y.mp4"
    with pytest.raises(UsageError, match="both be written"):
        plan_jobs(["one/ep.mkv", "two/ep.mkv"], tmp_path, None)
    with pytest.raises(UsageError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.webm")])


def test_a_batch_finishes_around_a_broken_input_and_a_rerun_skips(
    ray_local, episode, tmp_path, caplog
):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for k in (1, 2, 4):
        (src / f"ep{k}.nut").write_bytes(episode)
    (src / "ep3.nut").write_bytes(episode[:3000])  # cut short: no frame decodes
    (src / "rest.txt").write_text(f"ep3.nut\nfile:{src / 'ep4.nut'}\n")
    with caplog.at_level(logging.ERROR, logger="stream.batch"):
        assert _batch(str(src / "ep[12].nut"), str(src / "rest.txt"), "-o", str(out)) == 1
    assert sorted(p.name for p in out.iterdir()) == ["ep1.nut", "ep2.nut", "ep4.nut"]
    assert [r.message for r in caplog.records] == [
        f"{src / 'ep3.nut'}: {str(src / 'ep3.nut')!r}: no video frame could be decoded"
    ]
    for k in (1, 2, 4):
        pts, frames = video_frames(out / f"ep{k}.nut")
        assert pts == [k * pts[1] for k in range(FRAMES)] and frames[0].shape == (60, 106, 3)
        assert len(audio_packets(out / f"ep{k}.nut")) > 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    caplog.clear()
    assert _batch(str(src / "ep[12].nut"), str(src / "rest.txt"), "-o", str(out)) == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # skipped
    assert len(caplog.records) == 1  # the broken one was tried again


def dying_work(job, args, fill, tally):
    """The batch task, except that its worker process dies on the first attempt."""
    marker = Path(args.outdir).parent / f"died-{job.index}"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return process_input(job, args, fill, tally)


def test_a_killed_worker_is_retried_and_its_input_completes(ray_local, episode, tmp_path):
    (tmp_path / "ep.nut").write_bytes(episode)
    out = tmp_path / "out"
    assert _batch(str(tmp_path / "ep.nut"), "-o", str(out), "--retries", "1", work=dying_work) == 0
    assert (tmp_path / "died-0").exists()  # the first attempt did die
    assert len(video_frames(out / "ep.nut")[0]) == FRAMES
    assert _hidden(out) == []


def stuck_work(job, args, fill, tally):
    """A task that has begun its partial file and takes its time."""
    job.partial.write_bytes(b"half a video")
    time.sleep(600)


def test_ctrl_c_cancels_and_leaves_no_file(ray_local, episode, tmp_path):
    for k in (1, 2):
        (tmp_path / f"ep{k}.nut").write_bytes(episode)
    out = tmp_path / "out"
    seen: list[str] = []

    def interrupt_once_started() -> None:
        deadline = time.monotonic() + 240  # a loaded machine starts Ray workers slowly
        while time.monotonic() < deadline and len(seen) < 2:
            seen[:] = _hidden(out) if out.exists() else []
            time.sleep(0.1)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    code = _batch(
        str(tmp_path / "ep1.nut"), str(tmp_path / "ep2.nut"), "-o", str(out), work=stuck_work
    )
    assert code == EXIT_INTERRUPTED
    assert sorted(seen) == [".ep1.partial.nut", ".ep2.partial.nut"]  # both were running
    assert list(out.iterdir()) == []


def test_the_diffusion_fill_needs_a_gpu_in_the_cluster_or_allow_cpu(ray_local):
    from stream import cluster
    from stream.options import Options

    # (the fill servers themselves: test_segments runs --fill sd over --workers 2)
    with pytest.raises(DeviceError, match="--allow-cpu"):
        cluster.hole_fill(ray_local, Options(fill="sd", model="any"))
    assert cluster.hole_fill(ray_local, Options(fill="panorama")) is None


def test_one_display_on_the_driver_shows_what_the_workers_report(ray_local):
    import io

    from rich.console import Console

    from stream.chain import ChainStats
    from stream.tally import Board, Reporter

    text = io.StringIO()
    console = Console(file=text, force_terminal=True, width=120)
    with Board(ray_local, None, "inputs", console=console) as board:
        first = Reporter(board.tally, 0, "ep1.mkv", 100)
        Reporter(board.tally, 1, "ep2.mkv", 50).done(ChainStats(frames_in=50))
        first.update(ChainStats(frames_in=40))
        items = ray_local.get(board.tally.snapshot.remote())
        board.draw(items)
        rows = [(t.description, t.completed, t.total) for t in board._progress.tasks]
    assert items[0][:4] == ("ep1.mkv", 100, 40, False) and items[1][2:4] == (50, True)
    assert rows[0][1:] == (90, 150) and "1 inputs done" not in rows[0][0]  # the total
    assert rows[1:] == [("ep1.mkv", 40, 100)]  # a finished input leaves its row
    assert "ep1.mkv" in text.getvalue() and "fps" in text.getvalue()
