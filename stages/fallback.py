"""The per-frame fallback: a widened frame filled from its own pixels alone.

Where the panorama cannot be trusted (a frame that belongs to no background segment,
registration that fails on most frames), the sides come from a fill of the frame itself
instead: a :class:`stages.base.HoleFill` handed in, per frame.
"""

from __future__ import annotations

import numpy as np

from stages.base import HoleFill
from stages.gate import GatePatch


class FallbackRenderer:
    """Widened frames filled from their own pixels by a :class:`HoleFill` (per frame)."""

    def __init__(self, fill: HoleFill, in_width: int, out_width: int, height: int):
        if not isinstance(fill, HoleFill):
            raise TypeError(f"fill must be a HoleFill, got {type(fill).__name__}")
        if in_width <= 0 or height <= 0 or out_width < in_width:
            raise ValueError(f"bad geometry: in {in_width}, out {out_width}, height {height}")
        self.fill = fill
        self.in_width, self.out_width, self.height = in_width, out_width, height
        self.offset = (out_width - in_width) // 2

    def render(self, frame: np.ndarray, gate: GatePatch | None = None) -> np.ndarray:
        """The widened frame, its sides filled from the rest of the frame; with ``gate``
        (the film gate inside the picture) the fill also runs under the gate and is
        feathered in there."""
        h, w, ox = self.height, self.in_width, self.offset
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {(h, w, 3)}, got {frame.dtype} {frame.shape}")
        image = np.zeros((h, self.out_width, 3), np.uint8)
        image[:, ox : ox + w] = frame
        known = np.zeros((h, self.out_width), bool)
        known[:, ox : ox + w] = True if gate is None else ~gate.mask
        out = self.fill(image, known)
        if gate is not None:
            for rows, cols in gate.rects:
                at = (rows, slice(ox + cols.start, ox + cols.stop))
                out[at] = gate.blend(frame, out[at], (rows, cols))
        return out
