"""Execute a plan on one platform: launch the worker, wait, and account for every job.

A job whose worker died, overran or was interrupted before writing its result gets one written
here, from the worker's log, so the run directory always holds one result per planned job.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.launch.local import LocalLaunch, WorkerRequest
from harness.launch.worker import WorkerOutcome, run_worker
from harness.plan import Job
from harness.proc import read_tail
from harness.results import (Expect, LogInfo, Result, ResultFileError, read_result, result_path,
                             tail, write_result)
from harness.secrets import redact
from harness.worker.job import now

PYTEST_NO_TESTS = 5
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INFRA = 0, 1, 2, 3


@dataclass
class PlatformRun:
    platform: str
    run_dir: Path
    results: list[Result]
    outcome: WorkerOutcome
    exit_code: int


def make_launch(request: WorkerRequest, engine: str | None = None, gpus: str | None = None,
                in_place: bool = False):
    if in_place or request.platform.launcher == "local":
        return LocalLaunch(request, in_place=in_place)
    from harness.launch.container import ContainerLaunch

    return ContainerLaunch(request, engine=engine, gpus=gpus)


def execute(jobs: list[Job], request: WorkerRequest, launch) -> PlatformRun:
    platform_dir = request.results_dir / request.run_id / request.platform.name
    platform_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:  # a retried build must not pick up the previous attempt's verdicts
        result_path(request.results_dir, request.run_id, job.platform.name,
                    job.case.id).unlink(missing_ok=True)
    outcome = run_worker(launch.argv(), platform_dir / f"worker{request.file_suffix()}.log",
                         timeout_s=request.platform.timeout_minutes * 60, env=launch.env(),
                         cwd=request.repo, on_stop=launch.on_stop)
    details = launch.describe(outcome)
    results = [_result_or_placeholder(job, request, outcome, details, launch) for job in jobs]
    return PlatformRun(request.platform.name, platform_dir, results, outcome,
                       exit_code(results, outcome))


def not_started(jobs: list[Job], request: WorkerRequest, launch, reason: str) -> PlatformRun:
    """Every job's result when the run stops before its worker starts (a failed preflight)."""
    platform_dir = request.results_dir / request.run_id / request.platform.name
    log = platform_dir / f"worker{request.file_suffix()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(reason + "\n")
    outcome = WorkerOutcome(returncode=None, timed_out=False, interrupted=False, duration_s=0.0,
                            log_path=log, start_error=reason)
    results = []
    for job in jobs:
        result_path(request.results_dir, request.run_id, job.platform.name,
                    job.case.id).unlink(missing_ok=True)
        results.append(_result_or_placeholder(job, request, outcome, {}, launch))
    return PlatformRun(request.platform.name, platform_dir, results, outcome, EXIT_INFRA)


def _result_or_placeholder(job: Job, request: WorkerRequest, outcome: WorkerOutcome,
                           details: dict, launch) -> Result:
    path = result_path(request.results_dir, request.run_id, job.platform.name, job.case.id)
    try:
        result = read_result(path)
        if outcome.timed_out and result.failure_class == "interrupted":
            # The worker saw our SIGINT at the deadline: the cause was the deadline.
            result = result.model_copy(update={
                "failure_class": "timeout",
                "message": f"worker overran its {request.platform.timeout_minutes} min deadline "
                           f"({result.message})"})
            write_result(path, result)
        return result
    except ResultFileError as exc:
        missing_why = exc.problem
    if outcome.start_error:
        failure_class, message = "infra", f"could not start the worker: {outcome.start_error}"
    elif outcome.timed_out:
        failure_class, message = "timeout", (
            f"worker overran its {request.platform.timeout_minutes} min deadline")
    elif outcome.interrupted:
        failure_class, message = "interrupted", "interrupted before the job finished"
    elif details.get("oom"):
        failure_class, message = "oom", "container was OOM-killed"
    elif outcome.returncode == PYTEST_NO_TESTS:
        failure_class, message = "collection", "pytest collected no test for this job"
    elif outcome.returncode in (2, 3, 4):
        failure_class, message = "collection", f"pytest exited {outcome.returncode} (usage/collection)"
    else:
        failure_class, message = "crash", f"worker exited {outcome.returncode}"
    result = Result(
        run_id=request.run_id, job_id=job.id, case_id=job.case.id, platform=job.platform.name,
        status="error", failure_class=failure_class,
        message=redact(f"{message}; no result written ({missing_why})"),
        expect=Expect(**job.expect.model_dump()), compare=job.case.compare.model_dump(),
        engine={"mode": job.case.engine.mode, "model": job.model, "args": job.engine_args},
        log=LogInfo(path=outcome.log_path.name, tail=redact(tail(read_tail(outcome.log_path)))),
        fingerprint={"platform": job.platform.name, "accelerator": job.platform.accelerator,
                     **details.get("fingerprint", {})},
        reproduce=launch.reproduce(), finished_at=now())
    write_result(path, result)
    return result


def exit_code(results: list[Result], outcome: WorkerOutcome) -> int:
    statuses = {r.status for r in results}
    if "failed" in statuses or any(r.status == "xpassed" and r.expect.strict for r in results):
        return EXIT_FAILED
    if "error" in statuses or outcome.timed_out or outcome.interrupted:
        return EXIT_INFRA
    if outcome.returncode not in (0, 1) and results:  # pytest itself broke
        return EXIT_INFRA
    return EXIT_OK


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
