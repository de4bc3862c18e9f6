"""Read one run directory for the history store, all or nothing.

Every result file of the run is validated before anything is stored: a temp file left by an
interrupted atomic write, a case log without its result, a corrupt or misplaced result: each makes
the run half-written, and the store refuses it whole, naming every offending file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness.history.rows import ResultRow, result_row
from harness.results import (ResultFileError, case_of_log, cycle_collection_paused,
                             iter_result_files, read_result_bytes)
from harness.resultview import decode_result_view

ANNOTATION_NAMES = ("annotation.md", "annotation.markdown")


class IncompleteRun(Exception):
    """A run directory that cannot be stored whole; lists every problem, each naming a file."""

    def __init__(self, run_dir: Path, problems: list[str]):
        self.run_dir, self.problems = run_dir, problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{run_dir}: half-written or invalid run, nothing stored:\n{lines}")


@dataclass(frozen=True)
class RunBatch:
    run_id: str
    run_dir: Path  # absolute, so the board can link to the logs beside the results
    annotation: str | None  # relative to run_dir
    rows: list[ResultRow]

    @property
    def platforms(self) -> list[str]:
        return sorted({row.platform for row in self.rows})


def _problems_in_platform_dir(platform_dir: Path) -> list[str]:
    problems = []
    for path in sorted(platform_dir.iterdir()):
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):
            problems.append(f"{path}: temp file of an interrupted write (the result is incomplete)")
        elif case_of_log(name) and not path.with_suffix(".json").exists():
            problems.append(f"{path.with_suffix('.json')}: missing (its log {name} exists)")
    return problems


def _annotation(run_dir: Path) -> str | None:
    """The run's annotation (Markdown) if one was saved beside its results."""
    named = [name for name in ANNOTATION_NAMES if (run_dir / name).is_file()]
    others = sorted(p.name for p in run_dir.glob("*.md") if p.is_file())
    return (named + others)[0] if named or others else None


def read_run(run_dir: Path) -> RunBatch:
    with cycle_collection_paused():
        return _read_run(Path(run_dir))


def _read_run(run_dir: Path) -> RunBatch:
    if not run_dir.is_dir():
        raise IncompleteRun(run_dir, [f"{run_dir}: not a directory"])
    problems: list[str] = []
    for platform_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        problems += _problems_in_platform_dir(platform_dir)
    rows: list[ResultRow] = []
    files = iter_result_files(run_dir)
    if not files:
        problems.append(f"{run_dir}: no result files (expected <run>/<platform>/<case>.json)")
    for path in files:
        try:  # the file is read once: the digest is of the very bytes that were validated
            raw = read_result_bytes(path)
            result = decode_result_view(raw, path)
        except ResultFileError as exc:
            problems.append(str(exc))
            continue
        digest = hashlib.sha256(raw).hexdigest()
        expected = {"run_id": run_dir.name, "platform": path.parent.name,
                    "case_id": path.stem}
        for key, want in expected.items():
            if getattr(result, key) != want:
                problems.append(f"{path}: {key} {getattr(result, key)!r} does not match its "
                                f"location ({want!r})")
        try:
            rows.append(result_row(result, digest))
        except ValueError as exc:  # a timestamp that is not ISO 8601
            problems.append(f"{path}: started_at/finished_at: {exc}")
    if problems:
        raise IncompleteRun(run_dir, problems)
    annotation = _annotation(run_dir)
    return RunBatch(run_dir.name, run_dir.resolve(), annotation, rows)
