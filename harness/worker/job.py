"""Run one job on this platform and write its result file. Whatever happens, a result is written."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import proc
from harness.plan import Job
from harness.runinfo import now
from harness.outcomes import INFRA_CLASSES
from harness.results import (NOT_DECISIVE, Expect, LogInfo, Result, Timings, not_decisive, result_path,
                             tail, write_result)
from harness.secrets import redact, redact_file
from harness.spec.case import ProbeCheck
from harness.worker.checks import Observed, evaluate
from harness.worker.engine import Engine, EngineFailure, EnginePool
from harness.worker.fingerprint import fingerprint
from harness.worker.inputs import inputs_digest, prepare_requests
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
    tests_root: Path | None = None  # vLLM tests trees (harness.testtree), for vllm_tests jobs


@dataclass
class ResolvedModel:
    """What the engine is started on, and what the result records about it."""

    model: str  # the engine's --model: the hub id, or the tiny model's directory
    args: dict[str, Any]  # engine args the resolution adds (the pinned --revision)
    identity: dict[str, str]  # recorded in the result's engine section; compare reads it
    directory: Path  # the files on disk (a hub snapshot or the tiny directory)


def resolve_model(job: Job, ctx: RunContext, build_log: Path | None = None) -> ResolvedModel:
    """Hub models resolve in the local Hugging Face cache before any engine starts.

    The engine still gets the hub id (vLLM and huggingface_hub resolve it themselves), pinned
    to the commit found here, so what ran is what the result says.
    """
    if job.platform.model_source == "hub":
        from harness.models.hub import SnapshotMissing, hub_cache_dir, resolve_snapshot

        cache = hub_cache_dir(engine_env(job))
        try:
            snap = resolve_snapshot(job.case.model.hub, job.case.model.revision, cache,
                                    platform=job.platform.name)
        except SnapshotMissing as exc:
            raise EngineFailure("model-missing", str(exc)) from None
        return ResolvedModel(job.case.model.hub, {"revision": snap.commit},
                             {"revision": snap.commit}, snap.path)
    from harness.models import build_model, recipe_digest

    # A build's own chatter (transformers' "Writing model shards" bars) goes to a log file,
    # not into the worker's output, where it would fill a passing run's report.
    captured = io.StringIO()
    try:
        with redirect_stdout(captured), redirect_stderr(captured):
            directory = build_model(job.case.model.tiny, ctx.model_cache)
    finally:
        if captured.getvalue() and build_log is not None:
            build_log.parent.mkdir(parents=True, exist_ok=True)
            build_log.write_text(captured.getvalue())
    # The recipe digest: `harness compare` checks both sides used the same weights.
    return ResolvedModel(str(directory), {}, {"recipe_digest": recipe_digest(job.case.model.tiny)},
                         directory)


def engine_env(job: Job) -> dict[str, str]:
    return {**os.environ, **job.env}


def new_engine(job: Job, resolved: ResolvedModel, log_path: Path, ctx: RunContext) -> Engine:
    spec = job.case.engine
    args = {**job.engine_args, **resolved.args}
    lora = lora_for(job, resolved)
    if spec.mode == "offline":
        return OfflineEngine(resolved.model, args, engine_env(job), log_path, spec.traces,
                             timeout_s=spec.startup_timeout_s + spec.request_timeout_s,
                             python=ctx.python, lora=lora)
    return ServerEngine(resolved.model, args, engine_env(job), log_path,
                        spec.startup_timeout_s, spec.request_timeout_s, python=ctx.python,
                        lora=lora)


def lora_for(job: Job, resolved: ResolvedModel) -> dict[str, str] | None:
    """The case's adapter inside the resolved model (Phi4MM: ``<snapshot>/vision-lora``)."""
    lora = job.case.engine.lora
    if lora is None:
        return None
    path = resolved.directory / lora.path
    if not (path / "adapter_config.json").is_file():
        raise EngineFailure("model-missing", f"LoRA adapter {lora.name!r} not found: {path} has no "
                                     f"adapter_config.json")
    return {"name": lora.name, "path": str(path)}


def probe_names(job: Job) -> list[str]:
    return [c.probe for c in job.case.checks if isinstance(c, ProbeCheck)]


def probes_beside_engine_start(job: Job) -> bool:
    """Whether the probes may start with the engine (their vLLM import then overlaps its start).

    Only where there is no GPU. On a GPU platform vLLM profiles the GPU's memory while it starts
    and asserts when another process's use changes meanwhile ("...release GPU memory while vLLM
    is profiling"): a probe that created a GPU context beside it would end the engine, classed
    as a `crash` of vLLM. There the probes start once the engine has served the requests.
    """
    return job.platform.accelerator == "cpu"


def start_probes(job: Job, log_path: Path, ctx: RunContext) -> subprocess.Popen | None:
    """Start the probes in their own Python at the job's start, at low priority: importing
    vLLM again there then overlaps the engine's start instead of following the requests."""
    names = probe_names(job)
    if not names:
        return None
    # Each attempt's evidence is its own: the log is started afresh, so the only
    # HARNESS-PROBES line in it is this run's (an earlier attempt's cannot win).
    log_path.unlink(missing_ok=True)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    return proc.start([*nice, ctx.python, "-m", "harness.worker.probes", *names], log_path,
                      env=engine_env(job))


def collect_probes(job: Job, started: subprocess.Popen | None, log_path: Path,
                   deadline: float) -> dict[str, dict[str, Any]]:
    """Wait (until ``deadline``, monotonic) for the probes and read their one JSON line."""
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
            for name in probe_names(job)}


def run_probes(job: Job, log_path: Path, ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Start and collect in one go (the job itself starts them earlier, see start_probes)."""
    return collect_probes(job, start_probes(job, log_path, ctx), log_path,
                          time.monotonic() + PROBE_TIMEOUT_S)


def _stop_probes(started: subprocess.Popen | None) -> None:
    if started is not None and started.poll() is None:
        proc.stop(started, grace_s=1.0)


def job_log_text(engine_log: Path, ready_offset: int, job_offset: int) -> str:
    """The part of an engine log that is this job's evidence: everything for a fresh engine;
    for a reused one, its start-up (up to ``ready_offset``) and what came after ``job_offset``."""
    if job_offset <= 0:
        return proc.read_from(engine_log, 0)
    startup = proc.read_from(engine_log, 0)[:ready_offset] if ready_offset > 0 else ""
    return startup + proc.read_from(engine_log, job_offset)


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
                          "env": dict(job.env), "inputs_digest": inputs_digest(job.case)},
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
    peak_mb: float | None = None
    engine_record = dict(base.engine)
    clock = PhaseClock()
    probes_proc = None
    reused = False
    try:
        # The probes import vLLM in their own Python: started now, they overlap the engine's
        # start, where that cannot disturb it (probes_beside_engine_start).
        probes_early = probes_beside_engine_start(job)
        if probes_early:
            probes_proc = start_probes(job, probes_log, ctx)
        progress.phase(f"model: {job.model} ({job.platform.model_source})")
        with clock.timed("model"):
            resolved = resolve_model(job, ctx, path.with_suffix(".model.log"))
        engine_record.update(resolved.identity)
        prepared = prepare_requests(job.case)
        engine = pool.get(job.engine_key)
        reused = engine is not None
        if engine is None:
            log_path.unlink(missing_ok=True)
            engine = new_engine(job, resolved, log_path, ctx)
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
        # A reused engine's log holds earlier jobs' requests: this job reads the engine's
        # start-up (shared evidence: the engine serving it) and its own part, nothing between.
        job_offset = proc.log_size(engine_log) if reused else 0
        engine.reset_peak()
        ready = getattr(engine, "ready_after", None)
        with progress.waiting("engine starting" if ready else "requests", engine_log,
                              ready=ready):
            responses = engine.generate(prepared, job.case.compare.top_k)
        if ready is not None and not progress.ready_announced:  # faster than the watcher
            progress.phase(f"engine ready after {engine.startup_s:.0f} s; requests")
        peak_mb = engine.peak_rss_mb()
        progress.phase(f"requests done: {sum(r.ok for r in responses)}/{len(responses)} ok"
                       + (f" in {engine.requests_s:.1f} s" if engine.requests_s else ""))
        if not probes_early:  # a GPU platform: the engine is ready and has served
            probes_proc = start_probes(job, probes_log, ctx)
        if probes_proc is not None:
            progress.phase(f"probes: {', '.join(probe_names(job))}")
        with clock.timed("probes"), progress.waiting("probes", probes_log):
            probes = collect_probes(job, probes_proc, probes_log,
                                    time.monotonic() + PROBE_TIMEOUT_S)
        with clock.timed("checks"):
            log_text = job_log_text(engine_log, engine.ready_log_offset if reused else 0,
                                    job_offset)
            checks = evaluate(job.case.checks, Observed(
                capabilities=set(job.platform.capabilities), startup_s=engine.startup_s,
                requests=responses, log_text=log_text, probes=probes, traces=engine.traces()))
        progress.phase("checks: " + ", ".join(f"{c.name} {c.outcome}" for c in checks))
        failed = [c for c in checks if c.outcome == "failed"]
        errored = [c for c in checks if c.outcome == "error"]
        failure_class = None
        if failed:
            failure_class = ("request-error" if any(c.kind == "requests_succeed" for c in failed)
                             else "check-failed")
        elif errored:  # no check failed, but one could not judge: no verdict on vLLM
            failure_class = "harness-error"
        message = "; ".join(f"{c.name}: {c.message}" for c in failed + errored)
        if failure_class is None and not_decisive(checks):
            message = (f"{NOT_DECISIVE}: its decisive checks did not apply on "
                       f"{job.platform.name}: " + "; ".join(
                           f"{c.name}: {c.message}" for c in checks if c.decisive))
        fields = {
            "failure_class": failure_class, "message": message,
            "checks": checks, "requests": responses}
    except EngineFailure as exc:
        pool.close()
        fields = {"failure_class": exc.failure_class, "message": str(exc)}
    except KeyboardInterrupt:
        pool.close()
        _stop_probes(probes_proc)
        _write_final(path, base, {"failure_class": "interrupted", "engine": engine_record,
                                  "message": "interrupted (Ctrl-C or SIGTERM)"},
                     engine_log, began)
        raise
    except Exception as exc:  # the harness itself broke: no verdict on vLLM, and it says so
        pool.close()
        fields = {"failure_class": "harness-error",
                  "message": f"harness error, not a verdict on vLLM: {type(exc).__name__}: {exc}",
                  "harness_traceback": traceback.format_exc()[-4000:]}
    _stop_probes(probes_proc)
    if not keep_engine:  # no later job shares this engine: stop it now and time it
        with clock.timed("shutdown"):
            pool.close()
    if engine is not None:  # what the engine recorded, even when it failed (a crash's trace)
        fields["traces"] = engine.traces()
        if engine.mutations():
            engine_record["mutations"] = engine.mutations()
    fields["engine"] = engine_record
    fields["timings"] = Timings(
        startup_s=(engine.startup_s or None) if engine is not None else None,
        requests_s=engine.requests_s if engine is not None else None,
        engine_reused=reused, peak_rss_mb=peak_mb, model_s=clock.seconds.get("model"),
        probes_s=clock.seconds.get("probes"), checks_s=clock.seconds.get("checks"),
        shutdown_s=clock.seconds.get("shutdown"))
    return _write_final(path, base, fields, engine_log, began)


def _write_final(path: Path, base: Result, fields: dict[str, Any], engine_log: Path,
                 began: float) -> Result:
    timings: Timings = fields.pop("timings", None) or Timings()
    # peak_rss_mb: this job's engine process tree, sampled while the job ran (see generate).
    timings = timings.model_copy(update={"total_s": time.monotonic() - began})
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
