"""One progress display on the driver, fed by Ray workers.

Workers report frames done to a :class:`Tally` actor through a :class:`Reporter` (at most
every ``REPORT_SECONDS``, without waiting for an answer); the driver's :class:`Board`
reads the tally from a thread and draws a rich display on stderr: a row per input (or
segment) being worked on, and a total row with frames, fps and ETA.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
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
from stream.progress import LogHandler

# How often a worker sends its frame count, and the driver redraws (seconds).
REPORT_SECONDS = 0.5


class Tally:
    """Frames done per item (an input, a segment); a Ray actor that workers report to."""

    def __init__(self) -> None:
        # key -> [name, total frames or None, frames done, finished, start time]
        self._items: dict[Any, list[Any]] = {}

    def begin(self, key: Any, name: str, total: int | None) -> None:
        self._items[key] = [name, total, 0, False, time.monotonic()]  # a retry starts again

    def add(self, key: Any, frames: int) -> None:
        if key in self._items:
            self._items[key][2] = frames

    def end(self, key: Any, frames: int) -> None:
        if key in self._items:
            self._items[key][2:4] = [frames, True]

    def snapshot(self) -> dict[Any, tuple[str, int | None, int, bool, float]]:
        """key -> (name, total, frames done, finished, frames per second)."""
        now = time.monotonic()
        return {
            key: (name, total, done, ended, done / max(1e-6, now - began))
            for key, (name, total, done, ended, began) in self._items.items()
        }


class Reporter:
    """A worker's side: sends its chain's frame count to the tally (``tally`` None: off)."""

    def __init__(self, tally: Any, key: Any, name: str, total: int | None):
        self.tally, self.key = tally, key
        self._last = 0.0
        if tally is not None:
            tally.begin.remote(key, name, total)

    def update(self, stats: ChainStats) -> None:
        now = time.monotonic()
        if self.tally is not None and now - self._last >= REPORT_SECONDS:
            self._last = now
            self.tally.add.remote(self.key, stats.frames_in)

    def done(self, stats: ChainStats) -> None:
        if self.tally is not None:
            self.tally.end.remote(self.key, stats.frames_in)


class Board:
    """The driver's display of a :class:`Tally` it starts; off unless stderr is a terminal
    (or a ``console`` is given). ``total`` is the frames of the whole job when known."""

    def __init__(
        self,
        ray: Any,
        total: int | None,
        unit: str,
        enabled: bool = True,
        console: Console | None = None,
    ):
        self.ray, self.total, self.unit = ray, total, unit
        self.console = console or Console(stderr=True)
        self.enabled = enabled and (console is not None or sys.stderr.isatty())
        self.tally = ray.remote(num_cpus=0)(Tally).remote() if self.enabled else None
        self.finished = 0  # items the driver is done with
        self._rows: dict[Any, Any] = {}
        self._handlers: list[LogHandler] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None
        self._start = time.monotonic()

    def __enter__(self) -> Board:
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:.1f} fps"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            # log lines go above the display while it is live (as with the single run's bar)
            self._handlers = [h for h in logging.getLogger().handlers if isinstance(h, LogHandler)]
            for handler in self._handlers:
                handler.console = self.console
            self._all = self._progress.add_task("[bold]total", total=self.total, fps=0.0)
            self._thread = threading.Thread(target=self._poll, name="remaster-board", daemon=True)
            self._thread.start()
        return self

    def segment_done(self, frames: int = 0, seconds: float = 0.0) -> None:
        """The driver has finished with one more item (muxed a segment, got an input)."""
        self.finished += 1

    def _poll(self) -> None:
        while not self._stop.wait(REPORT_SECONDS):
            try:
                items = self.ray.get(self.tally.snapshot.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - a missed redraw is no error
                continue
            self.draw(items)

    def draw(self, items: dict[Any, tuple[str, int | None, int, bool, float]]) -> None:
        """Redraw from a tally snapshot."""
        progress = self._progress
        if progress is None:
            return
        done = sum(item[2] for item in items.values())
        known = sum(item[1] or 0 for item in items.values())
        fps = done / max(1e-6, time.monotonic() - self._start)
        total = self.total or known or None
        label = f"[bold]total[/] ({self.finished} {self.unit} done)"
        progress.update(self._all, completed=done, total=total, fps=fps, description=label)
        for key, (name, count, frames, ended, rate) in items.items():
            row = self._rows.get(key)
            if ended:
                if row is not None:
                    progress.remove_task(row)
                    self._rows[key] = None
                continue
            if key not in self._rows:
                self._rows[key] = progress.add_task(name, total=count, fps=0.0)
            elif row is None:
                continue
            progress.update(self._rows[key], completed=frames, fps=rate)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._progress is not None:
            self._progress.stop()
        for handler in self._handlers:
            handler.console = None
