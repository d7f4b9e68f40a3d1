"""What a run does, as one value: the options the stage chain, scenes and encoder are built from.

:class:`Options` is independent of argparse, so the same run can be described by the CLI
(:meth:`Options.from_args`) or built in code (a worker process building the same chain).
Every value is checked once, when an ``Options`` is made: an ``Options`` that exists is
valid, and the check names the command-line option and the bad value (``UsageError``,
exit code 2). Stage and fill names are checked against the registries of
:mod:`stream.wiring`.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from stream.errors import UsageError

DEFAULT_MEMORY_MB = 512  # scene frames in memory: ~110 frames of 1440x1080 RGB
# A new segment (fresh stage chain, see stream/segments.py) starts at the first cut after
# this much video: long enough that film-wide estimates settle, short enough to spread a
# film over a few dozen workers.
DEFAULT_SEGMENT_SECONDS = 300.0
MASKS = ("auto", "u2netp", "maskrcnn")
INTERP_MODELS = ("auto", "rife", "dis", "blend")
UPSCALE_MODELS = ("auto", "esrgan", "lanczos")
UPSCALE_FACTORS = (2, 3, 4)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
REPAIR_PARTS = ("dust", "scratches", "flicker", "grain")
# Options tuning the repair stage: field of Options -> field of RepairSettings
REPAIR_TUNING = ("grain_strength", "dust_threshold", "flicker_radius")


@dataclass(frozen=True)
class Options:
    """Every choice of a run except where the input comes from and the output goes.

    Field names are the command-line options' (``--dump-panoramas`` is
    ``dump_panoramas``); None means "not given" where the option has no default.
    """

    # geometry
    aspect: Fraction = Fraction(16, 9)
    size: tuple[int, int] | None = None
    crop: str = "auto"  # auto, none or W:H:X:Y
    # widening and scenes
    fill: str | None = None  # None: sd with a model, else panorama
    mask: str = "auto"
    dump_panoramas: Path | None = None
    vignette: bool = True
    keep_gate: bool = False
    scene_detector: str = "content"
    scene_threshold: float | None = None
    memory: int = DEFAULT_MEMORY_MB  # MB for the frames of one scene
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS  # 0: the whole video is one segment
    # Stable Diffusion fill, and the device of every model
    model: str | None = None
    prompt: str = ""
    negative_prompt: str = "text, watermark, people, blurry"
    steps: int = 20
    guidance: float = 7.5
    scheduler: str | None = None
    seed: int = 0
    device: str = "auto"
    vram_gb: float = 8.0
    allow_download: bool = False
    allow_cpu: bool = False
    # restoration stages
    process_order: tuple[str, ...] | None = None  # None: every registered stage, in order
    interpolate: int | None = None
    fps: Fraction | None = None
    interp_model: str = "auto"
    upscale: int | None = None
    upscale_model: str = "auto"
    # old-film repair (None: the repair stage's own default)
    repair: bool = False
    repair_skip: tuple[str, ...] = ()  # parts left out: dust, scratches, flicker, grain
    grain_strength: float | None = None
    dust_threshold: float | None = None
    flicker_radius: int | None = None
    # video encoder
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    encoder_opt: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.process_order is not None:
            object.__setattr__(self, "process_order", tuple(self.process_order))
        object.__setattr__(self, "repair_skip", tuple(self.repair_skip))
        object.__setattr__(self, "encoder_opt", tuple(tuple(kv) for kv in self.encoder_opt))
        self._check()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """The options of parsed command-line ``args`` (attributes named as the fields)."""
        given = vars(args)
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})

    @property
    def fill_name(self) -> str:
        """The fill that runs: the one asked for, else ``sd`` with a model, else ``panorama``."""
        return self.fill or ("sd" if self.model else "panorama")

    @property
    def target_aspect(self) -> Fraction:
        """The output's aspect ratio: from ``size`` when given, else ``aspect``."""
        return Fraction(*self.size) if self.size else self.aspect

    def repair_settings(self):
        """The repair stage's settings (a ``stages.repair.RepairSettings``) these options
        give: its defaults, less the parts skipped, with what was tuned."""
        from stages.repair import RepairSettings

        tuned = {k: getattr(self, k) for k in REPAIR_TUNING if getattr(self, k) is not None}
        return RepairSettings(**{part: False for part in self.repair_skip}, **tuned)

    def order(self) -> tuple[str, ...]:
        """Names of the stages in the order they run (the default: registration order)."""
        from stream.wiring import STAGES

        return self.process_order if self.process_order is not None else tuple(STAGES)

    def _check(self) -> None:
        """Raise UsageError naming the option and its bad value; the one check of a run."""
        from stream.scenes import DETECTORS
        from stream.wiring import FILLS, STAGES

        def bad(option: str, why: str, value: Any) -> UsageError:
            return UsageError(f"{option} {why}, got {value!r}")

        if self.aspect <= 0:
            raise bad("--aspect", "must be positive", str(self.aspect))
        if self.size is not None:
            w, h = self.size
            if w <= 0 or h <= 0:
                raise bad("--size", "must be positive", f"{w}x{h}")
            if w % 2 or h % 2:
                # 4:2:0 video (what players take) has half-size colour planes: even sizes only
                near = f"{w - w % 2}x{h - h % 2} or {w + w % 2}x{h + h % 2}"
                raise bad("--size", f"must be even in both directions (e.g. {near})", f"{w}x{h}")
        _check_crop(self.crop)
        if self.fill is not None and self.fill not in FILLS:
            raise bad("--fill", f"must be one of {', '.join(FILLS)}", self.fill)
        for option, value, allowed in (
            ("--mask", self.mask, MASKS),
            ("--scene-detector", self.scene_detector, tuple(DETECTORS)),
            ("--interp-model", self.interp_model, INTERP_MODELS),
            ("--upscale-model", self.upscale_model, UPSCALE_MODELS),
        ):
            if value not in allowed:
                raise bad(option, f"must be one of {', '.join(allowed)}", value)
        if self.scene_threshold is not None and not (
            math.isfinite(self.scene_threshold) and self.scene_threshold >= 0
        ):
            raise bad("--scene-threshold", "must be a number >= 0", self.scene_threshold)
        if self.memory <= 0:
            raise bad("--memory", "must be a positive number of MB", self.memory)
        if not (math.isfinite(self.segment_seconds) and self.segment_seconds >= 0):
            raise bad("--segment-seconds", "must be a number >= 0", self.segment_seconds)
        if self.steps < 1:
            raise bad("--steps", "must be at least 1", self.steps)
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise bad("--guidance", "must be a number >= 0", self.guidance)
        if not (math.isfinite(self.vram_gb) and self.vram_gb > 0):
            raise bad("--vram-gb", "must be a positive number", self.vram_gb)
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise bad("--device", "must be auto, cpu, cuda or cuda:N", self.device)
        if self.interpolate is not None and self.fps is not None:
            raise UsageError("give --interpolate or --fps, not both")
        if self.interpolate is not None and self.interpolate < 2:
            raise bad("--interpolate", "must be 2 or more", self.interpolate)
        if self.fps is not None and self.fps <= 0:
            raise bad("--fps", "must be positive", str(self.fps))
        if self.upscale is not None and self.upscale not in UPSCALE_FACTORS:
            raise bad("--upscale", "must be 2, 3 or 4", self.upscale)
        self._check_repair()
        order = self.order()
        unknown = [n for n in order if n not in STAGES]
        if unknown or len(set(order)) != len(order) or not order:
            raise bad(
                "--process-order",
                f"must list some of {','.join(STAGES)} once each",
                ",".join(order),
            )
        for name, entry in STAGES.items():
            if name not in order and entry.option and entry.wanted(self):
                raise UsageError(
                    f"{entry.option} asks for the {name} stage, but --process-order "
                    f"{','.join(order)} leaves it out; add {name} to it"
                )

    def _check_repair(self) -> None:
        """The repair options: known parts, values the repair stage takes, and only with
        ``--repair``."""
        bad_parts = [p for p in self.repair_skip if p not in REPAIR_PARTS]
        if bad_parts or len(set(self.repair_skip)) != len(self.repair_skip):
            raise UsageError(
                f"--repair-skip must list some of {','.join(REPAIR_PARTS)} once each, "
                f"got {','.join(self.repair_skip)!r}"
            )
        given = [k for k in REPAIR_TUNING if getattr(self, k) is not None]
        if not self.repair and (given or self.repair_skip):
            option = "--" + (given[0] if given else "repair_skip").replace("_", "-")
            raise UsageError(f"{option} tunes the repair stage: add --repair")
        try:
            self.repair_settings()
        except (ValueError, TypeError) as err:
            raise UsageError(f"--{str(err).replace('_', '-')}") from None


def _check_crop(text: str) -> None:
    """``auto``, ``none`` or ``W:H:X:Y`` with a non-empty box."""
    if text in ("auto", "none"):
        return
    parts = text.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--crop must be auto, none or W:H:X:Y, got {text!r}")
    w, h, _, _ = (int(p) for p in parts)
    if w == 0 or h == 0:
        raise UsageError(f"--crop W:H:X:Y needs a width and height above 0, got {text!r}")
