"""`remaster batch INPUT... -o OUTDIR`: many inputs, each one a Ray task.

Each input is remastered by the single-process path (:func:`stream.cli.run`) inside a Ray
task, into a hidden partial file in OUTDIR (``.NAME.partial.EXT``) that is renamed to
``NAME.EXT`` when it is complete, so a crash never leaves a half file under a final name
and a re-run skips what is finished. A task whose worker died, or that failed
unexpectedly, is tried again (Ray's ``max_retries``); a bad input (a remaster error: not a
video, unreadable) is not, and is reported while the others go on. Ctrl-C cancels the
tasks and removes their partial files. Exit code: 0 when every input is done or skipped,
1 when some input failed (the summary table says which and why), 130 when interrupted.

With ``--fill sd`` the tasks take CPUs and send their fills to one diffusion pipeline per
GPU held by a Ray actor (:mod:`gpu.actors`), which keeps the GPU busy while the tasks do
the panorama work.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stream.decode import is_url
from stream.errors import EXIT_INTERRUPTED, EXIT_OK, OutputError, RemasterError, UsageError

log = logging.getLogger(__name__)

EXIT_SOME_FAILED = 1  # some input failed; the summary names it
LIST_SUFFIXES = (".txt", ".list")  # an input with this suffix lists inputs, one a line
DEFAULT_SUFFIX = ".mkv"  # for an input whose name has none (a URL)
# Seconds the driver waits for cancelled tasks to stop before removing their files.
CANCEL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class BatchJob:
    index: int
    input: str
    output: Path
    partial: Path
    env: dict[str, str | None] = field(default_factory=dict)  # the driver's thread settings


@dataclass
class Outcome:
    status: str  # done, skipped, failed, cancelled
    frames: int = 0
    seconds: float = 0.0
    note: str = ""


def expand_inputs(items: list[str]) -> list[str]:
    """Files, URLs, globs and ``.txt`` lists of them, in the order given."""
    out: list[str] = []
    for item in items:
        path = Path(item)
        if is_url(item):
            out.append(item)
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line if is_url(line) else str(path.parent / line))
        elif not path.exists() and glob.has_magic(item):
            found = sorted(glob.glob(item, recursive=True))
            if not found:
                raise UsageError(f"no file matches {item!r}")
            out.extend(found)
        else:
            out.append(item)  # a missing file is reported as that input's failure
    return out


def plan_jobs(inputs: list[str], outdir: Path, ext: str | None) -> list[BatchJob]:
    """The output and partial file of each input; two inputs with one output name are an
    error before anything runs."""
    jobs, seen = [], {}
    for index, item in enumerate(inputs):
        name = Path(urlparse(item).path if is_url(item) else item).name
        stem, suffix = Path(name).stem or f"input{index}", Path(name).suffix
        suffix = ext if ext else suffix or DEFAULT_SUFFIX
        suffix = suffix if suffix.startswith(".") else f".{suffix}"
        output = outdir / f"{stem}{suffix}"
        if output in seen:
            raise UsageError(f"{seen[output]!r} and {item!r} would both be written to {output}")
        seen[output] = item
        jobs.append(BatchJob(index, item, output, outdir / f".{stem}.partial{suffix}"))
    return jobs


def process_input(job: BatchJob, args: argparse.Namespace, fill: Any, tally: Any) -> Outcome:
    """Remaster one input into its partial file and rename it (the Ray task)."""
    from stream import cluster
    from stream.cli import run
    from stream.decode import open_input
    from stream.tally import Reporter

    cluster.use_env(job.env)
    began = time.monotonic()
    total = None
    try:
        with contextlib.closing(open_input(job.input, args.input_format)) as source:
            total = source.frame_count
    except RemasterError:
        pass  # run() below reports it
    reporter = Reporter(tally, job.index, Path(job.input).name, total)
    one = argparse.Namespace(**{**vars(args), "input": job.input, "output": str(job.partial)})
    one.quiet = True
    frames = [0]

    def progress(stats: Any) -> None:
        frames[0] = stats.frames_in
        reporter.update(stats)

    try:
        code = run(one, on_progress=progress, hole_fill=fill)
        if code == EXIT_OK:
            os.replace(job.partial, job.output)
            return Outcome("done", frames[0], time.monotonic() - began)
        return Outcome("cancelled", frames[0], time.monotonic() - began, "interrupted")
    except RemasterError as err:  # the input's fault: not retried
        return Outcome("failed", frames[0], time.monotonic() - began, str(err))
    finally:
        job.partial.unlink(missing_ok=True)
        if tally is not None:
            tally.end.remote(job.index, frames[0])


def run_batch(args: argparse.Namespace, work: Any = process_input) -> int:
    """The whole batch for parsed ``args``; returns the exit code. ``work`` is the task
    body (tests hand in one that dies on its first attempt)."""
    from stream import cluster
    from stream.options import Options
    from stream.tally import REPORT_SECONDS, Board

    options = Options.from_args(args)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {args.retries}")
    jobs = plan_jobs(expand_inputs(args.inputs), args.outdir, args.ext)
    try:
        args.outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot make the output folder {args.outdir}: {err}") from err
    outcomes: dict[int, Outcome] = {}
    todo = []
    for job in jobs:
        if job.output.exists():
            outcomes[job.index] = Outcome("skipped", note="already there")
        else:
            todo.append(job)
    with cluster.connect(args.address, cpus=args.jobs) as ray:
        fill = cluster.hole_fill(ray, options) if todo else None
        limit = args.jobs or cluster.cpus(ray)
        task = ray.remote(work).options(num_cpus=1, max_retries=args.retries, retry_exceptions=True)
        running: dict[Any, BatchJob] = {}
        with (
            Board(ray, None, "inputs", enabled=not args.quiet) as board,
            cluster.sigint_flag() as interrupted,
        ):
            while (todo or running) and not interrupted.is_set():
                while todo and len(running) < limit:
                    job = replace(todo.pop(0), env=cluster.thread_env())
                    running[task.remote(job, args, fill, board.tally)] = job
                ready, _ = ray.wait(list(running), num_returns=1, timeout=REPORT_SECONDS)
                for ref in ready:
                    job = running.pop(ref)
                    outcomes[job.index] = _outcome(ray, ref, args.retries)
                    board.segment_done()
            if interrupted.is_set():
                _cancel(ray, running)
                for job in [*running.values(), *todo]:
                    outcomes[job.index] = Outcome("cancelled", note="interrupted")
                summary(jobs, outcomes, board.console)
                return EXIT_INTERRUPTED
        if not args.quiet:
            summary(jobs, outcomes, board.console)
    failed = [j for j in jobs if outcomes[j.index].status == "failed"]
    for job in failed:
        log.error("%s: %s", job.input, outcomes[job.index].note)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _outcome(ray: Any, ref: Any, retries: int) -> Outcome:
    """What a finished task gave, its failure after the retries as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if err.cause is not None else err
        line = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        return Outcome("failed", note=f"{type(cause).__name__}: {line} ({retries} retries)")
    except ray.exceptions.RayError as err:  # the worker died each time
        line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return Outcome("failed", note=f"{type(err).__name__} after {retries} retries: {line}")


def _cancel(ray: Any, running: dict[Any, BatchJob]) -> None:
    """Stop the running tasks and remove their partial files (no final name is made)."""
    for ref in running:
        ray.cancel(ref, force=True)
    if running:
        ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT_SECONDS)
    for job in running.values():
        job.partial.unlink(missing_ok=True)


def summary(jobs: list[BatchJob], outcomes: dict[int, Outcome], console: Any) -> None:
    """The table of what happened to each input."""
    from rich.table import Table

    table = Table(title="remaster batch")
    for column in ("input", "status", "frames", "seconds", "note"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        o = outcomes[job.index]
        style = {"done": "green", "skipped": "cyan", "failed": "red"}.get(o.status, "yellow")
        frames = str(o.frames) if o.frames else ""
        seconds = f"{o.seconds:.1f}" if o.seconds else ""
        table.add_row(job.input, f"[{style}]{o.status}", frames, seconds, o.note)
    counts = {s: sum(o.status == s for o in outcomes.values()) for s in ("done", "skipped")}
    failed = sum(o.status == "failed" for o in outcomes.values())
    table.caption = f"{counts['done']} done, {counts['skipped']} skipped, {failed} failed"
    console.print(table)
