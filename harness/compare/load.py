"""Read one side (``<run_dir>/<platform>/*.json``) from disk. The only I/O of the comparison.

A file that cannot be used becomes a named problem, never an exception and never a silent
skip: the comparison reports it and the exit code says the inputs were incomplete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from harness.compare.model import ResultProblem, Side
from harness.compare.outputs import policy_of
from harness.results import (ResultFileError, cycle_collection_paused, has_result_files,
                             platform_result_files)
from harness.resultview import ResultView, read_result_view


def platforms_in(run_dir: Path) -> list[str]:
    """Platform directories of a run that hold at least one result file (or look like one)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and has_result_files(p))


def load_side(run_dir: Path, platform: str,
              reader: Callable[[Path], ResultView] = read_result_view) -> Side:
    run_dir = Path(run_dir)
    platform_dir = run_dir / platform
    if not platform_dir.is_dir():
        return Side(run_dir, platform, note=f"{platform_dir}: no such directory (no results)")
    results, problems = {}, {}
    for path in platform_result_files(platform_dir):
        case_id = path.stem
        try:
            result = reader(path)
        except ResultFileError as exc:
            problems[case_id] = ResultProblem(str(path), exc.problem)
            continue
        mismatch = _mismatch(result, case_id, platform)
        if mismatch:
            problems[case_id] = ResultProblem(str(path), mismatch)
        else:
            results[case_id] = result
    return Side(run_dir, platform, results, problems)


def load_sides(sides: Sequence[tuple[Path, str]]) -> list[Side]:
    """Several sides (baseline, candidates, reference), each read once, one after the other:
    decoding holds the GIL, and two threads decoding at once were slower than one after the
    other (benchmarks/bench_compare.py: 1.4 s against 1.0 s for 10,000 results)."""
    unique = list(dict.fromkeys((Path(d), p) for d, p in sides))
    with cycle_collection_paused():
        loaded = {key: load_side(*key) for key in unique}
    return [loaded[(Path(d), p)] for d, p in sides]


def _mismatch(result, case_id: str, platform: str) -> str:
    """A result copied to the wrong place would be compared as the wrong job."""
    try:
        policy_of(result.compare)
    except ValueError as exc:
        return f"compare: {exc}"
    if result.case_id != case_id:
        return f"holds case {result.case_id!r}, not {case_id!r} as its file name says"
    if result.platform != platform:
        return f"holds platform {result.platform!r}, not {platform!r} as its directory says"
    return ""
