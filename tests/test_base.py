"""StageChain: peeks reach the stage that uses them, through a crop, and infos per stage."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stages.base import StageChain, VideoInfo
from stages.crop import CropBox, CropStage
from stages.outpaint import PanoramaOutpaint
from stages.upscale import UpscaleStage
from stream.scenes import SceneBuffer, make_detector
from tests.synthetic import cut_clip

W, H = 160, 120
BOX = CropBox(W, H, 24, 8)  # the picture inside black bars


def boxed(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame inside black bars: 24 px left and right, 8 px top and bottom."""
    out = []
    for f in frames:
        big = np.zeros((H + 16, W + 48, 3), np.uint8)
        big[BOX.y : BOX.y + H, BOX.x : BOX.x + W] = f
        out.append(big)
    return out


def run(chain: StageChain, frames: list[np.ndarray], peek: bool) -> list[np.ndarray]:
    chain.configure(VideoInfo(frames[0].shape[1], frames[0].shape[0], Fraction(1, 24)))
    buf = SceneBuffer(
        make_detector(), Fraction(24), 30 * frames[0].nbytes, chain.peek if peek else None
    )
    out = []
    for i, f in enumerate(frames):
        for win in buf.push(f, i):
            out += [fr.image for fr in chain.process(win)]
    for win in buf.flush():
        out += [fr.image for fr in chain.process(win)]
    out += [fr.image for fr in chain.finish()]
    chain.close()
    return out


def test_outpaint_registrar_gets_peeks_behind_a_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import registrar

    frames, _ = cut_clip([24, 16])
    frames = boxed(frames)
    peeked, seen = [], []
    peek, see = PanoramaOutpaint.peek, registrar.Registrar.see
    monkeypatch.setattr(PanoramaOutpaint, "peek", lambda st, *a: (peeked.append(1), peek(st, *a)))
    monkeypatch.setattr(registrar.Registrar, "see", lambda r, im: (seen.append(1), see(r, im)))

    chain = StageChain([CropStage(BOX), PanoramaOutpaint(Fraction(16, 9))])
    assert chain.uses_peeks
    ahead = run(chain, frames, peek=True)
    # every frame reached the outpaint stage ahead, cropped, and was registered once: the
    # frames its windows brought were the very ones it had peeked at
    assert len(peeked) == len(frames)
    assert len(seen) == len(frames)
    assert not chain.stages[0]._ahead  # the crop gave back every frame it showed ahead
    plain = run(StageChain([CropStage(BOX), PanoramaOutpaint(Fraction(16, 9))]), frames, False)
    assert len(ahead) == len(plain) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(ahead, plain, strict=True))


def test_peeks_stop_at_a_stage_that_cannot_say_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    peeked = []
    monkeypatch.setattr(PanoramaOutpaint, "peek", lambda st, *a: peeked.append(1))
    chain = StageChain([UpscaleStage(2, backend="lanczos"), PanoramaOutpaint(Fraction(16, 9))])
    chain.configure(VideoInfo(W, H, Fraction(1, 24)))
    chain.peek(np.zeros((H, W, 3), np.uint8), 0, True)
    assert not peeked  # the upscaled frame is not known ahead: the stage registers later
    chain.close()


def test_configure_keeps_each_stage_s_format() -> None:
    chain = StageChain([CropStage(BOX), UpscaleStage(2, backend="lanczos")])
    out = chain.configure(VideoInfo(W + 48, H + 16, Fraction(1, 24)))
    assert [(i.width, i.height) for i in chain.infos] == [(208, 136), (160, 120), (320, 240)]
    assert out is chain.infos[-1]
