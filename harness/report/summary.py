"""A JSON summary of one ``Comparison`` for the dashboard and the history store.

Versioned (``schema``), plain JSON types only, written atomically. It holds the verdicts and the
first divergences, not the full results: those stay in the result files it names.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.compare.explain import side_status
from harness.compare.model import CaseComparison, Comparison, PairComparison, Side
from harness.compare.outputs import Divergence, OutputComparison
from harness.report.nodes import node_summary
from harness.results import Expect, TopLogprob, write_atomic

SCHEMA = "harness-compare-summary/1"


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _token(token: TopLogprob | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return {"token_id": token.token_id, "token": token.token, "logprob": _number(token.logprob)}


def _divergence(divergence: Divergence | None) -> dict[str, Any] | None:
    if divergence is None:
        return None
    return {"reason": divergence.reason, "position": divergence.position,
            "tolerated": divergence.tolerated,
            "baseline_token": _token(divergence.baseline_token),
            "candidate_token": _token(divergence.candidate_token),
            "baseline_top": [_token(t) for t in divergence.baseline_top],
            "candidate_top": [_token(t) for t in divergence.candidate_top],
            "baseline_text": divergence.baseline_text,
            "candidate_text": divergence.candidate_text}


def _outputs(outputs: OutputComparison | None) -> dict[str, Any] | None:
    if outputs is None:
        return None
    return {"policy": outputs.policy, "top_k": outputs.top_k,
            "all_positions": outputs.all_positions, "comparable": outputs.comparable,
            "ok": outputs.ok, "note": outputs.note,
            "max_logprob_diff": _number(outputs.max_logprob_diff),
            "requests": [{"id": r.request_id, "ok": r.ok,
                          "compared_positions": r.compared_positions,
                          "max_logprob_diff": _number(r.max_logprob_diff),
                          "divergence": _divergence(r.divergence)} for r in outputs.requests]}


def _side(side: Side) -> dict[str, Any]:
    return {"run_id": side.run_id, "platform": side.platform, "run_dir": str(side.run_dir),
            "note": side.note}


def _case(case: CaseComparison) -> dict[str, Any]:
    def one(which: str) -> dict[str, Any]:
        result = case.baseline if which == "baseline" else case.candidate
        problem = case.baseline_problem if which == "baseline" else case.candidate_problem
        return {"status": side_status(case, which),
                "outcome": str(case.baseline_outcome if which == "baseline"
                               else case.candidate_outcome),
                "failure_class": result.failure_class if result else None,
                "message": result.message if result else "",
                "expect": ({name: getattr(result.expect, name) for name in Expect.model_fields}
                           if result else None),
                "reproduce": result.reproduce if result else "",
                "log": result.log.path if result else "",
                "problem": {"path": problem.path, "problem": problem.problem} if problem else None}

    reference = None
    if case.reference is not None:
        reference = {"platform": case.reference.platform,
                     "agrees_with": case.reference.agrees_with, "note": case.reference.note}
    return {"case_id": case.case_id, "verdict": str(case.verdict), "exit_code": case.exit_code,
            "detail": case.detail, "baseline": one("baseline"), "candidate": one("candidate"),
            "outputs": _outputs(case.outputs), "reference": reference,
            "quarantine": None if case.quarantine is None else {
                "until": case.quarantine.until.isoformat(), "link": case.quarantine.link,
                "reason": case.quarantine.reason, "expired": case.quarantine_expired},
            "nodes": node_summary(case.nodes)}


def _pair(pair: PairComparison) -> dict[str, Any]:
    return {"baseline": _side(pair.baseline), "candidate": _side(pair.candidate),
            "reference": pair.reference, "exit_code": pair.exit_code, "counts": pair.counts(),
            "environment": [{"key": d.key, "baseline": list(d.baseline),
                             "candidate": list(d.candidate)} for d in pair.environment],
            "cases": [_case(case) for case in pair.cases]}


def summary(comparison: Comparison, generated_at: str | None = None) -> dict[str, Any]:
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"schema": SCHEMA, "generated_at": generated_at, "exit_code": comparison.exit_code,
            "notes": list(comparison.notes), "pairs": [_pair(p) for p in comparison.pairs]}


def write_summary(path: Path, comparison: Comparison) -> None:
    write_atomic(Path(path), json.dumps(summary(comparison), indent=2, allow_nan=False) + "\n")
