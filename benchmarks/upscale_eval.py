"""Upscale stage: CPU speed of both backends at 640x480 -> x2, and before/after crops.

Usage: python benchmarks/upscale_eval.py [--frames N] [--esrgan-frames N] [--out DIR]
                                         [--crops popeye onepiece]

Speed is seconds per frame of ``UpscaleStage(2, backend).process`` on 640x480 frames of
``anime/onepiece_4x3.mp4`` (synthetic frames when the shared data is absent), reported
with the ESRGAN / Lanczos ratio of this run. The crops (source pixels enlarged without
filtering | Lanczos + unsharp | Real-ESRGAN animevideov3) go to ``--out`` as PNG:
``upscale_popeye.png`` (the default) is public domain; ``upscale_onepiece.png`` is
copyrighted material for evaluation only: it is made only on request; do not commit it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.base import VideoInfo, Window  # noqa: E402
from stages.upscale import UpscaleStage, esrgan_available  # noqa: E402
from tests.synthetic import textured_background  # noqa: E402

DATA = (ROOT / ".." / "shared" / "data").resolve()
log = logging.getLogger("upscale_eval")

# (clip, frame index, crop x, y, w, h in source pixels, source resized to this width first)
CROPS = {
    "onepiece": ("anime/onepiece_4x3.mp4", 20, 150, 60, 200, 150, None),
    "popeye": ("popeye/popeye_sinbad_T00-1.mkv", 500, 180, 110, 200, 150, 640),
}


def read_frames(path: Path, count: int, start: int = 0) -> list[np.ndarray]:
    """``count`` RGB frames of ``path`` from frame ``start`` on."""
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def upscale_all(backend: str, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Upscale ``frames`` x2 with ``backend``; return the results and seconds per frame."""
    h, w = frames[0].shape[:2]
    stage = UpscaleStage(2, backend=backend)
    stage.configure(VideoInfo(w, h, Fraction(1, 24)))
    list(stage.process(Window(frames[:1], [0], scene=0)))  # warm-up (model load, caches)
    start = time.perf_counter()
    out = [f.image for f in stage.process(Window(frames, list(range(len(frames))), scene=0))]
    per_frame = (time.perf_counter() - start) / len(frames)
    stage.close()
    return out, per_frame


def speed(n_lanczos: int, n_esrgan: int) -> dict[str, float]:
    clip = DATA / "anime" / "onepiece_4x3.mp4"
    if clip.exists():
        frames = read_frames(clip, max(n_lanczos, n_esrgan))
        source = str(clip.relative_to(DATA))
    else:
        frames = [textured_background(480, 640, seed=i) for i in range(max(n_lanczos, n_esrgan))]
        source = "synthetic"
    result: dict[str, float | str] = {"source": source, "size": "640x480 -> 1280x960"}
    _, result["lanczos_s_per_frame"] = upscale_all("lanczos", frames[:n_lanczos])
    if esrgan_available():
        _, result["esrgan_cpu_s_per_frame"] = upscale_all("esrgan", frames[:n_esrgan])
        ratio = result["esrgan_cpu_s_per_frame"] / result["lanczos_s_per_frame"]
        result["esrgan_over_lanczos"] = ratio
    return result


def crop_panel(name: str, out_dir: Path) -> Path | None:
    """Write ``upscale_<name>.png``: nearest | lanczos | esrgan of one crop, x2."""
    rel, index, x, y, w, h, resize_to = CROPS[name]
    path = DATA / rel
    if not path.exists():
        log.warning("%s absent; no %s crop", path, name)
        return None
    frame = read_frames(path, 1, start=index)[0]
    if resize_to:
        frame = cv2.resize(
            frame,
            (resize_to, round(frame.shape[0] * resize_to / frame.shape[1])),
            interpolation=cv2.INTER_AREA,
        )
    crop = np.ascontiguousarray(frame[y : y + h, x : x + w])
    panels = [cv2.resize(crop, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)]
    labels = ["source (pixels x2)", "lanczos + unsharp"]
    panels.append(upscale_all("lanczos", [crop])[0][0])
    if esrgan_available():
        panels.append(upscale_all("esrgan", [crop])[0][0])
        labels.append("real-esrgan animevideov3")
    for panel, label in zip(panels, labels, strict=True):
        cv2.rectangle(panel, (0, 0), (8 + 9 * len(label), 24), (0, 0, 0), -1)
        cv2.putText(panel, label, (5, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    out = out_dir / f"upscale_{name}.png"
    cv2.imwrite(str(out), cv2.cvtColor(np.hstack(panels), cv2.COLOR_RGB2BGR))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames timed for lanczos")
    parser.add_argument("--esrgan-frames", type=int, default=3, help="frames timed for esrgan")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--crops", nargs="*", choices=sorted(CROPS), default=["popeye"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    result = speed(args.frames, args.esrgan_frames)
    for name in args.crops:
        written = crop_panel(name, args.out)
        if written:
            log.info("wrote %s", written)
    (args.out / "upscale_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    log.info("speed: %s", json.dumps(result))


if __name__ == "__main__":
    main()
