"""Clips and methods of the outpaint eval: the dev set on disk, lossless pipes through the
CLI, the in-process baselines (blurred pillarbox, per-frame Telea), contact sheets."""

from __future__ import annotations

import io
import logging
import shlex
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from benchmarks.metrics import side_columns

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SHEET_TILE_WIDTH = 280
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Short names for the dev clips (file stem -> alias); other clips go by their stem.
ALIASES = {
    "tennis_frames": "tennis",
    "anime2d_static_girl_with_doll_park": "doll_park",
    "anime2d_static_lvcd_girl_on_fence": "fence",
    "cuts_avengers_airport_239": "avengers_239",
    "live_aerial_city_dusk_dolly": "aerial",
    "live_pan_rollercoaster_sky_fastmotion": "rollercoaster",
    "live_static_woman_dog_courtyard": "courtyard",
    "live_tracking_parkour_fastmotion": "parkour",
    "lowtex_handheld_plane_in_sky_zoomout": "plane",
    "overlay_tennis_broadcast_score_logo": "broadcast",
}


def find_clips(folder: Path) -> dict[str, Path]:
    """The clips in ``folder`` by name (alias or stem), sorted by name: every video file
    and every sub-folder holding .jpg/.png frames."""
    if not folder.is_dir():
        return {}
    found = {}
    for p in sorted(folder.iterdir()):
        is_frames = p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())
        if is_frames or (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
            found[ALIASES.get(p.stem, p.stem)] = p
    return dict(sorted(found.items()))


def even(x: float) -> int:
    """Nearest even integer, at least 2."""
    return max(2, 2 * round(x / 2))


def load_clip(path: Path, max_frames: int | None = None) -> tuple[list[np.ndarray], Fraction]:
    """RGB frames of a video file or a folder of images (sorted), and the frame rate."""
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be >= 2 or None, got {max_frames}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no .jpg/.png frames in {path}")
        frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[:max_frames]]
        return frames, Fraction(24)
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(24)
        for vf in container.decode(stream):
            frames.append(vf.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) == max_frames:
                break
    if not frames:
        raise ValueError(f"no video frames decoded from {path}")
    return frames, Fraction(rate)


def scale_frames(frames: list[np.ndarray], max_width: int = 854) -> list[np.ndarray]:
    """Frames scaled down (never up) to at most ``max_width`` wide, both sides even."""
    h, w = frames[0].shape[:2]
    s = min(1.0, max_width / w)
    size = (even(w * s), even(h * s))
    if size == (w, h):
        return frames
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def encode_nut(frames: Sequence[np.ndarray], rate: Fraction, pix_fmt: str = "bgr0") -> bytes:
    """Lossless FFV1 in a NUT container, in memory (bgr0: RGB survives bit-exactly)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="nut") as out:
        stream = out.add_stream("ffv1", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf.reformat(format=pix_fmt)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode_nut(data: bytes) -> list[np.ndarray]:
    """RGB frames of the first video stream of NUT bytes."""
    with av.open(io.BytesIO(data), format="nut") as container:
        return [vf.to_ndarray(format="rgb24") for vf in container.decode(video=0)]


def cli_command(cli: Sequence[str], width: int, height: int, fill: str) -> list[str]:
    """The remaster command line reading NUT on stdin and writing FFV1/NUT on stdout."""
    return [
        *cli, "-", "-", "--input-format", "nut", "-f", "nut", "--codec", "ffv1",
        "--crop", "none", "--size", f"{width}x{height}", "--fill", fill, "--quiet",
    ]  # fmt: skip


def run_cli(data: bytes, cmd: Sequence[str], timeout: float) -> bytes:
    """Pipe ``data`` through ``cmd`` (run in the repository root); its stdout, or an error."""
    log.info("running %s", shlex.join(cmd))
    proc = subprocess.run(
        list(cmd), input=data, capture_output=True, cwd=REPO, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-1500:]
        raise RuntimeError(f"exit status {proc.returncode}: {tail}")
    return proc.stdout


def blur_pillarbox(frame: np.ndarray, width: int) -> np.ndarray:
    """The picture scaled to cover ``width``, Gaussian-blurred, with the original on top.

    The blur (sigma = height / 20) runs at a quarter of the size, which looks the same
    and costs a sixteenth.
    """
    h, w = frame.shape[:2]
    left, right = side_columns(width, w)
    tall = max(h, round(h * width / w))
    top = (tall - h) // 2
    cover = cv2.resize(frame, (width, tall), interpolation=cv2.INTER_LINEAR)[top : top + h]
    small = cv2.resize(cover, (max(1, width // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, h / 80), borderType=cv2.BORDER_REFLECT)
    out = cv2.resize(small, (width, h), interpolation=cv2.INTER_LINEAR)
    out[:, left:right] = frame
    return out


def telea(frame: np.ndarray, width: int) -> np.ndarray:
    """The side columns filled by OpenCV's Telea inpainting (radius 3), one frame alone."""
    h, w = frame.shape[:2]
    left, right = side_columns(width, w)
    canvas = np.zeros((h, width, 3), np.uint8)
    canvas[:, left:right] = frame
    mask = np.full((h, width), 255, np.uint8)
    mask[:, left:right] = 0
    out = cv2.inpaint(canvas, mask, 3, cv2.INPAINT_TELEA)
    out[:, left:right] = frame
    return out


def contact_sheet(
    rows: dict[str, list[np.ndarray]], left: int, right: int, tile_width: int = SHEET_TILE_WIDTH
) -> np.ndarray:
    """RGB sheet, one labelled row per method, the seams marked by ticks at top and bottom."""
    h, w = next(iter(rows.values()))[0].shape[:2]
    th = max(2, round(h * tile_width / w))
    sx = tile_width / w
    gap = 4
    lines = []
    for label, frames in rows.items():
        tiles = []
        for f in frames:
            t = cv2.resize(f, (tile_width, th), interpolation=cv2.INTER_AREA)
            for x in (round(left * sx), round(right * sx)):
                cv2.line(t, (x, 0), (x, 6), (255, 255, 0), 1)
                cv2.line(t, (x, th - 7), (x, th - 1), (255, 255, 0), 1)
            tiles.append(t)
            tiles.append(np.full((th, gap, 3), 255, np.uint8))
        line = np.hstack(tiles[:-1])
        cv2.putText(line, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
        cv2.putText(line, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        lines += [line, np.full((gap, line.shape[1], 3), 255, np.uint8)]
    return np.vstack(lines[:-1])


def tint_never_seen(frame: np.ndarray, seen: np.ndarray, left: int, right: int) -> np.ndarray:
    """The frame with its never-seen side pixels tinted red, seen ones left as they are."""
    out = frame.copy()
    never = ~seen
    never[:, left:right] = False
    out[never] = (0.5 * out[never] + [127, 0, 0]).astype(np.uint8)
    return out
