"""`harness signatures test`: every rule against every fixture, and coverage over logs.

A fixture must be matched by its own rule, first: no rule above it that reads the same text
matches any of its lines. Coverage: of the failed jobs (result files with status failed or
error) under the given directories, the share whose logs a rule names; a directory of bare
``.log`` files counts each log as a failed job's engine log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.resultview import read_result_view
from harness.results import ResultFileError, Where
from harness.signatures.attach import SIGNED_STATUSES, signature_of, sources_of, where_of
from harness.signatures.rulebook import UNCLASSIFIED, Rulebook
from harness.signatures.scan import Source, classify


def fixture_problems(rulebook: Rulebook) -> list[str]:
    """One line per rule whose fixture is not matched by it first (empty: all are)."""
    problems = []
    for rule in rulebook.rules:
        for scope in rule.scope:
            found = classify(rulebook, [Source("fixture", scope, rule.fixture.encode())])
            if found is None or found.rule.name != rule.name:
                problems.append(f"{rulebook.path}:{rule.line}: {rule.name}: fixture "
                                f"({scope}) matched by {found.rule.name if found else 'no rule'}")
                break
        for earlier in rulebook.rules[:rule.index]:
            if set(earlier.scope) & set(rule.scope) and any(
                    earlier.regex.search(line) for line in rule.fixture.splitlines()):
                problems.append(f"{rulebook.path}:{rule.line}: {rule.name}: fixture also "
                                f"matched by the earlier rule {earlier.name}")
    return problems


@dataclass
class Coverage:
    failed: int = 0
    by_rule: Counter = field(default_factory=Counter)
    unclassified: list[str] = field(default_factory=list)  # "file: last error line"
    unreadable: list[str] = field(default_factory=list)

    @property
    def classified(self) -> int:
        return self.failed - len(self.unclassified)

    @property
    def share(self) -> float:
        return self.classified / self.failed if self.failed else 1.0


def coverage(rulebook: Rulebook, directories: list[Path]) -> Coverage:
    out = Coverage()
    for directory in directories:
        results = sorted(p for p in Path(directory).rglob("*.json")
                         if not p.name.startswith(".") and ".attempt" not in p.name)
        jobs = []
        for path in results:
            try:
                result = read_result_view(path)
            except ResultFileError as exc:
                out.unreadable.append(str(exc))
                continue
            if result.status in SIGNED_STATUSES:
                worker = next(iter(sorted(path.parent.glob("worker*.log"))), None)
                own, shared = sources_of(result, path.parent, worker)
                jobs.append((str(path), own, shared, where_of(result, {})))
        if not results:  # bare logs: each one a failed job's engine log
            for path in sorted(Path(directory).rglob("*.log")):
                jobs.append((str(path), [Source(path.name, "engine", path.read_bytes())], [],
                             None))
        for name, own, shared, where in jobs:
            sig = signature_of(own, shared, where or Where(), rulebook)
            out.failed += 1
            out.by_rule[sig.rule] += 1
            if sig.rule == UNCLASSIFIED:
                out.unclassified.append(f"{name}: {sig.line or '(no error line)'}")
    return out
