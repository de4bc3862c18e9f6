"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "cases"
SHARED = REPO.parent / "shared"
REAL_RUN = Path(__file__).parent / "data" / "real_run"


@pytest.fixture
def cases_copy(tmp_path: Path) -> Path:
    """A writable copy of cases/ (tests mutate YAML here, never in the repo)."""
    target = tmp_path / "cases"
    shutil.copytree(CASES, target)
    return target


def shared_file(relative: str) -> Path:
    """A file from ../shared (data the project is given); skip loudly when it is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"../shared/{relative} missing: this test reads the project's shared data "
                    f"from {SHARED}")
    return path
