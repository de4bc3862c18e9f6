"""Read one side (``<run_dir>/<platform>/*.json``) from disk. The only I/O of the comparison.

A file that cannot be used becomes a named problem, never an exception and never a silent
skip: the comparison reports it and the exit code says the inputs were incomplete.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from harness.compare.model import ResultProblem, Side
from harness.compare.outputs import policy_of
from harness.results import (Result, ResultFileError, cycle_collection_paused,
                             platform_result_files, read_result)

# What the comparison and its reports never read: dropped as each file is read, so that ten
# thousand results do not hold every check's evidence and every trace in memory at once.
# The checks themselves stay (without their evidence): reports show the not-applicable ones.
NOT_COMPARED = {"traces": {}}


def read_for_compare(path: Path) -> Result:
    """A result file, validated whole, keeping only what comparing and reporting use."""
    result = read_result(path)
    checks = [c.model_copy(update={"evidence": {}}) for c in result.checks]
    return result.model_copy(update={**NOT_COMPARED, "checks": checks})


def platforms_in(run_dir: Path) -> list[str]:
    """Platform directories of a run that hold at least one result file (or look like one)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and any(platform_result_files(p)))


def load_side(run_dir: Path, platform: str,
              reader: Callable[[Path], Result] = read_for_compare) -> Side:
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
    """Several sides (baseline, candidates, reference) read at once, one thread each: their file
    reads overlap (parsing and validating hold the GIL, so the gain is the I/O: large on a cold
    cache or a network file system, small on a warm one)."""
    unique = list(dict.fromkeys((Path(d), p) for d, p in sides))
    with cycle_collection_paused():
        if len(unique) <= 1:
            loaded = {key: load_side(*key) for key in unique}
        else:
            with ThreadPoolExecutor(max_workers=len(unique),
                                    thread_name_prefix="load-side") as pool:
                loaded = dict(zip(unique, pool.map(lambda key: load_side(*key), unique)))
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
