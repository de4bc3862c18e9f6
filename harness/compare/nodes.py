"""Per-node diff of a vllm_tests case on two sides (baseline = CUDA, candidate = ROCm). Pure.

Each upstream test node is keyed by (node id, outcome, exception class) on each side; the pair
of keys gives one node verdict. The names read as the candidate being ROCm, as on vLLM's CI:

* ``parity``: both passed (or both xfailed).
* ``rocm-regression``: passes on the baseline, fails or errors on the candidate.
* ``rocm-fixed``: fails on the baseline, passes on the candidate.
* ``both-fail``: fails on both (``exception changed`` in its detail when the classes differ).
* ``rocm-only-skip``: runs on the baseline, skipped on the candidate, with the skip reason:
  the coverage gap (`harness compare --skips`). ``baseline-only-skip`` is the other way round,
  ``both-skip`` neither side ran it.
* ``expected-failure``: fails on the candidate, which the case's ``xfail:`` for that platform
  expects (with its reason): not a regression.
* ``inconclusive``: the node is missing on a side whose job hit infrastructure (a timeout, the
  tree missing, a collection problem): no verdict on the code.
* ``candidate-only`` / ``baseline-only``: the node ran on one side only (other trees, other
  selection); the candidate-only node that fails counts as a regression (the build rule: a
  candidate failure is red whatever the baseline did).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from harness.outcomes import NODE_FAILING


class NodeVerdict(str, Enum):
    PARITY = "parity"
    REGRESSION = "rocm-regression"
    FIXED = "rocm-fixed"
    EXPECTED = "expected-failure"  # fails on the candidate as its case's `xfail` says
    BOTH_FAIL = "both-fail"
    CANDIDATE_SKIP = "rocm-only-skip"
    BASELINE_SKIP = "baseline-only-skip"
    BOTH_SKIP = "both-skip"
    INCONCLUSIVE = "inconclusive"
    CANDIDATE_ONLY = "candidate-only"
    BASELINE_ONLY = "baseline-only"

    def __str__(self) -> str:
        return self.value


# How reports order the verdicts: what needs a person first.
ORDER = (NodeVerdict.REGRESSION, NodeVerdict.BOTH_FAIL, NodeVerdict.CANDIDATE_SKIP,
         NodeVerdict.INCONCLUSIVE, NodeVerdict.FIXED, NodeVerdict.EXPECTED,
         NodeVerdict.CANDIDATE_ONLY,
         NodeVerdict.BASELINE_ONLY, NodeVerdict.BASELINE_SKIP, NodeVerdict.BOTH_SKIP,
         NodeVerdict.PARITY)
SKIPPED = frozenset({"skipped"})
RAN_OK = frozenset({"passed", "xfailed"})


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    verdict: NodeVerdict
    baseline: object | None  # harness.results.TestNode (or its view)
    candidate: object | None
    detail: str = ""


@dataclass(frozen=True)
class NodeDiff:
    """Every node's verdict. Nodes at parity (nearly all of 75,000) are kept as ids only; the
    others as rows, in ORDER then by node id."""

    rows: tuple[NodeRow, ...]  # every node not at parity
    parity: tuple[str, ...] = ()  # node ids at parity, unordered

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.verdict] = out.get(row.verdict, 0) + 1
        if self.parity:
            out[NodeVerdict.PARITY] = len(self.parity)
        return {v.value: out[v] for v in ORDER if v in out}

    def by_verdict(self, verdict: NodeVerdict) -> list[NodeRow]:
        if verdict is NodeVerdict.PARITY:
            return [NodeRow(nid, verdict, None, None) for nid in sorted(self.parity)]
        return [row for row in self.rows if row.verdict is verdict]

    @property
    def regressions(self) -> int:
        return sum(1 for row in self.rows if row.verdict is NodeVerdict.REGRESSION)


def key(node) -> tuple[str, str, str]:
    return (node.node_id, node.outcome, node.exception)


def _failure(node) -> str:
    return f"{node.exception}: {node.message}" if node.exception and node.message and \
        not node.message.startswith(node.exception) else (node.message or node.exception)


def node_verdict(b, c, baseline_infra: bool = False,
                 candidate_infra: bool = False) -> tuple[NodeVerdict, str]:
    """The verdict of one node from its two sides (None: absent on that side)."""
    if b is None or c is None:
        if (b is None and baseline_infra) or (c is None and candidate_infra):
            side = "baseline" if b is None else "candidate"
            return NodeVerdict.INCONCLUSIVE, f"not run on the {side} (its job hit infrastructure)"
        present = c if b is None else b
        if b is None:
            if present.outcome in NODE_FAILING and getattr(present, "expected", ""):
                return NodeVerdict.EXPECTED, f"{present.expected}; {_failure(present)}"
            if present.outcome in NODE_FAILING:
                return NodeVerdict.REGRESSION, f"only on the candidate, fails: {_failure(present)}"
            return NodeVerdict.CANDIDATE_ONLY, present.outcome
        return NodeVerdict.BASELINE_ONLY, present.outcome
    b_fail, c_fail = b.outcome in NODE_FAILING, c.outcome in NODE_FAILING
    if c_fail and getattr(c, "expected", ""):
        return NodeVerdict.EXPECTED, f"{c.expected}; {_failure(c)}"
    b_skip, c_skip = b.outcome in SKIPPED, c.outcome in SKIPPED
    if b_skip and c_skip:
        return NodeVerdict.BOTH_SKIP, c.skip_reason
    if c_skip:
        return NodeVerdict.CANDIDATE_SKIP, c.skip_reason
    if b_skip:
        return NodeVerdict.BASELINE_SKIP, b.skip_reason
    if b_fail and c_fail:
        if b.exception != c.exception:
            return NodeVerdict.BOTH_FAIL, (f"exception changed: {b.exception or '?'} -> "
                                           f"{c.exception or '?'}: {_failure(c)}")
        return NodeVerdict.BOTH_FAIL, _failure(c)
    if c_fail:
        return NodeVerdict.REGRESSION, _failure(c)
    if b_fail:
        return NodeVerdict.FIXED, f"baseline: {_failure(b)}"
    return NodeVerdict.PARITY, ""


def diff_nodes(baseline: list, candidate: list, baseline_infra: bool = False,
               candidate_infra: bool = False) -> NodeDiff:
    """Every node of either side with its verdict."""
    b_by = {node.node_id: node for node in baseline}
    parity, rows = [], []
    for c in candidate:
        b = b_by.pop(c.node_id, None)
        if b is not None and b.outcome == c.outcome and b.outcome in RAN_OK:
            parity.append(c.node_id)  # the common case: both passed (or both xfailed)
            continue
        verdict, detail = node_verdict(b, c, baseline_infra, candidate_infra)
        if verdict is NodeVerdict.PARITY:
            parity.append(c.node_id)
        else:
            rows.append(NodeRow(c.node_id, verdict, b, c, detail))
    for b in b_by.values():  # on the baseline only
        verdict, detail = node_verdict(b, None, baseline_infra, candidate_infra)
        rows.append(NodeRow(b.node_id, verdict, b, None, detail))
    rank = {v: i for i, v in enumerate(ORDER)}
    rows.sort(key=lambda row: (rank[row.verdict], row.node_id))
    return NodeDiff(tuple(rows), tuple(parity))


def skip_report(diff: NodeDiff) -> dict[str, list[str]]:
    """Nodes that run on the baseline and are skipped on the candidate, by skip reason (most
    nodes first): the candidate's coverage gap."""
    groups: dict[str, list[str]] = {}
    for row in diff.by_verdict(NodeVerdict.CANDIDATE_SKIP):
        groups.setdefault(row.detail or "(no reason given)", []).append(row.node_id)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])))
