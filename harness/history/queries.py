"""Questions the board asks of the history, as pure functions over rows (no SQL, no I/O).

A *series* is one case on one platform, ordered by night. Skipped runs say nothing about the
code and are left out of every question; "bad" is failed, error (infrastructure, which after a
vLLM change is often the regression itself: OOM, startup timeout) or a strict xpass.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import accumulate
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

from harness.history.rows import BAD, NEUTRAL, verdict


class Row(NamedTuple):
    case_id: str
    platform: str
    night: int  # index into the ordered nights
    status: str
    failure_class: str | None
    build_number: int | None
    commit: str | None
    output: object  # equal exactly when the outputs (token ids) are; None: no output to compare
    total_s: float | None
    result_id: int = 0


@dataclass(frozen=True)
class PlatformRun:
    run_dir: str
    annotation: str | None
    accelerator: str | None


@dataclass(frozen=True)
class Night:
    """One run (one build): the column of the board."""

    index: int
    run_id: str
    started_at: str | None
    build_number: int | None
    commit: str | None
    build_url: str | None
    platforms: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    refs: dict[str, int] = field(default_factory=dict)  # platform -> the store's run key

    def platform_run(self, platform: str) -> PlatformRun | None:
        found = self.platforms.get(platform)
        return PlatformRun(*found) if found else None


Key = tuple[str, str]  # (case id, platform)


def series_by_key(rows: Iterable[Row]) -> dict[Key, list[Row]]:
    """Per case x platform history, in night order (rows are sorted here, stably)."""
    out: dict[Key, list[Row]] = defaultdict(list)
    for row in sorted(rows, key=attrgetter("night")):
        out[row[:2]].append(row)  # (case_id, platform)
    return dict(out)


def _counted(series: Sequence[Row]) -> list[Row]:
    return [row for row in series if row.status not in NEUTRAL]


# --- flakiness ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlakeRule:
    """vLLM's quarantine rule: a fail rate in [low, high] over at least ``min_runs`` of the last
    ``window`` runs quarantines; ``reinstate_after`` passes in a row reinstate.

    ``require_recovery``: a case must also pass after failing inside the window. Without it a plain
    regression (passing for weeks, then failing every night) reads as flaky while its failures
    are still under 90% of the window, and the board would call a real break a flake.
    """

    window: int = 14
    min_runs: int = 5
    low: float = 0.10
    high: float = 0.90
    reinstate_after: int = 5
    require_recovery: bool = True


@dataclass(frozen=True)
class Flakiness:
    flaky: bool
    fail_rate: float | None  # over the current window; None when fewer than min_runs
    runs: int  # counted runs in the current window
    events: tuple[tuple[str, int], ...]  # ("quarantined" | "reinstated", night)


def _recovers(window: Sequence[bool]) -> bool:
    """A pass after a failure (window holds "bad" flags in night order)."""
    seen_bad = False
    for bad in window:
        if bad:
            seen_bad = True
        elif seen_bad:
            return True
    return False


def flakiness(series: Sequence[Row], rule: FlakeRule = FlakeRule()) -> Flakiness:
    counted = _counted(series)
    bad_flags = [r.status in BAD for r in counted]
    bad_before = [0, *accumulate(bad_flags)]  # bad runs before index i: window rates in O(1)
    flaky, window_start, passes_in_row = False, 0, 0
    events: list[tuple[str, int]] = []
    for i, (row, bad) in enumerate(zip(counted, bad_flags)):
        passes_in_row = 0 if bad else passes_in_row + 1
        if flaky:
            if passes_in_row >= rule.reinstate_after:
                flaky = False
                events.append(("reinstated", row.night))
                # The passes that reinstated it stay in the next window: failing again soon after
                # is evidence of flakiness, not a fresh start.
                window_start = i + 1 - rule.reinstate_after
            continue
        start = max(window_start, i + 1 - rule.window)
        runs = i + 1 - start
        if runs < rule.min_runs:
            continue
        rate = (bad_before[i + 1] - bad_before[start]) / runs
        if rule.low <= rate <= rule.high and (
                not rule.require_recovery or _recovers(bad_flags[start:i + 1])):
            flaky = True
            events.append(("quarantined", row.night))
    window = bad_flags[max(0, len(bad_flags) - rule.window):]
    rate = sum(window) / len(window) if len(window) >= rule.min_runs else None
    return Flakiness(flaky, rate, len(window), tuple(events))


# --- first bad build ------------------------------------------------------------------------

@dataclass(frozen=True)
class FirstBad:
    """The first failing run after the last passing one; the change is between the two."""

    first_bad: Row
    last_good: Row | None  # None: never passed in the stored history
    bad_runs: int  # counted runs since (and including) the first bad one

    @property
    def commit_range(self) -> tuple[str | None, str | None]:
        return (self.last_good.commit if self.last_good else None, self.first_bad.commit)

    @property
    def build_range(self) -> tuple[int | None, int | None]:
        return (self.last_good.build_number if self.last_good else None,
                self.first_bad.build_number)


def first_bad(series: Sequence[Row]) -> FirstBad | None:
    """None when the latest counted run is good (or there is none)."""
    counted = _counted(series)
    if not counted or verdict(counted[-1].status) == "good":
        return None
    last_good = max((i for i, r in enumerate(counted) if verdict(r.status) == "good"), default=-1)
    return FirstBad(counted[last_good + 1], counted[last_good] if last_good >= 0 else None,
                    len(counted) - last_good - 1)


# --- output drift ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Drift:
    before: Row
    after: Row


def output_drift(series: Sequence[Row]) -> list[Drift]:
    """Where a passing case's output digest changed from its previous passing night."""
    drifts, previous = [], None
    for row in series:
        if row.status != "passed" or row.output is None:
            continue
        if previous is not None and previous.output != row.output:
            drifts.append(Drift(previous, row))
        previous = row
    return drifts


# --- ROCm vs CUDA parity --------------------------------------------------------------------

@dataclass
class NightParity:
    night: int
    both_good: int = 0
    both_bad: int = 0
    only_a_bad: list[str] = field(default_factory=list)
    only_b_bad: list[str] = field(default_factory=list)
    outputs_differ: list[str] = field(default_factory=list)  # both passed, other token ids
    only_on_a: list[str] = field(default_factory=list)  # ran (not skipped) on one side only
    only_on_b: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return len(self.only_a_bad) + len(self.only_b_bad)


def parity(rows: Iterable[Row], platform_a: str, platform_b: str) -> list[NightParity]:
    """Per night, how the same cases fared on two platforms (e.g. ROCm against CUDA)."""
    by_night: dict[int, dict[str, dict[str, Row]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if row.platform in (platform_a, platform_b) and verdict(row.status) != "neutral":
            by_night[row.night][row.case_id][row.platform] = row
    out = []
    for night in sorted(by_night):
        result = NightParity(night)
        for case in sorted(by_night[night]):
            sides = by_night[night][case]
            a, b = sides.get(platform_a), sides.get(platform_b)
            if a is None or b is None:
                (result.only_on_b if a is None else result.only_on_a).append(case)
                continue
            a_bad, b_bad = verdict(a.status) == "bad", verdict(b.status) == "bad"
            if a_bad and b_bad:
                result.both_bad += 1
            elif a_bad:
                result.only_a_bad.append(case)
            elif b_bad:
                result.only_b_bad.append(case)
            else:
                result.both_good += 1
                if (a.status == b.status == "passed" and a.output is not None
                        and b.output is not None and a.output != b.output):
                    result.outputs_differ.append(case)
        out.append(result)
    return out
