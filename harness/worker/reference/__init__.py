"""Reference backends: a case run outside vLLM, written as an ordinary result file.

The `hf` backend (``hf.py``) writes ``results/<run>/hf/<case>.json`` with the same schema as a
platform's result, so ``harness compare RUN --baseline hf --candidate cpu`` needs nothing special. Made on a GPU
(``device="cuda"``) it is platform ``hf-cuda``: ``--baseline hf --candidate hf-cuda`` compares
the node's GPU reference with the CPU one.
A case whose model has no native transformers implementation says so in its YAML
(``model.reference: none`` + ``reference_note``) and gets a ``skipped`` result carrying that note.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from harness.models import default_cache_root
from harness.plan import job_id
from harness.results import LogInfo, Result, Timings, result_path, tail, write_atomic, write_result
from harness.runinfo import now
from harness.secrets import redact
from harness.spec.case import Case
from harness.spec.platform import reference_platform_name
from harness.worker.fingerprint import fingerprint
from harness.worker.inputs import inputs_digest, prepare_requests



def model_name(case: Case, source: str) -> str:
    """What the vLLM side records as ``engine.model``: outputs compare only between equals."""
    return case.model.hub if source == "hub" else case.model.tiny


def reproduce_command(case: Case, results_dir: Path, run_id: str, source: str,
                      device: str = "cpu") -> str:
    extra = " --model-source hub" if source == "hub" else ""
    extra += f" --device {device}" if device != "cpu" else ""
    return (f"harness reference --case {case.source} --results {results_dir} "
            f"--run-id {run_id}{extra}")


def run_reference(case: Case, results_dir: Path, run_id: str, model_cache: Path | None = None,
                  source: str = "tiny", repo: Path | None = None,
                  device: str = "cpu") -> Result:
    """Generate the case's requests with transformers and write the result. Never raises for a
    failure of the reference itself: the result says what happened (status ``error``)."""
    platform = reference_platform_name(device)
    path = result_path(results_dir, run_id, platform, case.id)
    log_path = path.with_suffix(".log")
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(f"{now()} {line}")

    began, started_at = time.monotonic(), now()
    base = Result(
        run_id=run_id, job_id=job_id(case.id, platform), case_id=case.id, platform=platform,
        status="error", compare=case.compare.model_dump(),
        engine={"mode": "hf-reference", "model": model_name(case, source), "source": source,
                "dtype": "float32", "tf32": False, "device": device,
                "inputs_digest": inputs_digest(case)},
        fingerprint=fingerprint(platform, "cpu" if device == "cpu" else "cuda",
                                repo or Path.cwd()),
        reproduce=reproduce_command(case, results_dir, run_id, source, device),
        started_at=started_at)
    fields: dict = {}
    if case.model.reference == "none":
        note = case.model.reference_note or "the case declares no reference"
        log(f"no reference for {case.id}: {note}")
        fields = {"status": "skipped", "message": note}
    else:
        try:
            fields = _generate(case, model_cache or default_cache_root(), source, log,
                               prepare_requests(case), base.engine)
        except Exception as exc:  # the reference broke: say so in its result, never crash
            log(traceback.format_exc())
            fields = {"status": "error", "failure_class": "infra",
                      "message": f"{type(exc).__name__}: {exc}"}
    timings = fields.pop("timings", Timings())
    log(f"finished: {fields.get('status')}")
    log_text = redact("\n".join(lines) + "\n")
    write_atomic(log_path, log_text)
    result = base.model_copy(update={
        **fields, "message": redact(fields.get("message", "")),
        "timings": timings.model_copy(update={"total_s": time.monotonic() - began}),
        "log": LogInfo(path=log_path.name, tail=tail(log_text)), "finished_at": now()})
    write_result(path, result)
    return result


def _generate(case: Case, model_cache: Path, source: str, log, prepared, engine: dict) -> dict:
    from harness.worker.reference import hf

    hf.device_name(engine["device"])  # no such GPU: say so before building a model for it
    if source == "hub":
        # The pinned snapshot, resolved in the cache as the engine's is: a hub id without the
        # revision would read refs/main, which a pinned `harness models fetch` never writes.
        from harness.models.hub import hub_cache_dir, resolve_snapshot

        snap = resolve_snapshot(case.model.hub, case.model.revision, hub_cache_dir())
        model = str(snap.path)
        engine = {**engine, "revision": snap.commit}
    else:
        from harness.models import build_model, recipe_digest

        model = str(build_model(case.model.tiny, model_cache))
        engine = {**engine, "recipe_digest": recipe_digest(case.model.tiny)}
    handle = hf.load(model, log, engine["device"])
    log(f"loaded in {handle.load_s:.1f} s")
    began = time.monotonic()
    requests = []
    for request in prepared:
        response = hf.generate(handle, request, case.compare.top_k)
        log(f"request {request.id}: {response.prompt_tokens} prompt tokens, "
            f"{len(response.token_ids)} generated in {response.latency_s:.2f} s")
        requests.append(response)
    failed = [r.id for r in requests if not r.ok]
    return {"status": "error" if failed else "passed",
            "failure_class": "infra" if failed else None,
            "message": f"no tokens generated for {failed}" if failed else "",
            "requests": requests,
            "engine": {**engine, "model_dir": model, "class": handle.architecture,
                       "transformers": handle.transformers_version,
                       "device_name": handle.device_name},
            "timings": Timings(startup_s=handle.load_s, requests_s=time.monotonic() - began)}
