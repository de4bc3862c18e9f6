"""Run one job on this platform and write its result file. Whatever happens, a result is written."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import proc
from harness.plan import Job
from harness.results import (INFRA_CLASSES, Expect, LogInfo, Result, Timings, result_path, tail,
                             write_result)
from harness.secrets import redact, redact_file
from harness.spec import ProbeCheck
from harness.worker.checks import Observed, evaluate
from harness.worker.engine import Engine, EngineFailure, EnginePool
from harness.worker.fingerprint import fingerprint
from harness.worker.inputs import prepare_requests
from harness.worker.offline import OfflineEngine
from harness.worker.progress import PhaseClock, Progress
from harness.worker.server import ServerEngine

PROBE_TIMEOUT_S = 300


@dataclass
class RunContext:
    results_dir: Path
    run_id: str
    repo: Path
    model_cache: Path
    python: str = sys.executable


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_model(job: Job, ctx: RunContext, build_log: Path | None = None) -> str:
    if job.platform.model_source == "hub":
        return job.case.model.hub
    from harness.models import build_model

    # A build's own chatter (transformers' "Writing model shards" bars) goes to a log file,
    # not into the worker's output, where it would fill a passing run's report.
    captured = io.StringIO()
    try:
        with redirect_stdout(captured), redirect_stderr(captured):
            return str(build_model(job.case.model.tiny, ctx.model_cache))
    finally:
        if captured.getvalue() and build_log is not None:
            build_log.parent.mkdir(parents=True, exist_ok=True)
            build_log.write_text(captured.getvalue())


def model_identity(job: Job) -> dict[str, str]:
    """For tiny models, the recipe digest: `harness compare` checks both sides used one weights."""
    if job.platform.model_source != "tiny" or not job.case.model.tiny:
        return {}
    from harness.models import recipe_digest

    return {"recipe_digest": recipe_digest(job.case.model.tiny)}


def engine_env(job: Job) -> dict[str, str]:
    return {**os.environ, **job.env}


def new_engine(job: Job, model: str, log_path: Path, ctx: RunContext) -> Engine:
    spec = job.case.engine
    if spec.mode == "offline":
        return OfflineEngine(model, job.engine_args, engine_env(job), log_path, spec.traces,
                             timeout_s=spec.startup_timeout_s + spec.request_timeout_s,
                             python=ctx.python)
    return ServerEngine(model, job.engine_args, engine_env(job), log_path,
                        spec.startup_timeout_s, spec.request_timeout_s, python=ctx.python)


def probe_names(job: Job) -> list[str]:
    return [c.probe for c in job.case.checks if isinstance(c, ProbeCheck)]


def start_probes(job: Job, log_path: Path, ctx: RunContext) -> subprocess.Popen | None:
    """Start the probes in their own Python at the job's start, at low priority: importing
    vLLM again there then overlaps the engine's start instead of following the requests."""
    names = probe_names(job)
    if not names:
        return None
    log_path.unlink(missing_ok=True)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    return proc.start([*nice, ctx.python, "-m", "harness.worker.probes", *names], log_path,
                      env=engine_env(job))


def collect_probes(job: Job, started: subprocess.Popen | None, log_path: Path,
                   deadline: float) -> dict[str, dict[str, Any]]:
    """Wait (until ``deadline``, monotonic) for the probes and read their one JSON line."""
    names = probe_names(job)
    if started is None:
        return {}
    try:
        started.wait(timeout=max(0.0, deadline - time.monotonic()))
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    code = proc.stop(started, grace_s=1.0)
    for line in reversed(proc.read_tail(log_path, 200_000).splitlines()):
        if line.startswith("HARNESS-PROBES "):
            return json.loads(line.split(" ", 1)[1])
    why = "timed out" if timed_out else f"exited {code}"
    return {name: {"ok": False, "error": f"probe process {why} without a result"}
            for name in names}


def final_status(failure_class: str | None, expect: Expect) -> str:
    if failure_class is None:
        return "xpassed" if expect.outcome == "xfail" else "passed"
    if failure_class in INFRA_CLASSES:
        return "error"
    return "xfailed" if expect.outcome == "xfail" else "failed"


def run_job(job: Job, ctx: RunContext, pool: EnginePool, progress: Progress | None = None,
            keep_engine: bool = False) -> Result:
    """Run one job; ``keep_engine``: the next job reuses this engine, so it is not stopped."""
    progress = progress or Progress("off")
    progress.job_started(job.id, f"{job.case.engine.mode}, {job.model}")
    result = _run_job(job, ctx, pool, progress, keep_engine)
    progress.job_finished(result.status, result.timings.total_s or 0.0, result.message,
                          result.log.tail)
    return result


def _run_job(job: Job, ctx: RunContext, pool: EnginePool, progress: Progress,
             keep_engine: bool) -> Result:
    path = result_path(ctx.results_dir, ctx.run_id, job.platform.name, job.case.id)
    log_path = path.with_suffix(".log")
    probes_log = path.with_suffix(".probes.log")
    began, started_at = time.monotonic(), now()
    base = Result(run_id=ctx.run_id, job_id=job.id, case_id=job.case.id,
                  platform=job.platform.name, status="error",
                  expect=Expect(**job.expect.model_dump()),
                  compare=job.case.compare.model_dump(),
                  engine={"mode": job.case.engine.mode, "model": job.model,
                          "args": job.engine_args, "engine_key": job.engine_key,
                          "env": dict(job.env), **model_identity(job)},
                  fingerprint=fingerprint(job.platform.name, job.platform.accelerator, ctx.repo),
                  reproduce=f"harness run --platform {job.platform.name} -k {job.case.id}",
                  started_at=started_at)
    if job.skip_reason:
        progress.phase(f"skipped: {job.skip_reason}")
        result = base.model_copy(update={"status": "skipped", "message": job.skip_reason,
                                         "finished_at": now()})
        write_result(path, result)
        return result

    fields: dict[str, Any] = {}
    engine: Engine | None = None
    engine_log = log_path
    clock = PhaseClock()
    probes_proc = None
    reused = False
    try:
        probes_proc = start_probes(job, probes_log, ctx)
        progress.phase(f"model: {job.model} ({job.platform.model_source})")
        with clock.timed("model"):
            model = resolve_model(job, ctx, path.with_suffix(".model.log"))
        prepared = prepare_requests(job.case)
        engine = pool.get(job.engine_key)
        reused = engine is not None
        if engine is None:
            log_path.unlink(missing_ok=True)
            engine = new_engine(job, model, log_path, ctx)
            pool.put(job.engine_key, engine)  # before start(): an interrupt must stop it too
            progress.phase(f"engine starting ({job.case.engine.mode}; log {log_path.name})")
            with clock.timed("engine_start"), progress.waiting("engine starting", log_path):
                engine.start()
            if job.case.engine.mode == "server":
                progress.phase(f"engine ready after {engine.startup_s:.0f} s; "
                               f"{len(prepared)} request(s)")
        else:
            progress.phase(f"engine reused; {len(prepared)} request(s)")
        engine_log = engine.log_path
        ready = getattr(engine, "ready_after", None)
        label = "engine starting" if ready else "requests"
        with progress.waiting(label, engine_log, ready=ready):
            responses = engine.generate(prepared, job.case.compare.top_k)
        progress.phase(f"requests done: {sum(r.ok for r in responses)}/{len(responses)} ok"
                       + (f" in {engine.requests_s:.1f} s" if engine.requests_s else ""))
        if probes_proc is not None:
            progress.phase(f"probes: {', '.join(probe_names(job))}")
        with clock.timed("probes"), progress.waiting("probes", probes_log):
            probes = collect_probes(job, probes_proc, probes_log,
                                    time.monotonic() + PROBE_TIMEOUT_S)
        with clock.timed("checks"):
            log_text = proc.read_tail(engine_log, 4_000_000)
            checks = evaluate(job.case.checks, Observed(
                capabilities=set(job.platform.capabilities), startup_s=engine.startup_s,
                requests=responses, log_text=log_text, probes=probes, traces=engine.traces()))
        progress.phase("checks: " + ", ".join(f"{c.name} {c.outcome}" for c in checks))
        failed = [c for c in checks if c.outcome == "failed"]
        failure_class = None
        if failed:
            failure_class = ("request-error" if any(c.kind == "requests_succeed" for c in failed)
                             else "check-failed")
        fields = {
            "failure_class": failure_class,
            "message": "; ".join(f"{c.name}: {c.message}" for c in failed),
            "checks": checks, "requests": responses}
    except EngineFailure as exc:
        pool.close()
        fields = {"failure_class": exc.failure_class, "message": str(exc)}
    except KeyboardInterrupt:
        pool.close()
        _stop_probes(probes_proc)
        _write_final(path, base, {"failure_class": "interrupted",
                                  "message": "interrupted (Ctrl-C or SIGTERM)"},
                     engine_log, began)
        raise
    except Exception as exc:  # the harness itself broke: still leave a result that says so
        pool.close()
        fields = {"failure_class": "infra", "message": f"{type(exc).__name__}: {exc}"}
    _stop_probes(probes_proc)
    if not keep_engine:  # no later job shares this engine: stop it now and time it
        with clock.timed("shutdown"):
            pool.close()
    if engine is not None:  # what the engine recorded, even when it failed (a crash's trace)
        fields["traces"] = engine.traces()
        if engine.mutations():
            fields["engine"] = {**base.engine, "mutations": engine.mutations()}
    fields["timings"] = Timings(
        startup_s=(engine.startup_s or None) if engine is not None else None,
        requests_s=engine.requests_s if engine is not None else None,
        engine_reused=reused, model_s=clock.seconds.get("model"),
        probes_s=clock.seconds.get("probes"), checks_s=clock.seconds.get("checks"),
        shutdown_s=clock.seconds.get("shutdown"))
    return _write_final(path, base, fields, engine_log, began)


def _stop_probes(started: subprocess.Popen | None) -> None:
    if started is not None and started.poll() is None:
        proc.stop(started, grace_s=1.0)


def _write_final(path: Path, base: Result, fields: dict[str, Any], engine_log: Path,
                 began: float) -> Result:
    timings: Timings = fields.pop("timings", None) or Timings()
    timings = timings.model_copy(update={
        "total_s": time.monotonic() - began,
        # Largest resident set among this worker's finished children (the engines), in MiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024})
    failure_class = fields.get("failure_class")
    status = final_status(failure_class, base.expect)
    message = fields.pop("message", "")
    if status == "xpassed":
        message = f"unexpectedly passed (expected to fail: {base.expect.reason})"
    for log in (engine_log, path.with_suffix(".probes.log")):
        redact_file(log)  # vLLM may echo its environment or args: keep no secret on disk
    log_rel = os.path.relpath(engine_log, path.parent) if engine_log.exists() else ""
    result = base.model_copy(update={
        **fields, "status": status, "message": redact(message), "timings": timings,
        "log": LogInfo(path=log_rel, tail=redact(tail(proc.read_tail(engine_log)))),
        "finished_at": now()})
    write_result(path, result)
    return result
