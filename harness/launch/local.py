"""Launch the worker on this host, in the current Python environment (the CPU platform)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.launch.worker import WorkerOutcome, pytest_argv
from harness.runinfo import git_env
from harness.spec import Platform


@dataclass
class WorkerRequest:
    """What to run, in host terms; each launcher maps it to its own paths."""

    platform: Platform
    case_files: list[Path]
    platforms_file: Path
    results_dir: Path
    run_id: str
    keyword: str | None
    repo: Path
    shard: int | None = None  # Buildkite parallel job index: keeps shards' files apart

    def file_suffix(self) -> str:
        return "" if self.shard is None else f"-{self.shard}"

    def junit_name(self) -> str:
        return f"junit-{self.platform.name}{self.file_suffix()}.xml"


class LocalLaunch:
    def __init__(self, request: WorkerRequest):
        self.request = request

    def argv(self) -> list[str]:
        r = self.request
        results = r.results_dir.resolve()
        return pytest_argv(
            sys.executable, platform=r.platform.name,
            case_files=[str(p.resolve()) for p in r.case_files],
            results=str(results), run_id=r.run_id, keyword=r.keyword,
            junit=str(results / r.run_id / r.platform.name / r.junit_name()),
            platforms_file=str(r.platforms_file.resolve()),
            extra=["--rootdir", str(r.repo.resolve())])

    def prepare(self) -> str | None:
        return None  # nothing to fetch: this host's environment is the platform

    def env(self) -> dict[str, str]:
        # One git commit and dirty flag per run, taken here (the host), read by every job.
        return {**os.environ, **git_env(self.request.repo)}

    def on_stop(self) -> None:
        pass  # the worker's process group is stopped by run_worker

    def describe(self, outcome: WorkerOutcome) -> dict:
        return {}

    def reproduce(self) -> str:
        return " ".join(self.argv())
