"""Evaluate a case's declared checks against what the engine did. Pure: data in, verdicts out."""

from __future__ import annotations

import inspect
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, get_args

from harness.results import TRACEBACK, CheckResult, RequestResult
from harness.spec.case import (Check, LogCheck, LoraAppliedCheck, OutputsDifferCheck, ProbeCheck, RaggedBatchCheck,
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
                           message=f"platform lacks {', '.join(missing)}",
                           decisive=check.decisive)
    try:
        ok, message, evidence = _RULES[type(check)](check, observed)
    except Exception as exc:  # a bug in the check (or data it did not expect): its own error
        return CheckResult(name=name, kind=check.kind, outcome="error",
                           message=f"check raised {type(exc).__name__}: {exc}",
                           evidence={"traceback": traceback.format_exc()[-3000:]},
                           decisive=check.decisive)
    return CheckResult(name=name, kind=check.kind, outcome="passed" if ok else "failed",
                       message=message, evidence=evidence, decisive=check.decisive)


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
    counts = {r.id: {"prompt": r.prompt_tokens, "completion": len(r.token_ids),
                     "text_only_prompt": r.text_only_prompt_tokens, "images": len(r.images)}
              for r in observed.requests}
    for rid, count in counts.items():
        if check.completion_tokens is not None and count["completion"] != check.completion_tokens:
            problems.append(f"{rid}: {count['completion']} completion tokens, "
                            f"expected {check.completion_tokens}")
        if check.min_prompt_tokens is not None and (count["prompt"] or 0) < check.min_prompt_tokens:
            problems.append(f"{rid}: {count['prompt']} prompt tokens, "
                            f"expected at least {check.min_prompt_tokens}")
        if check.min_image_tokens is not None and count["images"]:
            if count["prompt"] is None or count["text_only_prompt"] is None:
                problems.append(f"{rid}: prompt length with and without images not both known")
                continue
            added = count["prompt"] - count["text_only_prompt"]
            count["image_tokens"] = added
            wanted = check.min_image_tokens * count["images"]
            if added < wanted:
                problems.append(f"{rid}: its {count['images']} image(s) added {added} prompt "
                                f"tokens to the text alone, expected at least {wanted}")
    return not problems, "; ".join(problems) or "token counts as expected", {"counts": counts}


def _log(check: LogCheck, observed: Observed):
    hits = {}
    for pattern in check.patterns:
        match = re.search(pattern, observed.log_text)
        hits[pattern] = _line_at(observed.log_text, match.start()) if match else None
    if check.kind == "log_absent":
        found = {p: line for p, line in hits.items() if line is not None}
        # Other tracebacks (vLLM survives many) are evidence, never a failure by themselves.
        tracebacks = traceback_summaries(observed.log_text)
        seen = f"; {len(tracebacks)} other traceback(s) in the log, kept as evidence" \
            if tracebacks and not found else ""
        return not found, (f"found {list(found)}" if found else
                           f"none of the patterns found{seen}"), \
            {"found": found, "tracebacks": tracebacks}
    absent = [p for p, line in hits.items() if line is None]
    return not absent, (f"missing {absent}" if absent else "all patterns found"), {"lines": hits}


MAX_TRACEBACKS = 20


def traceback_summaries(text: str) -> list[str]:
    """The exception line ending each Python traceback in a log (``KeyError: 'x'``)."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if TRACEBACK not in line:
            continue
        prefix = line[:line.index("Traceback")]  # a logger's prefix, repeated on each line
        for follow in lines[i + 1:]:
            body = follow[len(prefix):] if follow.startswith(prefix) else follow
            if body and not body[0].isspace() and not body.startswith("Traceback"):
                out.append(body[:300])
                break
        if len(out) >= MAX_TRACEBACKS:
            break
    return out


def _line_at(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start:end if end != -1 else None][:500]


def _outputs_differ(check: OutputsDifferCheck, observed: Observed):
    """Pairwise: different generated tokens, or (with min_logprob_diff) the same tokens with
    logprobs that differ by at least the stated margin somewhere."""
    by_id = {r.id: r for r in observed.requests}
    if any(rid not in by_id or not by_id[rid].ok for rid in check.requests):
        return False, "a compared request did not succeed", {}
    outputs = {rid: by_id[rid].token_ids for rid in check.requests}
    same, margins = [], {}
    for i, a in enumerate(check.requests):
        for b in check.requests[i + 1:]:
            if outputs[a] != outputs[b]:
                continue
            margin = _logprob_margin(by_id[a], by_id[b])
            margins[f"{a}/{b}"] = margin
            if check.min_logprob_diff is None or margin < check.min_logprob_diff:
                same.append(f"{a}/{b}")
    evidence = {"token_ids": outputs, "same_token_logprob_margin": margins}
    if same:
        why = "identical generated tokens for different images"
        if check.min_logprob_diff is not None:
            why += f" and logprobs within {check.min_logprob_diff:g}"
        return False, f"{why}: {', '.join(same)}", evidence
    return True, "outputs differ", evidence


def _logprob_margin(a, b) -> float:
    """Largest |logprob difference| of one token id at one position, over the positions both
    requests generated (their top-k alternatives included)."""
    margin = 0.0
    for pos_a, pos_b in zip(a.logprobs, b.logprobs):
        lp_b = {alt.token_id: alt.logprob for alt in pos_b}
        for alt in pos_a:
            if alt.token_id in lp_b:
                margin = max(margin, abs(alt.logprob - lp_b[alt.token_id]))
    return margin


def _probe(check: ProbeCheck, observed: Observed):
    outcome = observed.probes.get(check.probe)
    if outcome is None:
        return False, "probe did not run", {}
    return bool(outcome.get("ok")), outcome.get("error", "probe ok" if outcome.get("ok")
                                                 else "probe failed"), outcome


def _ragged_batch(check: RaggedBatchCheck, observed: Observed):
    """Only encoder calls made while the case's requests ran count: vLLM's own profiling call
    at start-up (dummy images) is recorded with phase "startup" and proves nothing."""
    calls = observed.traces.get(check.trace) or []
    ours = [c for c in calls if c.get("phase") == "requests"]
    if not ours:
        return False, (f"trace {check.trace!r} recorded no encoder call with the case's images "
                       f"({len(calls)} call(s) outside the requests)"), {"calls": calls}
    ragged = [c for c in ours if len(set(c["crop_counts"])) > 1]
    crops = [c["crop_counts"] for c in ours]
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


def _rules() -> dict[type, Any]:
    """Each kind of the spec's ``Check`` union to the function here whose ``check`` parameter
    is annotated with its class: a kind added to the union without a rule fails at import."""
    by_class = {fn.__annotations__.get("check"): fn for fn in globals().values()
                if inspect.isfunction(fn) and fn.__module__ == __name__}
    kinds = get_args(get_args(Check)[0])
    missing = [kind.__name__ for kind in kinds if kind.__name__ not in by_class]
    if missing:
        raise TypeError(f"no rule in {__name__} for check kind(s) {', '.join(missing)}")
    return {kind: by_class[kind.__name__] for kind in kinds}


_RULES = _rules()
