"""Run one job on this platform and write its result file. Whatever happens, a result is written."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
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
from harness.spec import ProbeCheck
from harness.worker.checks import Observed, evaluate
from harness.worker.engine import Engine, EngineFailure, EnginePool
from harness.worker.fingerprint import fingerprint
from harness.worker.inputs import prepare_requests
from harness.worker.offline import OfflineEngine
from harness.worker.server import ServerEngine

PROBE_TIMEOUT_S = 300


@dataclass
class RunContext:
    results_dir: Path
    run_id: str
    repo: Path
    model_cache: Path
    python: str = sys.executable


@dataclass
class ResolvedModel:
    """What the engine is started on, and what the result records about it."""

    model: str  # the engine's --model: the hub id, or the tiny model's directory
    args: dict[str, Any]  # engine args the resolution adds (the pinned --revision)
    identity: dict[str, str]  # recorded in the result's engine section; compare reads it
    directory: Path  # the files on disk (a hub snapshot or the tiny directory)


def resolve_model(job: Job, ctx: RunContext) -> ResolvedModel:
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

    directory = build_model(job.case.model.tiny, ctx.model_cache)
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


def run_probes(job: Job, log_path: Path, ctx: RunContext) -> dict[str, dict[str, Any]]:
    names = [c.probe for c in job.case.checks if isinstance(c, ProbeCheck)]
    if not names:
        return {}
    # Each attempt's evidence is its own: the log is started afresh, so the only
    # HARNESS-PROBES line in it is this run's (an earlier attempt's cannot win).
    log_path.unlink(missing_ok=True)
    finished = proc.run([ctx.python, "-m", "harness.worker.probes", *names], log_path,
                        timeout_s=PROBE_TIMEOUT_S, env=engine_env(job))
    for line in reversed(proc.read_tail(log_path, 200_000).splitlines()):
        if line.startswith("HARNESS-PROBES "):
            return json.loads(line.split(" ", 1)[1])
    why = "timed out" if finished.timed_out else f"exited {finished.returncode}"
    return {name: {"ok": False, "error": f"probe process {why} without a result"}
            for name in names}


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


def run_job(job: Job, ctx: RunContext, pool: EnginePool) -> Result:
    path = result_path(ctx.results_dir, ctx.run_id, job.platform.name, job.case.id)
    log_path = path.with_suffix(".log")
    began, started_at = time.monotonic(), now()
    base = Result(run_id=ctx.run_id, job_id=job.id, case_id=job.case.id,
                  platform=job.platform.name, status="error",
                  expect=Expect(**job.expect.model_dump()),
                  compare=job.case.compare.model_dump(),
                  engine={"mode": job.case.engine.mode, "model": job.model,
                          "args": job.engine_args, "engine_key": job.engine_key,
                          "env": dict(job.env)},
                  fingerprint=fingerprint(job.platform.name, job.platform.accelerator, ctx.repo),
                  reproduce=f"harness run --platform {job.platform.name} -k {job.case.id}",
                  started_at=started_at)
    if job.skip_reason:
        result = base.model_copy(update={"status": "skipped", "message": job.skip_reason,
                                         "finished_at": now()})
        write_result(path, result)
        return result

    fields: dict[str, Any] = {}
    engine: Engine | None = None
    engine_log = log_path
    engine_record = dict(base.engine)
    try:
        resolved = resolve_model(job, ctx)
        engine_record.update(resolved.identity)
        prepared = prepare_requests(job.case)
        engine = pool.get(job.engine_key)
        reused = engine is not None
        if engine is None:
            log_path.unlink(missing_ok=True)
            engine = new_engine(job, resolved, log_path, ctx)
            pool.put(job.engine_key, engine)  # before start(): an interrupt must stop it too
            engine.start()
        engine_log = engine.log_path
        # A reused engine's log holds earlier jobs' requests: this job reads the engine's
        # start-up (shared evidence: the engine serving it) and its own part, nothing between.
        job_offset = proc.log_size(engine_log) if reused else 0
        engine.reset_peak()
        responses = engine.generate(prepared, job.case.compare.top_k)
        peak_mb = engine.peak_rss_mb()
        probes = run_probes(job, path.with_suffix(".probes.log"), ctx)
        log_text = job_log_text(engine_log, engine.ready_log_offset if reused else 0, job_offset)
        checks = evaluate(job.case.checks, Observed(
            capabilities=set(job.platform.capabilities), startup_s=engine.startup_s,
            requests=responses, log_text=log_text, probes=probes, traces=engine.traces()))
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
            "checks": checks, "requests": responses,
            "timings": Timings(startup_s=engine.startup_s, requests_s=engine.requests_s,
                               engine_reused=reused, peak_rss_mb=peak_mb)}
    except EngineFailure as exc:
        pool.close()
        fields = {"failure_class": exc.failure_class, "message": str(exc)}
    except KeyboardInterrupt:
        pool.close()
        _write_final(path, base, {"failure_class": "interrupted", "engine": engine_record,
                                  "message": "interrupted (Ctrl-C or SIGTERM)"},
                     engine_log, began)
        raise
    except Exception as exc:  # the harness itself broke: no verdict on vLLM, and it says so
        pool.close()
        fields = {"failure_class": "harness-error",
                  "message": f"harness error, not a verdict on vLLM: {type(exc).__name__}: {exc}",
                  "harness_traceback": traceback.format_exc()[-4000:]}
    if engine is not None:  # what the engine recorded, even when it failed (a crash's trace)
        fields["traces"] = engine.traces()
        if engine.mutations():
            engine_record["mutations"] = engine.mutations()
    fields["engine"] = engine_record
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
