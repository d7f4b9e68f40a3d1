"""The progress bar: live counts of frames read, and log lines printed above it."""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from stream.chain import ChainStats
from stream.progress import LogHandler, ProgressBar

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def lines_of(text: str) -> list[str]:
    """What a terminal shows line by line (carriage returns redraw a line)."""
    return [part.strip() for part in re.split(r"[\r\n]", ANSI.sub("", text)) if part.strip()]


@pytest.fixture
def terminal():
    """A console on a fake terminal, and a root LogHandler writing to the same terminal."""
    buf = io.StringIO()
    handler = LogHandler(buf)
    handler.setFormatter(logging.Formatter("remaster: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield buf, Console(file=buf, force_terminal=True, width=120)
    root.removeHandler(handler)


def test_bar_counts_frames_read_without_being_told(terminal):
    buf, console = terminal
    read = [0]
    stats = ChainStats()
    with ProgressBar(152, console=console) as bar:
        bar.follow(lambda: read[0], stats)
        read[0], stats.frames_out = 57, 3  # the decoder ran ahead; the stage is still busy
        bar._progress.refresh()  # what rich's refresh thread does
    shown = lines_of(buf.getvalue())
    assert any("57/152 read, 3 written" in line for line in shown), shown


def test_log_lines_go_above_the_live_bar_not_into_it(terminal):
    buf, console = terminal
    with ProgressBar(100, console=console) as bar:
        bar.update(ChainStats(frames_in=5), force=True)
        bar._progress.refresh()
        logging.getLogger("stages.test").warning("something to say")
    shown = lines_of(buf.getvalue())
    assert "remaster: WARNING: something to say" in shown, shown
    assert not any("something" in line and "read" in line for line in shown)
    # after the bar, the handler writes to its stream again
    logging.getLogger("stages.test").warning("afterwards")
    assert buf.getvalue().endswith("remaster: WARNING: afterwards\n")
