"""Compare two sides case by case: parity verdict, outputs, reference, environment. Pure."""

from __future__ import annotations

import re

from harness.compare.envdiff import environment_diff
from harness.compare.nodes import diff_nodes
from harness.compare.model import (CaseComparison, PairComparison, ReferenceCheck, ResultProblem,
                                   Side)
from harness.compare.outputs import OutputComparison, compare_outputs, policy_of
from harness.compare.verdicts import (VERDICT_EXIT, Outcome, Verdict, alone_verdict, outcome_of,
                                      parity_verdict)
from harness.results import Result

# Verdicts where the two sides disagree, so asking the reference which one is right helps.
ARBITRATED = (Verdict.DIVERGENCE, Verdict.REGRESSION, Verdict.FIXED)


def compare_pair(baseline: Side, candidate: Side, reference: Side | None = None) -> PairComparison:
    case_ids = sorted(baseline.case_ids | candidate.case_ids)
    cases = tuple(compare_case(case_id, baseline, candidate, reference) for case_id in case_ids)
    env = environment_diff(list(baseline.results.values()), list(candidate.results.values()))
    return PairComparison(baseline, candidate, cases, env,
                          reference.platform if reference is not None else None)


def compare_case(case_id: str, baseline: Side, candidate: Side,
                 reference: Side | None = None) -> CaseComparison:
    b, c = baseline.results.get(case_id), candidate.results.get(case_id)
    b_problem = baseline.problems.get(case_id) or _missing(baseline, case_id, b, candidate)
    c_problem = candidate.problems.get(case_id) or _missing(candidate, case_id, c, baseline)
    b_out = outcome_of(b, b_problem.problem if b_problem else None)
    c_out = outcome_of(c, c_problem.problem if c_problem else None)
    verdict = parity_verdict(b_out, c_out)
    if b is None and baseline.note:  # the whole baseline is absent: the candidate stands alone
        verdict = alone_verdict(c_out)
    outputs = None
    why_not = not_comparable(b, c) if b is not None and c is not None else ""
    nodes = None
    if is_tests_result(b) or is_tests_result(c):  # vLLM's own tests: node by node, no outputs
        nodes = diff_nodes(b.tests if b is not None else [], c.tests if c is not None else [],
                           b_out is Outcome.INFRA, c_out is Outcome.INFRA)
        if verdict is Verdict.PARITY and why_not:
            verdict = Verdict.NOT_COMPARABLE  # other trees or vLLMs: nodes are not the same tests
        if verdict is Verdict.BOTH_FAIL and nodes.regressions:
            verdict = Verdict.REGRESSION  # the more specific news: a node broke on the candidate
    elif verdict is Verdict.PARITY and b is not None and c is not None:
        if why_not:
            verdict = Verdict.NOT_COMPARABLE
        else:
            outputs = outputs_of(b, c)
            if not outputs.ok:
                verdict = Verdict.DIVERGENCE
    ref_check = None
    if reference is not None and verdict in ARBITRATED and b is not None and c is not None:
        ref_check = check_reference(reference, case_id, b, c)
    fields = dict(case_id=case_id, verdict=verdict, exit_code=VERDICT_EXIT[verdict],
                  baseline_outcome=b_out, candidate_outcome=c_out, baseline=b, candidate=c,
                  baseline_problem=b_problem, candidate_problem=c_problem, outputs=outputs,
                  reference=ref_check, detail="", nodes=nodes)
    case = CaseComparison(**fields)
    detail = describe(case, baseline, candidate)
    if why_not and verdict is not Verdict.NOT_COMPARABLE:
        detail = f"{detail} [not comparable: {why_not}]"
    if nodes is not None:
        detail = f"{detail}; nodes: " + ", ".join(f"{n} {v}" for v, n in nodes.counts().items())
    return CaseComparison(**{**fields, "detail": detail})


# What must be the same on both sides for their outputs to be compared: (where, key, what).
IDENTITY = (("fingerprint", "vllm_commit", "vLLM commits"), ("fingerprint", "vllm", "vLLM versions"),
            ("engine", "model", "models"), ("engine", "recipe_digest", "model builds"),
            ("engine", "revision", "model revisions"), ("engine", "args", "engine args"),
            ("engine", "inputs_digest", "inputs (prompts or images)"),
            ("engine", "tests_tree", "vLLM tests trees"))


def is_tests_result(result) -> bool:
    """A vllm_tests case's result (harness.worker.vllm_tests)."""
    return result is not None and (bool(result.tests) or result.engine.get("mode") == "vllm_tests")


def public_version(version: str) -> str:
    """A vLLM version without its local part (PEP 440: what follows "+"), which names the
    platform's build: ``0.32.0+rocm711`` and ``0.32.0+cu130`` are the same vLLM 0.32.0. A dev
    build's commit (``+g1a2b3c4``) is judged by ``vllm_commit``, recorded beside it."""
    return version.split("+", 1)[0]


# How an identity value is compared where raw equality is wrong (key -> normalise).
_IDENTITY_VALUE = {"vllm": public_version}


def not_comparable(baseline: Result, candidate: Result) -> str:
    """Why two results' outputs cannot be compared ("" when they can): different vLLM commits,
    model revisions or effective engine arguments. Keys a side did not record are not judged."""
    reasons = []
    for where, key, what in IDENTITY:
        value_b = getattr(baseline, where).get(key)
        value_c = getattr(candidate, where).get(key)
        same = _IDENTITY_VALUE.get(key, lambda value: value)
        if key in ("vllm_commit", "vllm") and value_b and value_c \
                and same_commit_spelling(value_b, value_c):
            continue
        if value_b and value_c and same(value_b) != same(value_c):
            if key == "vllm" and any("vLLM commits" in r for r in reasons):
                continue
            reasons.append(f"different {what} ({_short(value_b)} vs {_short(value_c)})")
    ids_b = {r.id for r in baseline.requests}
    ids_c = {r.id for r in candidate.requests}
    if ids_b and ids_c and ids_b != ids_c:  # the case's requests changed between the two runs
        only = [f"{side} only: {', '.join(sorted(ids))}"
                for side, ids in (("baseline", ids_b - ids_c), ("candidate", ids_c - ids_b)) if ids]
        reasons.append(f"different requests ({'; '.join(only)})")
    return "; ".join(reasons)


_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_VERSION_COMMIT = re.compile(r"\+g([0-9a-f]{7,40})")


def same_commit_spelling(a: str, b: str) -> bool:
    """One commit written at two abbreviation lengths ('1a2b3c4' and '1a2b3c4d5e6f'), alone or
    as a version's ``+g<commit>`` local part: the shorter is a prefix of the longer (at least 7
    hex digits) and, for versions, everything around the commit is the same."""
    a, b = a.lower(), b.lower()
    if _COMMIT.fullmatch(a) and _COMMIT.fullmatch(b):
        short, long = sorted((a, b), key=len)
        return long.startswith(short)
    ca, cb = _VERSION_COMMIT.search(a), _VERSION_COMMIT.search(b)
    if not (ca and cb) or _VERSION_COMMIT.sub("+g", a) != _VERSION_COMMIT.sub("+g", b):
        return False
    return same_commit_spelling(ca.group(1), cb.group(1))


def _short(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _missing(side: Side, case_id: str, result: Result | None,
             other: Side) -> ResultProblem | None:
    if result is None and case_id in other.case_ids:
        return ResultProblem(side.path_of(case_id), "missing")
    return None


def outputs_of(baseline: Result, candidate: Result) -> OutputComparison:
    """Compare under the candidate's declared policy; say so when the sides declare others."""
    policy = policy_of(candidate.compare)
    note = ""
    if baseline.compare and policy_of(baseline.compare) != policy:
        note = f"the sides declare different policies; used the candidate's ({policy['policy']})"
    # The same recipe name can stand for other weights after a builder change: where both
    # sides record the recipe digest, it must agree too.
    for key, what in (("model", "models"), ("recipe_digest", "model builds"),
                      ("revision", "hub snapshots")):
        value_b, value_c = baseline.engine.get(key), candidate.engine.get(key)
        same = _IDENTITY_VALUE.get(key, lambda value: value)
        if value_b and value_c and same(value_b) != same(value_c):
            return OutputComparison(policy["policy"], policy["top_k"], policy["all_positions"],
                                    comparable=False,
                                    note=f"not compared: different {what} ({value_b} vs {value_c})")
    compared = compare_outputs(baseline.requests, candidate.requests, policy["policy"],
                               policy["top_k"], policy["all_positions"])
    if note:
        compared = OutputComparison(compared.policy, compared.top_k, compared.all_positions,
                                    note=note, requests=compared.requests)
    return compared


def check_reference(reference: Side, case_id: str, baseline: Result,
                    candidate: Result) -> ReferenceCheck:
    name = reference.platform
    ref = reference.results.get(case_id)
    if ref is None:
        problem = reference.problems.get(case_id)
        why = f"{problem.path}: {problem.problem}" if problem else "no result for this case"
        return ReferenceCheck(name, "", note=f"no {name} reference: {why}")
    if ref.status == "skipped":
        return ReferenceCheck(name, "", note=f"no {name} reference: {ref.message}")
    if ref.status != "passed":
        return ReferenceCheck(name, "", note=f"the {name} reference did not generate: "
                                             f"{ref.status}: {ref.message}")
    with_b, with_c = outputs_of(ref, baseline), outputs_of(ref, candidate)
    usable = [(side, cmp) for side, cmp in (("baseline", with_b), ("candidate", with_c))
              if cmp.comparable]
    if not usable:
        return ReferenceCheck(name, "", note=with_b.note, baseline=with_b, candidate=with_c)
    agreeing = [side for side, cmp in usable if cmp.ok]
    agrees = ("both" if len(agreeing) == 2 else agreeing[0] if agreeing else "neither")
    note = "; ".join(f"{side}: {cmp.note}" for side, cmp in
                     (("baseline", with_b), ("candidate", with_c)) if not cmp.comparable)
    return ReferenceCheck(name, agrees, note=note, baseline=with_b, candidate=with_c)


def _sides(case: CaseComparison, bn: str, cn: str, outcome: Outcome) -> list:
    """(side name, result) of the sides whose outcome is ``outcome``, baseline first."""
    return [(n, r) for n, r, o in ((bn, case.baseline, case.baseline_outcome),
                                   (cn, case.candidate, case.candidate_outcome)) if o is outcome]


def _message(result: Result | None) -> str:
    if result is None:
        return ""
    text = result.message or (result.failure_class or "")
    return f"{result.failure_class}: {text}" if result.failure_class and result.message else text


def _expectation(result: Result | None) -> str:
    if result is None:
        return ""
    parts = [p for p in (result.expect.reason, result.expect.link) if p]
    return " ".join(parts)


def describe(case: CaseComparison, baseline: Side, candidate: Side) -> str:
    """One line a person reads first: what happened to this case, in platform names."""
    bn, cn = baseline.platform, candidate.platform
    if baseline.platform == candidate.platform:  # two runs of one platform
        bn, cn = baseline.label, candidate.label
    v = case.verdict
    if v is Verdict.PARITY:
        out = case.outputs
        if out is None:
            return "both pass"
        if not out.comparable:
            return f"both pass; outputs {out.note}"
        diff = out.max_logprob_diff
        tolerated = [r for r in out.requests if r.divergence and r.divergence.tolerated]
        text = (f"both pass; outputs agree ({out.policy}, {len(out.requests)} requests"
                + (f", max |logprob diff| {diff:.2g}" if diff is not None else "") + ")")
        if tolerated:
            text += f"; {len(tolerated)} tolerated token swap(s)"
        return text
    if v is Verdict.DIVERGENCE:
        first = case.outputs.first_failure if case.outputs else None
        where = f"request {first.request_id}: {first.divergence.reason}" if first and \
            first.divergence else "outputs differ"
        return f"both pass but outputs diverge ({case.outputs.policy}): {where}"
    if v is Verdict.REGRESSION:
        return f"passes on {bn}, fails on {cn}: {_message(case.candidate)}"
    if v is Verdict.FIXED:
        return f"fails on {bn} ({_message(case.baseline)}), passes on {cn}"
    if v is Verdict.NOT_COMPARABLE:
        return f"both pass; not comparable: {not_comparable(case.baseline, case.candidate)}"
    if v is Verdict.ALONE:
        return f"passes on {cn}; no {bn} baseline ({baseline.note or 'not run'})"
    if v is Verdict.ALONE_FAILING:
        return (f"fails on {cn}: {_message(case.candidate)}; no {bn} baseline "
                f"({baseline.note or 'not run'})")
    if v is Verdict.FAILS_UNTESTED_BASELINE:
        why = (_message(case.baseline) if case.baseline is not None else
               f"{case.baseline_problem.path}: {case.baseline_problem.problem}"
               if case.baseline_problem else "")
        return (f"fails on {cn}: {_message(case.candidate)}; {bn} not tested "
                f"({case.baseline_outcome}: {why})")
    if v is Verdict.BOTH_FAIL:
        return f"fails on both: {bn}: {_message(case.baseline)}; {cn}: {_message(case.candidate)}"
    if v is Verdict.XFAIL:
        return f"expected failure on {cn}: {_expectation(case.candidate)}"
    if v is Verdict.XPASS:
        return (f"passes on {cn} although marked xfail (strict): {_expectation(case.candidate)}; "
                "remove the expectation")
    if v is Verdict.INFRA:
        return "infrastructure error, code not tested: " + "; ".join(
            f"{n}: {_message(r)}" for n, r in _sides(case, bn, cn, Outcome.INFRA))
    if v in (Verdict.MISSING, Verdict.CORRUPT):
        problems = [p for p in (case.baseline_problem, case.candidate_problem)
                    if p is not None and (v is Verdict.MISSING or p.problem != "missing")]
        return "; ".join(f"{p.path}: {p.problem}" for p in problems)
    if v is Verdict.SKIPPED:
        return "skipped: " + "; ".join(f"{n}: {r.message if r else ''}"
                                       for n, r in _sides(case, bn, cn, Outcome.SKIPPED))
    status = case.candidate.status if case.candidate else str(case.candidate_outcome)
    return f"only on {cn} ({status}); no result on {bn}"
