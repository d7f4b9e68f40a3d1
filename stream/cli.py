"""The `remaster` command: options, logging to stderr, running the chain, exit codes.

Only the standard library and :mod:`stream.errors` are imported at the top: everything
else is imported inside :func:`main`, so a Ctrl-C during start-up ends like any other
(one line, exit code 130) instead of with a traceback from an import.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from stream import errors
from stream.arguments import build_parser

if TYPE_CHECKING:
    from stages.base import HoleFill
    from stream.chain import ChainStats

log = logging.getLogger("remaster")


def _configure_logging(quiet: bool = False, verbose: int = 0) -> None:
    """Log lines to stderr as ``remaster: LEVEL: message``.

    --quiet: errors only; default: warnings; -v and more: everything."""
    from stream.progress import LogHandler  # prints above the progress bar while it is live

    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.DEBUG
    handler = LogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("remaster: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("libav", "av"):
        logging.getLogger(noisy).setLevel(logging.ERROR if verbose < 2 else logging.INFO)


def run(
    args: argparse.Namespace,
    on_progress: Callable[[ChainStats], None] | None = None,
    hole_fill: HoleFill | None = None,
) -> int:
    """Run the whole job for parsed ``args``; returns the exit code. ``on_progress`` gets
    the chain's counts; ``hole_fill`` replaces the options' (see stream.wiring)."""
    from stream import wiring
    from stream.chain import Chain
    from stream.decode import Decoder, open_input
    from stream.encode import Sink, same_file
    from stream.options import Options
    from stream.progress import ProgressBar
    from stream.segments import segmented_chain

    options = Options.from_args(args)
    if getattr(args, "workers", None) is not None:
        from stream.split import run_split

        return run_split(args, options)
    if "-" not in (args.input, args.output) and same_file(args.input, args.output):
        raise errors.UsageError(f"output would overwrite the input {args.input!r}")
    source = open_input(args.input, args.input_format)
    try:
        info = source.info
        log.info(
            "input %dx%d, %s fps, %s frames",
            info.width,
            info.height,
            float(info.frame_rate) if info.frame_rate else "?",
            source.frame_count or "?",
        )
        side_packets: list = []
        decoder = Decoder(source, side_packets.append)
        frames = decoder.frames()
        wanted = wiring.crop_probe_frames(options)
        probe = list(itertools.islice(frames, wanted))
        if wanted and not probe:
            raise errors.InputError(f"{args.input!r}: no video frame could be decoded")
        crop = wiring.choose_crop(options, [f.image for f in probe], info)
        chain = segmented_chain(options, info, crop, hole_fill)
        try:
            sink = Sink(
                args.output,
                chain.infos[-1],
                source.colour,
                source.others,
                fmt=args.format,
                settings=wiring.encoder_settings(options),
                metadata=dict(source.container.metadata),
            )
            for packet in side_packets:
                sink.queue_packet(packet)
            decoder.on_packet = sink.queue_packet
            scenes = wiring.scene_buffer(options, info, chain)
            counted = _Frames(itertools.chain(probe, frames))
            job = Chain(counted, scenes, chain, sink, on_progress)
            with ProgressBar(source.frame_count, enabled=not args.quiet) as bar:
                bar.follow(lambda: counted.decoded, job.stats)
                try:
                    stats = job.run()
                except KeyboardInterrupt:
                    log.error("interrupted; the output written so far was closed properly")
                    return errors.EXIT_INTERRUPTED
                bar.update(stats, force=True)
        finally:
            chain.close()
        log.info("%d frames in, %d out, %d scenes", stats.frames_in, stats.frames_out, stats.scenes)
        return errors.EXIT_OK
    finally:
        source.close()


class _Frames:
    """Adapts an iterator of decoded frames to the chain's ``frames()`` source, counting
    them as the decoder thread takes them (for the progress bar)."""

    def __init__(self, it):
        self._it = it
        self.decoded = 0

    def frames(self):
        for frame in self._it:
            self.decoded += 1
            yield frame


# glibc mallopt parameters: frames are allocated in the decoder thread and freed in
# others; with glibc's defaults the freed frame memory stays in per-thread arenas and peak
# RSS grows with the number of scene windows (measured: 0.95 GB for 30 s, 2.26 GB for
# 150 s of one long 640x480 scene). Two arenas and a fixed mmap threshold keep it flat.
# The threshold is 8 MiB, above a 1080p frame: at 128 KiB every frame-sized temporary was
# a fresh mmap, and the page faults cost the panorama CLI 20 % of its speed (300 frames
# 640x480: 13.9 s wall, 4.0 s system time against 11.2 s and 1.7 s).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MALLOC_SETTINGS = ((M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, 8 << 20), (M_TRIM_THRESHOLD, 64 << 20))


def tune_malloc() -> None:
    """Apply MALLOC_SETTINGS where the C library is glibc; elsewhere do nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        for param, value in MALLOC_SETTINGS:
            libc.mallopt(param, value)
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `remaster` command."""
    try:
        _configure_logging()  # until the options say otherwise
        tune_malloc()
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["batch"]:  # `remaster batch INPUT... -o OUTDIR`
            from stream.batch import run_batch

            args = build_parser(batch=True).parse_args(argv[1:])
            _configure_logging(args.quiet, args.verbose)
            return run_batch(args)
        args = build_parser().parse_args(argv)
        _configure_logging(args.quiet, args.verbose)
        return run(args)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - every error ends as one exit code
        return _report(err)


def _report(err: BaseException) -> int:
    """Say what ended the run, in one line (a traceback only for a bug); its exit code."""
    code = errors.exit_code(err)
    if code == errors.EXIT_BROKEN_PIPE:
        log.info("the output pipe was closed downstream; stopping")
        _silence_stdout()
    elif code == errors.EXIT_INTERRUPTED:
        log.error("interrupted")
    elif isinstance(err, errors.RemasterError):
        log.error("%s", err)
    elif code == errors.EXIT_MODEL:
        log.error("a needed package is missing: %s", err)
    else:
        log.error("internal error (please report it with the command line)", exc_info=err)
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's exit flush cannot fail again."""
    try:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
