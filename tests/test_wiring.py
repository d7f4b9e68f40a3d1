"""Options -> stage chain: the registries, one device choice, errors and their exit codes."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from stages.base import Frame, Stage, VideoInfo, Window
from stages.interpolate import DisInterpolator, InterpolateStage
from stream import errors, wiring
from stream.options import Options
from tests.clitools import ROOT

INFO = VideoInfo(640, 480, Fraction(1, 25), Fraction(25))


@pytest.mark.parametrize(
    "err, code, builtin",
    [
        (errors.UsageError("x"), 2, ValueError),
        (errors.InputError("x"), 3, ValueError),
        (errors.InputNotFoundError("x"), 3, FileNotFoundError),
        (errors.OutputError("x"), 4, OSError),
        (errors.ModelError("x"), 5, RuntimeError),
        (errors.DeviceError("x"), 5, RuntimeError),
        (errors.DownstreamClosedError("x"), 141, BrokenPipeError),
    ],
)
def test_each_error_is_its_builtin_and_carries_its_exit_code(err, code, builtin):
    assert isinstance(err, errors.RemasterError) and isinstance(err, builtin)
    assert err.exit_code == code == errors.exit_code(err)


def test_device_errors_are_model_errors_and_other_exceptions_map_once():
    assert issubclass(errors.DeviceError, errors.ModelError)
    assert errors.exit_code(KeyboardInterrupt()) == 130
    assert errors.exit_code(BrokenPipeError()) == 141
    assert errors.exit_code(ModuleNotFoundError("onnxruntime")) == 5
    assert errors.exit_code(ZeroDivisionError()) == 1


class Mark(Stage):
    """A stage that tags each frame's top-left pixel (to see it ran, and in which order)."""

    buffers_scenes = False

    def __init__(self, value: int):
        self.value = value

    def process(self, window: Window):
        for img, pts in zip(window.frames, window.pts, strict=True):
            img = img.copy()
            img[0, 0, 0] = self.value
            yield Frame(img, pts)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch):
    """The registries, restored after the test."""
    monkeypatch.setattr(wiring, "STAGES", dict(wiring.STAGES))
    monkeypatch.setattr(wiring, "FILLS", dict(wiring.FILLS))


def test_a_new_stage_registers_in_one_place_and_can_run_first(registry):
    wiring.register_stage("repair", "fix damage", lambda o: o.seed == 7, "--seed 7", first=True)(
        lambda o: Mark(200)
    )
    assert Options().order() == ("repair", "outpaint", "upscale", "interpolate")
    chain = wiring.build_chain(Options(seed=7, fill="blur"), INFO)
    assert [type(s).__name__ for s in chain.stages] == ["Mark", "BlurPillarbox"]
    assert [type(s).__name__ for s in wiring.build_chain(Options(fill="blur"), INFO).stages] == [
        "BlurPillarbox"
    ]  # not asked for: skipped
    with pytest.raises(errors.UsageError, match="--seed 7 asks for the repair stage"):
        Options(seed=7, process_order=("outpaint",))
    with pytest.raises(errors.UsageError, match="repair,outpaint,upscale,interpolate"):
        Options(process_order=("outpaint", "nosuch"))


def test_a_new_hole_fill_registers_with_the_panorama_stage(registry):
    from stages.base import HoleFill

    class Grey(HoleFill):
        def __call__(self, image, known):
            out = image.copy()
            out[~known] = 128
            return out

    wiring.register_hole_fill("grey", "flat grey")(lambda o: Grey())
    stage = wiring.build_chain(Options(fill="grey"), INFO).stages[0]
    assert isinstance(stage.fill, Grey)
    with pytest.raises(errors.UsageError, match="--fill must be one of"):
        Options(fill="nosuch")


def test_options_check_names_the_option_and_value():
    for kwargs, named in (
        ({"memory": 0}, "--memory must be a positive number of MB, got 0"),
        ({"memory": -5}, "got -5"),
        ({"crop": "0:0:0:0"}, "--crop W:H:X:Y needs a width and height above 0"),
        ({"size": (427, 241)}, "--size must be even.*428x242.*got '427x241'"),
        ({"interpolate": 1}, "--interpolate must be 2 or more, got 1"),
        ({"device": "gpu"}, "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ({"upscale": 2, "process_order": ("outpaint",)}, "--upscale asks for the upscale stage"),
        ({"fps": Fraction(30), "process_order": ("outpaint", "upscale")}, "add interpolate"),
    ):
        with pytest.raises(errors.UsageError, match=named):
            Options(**kwargs)
    assert Options(size=(428, 242)).target_aspect == Fraction(214, 121)


def test_rife_is_built_by_the_wiring_and_handed_in(monkeypatch: pytest.MonkeyPatch):
    import gpu.weights

    chain = wiring.build_chain(Options(fill="blur", interpolate=2, interp_model="dis"), INFO)
    stage = chain.stages[-1]
    assert isinstance(stage, InterpolateStage) and isinstance(stage.interpolator, DisInterpolator)
    monkeypatch.setattr(gpu.weights, "rife_available", lambda: False)
    assert isinstance(wiring.make_interpolator("auto", "cpu"), DisInterpolator)


def test_interpolation_and_rife_modules_do_not_import_each_other():
    code = (
        "import sys\n"
        "import stages.interpolate\n"
        "assert not [m for m in sys.modules if m.startswith('gpu')], 'stage imports gpu'\n"
        "import gpu.weights\n"
        "assert 'torch' not in sys.modules, 'gpu.weights imports torch'\n"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    source = (ROOT / "gpu" / "rife.py").read_text()
    assert "stages.interpolate" not in source


def test_resolve_device_is_one_choice(monkeypatch: pytest.MonkeyPatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert wiring.resolve_device("auto") == "cpu"
    assert wiring.resolve_device("cpu") == "cpu"
    with pytest.raises(errors.DeviceError, match="--device cuda:1"):
        wiring.resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert wiring.resolve_device("auto") == "cuda"
    assert wiring.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(errors.DeviceError):
        wiring.resolve_device("cuda:2")


def test_missing_u2netp_weights_is_a_model_error(monkeypatch: pytest.MonkeyPatch):
    from stages import segment

    def missing():
        raise FileNotFoundError("u2netp weights not found: install it with `pip ...`")

    monkeypatch.setattr(segment, "u2netp_weights", missing)
    with pytest.raises(errors.ModelError, match="u2netp weights not found") as info:
        wiring.build_chain(Options(mask="u2netp"), INFO)
    assert errors.exit_code(info.value) == 5


def test_sd_fill_without_a_gpu_names_allow_cpu(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(wiring, "resolve_device", lambda device: "cpu")
    with pytest.raises(errors.DeviceError, match="--model.*--allow-cpu") as info:
        wiring.build_chain(Options(fill="sd"), INFO)
    assert errors.exit_code(info.value) == 5
    with pytest.raises(errors.DeviceError, match="GPU; no GPU is here: pass --allow-cpu"):
        wiring.build_chain(Options(fill="sd", model="./sd"), INFO)


def test_sd_fill_without_a_model_names_model(monkeypatch: pytest.MonkeyPatch, tmp_path):
    pytest.importorskip("diffusers")
    monkeypatch.setattr(wiring, "resolve_device", lambda device: "cpu")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: the default is not there
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.ModelError, match="--model") as info:
        wiring.build_chain(Options(fill="sd", allow_cpu=True), INFO)
    assert str(info.value).startswith("--fill sd without --model tries")


def test_crop_choice(monkeypatch: pytest.MonkeyPatch):
    frames = [np.zeros((480, 640, 3), np.uint8) for _ in range(4)]
    for f in frames:
        f[:, 80:560] = np.random.default_rng(0).integers(40, 255, (480, 480, 3))
    assert wiring.choose_crop(Options(crop="none"), frames, INFO) is None
    box = wiring.choose_crop(Options(), frames, INFO)
    assert (box.w, box.h, box.x, box.y) == (480, 480, 80, 0)
    with pytest.raises(errors.InputError, match="outside the 640x480 picture"):
        wiring.choose_crop(Options(crop="600:480:80:0"), frames, INFO)


def test_already_wide_input_says_so(caplog: pytest.LogCaptureFixture):
    wide = VideoInfo(854, 480, Fraction(1, 25), Fraction(25))
    with caplog.at_level("WARNING"):
        chain = wiring.build_chain(Options(fill="blur"), wide)
    assert (chain.infos[-1].width, chain.infos[-1].height) == (854, 480)
    assert "already as wide as 16:9 or wider" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        wiring.build_chain(Options(fill="blur", aspect=Fraction(1, 2)), INFO)
    assert "640x480, already as wide as 1:2" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        wiring.build_chain(Options(fill="blur"), INFO)
    assert not caplog.text
