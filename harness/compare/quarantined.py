"""Apply the quarantine list (harness.spec.quarantine) to a comparison. Pure.

A case that would make the build red (its verdict exits 1) and is quarantined on the candidate's
platform today becomes ``quarantined`` (exit 0), its detail naming the entry's date and link and
what the verdict would otherwise be. Past ``until`` the verdict stays the failure's own, and the
detail says the quarantine expired.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from harness.compare.model import CaseComparison, Comparison, PairComparison
from harness.compare.verdicts import VERDICT_EXIT, Verdict
from harness.outcomes import EXIT_FAILED, EXIT_OK
from harness.spec.quarantine import Quarantined, find


def apply_quarantine(comparison: Comparison, entries: list[Quarantined],
                     today: dt.date) -> Comparison:
    if not entries:
        return comparison
    pairs = tuple(replace(pair, cases=tuple(_case(case, pair, entries, today)
                                            for case in pair.cases))
                  for pair in comparison.pairs)
    return replace(comparison, pairs=pairs)


def _case(case: CaseComparison, pair: PairComparison, entries: list[Quarantined],
          today: dt.date) -> CaseComparison:
    if case.exit_code != EXIT_FAILED:
        return case
    entry = find(entries, case.case_id, pair.candidate.platform)
    if entry is None:
        return case
    if not entry.holds_on(today):
        return replace(case, quarantine=entry, quarantine_expired=True,
                       detail=f"quarantine expired {entry.until.isoformat()} ({entry.link}); "
                              f"{case.detail}")
    return replace(case, verdict=Verdict.QUARANTINED, exit_code=VERDICT_EXIT[Verdict.QUARANTINED],
                   quarantine=entry, verdict_unquarantined=case.verdict,
                   detail=f"{entry.label()}; {case.verdict}: {case.detail}")


assert VERDICT_EXIT[Verdict.QUARANTINED] == EXIT_OK
