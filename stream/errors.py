"""The project's errors: one root, the exit code on each class, one mapping for the CLI.

Each error is also the matching builtin (a missing input is a ``FileNotFoundError``, a
closed downstream pipe a ``BrokenPipeError``, a bad option a ``ValueError``), as PyAV's
errors are, so library callers can catch either. :func:`exit_code` is the one place
that turns any exception into the `remaster` command's exit code.
"""

from __future__ import annotations

# Exit codes of the `remaster` command (documented in README.md and `--help`).
EXIT_OK = 0
EXIT_FAILED = 1  # an unexpected error inside remaster (a bug: the traceback is logged)
EXIT_USAGE = 2  # bad command-line options
# input missing, unreadable, not a video, unknown format, non-streamable mp4 on stdin
EXIT_INPUT = 3
EXIT_OUTPUT = 4  # output cannot be written: bad path, unknown format, codec/format mismatch
EXIT_MODEL = 5  # a model (weights, package) or device (CUDA) the options need is missing
EXIT_BROKEN_PIPE = 141  # downstream closed the pipe (128 + SIGPIPE, as shells report it)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); what was written is closed properly


class RemasterError(Exception):
    """Root of all errors remaster reports as one line, without a traceback."""

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
    """A model (weights, an optional package) the options ask for is not available."""

    exit_code = EXIT_MODEL


class DeviceError(ModelError):
    """A device the options ask for (a CUDA GPU) is not available."""


class DownstreamClosedError(RemasterError, BrokenPipeError):
    """The reader of our output went away (e.g. ``| head`` or a closed player)."""

    exit_code = EXIT_BROKEN_PIPE


def exit_code(err: BaseException) -> int:
    """The exit code of the `remaster` command for ``err`` (the one mapping the CLI uses)."""
    if isinstance(err, RemasterError):
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    if isinstance(err, ImportError):  # an optional package a chosen option needs
        return EXIT_MODEL
    return EXIT_FAILED
