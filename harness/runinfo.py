"""What the host (orchestrator) and the worker both need to say where and when a run happened.

Below both ``harness.host.execute``/``harness.host.launch`` and ``harness.worker``, so neither side
reaches into the other's internals. The git state is taken once per run, on the host, and
handed to the worker by environment (a container has no .git), so every result of a run
names the same commit and dirty flag.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

BUILDKITE_FIELDS = {
    "build_number": "BUILDKITE_BUILD_NUMBER",
    "commit": "BUILDKITE_COMMIT",
    "build_url": "BUILDKITE_BUILD_URL",
    "job_id": "BUILDKITE_JOB_ID",
    "parallel_job": "BUILDKITE_PARALLEL_JOB",
    "parallel_job_count": "BUILDKITE_PARALLEL_JOB_COUNT",
    "pipeline": "BUILDKITE_PIPELINE_SLUG",
    "branch": "BUILDKITE_BRANCH",
    "retry_count": "BUILDKITE_RETRY_COUNT",
    "agent_name": "BUILDKITE_AGENT_NAME",  # the node, with the hostname (repeats, signatures)
}
# The host's name, handed to a worker in a container: a container's own hostname may be its id.
HOSTNAME_ENV = "HARNESS_HOSTNAME"
GIT_COMMIT_ENV = "HARNESS_GIT_COMMIT"
GIT_DIRTY_ENV = "HARNESS_GIT_DIRTY"
GIT_TIMEOUT_S = 10


def now() -> str:
    """UTC, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def hostname() -> str:
    return os.environ.get(HOSTNAME_ENV) or platform.node()


def buildkite_fields(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {key: environ[var] for key, var in BUILDKITE_FIELDS.items() if var in environ}


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_state(repo: Path, environ: dict[str, str] | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout; the launcher's values win where .git is not mounted."""
    environ = os.environ if environ is None else environ
    if environ.get(GIT_COMMIT_ENV):
        dirty = environ.get(GIT_DIRTY_ENV)
        return environ[GIT_COMMIT_ENV], None if dirty is None else dirty == "1"
    head = _git(repo, "rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None, None
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None or status.returncode != 0 else bool(status.stdout.strip())
    return head.stdout.strip(), dirty


def git_commit(repo: Path) -> str | None:
    return git_state(repo)[0]


def git_env(repo: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The run's git state as environment for the worker (host side, once per run)."""
    commit, dirty = git_state(repo, environ)
    if commit is None:
        return {}
    return {GIT_COMMIT_ENV: commit, **({} if dirty is None else {GIT_DIRTY_ENV: str(int(dirty))})}
