"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "cases"
BUILDKITE_SCHEMA = Path(__file__).parent / "data" / "buildkite" / "pipeline-schema.json"
REAL_RUN = Path(__file__).parent / "data" / "real_run"

# A shell runs background jobs (`make test &`, nohup) with SIGINT ignored, and an ignored signal
# stays ignored across exec: every harness the tests start would then shrug off the Ctrl-C the
# interruption tests send (seen: a bisect ran to its end). A handler, unlike SIG_IGN, is reset
# to the default in exec'd children, so they get Ctrl-C as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
    from tests.syspkgs import missing_packages

    missing = missing_packages(tools)
    if missing:
        pytest.fail(f"missing system packages {' '.join(missing)}: run `make test` as root, or "
                    f"apt-get install -y --no-install-recommends {' '.join(missing)}",
                    pytrace=False)


# Real engines (dockerd, registry) shared by every test module, one of each per session.
from tests.engines import docker_base_image, docker_engine, podman_base, registry  # noqa: E402,F401
from tests.vllm_images import nightlies, vllm_standin  # noqa: E402,F401
# The rehearsal's nights, once per session for every module that asserts on them (a session
# fixture imported into two test modules is two fixtures, built twice). A plugin, as
# tests/rehearsal.py imports this file.
pytest_plugins = ["tests.rehearsal"]
@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL 15 server per test process (tests/pgserver.py)."""
    require_tools("postgresql")
    from tests.pgserver import running_postgres

    with running_postgres() as server:
        yield server


STORE_KINDS = ["sqlite", "postgresql"]


def _store_factory(request, tmp_path_factory):
    if request.param == "sqlite":
        counter = iter(range(1, 1000))
        root = tmp_path_factory.mktemp("store")
        return lambda: str(root / f"history-{next(counter)}.sqlite")
    server = request.getfixturevalue("postgres_server")
    return server.new_database


@pytest.fixture(params=STORE_KINDS)
def new_store(request, tmp_path_factory):
    """A function giving a fresh, empty history store target of this test's kind: an SQLite
    path, or the URL of a new database on the real PostgreSQL server."""
    return _store_factory(request, tmp_path_factory)


@pytest.fixture(scope="module", params=STORE_KINDS)
def module_store(request, tmp_path_factory):
    """``new_store`` for module-scoped fixtures."""
    return _store_factory(request, tmp_path_factory)
