"""Evaluate a case's declared checks against what the engine did. Pure: data in, verdicts out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.results import CheckResult, RequestResult
from harness.spec import (Check, LogCheck, LoraAppliedCheck, OutputsDifferCheck, ProbeCheck, RaggedBatchCheck,
                          ReadyCheck, RequestsSucceedCheck, TokenCountsCheck)


@dataclass
class Observed:
    """Everything the checks may look at, gathered by the job runner."""

    capabilities: set[str]
    startup_s: float | None
    requests: list[RequestResult]
    log_text: str
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[str, Any] = field(default_factory=dict)


def check_name(check: Check, index: int) -> str:
    label = getattr(check, "probe", None) or getattr(check, "trace", None)
    return f"{index}:{check.kind}" + (f":{label}" if label else "")


def evaluate(checks: list[Check], observed: Observed) -> list[CheckResult]:
    return [_evaluate_one(check, check_name(check, i), observed) for i, check in enumerate(checks)]


def _evaluate_one(check: Check, name: str, observed: Observed) -> CheckResult:
    missing = [cap for cap in check.requires if cap not in observed.capabilities]
    if missing:
        return CheckResult(name=name, kind=check.kind, outcome="not-applicable",
                           message=f"platform lacks {', '.join(missing)}")
    ok, message, evidence = _RULES[type(check)](check, observed)
    return CheckResult(name=name, kind=check.kind, outcome="passed" if ok else "failed",
                       message=message, evidence=evidence)


def _ready(check: ReadyCheck, observed: Observed):
    startup = observed.startup_s
    ok = startup is not None and startup <= check.within_s
    return ok, f"ready in {startup:.1f} s (limit {check.within_s:.0f} s)" if startup is not None \
        else "never ready", {"startup_s": startup}


def _requests_succeed(check: RequestsSucceedCheck, observed: Observed):
    bad = {r.id: r.error or "empty output" for r in observed.requests
           if not r.ok or not r.token_ids}
    return not bad and bool(observed.requests), \
        f"{len(observed.requests) - len(bad)}/{len(observed.requests)} requests succeeded", \
        {"failed": bad}


def _token_counts(check: TokenCountsCheck, observed: Observed):
    problems = []
    counts = {r.id: {"prompt": r.prompt_tokens, "completion": len(r.token_ids)}
              for r in observed.requests}
    for rid, count in counts.items():
        if check.completion_tokens is not None and count["completion"] != check.completion_tokens:
            problems.append(f"{rid}: {count['completion']} completion tokens, "
                            f"expected {check.completion_tokens}")
        if check.min_prompt_tokens is not None and (count["prompt"] or 0) < check.min_prompt_tokens:
            problems.append(f"{rid}: {count['prompt']} prompt tokens, "
                            f"expected at least {check.min_prompt_tokens}")
    return not problems, "; ".join(problems) or "token counts as expected", {"counts": counts}


def _log(check: LogCheck, observed: Observed):
    hits = {}
    for pattern in check.patterns:
        match = re.search(pattern, observed.log_text)
        hits[pattern] = _line_at(observed.log_text, match.start()) if match else None
    if check.kind == "log_absent":
        found = {p: line for p, line in hits.items() if line is not None}
        return not found, (f"found {list(found)}" if found else "none of the patterns found"), \
            {"found": found}
    absent = [p for p, line in hits.items() if line is None]
    return not absent, (f"missing {absent}" if absent else "all patterns found"), {"lines": hits}


def _line_at(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start:end if end != -1 else None][:500]


def _outputs_differ(check: OutputsDifferCheck, observed: Observed):
    by_id = {r.id: r for r in observed.requests}
    outputs = {rid: by_id[rid].token_ids if rid in by_id else None for rid in check.requests}
    if any(tokens is None or not by_id[rid].ok for rid, tokens in outputs.items()):
        return False, "a compared request did not succeed", {}
    first_logprobs = {rid: [[a.token_id, round(a.logprob, 6)] for a in by_id[rid].logprobs[0]]
                      if by_id[rid].logprobs else [] for rid in check.requests}
    signatures = [(tuple(outputs[rid]), repr(first_logprobs[rid])) for rid in check.requests]
    distinct = len(set(signatures)) == len(signatures)
    return distinct, ("outputs differ" if distinct else "identical outputs for different inputs"), \
        {"token_ids": outputs, "first_position_top_k": first_logprobs}


def _probe(check: ProbeCheck, observed: Observed):
    outcome = observed.probes.get(check.probe)
    if outcome is None:
        return False, "probe did not run", {}
    return bool(outcome.get("ok")), outcome.get("error", "probe ok" if outcome.get("ok")
                                                 else "probe failed"), outcome


def _ragged_batch(check: RaggedBatchCheck, observed: Observed):
    calls = observed.traces.get(check.trace)
    if not calls:
        return False, f"trace {check.trace!r} recorded no encoder call", {"calls": calls or []}
    ragged = [c for c in calls if len(set(c["crop_counts"])) > 1]
    crops = [c["crop_counts"] for c in calls]
    return bool(ragged), (f"an encoder call held crop counts {ragged[0]['crop_counts']}" if ragged
                          else f"no encoder call held different crop counts: {crops}"), \
        {"calls": calls}


LORA_TRACE = "lora"  # what the engine recorded about the case's adapter (see worker.lora)


def _lora_applied(check: LoraAppliedCheck, observed: Observed):
    record = observed.traces.get(LORA_TRACE)
    if not record:
        return False, "the engine recorded no LoRA adapter", {}
    name = record.get("adapter")
    loaded = record.get("loaded") or []
    named = record.get("requests") or {}
    without = [r.id for r in observed.requests if named.get(r.id) != name]
    problems = []
    if name not in loaded:
        problems.append(f"adapter {name!r} not among the engine's loaded LoRAs {loaded}")
    if without or not observed.requests:
        problems.append(f"requests without adapter {name!r}: {without or 'no request ran'}")
    message = "; ".join(problems) or (f"adapter {name!r} loaded; all {len(named)} requests "
                                      f"ran with it")
    return not problems, message, record


_RULES = {
    ReadyCheck: _ready,
    RequestsSucceedCheck: _requests_succeed,
    TokenCountsCheck: _token_counts,
    LogCheck: _log,
    OutputsDifferCheck: _outputs_differ,
    ProbeCheck: _probe,
    RaggedBatchCheck: _ragged_batch,
    LoraAppliedCheck: _lora_applied,
}
