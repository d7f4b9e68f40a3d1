"""The scene display (filled panorama, canvas moves) and the fill's submit contract."""

from __future__ import annotations

import numpy as np
import pytest

from stages.base import HoleFill
from stages.display import SceneDisplay
from stages.fill import ClassicalFill
from stages.panorama import ScenePanorama


class Grey(HoleFill):
    """Fills holes with one level; raises on request."""

    def __init__(self, level: int = 77, error: Exception | None = None):
        self.level, self.error, self.calls = level, error, 0

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.error is not None:
            raise self.error
        out = image.copy()
        out[~known] = self.level
        return out


def test_default_submit_fills_at_once_and_hands_errors_over_in_the_future():
    image, known = np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), bool)
    known[:, :2] = True
    fill = Grey()
    future = fill.submit(image, known)
    assert future.done() and fill.calls == 1 and not fill.in_background
    assert (future.result()[:, 2:] == 77).all() and (future.result()[:, :2] == 0).all()
    bad = Grey(error=MemoryError("too big")).submit(image, known)
    assert bad.done()
    with pytest.raises(MemoryError, match="too big"):
        bad.result()
    assert not ClassicalFill().in_background


def frame(level: int, h: int = 20, w: int = 30) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def add(display: SceneDisplay, level: int, x: float) -> None:
    """Composite one frame at reference x offset ``x`` into the display."""
    H = np.array([[1, 0, x], [0, 1, 0], [0, 0, 1.0]])
    old = display.canvas
    display.pano.grow(np.array([x - 10, 0, x + 40, 20.0]), 1.0, (1000, 1000))
    updated = display.pano.add([frame(level)], [H], [np.ones((20, 30), bool)], [0.0])
    display.absorb(updated, old)


def views(display: SceneDisplay, x0: float, x1: float) -> list[np.ndarray]:
    """A view outline on the canvas covering reference columns x0..x1."""
    c = display.canvas
    assert c is not None
    u0, u1 = x0 - c.x0, x1 - c.x0
    return [np.float64([[u0, 0], [u1, 0], [u1, 20], [u0, 20]])]


def test_fills_only_what_the_views_need_and_keeps_it_when_the_canvas_moves():
    d = SceneDisplay(3, ScenePanorama())
    add(d, 200, 0.0)
    fill = Grey(77)
    d.fill_views(views(d, -10, 40), 4, fill, lambda: np.zeros(3))
    img = d.settle()
    c = d.canvas
    assert c is not None and fill.calls == 1
    assert (img[:, : int(-c.x0) - 1] == 77).all()  # the hole left of the frame: filled
    assert (img[:, int(-c.x0) + 1 : int(-c.x0) + 29] == 200).all()  # real background
    add(d, 100, -30.0)  # the camera moved left: the canvas grows to the left
    img = d.settle()
    c2 = d.canvas
    assert c2 is not None and c2.x0 < c.x0
    start = int(-c2.x0)  # where the old frame's real pixels are now
    assert (img[:, start + 1 : start + 29] == 200).all()
    assert (img[:, start - 29 : start - 1] == 100).all()  # the new frame's
    d.fill_views(views(d, -28, 38), 4, fill, lambda: np.zeros(3))
    assert fill.calls == 1  # all shown already: nothing new needs a fill
    d.fill_views(views(d, -40, 38), 4, fill, lambda: np.zeros(3))
    assert fill.calls == 2 and (d.settle()[:, :8] == 77).all()  # left of everything seen


def test_detach_keeps_the_image_a_held_back_window_renders_from():
    d = SceneDisplay(0, ScenePanorama())
    add(d, 200, 0.0)
    d.fill_views(views(d, -10, 40), 4, Grey(77), lambda: np.zeros(3))
    held = d.detach()
    before = held.copy()
    add(d, 50, 0.0)  # new real background over the same place
    assert np.array_equal(held, before)
    assert (d.settle() == 50).any()


def test_nothing_shown_gives_the_mean_colour_not_a_fill():
    d = SceneDisplay(0, ScenePanorama())
    d.pano.grow(np.array([0, 0, 30, 20.0]), 1.0, (1000, 1000))
    d.absorb(np.zeros((20, 30), bool), None)
    fill = Grey()
    d.fill_views(views(d, 0, 30), 4, fill, lambda: np.array([10.0, 20.0, 30.0]))
    assert fill.calls == 0
    assert (d.settle() == [10, 20, 30]).all()
    with pytest.raises(RuntimeError, match="absorb"):
        SceneDisplay(1, ScenePanorama()).fill_views([], 0, fill, lambda: np.zeros(3))
