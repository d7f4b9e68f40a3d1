"""Helpers for tests that run the `remaster` command and look at what it wrote."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av

from tests.shared_data import DATA  # noqa: F401 - re-exported for the CLI tests

ROOT = Path(__file__).resolve().parents[1]
REMASTER = [sys.executable, "-m", "stream.cli"]


def remaster(*args: str, stdin: bytes | None = None, timeout: float = 300):
    """Run the CLI; returns the CompletedProcess with bytes stdout/stderr."""
    return subprocess.run(
        [*REMASTER, *args], input=stdin, capture_output=True, timeout=timeout, cwd=ROOT
    )


@dataclass
class Probe:
    width: int
    height: int
    video_pts: list[int]
    time_base: object
    audio_packets: int
    audio_seconds: float
    streams: list[str]
    frames: list | None = None


def probe(data: bytes | str | Path, keep_frames: bool = False) -> Probe:
    """Decode a whole output (bytes or path): sizes, video pts, audio packet count."""
    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(src) as c:
        streams = [s.type for s in c.streams]
        v = c.streams.video[0]
        pts, frames, audio, audio_end = [], [], 0, 0.0
        for packet in c.demux():
            if packet.stream.type == "audio" and packet.size:
                audio += 1
                if packet.pts is not None:
                    audio_end = max(
                        audio_end, float((packet.pts + packet.duration) * packet.time_base)
                    )
            if packet.stream.type != "video":
                continue
            for frame in packet.decode():
                pts.append(frame.pts)
                if keep_frames:
                    frames.append(frame.to_ndarray(format="rgb24"))
        return Probe(
            v.codec_context.width,
            v.codec_context.height,
            pts,
            v.time_base,
            audio,
            audio_end,
            streams,
            frames if keep_frames else None,
        )
