"""The search, pure: given the candidates' run history, what to run next or what was found.

Candidates are indexed oldest first; index 0 is the good end, the last one the bad end. All
decisions are derived from the list of finished runs alone, so a state file that holds that
list resumes a bisect exactly where it stopped (the next decision is the same one).

Per candidate, its runs give a verdict:

* ``good``: its first run passed.
* ``bad``: its first run failed and ``confirmations`` more runs failed too (flake-aware: one
  failure alone never names a candidate bad).
* ``flaky``: it failed, then passed in a confirmation run. The search treats it as the good
  side: the failure we chase is one that reproduces, and this candidate can pass.
* ``skip``: a run hit an infrastructure failure (timeout, lost container, image pull failure,
  missing image); as ``git bisect skip``, the search goes around it, and if the first bad could
  be a skipped one the report says which.
* ``confirming``: failed so far, confirmation runs still due; ``untested``: no run yet.

Without skips the steps (first runs inside the range) are at most ceil(log2(n)) for n
candidates, plus the confirmation runs and the two end checks.

When confirmation runs happen (``confirm_at``): ``each`` confirms every failing candidate
before the search moves on; ``final`` confirms the bad end at once (does the failure reproduce
at all?) and otherwise only the candidate the search ends on, taking a failing step as bad
meanwhile. A step that was a flake then passes its confirmation, counts on the good side, and
the search goes on to its right. Without flakes, ``final`` costs ceil(log2(n)) steps, the two
end checks and two confirmations (one per confirmation setting): ceil(log2(n)) + 4 runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

Outcome = Literal["pass", "fail", "infra"]
Purpose = Literal["verify-bad", "verify-good", "step", "confirm"]
Verdict = Literal["untested", "good", "bad", "flaky", "skip", "confirming"]
ConfirmAt = Literal["each", "final"]
CONFIRM_AT: tuple[str, ...] = ("each", "final")
GOOD_SIDE = ("good", "flaky")


@dataclass(frozen=True)
class RunRecord:
    """One finished engine run of one candidate."""

    candidate: int
    outcome: Outcome
    purpose: Purpose


@dataclass(frozen=True)
class SearchConfig:
    count: int  # candidates, the good end at 0 and the bad end at count - 1
    confirmations: int = 1  # extra failing runs before a candidate is called bad
    verify_ends: bool = True  # run the ends first; otherwise they are assumed good and bad
    confirm_at: ConfirmAt = "each"  # confirm every failing candidate, or the bad end and the last

    def __post_init__(self) -> None:
        if self.count < 2:
            raise ValueError(f"a bisect needs at least 2 candidates (good and bad), got {self.count}")
        if self.confirmations < 0:
            raise ValueError(f"confirmations must be >= 0, got {self.confirmations}")
        if self.confirm_at not in CONFIRM_AT:
            raise ValueError(f"confirm_at must be one of {CONFIRM_AT}, got {self.confirm_at!r}")


@dataclass(frozen=True)
class Next:
    candidate: int
    purpose: Purpose


@dataclass(frozen=True)
class Done:
    """The search is over. ``problem`` is set when the ends did not verify (nothing found)."""

    last_good: int | None
    first_bad: int | None
    # Skipped candidates between last good and first bad: any of them could be the first bad.
    undecided: tuple[int, ...] = ()
    problem: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def found(self) -> bool:
        return not self.problem and self.first_bad is not None


def verdict(runs: Sequence[RunRecord], confirmations: int) -> Verdict:
    """One candidate's verdict from its own runs, in the order they ran."""
    outcomes = [r.outcome for r in runs]
    if not outcomes:
        return "untested"
    if "infra" in outcomes:
        return "skip"
    if outcomes[0] == "pass":
        return "good"
    if "pass" in outcomes:
        return "flaky"
    return "bad" if len(outcomes) >= 1 + confirmations else "confirming"


def verdicts(config: SearchConfig, runs: Sequence[RunRecord]) -> list[Verdict]:
    by_candidate: list[list[RunRecord]] = [[] for _ in range(config.count)]
    for run in runs:
        if not 0 <= run.candidate < config.count:
            raise ValueError(f"run of candidate {run.candidate}: only {config.count} candidates")
        by_candidate[run.candidate].append(run)
    return [verdict(r, config.confirmations) for r in by_candidate]


def decide(config: SearchConfig, runs: Sequence[RunRecord]) -> Next | Done:
    """The next run, or the conclusion."""
    seen = verdicts(config, runs)
    good_end, bad_end = 0, config.count - 1
    confirming = [i for i, v in enumerate(seen) if v == "confirming"
                  and (config.confirm_at == "each" or i in (good_end, bad_end))]
    if confirming:
        return Next(confirming[0], "confirm")
    if config.verify_ends:
        end_check = _check_ends(seen, good_end, bad_end)
        if end_check is not None:
            return end_check
    effective = list(seen)
    if effective[good_end] == "untested":
        effective[good_end] = "good"  # assumed: not verified by request
    if effective[bad_end] == "untested":
        effective[bad_end] = "bad"
    if effective[bad_end] != "bad":
        # Only reachable without verification, when the bad end ran as a step (never): guard.
        return Done(None, None, problem=f"the bad end is {effective[bad_end]}, not bad")
    # confirm_at="final": a failing step counts as bad until the search ends on it
    first_bad = min(i for i, v in enumerate(effective) if v in ("bad", "confirming"))
    good_before = [i for i in range(first_bad) if effective[i] in GOOD_SIDE]
    if not good_before:
        return Done(None, first_bad,
                    problem="no candidate before the first bad one passed (the good end is "
                            f"{effective[good_end]})")
    last_good = max(good_before)
    notes = tuple(f"candidate {i} passed after the first bad one ({first_bad}): the failure "
                  "does not persist" for i, v in enumerate(effective)
                  if i > first_bad and v in GOOD_SIDE)
    untested = [i for i in range(last_good + 1, first_bad) if effective[i] == "untested"]
    if untested:
        middle = (last_good + first_bad) / 2
        return Next(min(untested, key=lambda i: (abs(i - middle), i)), "step")
    if effective[first_bad] == "confirming":  # confirm_at="final": the one it ends on
        return Next(first_bad, "confirm")
    undecided = tuple(i for i in range(last_good + 1, first_bad) if effective[i] == "skip")
    return Done(last_good, first_bad, undecided, notes=notes)


def _check_ends(seen: list[Verdict], good_end: int, bad_end: int) -> Next | Done | None:
    """Verify the bad end first (does the failure reproduce at all?), then the good end."""
    bad, good = seen[bad_end], seen[good_end]
    if bad == "untested":
        return Next(bad_end, "verify-bad")
    if bad == "skip":
        return Done(None, None, problem="the bad end could not be run (infrastructure failure); "
                                        "nothing to bisect")
    if bad in GOOD_SIDE:
        what = "passed" if bad == "good" else "failed only intermittently (flaky)"
        return Done(None, None, problem=f"the bad end {what}: no reproducible failure to bisect")
    if good == "untested":
        return Next(good_end, "verify-good")
    if good == "skip":
        return Done(None, None, problem="the good end could not be run (infrastructure "
                                        "failure); nothing to bisect")
    if good == "bad":
        return Done(None, 0, problem="the good end fails too: the break is older than the range")
    return None


def step_bound(count: int) -> int:
    """At most this many steps (first runs inside the range) when nothing is skipped."""
    return math.ceil(math.log2(count)) if count > 1 else 0


@dataclass(frozen=True)
class RunCounts:
    total: int
    end_checks: int
    steps: int
    confirmations: int
    bound: int  # ceil(log2(n)) steps + the confirmations made + the end checks made

    @property
    def within_bound(self) -> bool:
        return self.total <= self.bound


def run_counts(config: SearchConfig, runs: Sequence[RunRecord]) -> RunCounts:
    ends = sum(r.purpose in ("verify-good", "verify-bad") for r in runs)
    steps = sum(r.purpose == "step" for r in runs)
    confirms = sum(r.purpose == "confirm" for r in runs)
    return RunCounts(len(runs), ends, steps, confirms,
                     step_bound(config.count) + confirms + ends)
