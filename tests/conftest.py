"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "cases"
BUILDKITE_SCHEMA = Path(__file__).parent / "data" / "buildkite" / "pipeline-schema.json"
REAL_RUN = Path(__file__).parent / "data" / "real_run"


@pytest.fixture
def cases_copy(tmp_path: Path) -> Path:
    """A writable copy of cases/ (tests mutate YAML here, never in the repo)."""
    target = tmp_path / "cases"
    shutil.copytree(CASES, target)
    return target


def require_tools(*tools: str) -> None:
    """Fail (never skip) when a system tool the test needs is missing: `make test` installs
    them (scripts/system-packages.sh), so a missing one is a broken set-up, not a reason to
    pass quietly."""
    from harness.syspkgs import missing_packages

    missing = missing_packages(tools)
    if missing:
        pytest.fail(f"missing system packages {' '.join(missing)}: run `make test` as root, or "
                    f"apt-get install -y --no-install-recommends {' '.join(missing)}",
                    pytrace=False)


# Real engines (dockerd, registry) shared by every test module, one of each per session.
from tests.engines import docker_base_image, docker_engine, podman_base, registry  # noqa: E402,F401
