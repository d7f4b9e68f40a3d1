"""The real clips in ../shared/data: a test that needs one skips where the folder is
absent, except in CI (``CI=true``), where its absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def shared_data(*parts: str) -> Path:
    """``DATA / parts``; skips the calling test when it is missing, fails it under CI."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        if in_ci():
            pytest.fail(f"{path} is missing: CI runs every test on ../shared/data (see its README)")
        pytest.skip(f"{path} not present (../shared/data)")
    return path
