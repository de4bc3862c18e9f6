"""Plain-text explanations shared by every report (terminal, Markdown, JUnit, JSON).

Plain strings only: each report escapes them for its own format.
"""

from __future__ import annotations

import math
import re

from harness.compare.model import CaseComparison, PairComparison, ReferenceCheck
from harness.compare.outputs import Divergence, OutputComparison
from harness.results import TopLogprob, status_label


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Terminal colour codes from logs: noise in a web page or an XML report."""
    return ANSI_ESCAPE.sub("", text)


def side_status(case: CaseComparison, which: str) -> str:
    result = case.baseline if which == "baseline" else case.candidate
    problem = case.baseline_problem if which == "baseline" else case.candidate_problem
    if result is not None:
        return status_label(result)  # "passed (not decisive: 1 n/a)": never a plain pass
    if problem is not None:
        return "missing" if problem.problem == "missing" else "corrupt"
    return "-"


def token_str(token: TopLogprob | None) -> str:
    if token is None:
        return "(none: sequence ended)"
    text = f" {token.token!r}" if token.token else ""
    lp = "" if math.isnan(token.logprob) else f" ({token.logprob:.4g})"
    return f"{token.token_id}{text}{lp}"


def top_str(tops: tuple[TopLogprob, ...]) -> str:
    if not tops:
        return "(no logprobs)"
    return ", ".join(token_str(t) for t in tops)


def divergence_lines(divergence: Divergence, names: tuple[str, str]) -> list[str]:
    """The first divergence of one request, both tokens and both top-k, one fact a line."""
    b, c = names
    lines = [divergence.reason]
    if divergence.baseline_token is not None or divergence.candidate_token is not None:
        lines.append(f"{b} token: {token_str(divergence.baseline_token)}")
        lines.append(f"{c} token: {token_str(divergence.candidate_token)}")
        lines.append(f"{b} top-k: {top_str(divergence.baseline_top)}")
        lines.append(f"{c} top-k: {top_str(divergence.candidate_top)}")
    if divergence.baseline_text or divergence.candidate_text:
        lines.append(f"{b} text: {divergence.baseline_text!r}")
        lines.append(f"{c} text: {divergence.candidate_text!r}")
    return lines


def output_lines(outputs: OutputComparison, names: tuple[str, str]) -> list[str]:
    """Every request that diverged (or swapped a tolerated token), with its first divergence."""
    lines = []
    if outputs.note:
        lines.append(outputs.note)
    for request in outputs.requests:
        if request.divergence is None:
            continue
        state = "tolerated" if request.ok else "DIVERGED"
        lines.append(f"request {request.request_id} ({outputs.policy}, {state}):")
        lines += ["  " + line for line in divergence_lines(request.divergence, names)]
    return lines


def reference_line(reference: ReferenceCheck, pair: PairComparison) -> str:
    b, c = pair.baseline.platform, pair.candidate.platform
    name = reference.platform
    if not reference.agrees_with:
        return f"reference {name}: {reference.note or 'not decidable'}"
    verdict = {"baseline": f"the reference {name} agrees with {b}, not {c}",
               "candidate": f"the reference {name} agrees with {c}, not {b}",
               "both": f"the reference {name} agrees with both {b} and {c}",
               "neither": f"the reference {name} agrees with neither {b} nor {c}"}
    text = verdict[reference.agrees_with]
    return text + (f" ({reference.note})" if reference.note else "")


def pair_title(pair: PairComparison) -> str:
    b, c = pair.baseline, pair.candidate
    if b.run_dir == c.run_dir:
        title = f"{b.platform} (baseline) vs {c.platform} (candidate), run {c.run_id}"
    else:
        title = f"{b.label} (baseline) vs {c.label} (candidate)"
    if pair.reference:
        title += f"; reference {pair.reference}"
    return title


def counts_line(pair: PairComparison) -> str:
    counts = pair.counts()
    if not counts:
        return "no results on either side"
    return ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
