"""Damaged inputs made in code, and a fork server that runs the command on each of them.

The corpus starts from short, small re-encodes of the two CC0 fixture clips (both carry
audio) in four containers, and damages them deterministically (one seeded generator):
truncations, byte flips in the container header and in the payload, zeroed packets,
cut-out and repeated byte ranges, and swapped containers (bytes of one format named or
forced as another).

``python -m tests.fuzzing JOBS RESULTS`` imports the command once, then forks a child per
job that runs ``stream.cli.main`` with stdin, stdout and stderr on the job's files, two
at a time; a child that runs past its time limit is killed and counted as a hang. A fork
costs milliseconds where a fresh interpreter costs seconds of imports.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The corpus clips: a second of picture and sound, small enough that a run takes well
# under a second, large enough for the scene detector and the crop probe to work.
CLIP_FRAMES, CLIP_W, CLIP_H, CLIP_FPS = 24, 128, 96, 24

# Base clip name -> (fixture, container, extension, video codec, audio codec).
BASES = {
    "friday_mp4": ("friday_4x3.mp4", "mp4", ".mp4", "libx264", "aac"),
    "rabbit_mkv": ("rabbit_4x3.mp4", "matroska", ".mkv", "libx264", "libopus"),
    "friday_nut": ("friday_4x3.mp4", "nut", ".nut", "mpeg4", "pcm_s16le"),
    "rabbit_ts": ("rabbit_4x3.mp4", "mpegts", ".ts", "libx264", "mp2"),
}
FORMAT_OF_EXTENSION = {".mp4": "mp4", ".mkv": "matroska", ".nut": "nut", ".ts": "mpegts"}


@dataclass
class Job:
    """One run of the command: its arguments and the files on its stdin/stdout/stderr."""

    name: str
    argv: list[str]
    input_path: str  # the damaged bytes (also what ffprobe counts)
    input_format: str | None  # forced with --input-format (and ffprobe -f)
    stdin: str | None  # file on stdin, or None
    stdout: str  # file on stdout
    stderr: str
    output: str  # the video written: a path, or the stdout file
    timeout: float = 60.0
    details: dict = field(default_factory=dict)


def _fixture_media(name: str) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The fixture's first CLIP_FRAMES pictures (resized) and the matching audio (s16)."""
    frames, audio, rate = [], [], 44100
    with av.open(str(FIXTURES / name)) as c:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="rgb24")
            frames.append(cv2.resize(img, (CLIP_W, CLIP_H), interpolation=cv2.INTER_AREA))
            if len(frames) == CLIP_FRAMES:
                break
    with av.open(str(FIXTURES / name)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        want = rate * CLIP_FRAMES // CLIP_FPS
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=rate)
        got = 0
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                audio.append(f.to_ndarray().reshape(-1, 2))
                got += f.samples
            if got >= want:
                break
    return frames, np.concatenate(audio)[:want], rate


def encode_base(name: str, folder: Path) -> bytes:
    """One base clip of the corpus (deterministic: one thread), written in ``folder``."""
    fixture, fmt, ext, vcodec, acodec = BASES[name]
    frames, samples, rate = _fixture_media(fixture)
    path = folder / f"{name}{ext}"
    options = {"movflags": "faststart"} if fmt == "mp4" else {}  # readable from a pipe
    with av.open(str(path), "w", format=fmt, options=options) as out:
        v = out.add_stream(vcodec, rate=CLIP_FPS)
        v.width, v.height, v.pix_fmt = CLIP_W, CLIP_H, "yuv420p"
        v.codec_context.thread_count = 1
        if vcodec == "libx264":
            v.options = {"preset": "veryfast", "g": "12"}
        out_rate = 48000 if acodec == "libopus" else rate
        a = out.add_stream(acodec, rate=out_rate)
        a.layout = "stereo"
        formats = [f.name for f in a.codec_context.codec.audio_formats or ()]
        a.format = "s16" if "s16" in formats or not formats else formats[0]
        a.codec_context.thread_count = 1
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            for p in v.encode(vf):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        src = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).copy(), format="s16", layout="stereo"
        )
        src.sample_rate, src.pts, src.time_base = rate, 0, Fraction(1, rate)
        size = a.codec_context.frame_size or 1024
        resampler = av.AudioResampler(
            format=a.format.name, layout="stereo", rate=out_rate, frame_size=size
        )
        for frame in [*resampler.resample(src), *resampler.resample(None)]:
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path.read_bytes()


def _packet_spans(data: bytes, fmt: str) -> list[tuple[int, int]]:
    """(offset, size) of each packet in ``data``, where the demuxer says."""
    spans = []
    with av.open(io.BytesIO(data), format=fmt) as c:
        for packet in c.demux():
            if packet.size and packet.pos is not None and packet.pos >= 0:
                spans.append((packet.pos, packet.size))
    return spans


def _header_span(data: bytes, fmt: str) -> tuple[int, int]:
    """Where the container header is: the moov box of an mp4, else the first bytes."""
    if fmt == "mp4":
        pos = 0
        while pos + 8 <= len(data):
            size, kind = struct.unpack(">I4s", data[pos : pos + 8])
            if kind == b"moov":
                return pos, pos + size
            if size < 8:
                break
            pos += size
    return 0, min(len(data), 1500)


def damage(base: str, data: bytes, rng: np.random.Generator) -> list[tuple[str, bytes, dict]]:
    """The damaged variants of one base clip: (kind, bytes, details)."""
    fmt = BASES[base][1]
    spans = _packet_spans(data, fmt)
    head = _header_span(data, fmt)
    out: list[tuple[str, bytes, dict]] = []

    def flips(lo: int, hi: int, n: int) -> tuple[bytes, list[int]]:
        buf = bytearray(data)
        where = sorted(int(x) for x in rng.integers(lo, hi, n))
        for pos in where:
            buf[pos] ^= int(rng.integers(1, 256))
        return bytes(buf), where

    for _ in range(12):
        cut = int(rng.integers(1, len(data)))
        out.append(("truncate", data[:cut], {"at": cut}))
    for _ in range(10):
        buf, where = flips(head[0], head[1], int(rng.integers(1, 9)))
        out.append(("header_flip", buf, {"at": where}))
    for _ in range(12):
        buf, where = flips(head[1] if head[0] == 0 else 0, len(data), int(rng.integers(1, 21)))
        out.append(("payload_flip", buf, {"at": where}))
    for _ in range(8):
        buf = bytearray(data)
        chosen = sorted(int(i) for i in rng.choice(len(spans), int(rng.integers(1, 4)), False))
        for i in chosen:
            pos, size = spans[i]
            buf[pos : pos + size] = bytes(size)
        out.append(("zero_packets", bytes(buf), {"packets": chosen}))
    for _ in range(4):
        a = int(rng.integers(0, len(data) - 1))
        b = min(len(data), a + int(rng.integers(16, 8192)))
        out.append(("cut_range", data[:a] + data[b:], {"range": [a, b]}))
    for _ in range(4):
        a = int(rng.integers(0, len(data) - 1))
        b = min(len(data), a + int(rng.integers(16, 8192)))
        out.append(("repeat_range", data[:b] + data[a:b] + data[b:], {"range": [a, b]}))
    return out


def make_jobs(work: Path, seed: int = 13) -> list[Job]:
    """The whole corpus as jobs, every file written under ``work``."""
    rng = np.random.default_rng(seed)
    (work / "bases").mkdir(parents=True)
    bases = {name: encode_base(name, work / "bases") for name in BASES}
    inputs: list[tuple[str, str, bytes, str | None, str, dict]] = []
    for base, data in bases.items():
        ext = BASES[base][2]
        for k, (kind, buf, details) in enumerate(damage(base, data, rng)):
            inputs.append((f"{base}-{kind}-{k}", ext, buf, None, base, details))
    # Swapped containers: one format's bytes named, or forced, as another.
    names = list(bases)
    for base in names:
        for other in names:
            if other == base:
                continue
            ext = BASES[other][2]
            inputs.append((f"{base}-named{ext}", ext, bases[base], None, base, {}))
            forced = FORMAT_OF_EXTENSION[ext]
            inputs.append(
                (f"{base}-forced-{forced}", BASES[base][2], bases[base], forced, base, {})
            )
    outputs = [("out.mkv", None), ("out.mp4", None), ("-", "nut"), ("-", "matroska")]
    jobs = []
    for i, (name, ext, buf, forced, base, details) in enumerate(inputs):
        folder = work / f"{i:03d}"
        folder.mkdir(parents=True)
        src = folder / f"in{ext}"
        src.write_bytes(buf)
        piped = bool(rng.integers(0, 2))
        target, fmt = outputs[int(rng.integers(0, len(outputs)))]
        argv = ["-" if piped else str(src)]
        argv.append(target if target == "-" else str(folder / target))
        argv += ["--fill", "blur", "--quiet", "--preset", "ultrafast"]
        argv += ["--crop", "auto" if rng.integers(0, 2) else "none"]
        if fmt:
            argv += ["-f", fmt]
        if forced:
            argv += ["--input-format", forced]
        stdout = folder / "stdout.bin"
        jobs.append(
            Job(
                name=name,
                argv=argv,
                input_path=str(src),
                input_format=forced,
                stdin=str(src) if piped else None,
                stdout=str(stdout),
                stderr=str(folder / "stderr.txt"),
                output=str(stdout) if target == "-" else str(folder / target),
                details={"base": base, **details},
            )
        )
    return jobs


# -- counting frames, for the check ---------------------------------------------------
def ffprobe_frames(path: str, fmt: str | None = None, piped: bool = False) -> int | None:
    """Frames ``ffprobe -count_frames`` decodes from the first video stream (None: it
    cannot read the file); ``piped`` feeds the file on stdin, as the command got it."""
    cmd = ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
    cmd += ["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"]
    cmd += ["-f", fmt] if fmt else []
    with open(path if piped else os.devnull, "rb") as stdin:
        result = subprocess.run(
            [*cmd, "-" if piped else path], stdin=stdin, capture_output=True, timeout=60
        )
    text = result.stdout.decode().strip().split("\n")[0].strip(",")
    return int(text) if text.isdigit() else None


def pyav_frames(path: str, fmt: str | None = None, strict: bool = False) -> int | None:
    """The same count with the FFmpeg libraries remaster uses (PyAV's, which may be newer
    than the ffprobe installed): every packet decoded on one thread, reading stops at the
    first error as ffprobe's does. None when the file cannot be opened, or with
    ``strict`` (an output, which must play cleanly) when any packet fails."""
    try:
        container = av.open(path, format=fmt, metadata_errors="replace")
    except (av.error.FFmpegError, ValueError, OSError):
        return None
    with container:
        if not container.streams.video:
            return None
        video = container.streams.video[0]
        video.codec_context.thread_type = "SLICE"
        count, packets = 0, container.demux(video)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return count
            except (av.error.FFmpegError, ValueError, OSError):
                return None if strict else count
            try:
                count += len(video.decode(packet))
            except (av.error.FFmpegError, ValueError, OSError):
                if strict:
                    return None


# -- the fork server --------------------------------------------------------------------
# What a --fill blur run imports (the command imports most of it inside main, so that a
# Ctrl-C during start-up is not a traceback): loaded once here, not in every child.
PRELOAD = (
    "stream.cli",
    "stream.wiring",
    "stream.chain",
    "stream.decode",
    "stream.encode",
    "stream.options",
    "stream.progress",
    "stream.scenes",
    "stages.blur",
    "stages.crop",
    "stages.motion",
    "stages.upscale",
    "scenedetect",
    "rich",
)


def _child(job: dict) -> None:
    """In the forked child: run the command on the job's files and exit with its code."""
    code = 1
    try:
        fds = [
            os.open(job["stdin"] or os.devnull, os.O_RDONLY),
            os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ]
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        from stream.cli import main

        code = main(job["argv"])
    except SystemExit as err:  # argparse
        code = err.code if isinstance(err.code, int) else 2
    except BaseException:  # noqa: BLE001 - reported as a traceback, which fails the test
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code if isinstance(code, int) else 1)


def serve(jobs: list[dict], parallel: int = 2) -> list[dict]:
    """Run every job in a forked child, ``parallel`` at a time; exit codes and hangs."""
    for module in PRELOAD:  # imported once, before the forks
        importlib.import_module(module)

    results: dict[int, dict] = {}
    running: dict[int, tuple[int, float]] = {}  # pid -> (job index, start)
    pending = list(range(len(jobs)))
    while pending or running:
        while pending and len(running) < parallel:
            index = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(jobs[index])
            running[pid] = (index, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.01)
            for pid, (index, start) in list(running.items()):
                if time.monotonic() - start > jobs[index]["timeout"]:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    del running[pid]
                    results[index] = {"code": None, "hang": True, "seconds": jobs[index]["timeout"]}
            continue
        index, start = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        results[index] = {"code": code, "hang": False, "seconds": time.monotonic() - start}
    return [results[i] for i in range(len(jobs))]


def write_jobs(jobs: list[Job], path: Path) -> None:
    path.write_text(json.dumps([asdict(j) for j in jobs]))


if __name__ == "__main__":
    jobs_file, results_file = sys.argv[1:3]
    job_list = json.loads(Path(jobs_file).read_text())
    Path(results_file).write_text(json.dumps(serve(job_list)))
