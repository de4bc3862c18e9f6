"""Plain data of a comparison: the two sides read from disk, and what comparing them found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from harness.compare.nodes import NodeDiff
from harness.compare.outputs import OutputComparison
from harness.compare.verdicts import Outcome, Verdict
from harness.outcomes import EXIT_INFRA, worst_exit
from harness.resultview import ResultView


@dataclass(frozen=True)
class ResultProblem:
    """A result that could not be used, named by its file."""

    path: str
    problem: str  # "missing", "corrupt JSON at line 3: ...", ...


@dataclass(frozen=True)
class Side:
    """One platform of one run: ``<run_dir>/<platform>/*.json``."""

    run_dir: Path
    platform: str
    results: dict[str, ResultView] = field(default_factory=dict)  # by case id
    problems: dict[str, ResultProblem] = field(default_factory=dict)  # by case id
    note: str = ""  # e.g. the platform directory itself is missing

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def label(self) -> str:
        return f"{self.platform} ({self.run_id})"

    @property
    def case_ids(self) -> set[str]:
        return set(self.results) | set(self.problems)

    def path_of(self, case_id: str) -> str:
        return str(self.run_dir / self.platform / f"{case_id}.json")


@dataclass(frozen=True)
class ReferenceCheck:
    """Which side agrees with the reference (``hf``) where the two sides disagree."""

    platform: str
    agrees_with: str  # "baseline", "candidate", "both", "neither", "" (not decidable)
    note: str = ""
    baseline: OutputComparison | None = None  # reference vs baseline
    candidate: OutputComparison | None = None  # reference vs candidate


@dataclass(frozen=True)
class CaseComparison:
    case_id: str
    verdict: Verdict
    exit_code: int
    baseline_outcome: Outcome
    candidate_outcome: Outcome
    detail: str
    baseline: ResultView | None = None
    candidate: ResultView | None = None
    baseline_problem: ResultProblem | None = None
    candidate_problem: ResultProblem | None = None
    outputs: OutputComparison | None = None
    reference: ReferenceCheck | None = None
    # harness.spec.quarantine: the entry that made a candidate failure `quarantined`, or an expired
    # one that no longer does (then the verdict is the failure's own, red).
    quarantine: Any = None
    quarantine_expired: bool = False
    verdict_unquarantined: Verdict | None = None  # what it would be without the quarantine
    nodes: NodeDiff | None = None  # a vllm_tests case: the per-node diff (harness.compare.nodes)


@dataclass(frozen=True)
class EnvDifference:
    key: str
    baseline: tuple[str, ...]
    candidate: tuple[str, ...]


@dataclass(frozen=True)
class PairComparison:
    baseline: Side
    candidate: Side
    cases: tuple[CaseComparison, ...]
    environment: tuple[EnvDifference, ...] = ()
    reference: str | None = None  # the reference platform consulted, if any

    @property
    def exit_code(self) -> int:
        if not self.cases:  # nothing compared is not parity: the inputs are missing
            return EXIT_INFRA
        return worst_exit([c.exit_code for c in self.cases])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for case in self.cases:
            out[str(case.verdict)] = out.get(str(case.verdict), 0) + 1
        return out


@dataclass(frozen=True)
class Comparison:
    pairs: tuple[PairComparison, ...]
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return worst_exit([p.exit_code for p in self.pairs])
