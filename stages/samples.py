"""Which frames of a window go into the background panorama, and with which neighbour
each is compared for motion of its own: pure functions of the window's motions."""

from __future__ import annotations

import numpy as np

from stages.motion import Motion

# besides the evenly spaced samples, one whenever the camera has moved this share of the
# frame width since the last sample: fast pans get the samples their views need
SAMPLE_STEP = 0.1
# frames between a sample and the frame it is compared with for motion of its own: long
# enough for a slow character to move, short enough for the view to overlap
MOTION_GAP = 8


def choose_samples(
    motions: list[Motion], width: int, height: int, max_samples: int, step: float = SAMPLE_STEP
) -> list[int]:
    """The window's sample frames: ``max_samples`` evenly spaced, plus one wherever the
    frame centre has moved ``step`` of the width from the last sample (at most
    ``max_samples`` of those, evenly spread)."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    n = len(motions)
    even = {round(k) for k in np.linspace(0, n - 1, min(max_samples, n))}
    centre = np.array([width / 2, height / 2, 1.0])
    centres = np.array([m.H @ centre for m in motions])
    centres = centres[:, :2] / centres[:, 2:]  # each frame's centre on the reference
    extra, last = [], centres[0]
    for i in range(n):
        if i in even:
            last = centres[i]
        elif np.hypot(*(centres[i] - last)) > step * width:
            extra.append(i)
            last = centres[i]
    if len(extra) > max_samples:
        extra = [extra[round(k)] for k in np.linspace(0, len(extra) - 1, max_samples)]
    return sorted(even | set(extra))


def motion_neighbours(
    samples: list[int], ok: list[bool], to_ref: list[np.ndarray], gap: int = MOTION_GAP
) -> list[tuple[int, np.ndarray] | None]:
    """For each sample frame, a registered frame ``gap`` later (earlier near the window's
    end) and the matrix taking the sample's pixels to that frame's (``to_ref``: each
    frame's pixel -> reference matrix); None where there is none."""
    n = len(ok)
    out: list[tuple[int, np.ndarray] | None] = []
    for i in samples:
        j = i + gap if i + gap < n else i - gap
        if 0 <= j < n and ok[j]:
            out.append((j, np.linalg.inv(to_ref[j]) @ to_ref[i]))
        else:
            out.append(None)
    return out
