"""Errors the CLI turns into one clear line on stderr and a documented exit code.

Each error is also the matching builtin (a missing input is a ``FileNotFoundError``, a
closed downstream pipe a ``BrokenPipeError``), so library callers can catch either.
"""

from __future__ import annotations

# Exit codes of the `remaster` command (documented in README.md and `--help`).
EXIT_OK = 0
EXIT_FAILED = 1  # an unexpected error inside remaster (a bug: the traceback is logged)
EXIT_USAGE = 2  # bad command-line options
EXIT_INPUT = (
    3  # input missing, unreadable, not a video, unknown format, non-streamable mp4 on stdin
)
EXIT_OUTPUT = 4  # output cannot be written: bad path, unknown format, codec/format mismatch
EXIT_MODEL = 5  # a model (weights, CUDA) needed by the chosen options is not available
EXIT_BROKEN_PIPE = 141  # downstream closed the pipe (128 + SIGPIPE, as shells report it)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); what was written is closed properly


class RemasterError(Exception):
    """Base of all errors remaster reports without a traceback."""

    exit_code = EXIT_FAILED


class UsageError(RemasterError, ValueError):
    """An option value that cannot work (found after parsing)."""

    exit_code = EXIT_USAGE


class InputError(RemasterError, ValueError):
    """The input cannot be used as a video source."""

    exit_code = EXIT_INPUT


class InputNotFoundError(InputError, FileNotFoundError):
    """The input path does not exist."""


class OutputError(RemasterError, OSError):
    """The output cannot be opened or written."""

    exit_code = EXIT_OUTPUT


class ModelError(RemasterError, RuntimeError):
    """A model or device the options ask for is not available."""

    exit_code = EXIT_MODEL


class DownstreamClosedError(RemasterError, BrokenPipeError):
    """The reader of our output went away (e.g. ``| head`` or a closed player)."""

    exit_code = EXIT_BROKEN_PIPE
