"""A rich progress bar on stderr: input frames, fps, ETA when the length is known, scenes."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from stream.chain import ChainStats

# Redraw at most this often (seconds): a redraw per frame would cost more than a frame.
REFRESH_SECONDS = 0.25


class ProgressBar:
    """Shows chain progress; does nothing when disabled or stderr is not a terminal."""

    def __init__(self, total: int | None, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = enabled and (console is not None or sys.stderr.isatty())
        self.total = total
        self._last = 0.0
        self._start = time.monotonic()
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            columns = [
                TextColumn("[bold]remaster"),
                BarColumn(),
                MofNCompleteColumn() if self.total else TextColumn("{task.completed} frames"),
                TextColumn("{task.fields[fps]:.1f} fps"),
                TextColumn("scene {task.fields[scenes]}"),
                TimeElapsedColumn(),
            ]
            if self.total:
                columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("video", total=self.total, fps=0.0, scenes=0)
        return self

    def update(self, stats: ChainStats, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < REFRESH_SECONDS:
            return
        self._last = now
        fps = stats.frames_in / max(1e-6, now - self._start)
        self._progress.update(self._task, completed=stats.frames_in, fps=fps, scenes=stats.scenes)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
