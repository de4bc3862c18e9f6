"""Execute a plan on one platform: launch the worker, wait, and account for every job.

A job whose worker died, overran or was interrupted before writing its result gets one written
here, from the worker's log, so the run directory always holds one result per planned job.

The retry rule (harness.outcomes): jobs that end in a RETRIED class (startup-timeout, oom,
gpu-hang, a lost container...) run once more, in a second worker on the same platform and
image, within what is left of the platform's deadline. The first attempt's files are kept
beside the result (``<case>.attempt1.json`` / ``.attempt1.log``). The same class again is the
case's failure (``failed``, red) with both attempts in ``attempts``; anything else keeps the
retry's own verdict, with the first attempt on record. Whether the same class twice is the
case's failure or stays the node's is ``harness.host.repeats``: a node-caused class (GPU hang, a
refused device flag, a lost container) twice on one node stays an infrastructure error naming
the node, and Buildkite's retry (exit 3) runs the step again, possibly on another agent. That
retry's step downloads the earlier job's results first (harness.host.buildkite.retry_results): an
earlier node-caused error from *another* node is kept as ``<case>.attempt0.json`` and judged
with this run's result, so the same class on two nodes is the case's failure.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from harness.host.launch.local import LocalLaunch, WorkerRequest
from harness.host.launch.start_worker import WorkerOutcome, run_worker
from harness.plan import Job
from harness.outcomes import (EXIT_FAILED, EXIT_INFRA, EXIT_OK, SIGABRT_EXITS,
                              is_node_caused, is_retried)
from harness.host.repeats import Node, node_of, repeat_update
from harness.proc import read_tail
from harness.results import (Attempt, DiskFull, Expect, LogInfo, Result, ResultFileError,
                             read_result, result_path, tail, write_result)
from harness.secrets import redact
from harness.runinfo import buildkite_fields, hostname, now
from harness.signatures.attach import sign
from harness.signatures.exits import classify_exit

PYTEST_NO_TESTS = 5
MIN_RETRY_S = 60  # a retry with less of the deadline left than this would only time out


@dataclass
class PlatformRun:
    platform: str
    run_dir: Path
    results: list[Result]
    outcome: WorkerOutcome
    exit_code: int
    problem: str = ""  # a run-level infrastructure problem (disk full), one line


def make_launch(request: WorkerRequest, engine: str | None = None, gpus: str | None = None,
                image: str | None = None, pull: str | None = None, in_place: bool = False):
    if in_place or request.platform.launcher == "local":
        return LocalLaunch(request, in_place=in_place)
    from harness.host.launch.container import ContainerLaunch

    return ContainerLaunch(request, engine=engine, gpus=gpus, image=image, pull=pull)


def execute(jobs: list[Job], request: WorkerRequest, launch,
            relaunch: Callable[[WorkerRequest], object] | None = None) -> PlatformRun:
    """Run the jobs; ``relaunch`` makes the launcher for the retry (None: no retry)."""
    platform_dir = request.results_dir / request.run_id / request.platform.name
    platform_dir.mkdir(parents=True, exist_ok=True)
    priors = {}
    for job in jobs:  # a retried build must not pick up the previous attempt's verdicts
        path = result_path(request.results_dir, request.run_id, job.platform.name, job.case.id)
        prior = _other_nodes_error(path)
        for stale in (path, *path.parent.glob(f"{job.case.id}.attempt*")):
            stale.unlink(missing_ok=True)
        if prior is not None:  # ...but an earlier node's infrastructure error is evidence
            write_result(path.with_name(f"{job.case.id}.attempt0.json"), prior)
            priors[job.id] = prior
    began = time.monotonic()
    deadline_s = request.platform.timeout_minutes * 60
    outcome, results, problem = _attempt(jobs, request, launch, deadline_s)
    if not problem:  # signed now, while the worker log holds only this attempt (a retry appends)
        results = [_signed(r, request, outcome.log_path) for r in results]
    retry = [job for job, result in zip(jobs, results)
             if is_retried(result.failure_class) and result.status == "error"]
    left = deadline_s - (time.monotonic() - began)
    if retry and relaunch is not None and not problem and not outcome.interrupted \
            and left >= MIN_RETRY_S:
        results, again = _retry(jobs, results, retry, request, relaunch, left)
        if len(retry) == len(jobs):  # every job ran again: the retry's worker is the run's
            outcome = again
    if priors:
        results = [_judge_with_prior(job, request, priors[job.id], r) if job.id in priors else r
                   for job, r in zip(jobs, results)]
    if problem:
        results = [_disk_full(r, problem) for r in results]
    else:  # every failure gets its signature (harness.signatures), from its logs
        results = [_signed(r, request, outcome.log_path) for r in results]  # the retried
    return PlatformRun(request.platform.name, platform_dir, results, outcome,
                       EXIT_INFRA if problem else exit_code(results, outcome), problem)


def _attempt(jobs: list[Job], request: WorkerRequest, launch,
             timeout_s: float) -> tuple[WorkerOutcome, list[Result], str]:
    platform_dir = request.results_dir / request.run_id / request.platform.name
    log_path = platform_dir / f"worker{request.file_suffix()}.log"
    blocked = launch.prepare()  # e.g. the image is missing: say so, start nothing
    if blocked:
        outcome = _not_started_outcome(log_path, blocked)
    else:
        outcome = run_worker(launch.argv(), log_path, timeout_s=timeout_s, env=launch.env(),
                             cwd=launch.workdir(), on_stop=launch.on_stop)
    details = launch.describe(outcome)
    results, problem = [], ""
    for job in jobs:
        try:
            results.append(_result_or_placeholder(job, request, outcome, details, launch))
        except DiskFull as exc:
            problem = problem or str(exc)
            results.append(_unwritten(job, request, outcome, launch))
    return outcome, results, problem or outcome.disk_full


def _unwritten(job: Job, request: WorkerRequest, outcome: WorkerOutcome, launch) -> Result:
    try:
        return read_result(result_path(request.results_dir, request.run_id, job.platform.name,
                                       job.case.id))
    except ResultFileError:
        return _base(job, request, launch, "error", "disk-full", "result not written")


def _disk_full(result: Result, problem: str) -> Result:
    if result.status in ("passed", "xfailed", "skipped", "xpassed", "failed"):
        return result  # written before the disk filled: intact, and still true
    return result.model_copy(update={"failure_class": "disk-full",
                                     "message": f"disk full: {problem}"})


def _signed(result: Result, request: WorkerRequest, worker_log: Path) -> Result:
    path = result_path(request.results_dir, request.run_id, result.platform, result.case_id)
    signed = sign(result, path.parent, worker_log)
    if signed is not result:
        try:
            write_result(path, signed)
        except DiskFull:
            return result  # the file keeps what it had; the run's exit says the disk is full
    return signed


def _retry(jobs: list[Job], results: list[Result], retry: list[Job], request: WorkerRequest,
           relaunch: Callable[[WorkerRequest], object],
           timeout_s: float) -> tuple[list[Result], WorkerOutcome]:
    first = {job.id: r for job, r in zip(jobs, results)}
    for job in retry:
        _keep_attempt(job, request, 1)
    sources = sorted({Path(job.case.source) for job in retry})
    retry_request = replace(request, case_files=sources)
    launch = relaunch(retry_request)
    outcome, second, _ = _attempt(retry, retry_request, launch, timeout_s)
    merged = {job.id: _merge(job, request, first[job.id], again)
              for job, again in zip(retry, second)}
    return [merged.get(job.id, first[job.id]) for job in jobs], outcome


def _keep_attempt(job: Job, request: WorkerRequest, attempt: int) -> None:
    path = result_path(request.results_dir, request.run_id, job.platform.name, job.case.id)
    for suffix in (".json", ".log", ".probes.log"):
        current = path.with_suffix(suffix)
        if current.exists():
            shutil.move(current, path.with_name(f"{job.case.id}.attempt{attempt}{suffix}"))


def _as_attempt(result: Result, number: int, result_file: str) -> Attempt:
    return Attempt(attempt=number, status=result.status, failure_class=result.failure_class,
                   message=result.message, result_path=result_file, log=result.log,
                   image_digest=result.fingerprint.get("image_digest"),
                   finished_at=result.finished_at, node=str(node_of(result.fingerprint)),
                   signature=result.signature)


def this_node() -> Node:
    return Node(hostname(), buildkite_fields().get("agent_name"))


def _other_nodes_error(path: Path) -> Result | None:
    """The result an earlier Buildkite job of this step left here (downloaded by the retried
    step), when it is a node-caused error from another node; None otherwise."""
    try:
        prior = read_result(path)
    except ResultFileError:
        return None
    if prior.status != "error" or not is_node_caused(prior.failure_class):
        return None
    return None if node_of(prior.fingerprint).same_as(this_node()) else prior


def _judge_with_prior(job: Job, request: WorkerRequest, prior: Result, result: Result) -> Result:
    """This run's result judged with another node's earlier error of the same job."""
    earlier = [_as_attempt(prior, 0, f"{job.case.id}.attempt0.json")]
    update: dict = {"attempts": earlier + list(result.attempts or [_as_attempt(
        result, 1, f"{job.case.id}.json")])}
    update.update(repeat_update(prior, result))
    judged = result.model_copy(update=update)
    write_result(result_path(request.results_dir, request.run_id, job.platform.name,
                             job.case.id), judged)
    return judged


def _merge(job: Job, request: WorkerRequest, first: Result, second: Result) -> Result:
    path = result_path(request.results_dir, request.run_id, job.platform.name, job.case.id)
    log1 = first.log.model_copy(update={"path": first.log.path.replace(
        f"{job.case.id}.", f"{job.case.id}.attempt1.", 1) if first.log.path.startswith(
        f"{job.case.id}.") else first.log.path})
    attempts = [_as_attempt(first.model_copy(update={"log": log1}), 1,
                            f"{job.case.id}.attempt1.json"),
                _as_attempt(second, 2, path.name)]
    # The same class twice, same job, same image: the case's own, or the node's (repeats).
    update: dict = {"attempts": attempts, **repeat_update(first, second)}
    result = second.model_copy(update=update)
    write_result(path, result)
    return result


def not_started(jobs: list[Job], request: WorkerRequest, launch, reason: str) -> PlatformRun:
    """Every job's result when the run stops before its worker starts (a failed preflight)."""
    platform_dir = request.results_dir / request.run_id / request.platform.name
    outcome = _not_started_outcome(platform_dir / f"worker{request.file_suffix()}.log", reason)
    results = []
    for job in jobs:
        result_path(request.results_dir, request.run_id, job.platform.name,
                    job.case.id).unlink(missing_ok=True)
        results.append(_result_or_placeholder(job, request, outcome, {}, launch))
    return PlatformRun(request.platform.name, platform_dir, results, outcome, EXIT_INFRA)


def _not_started_outcome(log_path: Path, reason: str) -> WorkerOutcome:
    """The outcome of a worker that was never started (image missing, failed preflight), with
    the reason in its log, so every job's placeholder result shows it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"harness: not started: {redact(reason)}\n", encoding="utf-8")
    return WorkerOutcome(None, False, False, 0.0, log_path, reason)


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
    if details.get("failure"):  # the launcher knows better (image missing, engine exit 125...)
        failure_class, message = details["failure"]
    elif outcome.start_error:
        failure_class, message = "infra", f"could not start the worker: {outcome.start_error}"
    elif outcome.timed_out:
        failure_class, message = "timeout", (
            f"worker overran its {request.platform.timeout_minutes} min deadline")
    elif outcome.interrupted:
        failure_class, message = "interrupted", "interrupted before the job finished"
    elif details.get("oom"):
        failure_class, message = "oom", "container was OOM-killed"
    elif outcome.returncode in SIGABRT_EXITS or details.get("exit_code") in SIGABRT_EXITS:
        failure_class = classify_exit(outcome.returncode, read_tail(outcome.log_path))
        message = f"worker aborted (exit {outcome.returncode})" + (
            ": GPU hang" if failure_class == "gpu-hang" else "")
        if failure_class == "crash":  # `crash` is the engine's; the worker dying is no verdict
            failure_class = "worker-died"
    elif outcome.returncode == PYTEST_NO_TESTS:
        failure_class, message = "collection", "pytest collected no test for this job"
    elif outcome.returncode in (2, 3, 4):
        failure_class, message = "collection", f"pytest exited {outcome.returncode} (usage/collection)"
    else:
        failure_class, message = "worker-died", f"worker exited {outcome.returncode}"
    result = _base(job, request, launch, "error", failure_class,
                   f"{message}; no result written ({missing_why})",
                   log=LogInfo(path=outcome.log_path.name,
                               tail=redact(tail(read_tail(outcome.log_path)))),
                   fingerprint=details.get("fingerprint", {}))
    write_result(path, result)
    return result


def _base(job: Job, request: WorkerRequest, launch, status: str, failure_class: str,
          message: str, log: LogInfo | None = None, fingerprint: dict | None = None) -> Result:
    return Result(
        run_id=request.run_id, job_id=job.id, case_id=job.case.id, platform=job.platform.name,
        status=status, failure_class=failure_class, message=redact(message),
        expect=Expect(**job.expect.model_dump()),
        compare=job.case.compare.model_dump() if job.case.model is not None else {},
        engine={"mode": job.case.engine.mode if job.case.model is not None else "vllm_tests",
                "model": job.model, "args": job.engine_args},
        log=log or LogInfo(),
        fingerprint={"platform": job.platform.name, "accelerator": job.platform.accelerator,
                     "hostname": hostname(), "buildkite": buildkite_fields(),
                     **(fingerprint or {})},
        reproduce=launch.reproduce(), finished_at=now())


def exit_code(results: list[Result], outcome: WorkerOutcome) -> int:
    statuses = {r.status for r in results}
    if "failed" in statuses or any(r.status == "xpassed" and r.expect.strict for r in results):
        return EXIT_FAILED
    if "error" in statuses or outcome.timed_out or outcome.interrupted:
        return EXIT_INFRA
    if outcome.returncode not in (0, 1) and results:  # pytest itself broke
        return EXIT_INFRA
    return EXIT_OK
