"""Cross-platform comparison of result files: parity verdicts, output policies, reference.

``compare_runs`` reads the run directories (the only I/O) and hands plain data to the pure
functions in ``core``; the reports in ``harness.report`` render the ``Comparison`` it returns.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from harness.compare.core import compare_pair
from harness.compare.load import load_sides, platforms_in
from harness.compare.model import (CaseComparison, Comparison, EnvDifference, PairComparison,
                                   ReferenceCheck, ResultProblem, Side)
from harness.compare.outputs import OutputComparison, compare_outputs
from harness.compare.select import REFERENCE, Selection, SelectionError, select
from harness.compare.verdicts import Outcome, Verdict
from harness.results import cycle_collection_paused

__all__ = ["CaseComparison", "Comparison", "EnvDifference", "OutputComparison", "Outcome",
           "PairComparison", "REFERENCE", "ReferenceCheck", "ResultProblem", "Selection",
           "SelectionError", "Side", "Verdict", "compare_outputs", "compare_pair",
           "compare_runs"]


def compare_runs(run_dirs: list[Path], baseline: str | None = None,
                 candidates: list[str] | None = None,
                 reference: str | None = REFERENCE, quarantine: list | None = None,
                 today: dt.date | None = None) -> Comparison:
    """Compare one run directory's platforms, or two run directories (first = baseline);
    ``quarantine``: the entries of harness.spec.quarantine, judged on ``today`` (UTC by default)."""
    if not 1 <= len(run_dirs) <= 2:
        raise SelectionError("give one or two run directories")
    for run_dir in run_dirs:
        if not Path(run_dir).is_dir():
            raise SelectionError(f"{run_dir}: no such run directory")
    found = [platforms_in(Path(d)) for d in run_dirs]
    selection = select(found[0], found[1] if len(found) == 2 else None, baseline, candidates,
                       reference)
    first, last = Path(run_dirs[0]), Path(run_dirs[-1])
    wanted = [(first, b) for b, _ in selection.pairs] + [(last, c) for _, c in selection.pairs]
    if selection.reference is not None:
        index, name = selection.reference
        wanted.append((Path(run_dirs[index]), name))
    # Comparing allocates too: with every result of both sides alive, each full cycle
    # collection would walk them all again (harness.results.cycle_collection_paused).
    with cycle_collection_paused():
        sides = load_sides(wanted)
        n = len(selection.pairs)
        ref_side = sides[-1] if selection.reference is not None else None
        pairs = tuple(compare_pair(sides[i], sides[n + i], ref_side) for i in range(n))
    notes = tuple(side.note for pair in pairs for side in (pair.baseline, pair.candidate)
                  if side.note)
    comparison = Comparison(pairs, tuple(dict.fromkeys(notes)))
    if quarantine:
        from harness.compare.quarantined import apply_quarantine
        from harness.spec.quarantine import today as utc_today

        comparison = apply_quarantine(comparison, quarantine, today or utc_today())
    return comparison
