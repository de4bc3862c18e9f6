"""Launch the worker on this host, in the current Python environment (the CPU platform)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.host.launch.start_worker import WorkerOutcome, pytest_argv
from harness.runinfo import git_env
from harness.spec.case import Platform


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
    progress: str = "off"  # the worker's live progress mode (harness.worker.progress.MODES)
    stream_engine_log: bool = False
    # vLLM tests trees (harness.testtree.cache_root) when a vllm_tests job runs: the worker
    # picks the tree of the vLLM it finds; containers get it read-only.
    tests_cache: Path | None = None

    def worker_options(self) -> list[str]:
        """Worker (pytest) options every launcher passes. No capture: the worker's progress
        lines must reach the terminal while a job runs, not in pytest's report after it."""
        options = ["--capture=no", "--harness-progress", self.progress]
        return options + (["--harness-stream-engine-log"] if self.stream_engine_log else [])

    def file_suffix(self) -> str:
        return "" if self.shard is None else f"-{self.shard}"

    def junit_name(self) -> str:
        return f"junit-{self.platform.name}{self.file_suffix()}.xml"


LAUNCH_ENV = "HARNESS_LAUNCH"  # how the worker was launched: recorded in every result


class LocalLaunch:
    """The worker in this Python environment: the CPU platform, or any platform ``in_place``.

    In place, a container platform's cases run right here (typically inside a vLLM container
    the user started) against the vLLM installed here, with the platform's capabilities,
    environment and model source; no container is started, and every result says so.
    """

    def __init__(self, request: WorkerRequest, in_place: bool = False):
        self.request = request
        self.in_place = in_place

    def argv(self) -> list[str]:
        r = self.request
        results = r.results_dir.resolve()
        return pytest_argv(
            sys.executable, platform=r.platform.name,
            case_files=[str(p.resolve()) for p in r.case_files],
            results=str(results), run_id=r.run_id, keyword=r.keyword,
            junit=str(results / r.run_id / r.platform.name / r.junit_name()),
            platforms_file=str(r.platforms_file.resolve()),
            extra=["--rootdir", str(r.repo.resolve()), *r.worker_options(),
                   *(["--harness-vllm-tests", str(r.tests_cache.resolve())]
                     if r.tests_cache is not None else [])])

    @property
    def launch(self) -> str:
        return "in-place" if self.in_place else "local"

    def workdir(self) -> Path:
        return self.request.repo  # pytest's rootdir: the checkout

    def prepare(self) -> str | None:
        return None  # nothing to fetch: this host's environment is the platform

    def env(self) -> dict[str, str]:
        # One git commit and dirty flag per run, taken here (the host), read by every job.
        return {**os.environ, **git_env(self.request.repo), LAUNCH_ENV: self.launch}

    def on_stop(self) -> None:
        pass  # the worker's process group is stopped by run_worker

    def describe(self, outcome: WorkerOutcome) -> dict:
        return {"fingerprint": {"launch": self.launch, "container_started_by_harness": False}}

    def reproduce(self) -> str:
        return " ".join(self.argv())
