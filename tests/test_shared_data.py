"""The real clips are there in CI; the helper skips locally and fails in CI when they are not."""

from __future__ import annotations

import pytest

from tests import shared_data as sd


def test_shared_data_is_present():
    """Fails in CI (CI=true) when ../shared/data is missing; skips elsewhere."""
    assert sd.shared_data().is_dir()
    assert sd.shared_data("gt").is_dir()


def test_missing_data_skips_locally_and_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sd, "DATA", tmp_path / "no-such-folder")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        sd.shared_data("gt", "skater.mp4")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="skater.mp4 is missing"):
        sd.shared_data("gt", "skater.mp4")
    (tmp_path / "no-such-folder" / "gt").mkdir(parents=True)
    assert sd.shared_data("gt") == tmp_path / "no-such-folder" / "gt"
