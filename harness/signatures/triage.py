"""Failures grouped by signature across the jobs of a run and the nights of the history store
(pure: the readers are harness.signatures.triage_read; the renderers triage_render).

For each signature (rule + grouping key): first and last night seen, nights, jobs, platforms,
nodes, cases; **new tonight** (first seen on the latest night); **ROCm only** or **shared with
CUDA** (the same signature on a CUDA job of a vLLM commit it also failed on ROCm); and
**node-local**: every occurrence on one node, on two or more nights, while the same case passed
on other nodes of the platform during or after that: a node problem, not a regression.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

NODE_LOCAL_MIN_NIGHTS = 2


@dataclass(frozen=True)
class Night:
    index: int  # order of the nights (0 = oldest)
    run_id: str
    started_at: str | None = None


@dataclass(frozen=True)
class Occurrence:
    """One failed job with its signature."""

    night: int
    platform: str
    accelerator: str | None
    case_id: str
    node: str | None
    commit: str | None
    rule: str
    key: str
    failure_class: str | None
    line: str
    gpu_arch: str | None = None


@dataclass(frozen=True)
class Pass:
    """One passing job and where it ran (what node-local needs to compare with)."""

    night: int
    platform: str
    case_id: str
    node: str | None


@dataclass
class Group:
    rule: str
    key: str
    failure_class: str | None
    first_seen: str  # run id
    last_seen: str
    first_started: str | None
    last_started: str | None
    nights: int
    jobs: int
    platforms: list[str]
    nodes: list[str]
    cases: list[str]
    gpu_archs: list[str]
    new_tonight: bool
    vendor: str  # "ROCm only" | "shared with CUDA" | "CUDA only" | "other"
    node_local: str | None  # the node, when the signature is a node problem
    line: str  # the latest occurrence's matched line
    link: str = ""
    shared_commits: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.node_local:
            return f"node problem: {self.node_local}"
        if self.vendor == "shared with CUDA":
            return "shared with CUDA (not ROCm-specific)"
        if self.new_tonight:
            return "new tonight"
        return "recurring"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def _vendor(occurrences: list[Occurrence]) -> tuple[str, list[str]]:
    rocm = {o.commit for o in occurrences if o.accelerator == "rocm"}
    cuda = {o.commit for o in occurrences if o.accelerator == "cuda"}
    shared = sorted(c for c in rocm & cuda if c)
    if shared:
        return "shared with CUDA", shared
    if rocm:
        return "ROCm only", []
    if cuda:
        return "CUDA only", []
    return "other", []


def _node_local(occurrences: list[Occurrence], passes_by_case: dict[tuple[str, str], list[Pass]]
                ) -> str | None:
    nodes = {o.node for o in occurrences}
    if len(nodes) != 1 or None in nodes:
        return None
    (node,) = nodes
    nights = {o.night for o in occurrences}
    if len(nights) < NODE_LOCAL_MIN_NIGHTS:
        return None
    first = min(nights)
    for platform, case in {(o.platform, o.case_id) for o in occurrences}:
        if any(p.node not in (None, node) and p.night >= first
               for p in passes_by_case.get((platform, case), ())):
            return node
    return None


def triage(occurrences: list[Occurrence], passes: list[Pass], nights: list[Night],
           links: dict[str, str] | None = None) -> list[Group]:
    """The groups, new tonight first, then the most recently seen, then the most jobs."""
    by_index = {n.index: n for n in nights}
    tonight = max((n.index for n in nights), default=None)
    passes_by_case: dict[tuple[str, str], list[Pass]] = defaultdict(list)
    for p in passes:
        passes_by_case[(p.platform, p.case_id)].append(p)
    grouped: dict[tuple[str, str], list[Occurrence]] = defaultdict(list)
    for o in occurrences:
        grouped[(o.rule, o.key)].append(o)
    groups = []
    for (rule, key), mine in grouped.items():
        mine.sort(key=lambda o: o.night)
        first, last = by_index[mine[0].night], by_index[mine[-1].night]
        vendor, shared = _vendor(mine)
        groups.append(Group(
            rule=rule, key=key, failure_class=mine[-1].failure_class,
            first_seen=first.run_id, last_seen=last.run_id, first_started=first.started_at,
            last_started=last.started_at, nights=len({o.night for o in mine}), jobs=len(mine),
            platforms=sorted({o.platform for o in mine}),
            nodes=sorted({o.node for o in mine if o.node}),
            cases=sorted({o.case_id for o in mine}),
            gpu_archs=sorted({o.gpu_arch for o in mine if o.gpu_arch}),
            new_tonight=mine[0].night == tonight, vendor=vendor,
            node_local=_node_local(mine, passes_by_case), line=mine[-1].line,
            link=(links or {}).get(rule, ""), shared_commits=shared))
    order = {n.run_id: n.index for n in nights}
    groups.sort(key=lambda g: (not g.new_tonight, -order[g.last_seen], -g.jobs, g.rule, g.key))
    return groups
