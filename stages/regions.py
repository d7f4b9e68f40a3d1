"""Where each output frame sits on the scene canvas, and what of it the panorama lacks.

Output pixel (u, v) of a widened frame is frame pixel (u - offset, v); the frame's
transform ``H`` takes it to reference coordinates and the canvas matrix on to the canvas.
"""

from __future__ import annotations

import cv2
import numpy as np


def side_offset(in_width: int, out_width: int) -> int:
    """Columns added on the left (the original picture is centred)."""
    if out_width < in_width:
        raise ValueError(f"output width {out_width} is narrower than input {in_width}")
    return (out_width - in_width) // 2


def view_to_canvas(H: np.ndarray, canvas_from_ref: np.ndarray, offset: int) -> np.ndarray:
    """3x3 matrix taking output-frame pixel coordinates to canvas coordinates."""
    shift = np.array([[1, 0, -offset], [0, 1, 0], [0, 0, 1.0]])
    return canvas_from_ref @ H @ shift


def view_polygons(
    Hs: list[np.ndarray], canvas_from_ref: np.ndarray, out_width: int, height: int, offset: int
) -> list[np.ndarray]:
    """Each output frame's outline on the canvas, (4, 2) float64."""
    corners = np.float64([[0, 0], [out_width, 0], [out_width, height], [0, height]])[None]
    return [
        cv2.perspectiveTransform(corners, view_to_canvas(H, canvas_from_ref, offset))[0] for H in Hs
    ]


def needed(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Canvas pixels inside any output view (bool (h, w))."""
    m = np.zeros(shape, np.uint8)
    for p in polygons:
        cv2.fillConvexPoly(m, np.round(p * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    return m > 0


def uncovered(known: np.ndarray, view: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Output-frame pixels (bool (h, w) for ``out_size`` (w, h)) the canvas mask ``known``
    does not cover, with ``view`` from :func:`view_to_canvas`."""
    cover = cv2.warpPerspective(
        known.astype(np.uint8) * 255, view, out_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    return cover < 128
