"""Frame side data the output keeps: the display orientation and HDR10 static metadata.

Both are read from the first decoded frame (FFmpeg attaches the stream's display matrix,
mastering display and content light level to every frame). The orientation is applied to
the pictures as ffmpeg does by default, so the output is upright and carries no
rotation; the HDR10 metadata is handed to the encoders that can write it into the
bitstream (x264, x265, SVT-AV1), where every player finds it.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orientation:
    """How to turn a decoded picture upright: one of ffmpeg's transpose modes, and flips.

    ``transpose`` is None or ``clock``, ``cclock``, ``clock_flip``, ``cclock_flip`` (as
    ffmpeg's transpose filter); ``hflip``/``vflip`` mirror the picture.
    """

    transpose: str | None = None
    hflip: bool = False
    vflip: bool = False

    @property
    def swaps_axes(self) -> bool:
        return self.transpose is not None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H, W, C) turned upright, as a contiguous array."""
        if self.transpose == "clock":
            image = np.rot90(image, -1)
        elif self.transpose == "cclock":
            image = np.rot90(image, 1)
        elif self.transpose == "cclock_flip":
            image = image.transpose(1, 0, 2)
        elif self.transpose == "clock_flip":
            image = image[::-1, ::-1].transpose(1, 0, 2)
        if self.hflip:
            image = image[:, ::-1]
        if self.vflip:
            image = image[::-1]
        return np.ascontiguousarray(image)


UPRIGHT = Orientation()


def orientation_from_matrix(matrix: np.ndarray) -> Orientation:
    """ffmpeg's autorotate choice for a display matrix (9 int32, 16.16 fixed point).

    Multiples of 90 degrees and their mirrored forms are applied; another angle is left
    as it is, with a warning (ffmpeg would rotate and pad it)."""
    m = [float(v) / 65536 for v in matrix[:9]]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return UPRIGHT
    # av_display_rotation_get() and fftools' get_rotation(): degrees, clockwise, [0, 360).
    theta = float(-round(-math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return Orientation("cclock_flip" if matrix[3] > 0 else "clock")
    if abs(theta - 180) < 1:
        return Orientation(hflip=bool(matrix[0] < 0), vflip=bool(matrix[4] < 0))
    if abs(theta - 270) < 1:
        return Orientation("clock_flip" if matrix[3] < 0 else "cclock")
    if abs(theta) < 1:
        return Orientation(vflip=bool(matrix[4] < 0))
    log.warning("display rotation of %.0f degrees is not a multiple of 90: ignored", theta)
    return UPRIGHT


def orientation_of(frame: av.VideoFrame) -> Orientation:
    """The orientation the frame's display matrix asks for (upright without one)."""
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX":
            raw = bytes(data)
            if len(raw) >= 36:
                return orientation_from_matrix(np.frombuffer(raw[:36], "<i4"))
    return UPRIGHT


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata.

    ``primaries``: the mastering display's (x, y) chromaticities of red, green, blue and
    its white point; ``luminance``: its (min, max) in cd/m2; ``max_cll``/``max_fall``:
    the content light levels in cd/m2. A part is None when the input has none.
    """

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None
    luminance: tuple[Fraction, Fraction] | None = None
    max_cll: int | None = None
    max_fall: int | None = None


def hdr_of(frame: av.VideoFrame) -> HdrMetadata | None:
    """The frame's mastering-display and content-light side data, None without both."""
    primaries = luminance = max_cll = max_fall = None
    for data in frame.side_data:
        name = data.type.name
        if name == "MASTERING_DISPLAY_METADATA":
            raw = bytes(data)
            if len(raw) < 88:
                continue
            # AVMasteringDisplayMetadata: (x, y) of r, g, b and the white point, then min
            # and max luminance, as AVRationals; then has_primaries and has_luminance.
            v = struct.unpack("<22i", raw[:88])
            q = [Fraction(v[i], v[i + 1]) if v[i + 1] else Fraction(0) for i in range(0, 20, 2)]
            if v[20]:
                primaries = ((q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7]))
            if v[21]:
                luminance = (q[8], q[9])
        elif name == "CONTENT_LIGHT_LEVEL":
            raw = bytes(data)
            if len(raw) >= 8:
                max_cll, max_fall = struct.unpack("<2I", raw[:8])
    if primaries is None and luminance is None and max_cll is None:
        return None
    return HdrMetadata(primaries, luminance, max_cll, max_fall)


def _xy(point: tuple[Fraction, Fraction], scale: int) -> str:
    return f"{round(point[0] * scale)},{round(point[1] * scale)}"


def _x26x_mastering(hdr: HdrMetadata) -> str | None:
    """x264/x265 syntax: chromaticities in units of 0.00002, luminance of 0.0001 cd/m2."""
    if hdr.primaries is None or hdr.luminance is None:
        return None
    r, g, b, white = hdr.primaries
    low, high = hdr.luminance
    return (
        f"G({_xy(g, 50000)})B({_xy(b, 50000)})R({_xy(r, 50000)})WP({_xy(white, 50000)})"
        f"L({round(high * 10000)},{round(low * 10000)})"
    )


def _svt_mastering(hdr: HdrMetadata) -> str | None:
    """SVT-AV1 syntax: chromaticities and luminance as decimals."""
    if hdr.primaries is None or hdr.luminance is None:
        return None

    def xy(p: tuple[Fraction, Fraction]) -> str:
        return f"{float(p[0]):.5f},{float(p[1]):.5f}"

    r, g, b, white = hdr.primaries
    low, high = hdr.luminance
    return f"G({xy(g)})B({xy(b)})R({xy(r)})WP({xy(white)})L({float(high):.4f},{float(low):.4f})"


# Per encoder: its parameter-string option, and the names of the mastering-display and
# content-light keys with the function that writes the mastering value.
HDR_PARAMS = {
    "libx264": ("x264-params", "mastering-display", "cll", _x26x_mastering),
    "libx265": ("x265-params", "master-display", "max-cll", _x26x_mastering),
    "libsvtav1": ("svtav1-params", "mastering-display", "content-light", _svt_mastering),
}


def hdr_encoder_options(codec: str, hdr: HdrMetadata | None) -> dict[str, str]:
    """Encoder options that write ``hdr`` into the bitstream ({} when ``codec`` cannot)."""
    if hdr is None:
        return {}
    if codec not in HDR_PARAMS:
        log.warning("%s cannot carry the input's HDR10 metadata: it is left out", codec)
        return {}
    option, mastering_key, light_key, mastering = HDR_PARAMS[codec]
    parts = []
    if (value := mastering(hdr)) is not None:
        parts.append(f"{mastering_key}={value}")
    if hdr.max_cll is not None:
        parts.append(f"{light_key}={hdr.max_cll},{hdr.max_fall or 0}")
    return {option: ":".join(parts)} if parts else {}
