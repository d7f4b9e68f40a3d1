"""Per-scene image work: motion, foreground, panorama, fill, resample, and the other stages."""

from stages.base import Frame, HoleFill, Stage, StageChain, VideoInfo, Window

__all__ = ["Frame", "HoleFill", "Stage", "StageChain", "VideoInfo", "Window"]
