"""A rich progress bar on stderr, and the log handler that prints above it while it is live.

The bar counts frames as they are read (decoded, from the first one) and shows how many
were written and at what rate; rich's own thread redraws it from live counts
(:meth:`ProgressBar.follow`), so it moves while a long scene buffers or a stage works.
Log lines written while it is live go through its console (:class:`LogHandler`), which
prints them above the bar instead of into its line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

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


class LogHandler(logging.StreamHandler):
    """Writes log records to a stream (stderr), or through a rich console while a progress
    bar is live there (:class:`ProgressBar` sets :attr:`console`)."""

    def __init__(self, stream: Any = None):
        super().__init__(stream if stream is not None else sys.stderr)
        self.console: Console | None = None

    def emit(self, record: logging.LogRecord) -> None:
        console = self.console
        if console is None:
            super().emit(record)
            return
        try:
            console.print(
                self.format(record), markup=False, highlight=False, emoji=False, soft_wrap=True
            )
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


class _Progress(Progress):
    """A Progress that brings its task up to date before each redraw."""

    before_render: Callable[[], None] | None = None

    def get_renderables(self):
        if self.before_render is not None:
            self.before_render()
        yield from super().get_renderables()


class ProgressBar:
    """Shows chain progress; does nothing when disabled or stderr is not a terminal."""

    def __init__(self, total: int | None, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = enabled and (console is not None or sys.stderr.isatty())
        self.total = total
        self._last = 0.0
        self._start = time.monotonic()
        self._progress: _Progress | None = None
        self._task = None
        self._handlers: list[LogHandler] = []
        self._decoded: Callable[[], int] | None = None
        self._stats: ChainStats | None = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            columns = [
                TextColumn("[bold]remaster"),
                BarColumn(),
                MofNCompleteColumn() if self.total else TextColumn("{task.completed}"),
                TextColumn("read, {task.fields[written]} written, {task.fields[fps]:.1f} fps"),
                TextColumn("scene {task.fields[scenes]}"),
                TimeElapsedColumn(),
            ]
            if self.total:
                columns.append(TimeRemainingColumn())
            self._progress = _Progress(
                *columns,
                console=self.console,
                transient=False,
                refresh_per_second=1 / REFRESH_SECONDS,
                redirect_stdout=False,  # stdout may carry the video
            )
            self._progress.before_render = self._sync
            self._progress.start()
            self._task = self._progress.add_task(
                "video", total=self.total, written=0, fps=0.0, scenes=0
            )
            self._handlers = [h for h in logging.getLogger().handlers if isinstance(h, LogHandler)]
            for handler in self._handlers:
                handler.console = self.console
        return self

    def follow(self, decoded: Callable[[], int], stats: ChainStats) -> None:
        """Count ``decoded()`` frames and ``stats``' scenes at every redraw."""
        self._decoded, self._stats = decoded, stats

    def _sync(self) -> None:
        if self._decoded is not None and self._stats is not None:
            self._show(self._stats)

    def _show(self, stats: ChainStats) -> None:
        """Frames read (decoded, from the first one), frames written and their rate."""
        if self._progress is None:
            return
        read = max(self._decoded() if self._decoded is not None else 0, stats.frames_in)
        fps = stats.frames_out / max(1e-6, time.monotonic() - self._start)
        self._progress.update(
            self._task, completed=read, written=stats.frames_out, fps=fps, scenes=stats.scenes
        )

    def update(self, stats: ChainStats, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < REFRESH_SECONDS:
            return
        self._last = now
        self._show(stats)

    def __exit__(self, *exc) -> None:
        for handler in self._handlers:
            handler.console = None
        self._handlers = []
        if self._progress is not None:
            self._progress.stop()
