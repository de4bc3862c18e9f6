"""Pass/fail parity of one case on two sides: what each side's result means, and the verdict.

Pure. A side's outcome reduces its result status (and expectations) to what parity needs; the
verdict says what the pair of outcomes means for the candidate, and each verdict has one exit
code (0 parity, 1 regression or divergence, 3 infrastructure), so reports and the CLI agree.
"""

from __future__ import annotations

from enum import Enum

from harness.outcomes import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from harness.results import Result


class Outcome(str, Enum):
    PASS = "pass"  # passed, or a non-strict expected failure that passed
    FAIL = "fail"
    XFAIL = "xfail"  # failed, as declared for this platform
    XPASS_STRICT = "xpass"  # passed although declared to fail, strictly: the xfail is stale
    INFRA = "infra"  # timeout, OOM, lost container, harness failure: the code was not tested
    SKIPPED = "skipped"
    MISSING = "missing"  # no result file
    CORRUPT = "corrupt"  # a file that is not a valid result

    def __str__(self) -> str:
        return self.value


class Verdict(str, Enum):
    PARITY = "parity"  # both pass and outputs agree under the case's policy
    DIVERGENCE = "divergence"  # both pass, outputs disagree
    REGRESSION = "regression"  # baseline passes, candidate fails
    FIXED = "fixed"  # baseline fails, candidate passes
    BOTH_FAIL = "both-fail"
    XFAIL = "xfail"  # expected failure on the candidate (reason and link in the result)
    XPASS = "xpass"  # strict unexpected pass on the candidate
    INFRA = "infra"  # infrastructure error on either side: no verdict on the code
    MISSING = "missing-result"
    CORRUPT = "corrupt-result"
    SKIPPED = "skipped"
    NEW = "new"  # the case exists on the candidate only
    NEW_FAILING = "new-failing"  # ... and fails there
    ALONE = "no-baseline"  # the whole baseline side is absent (AMD-only org): candidate passes
    ALONE_FAILING = "fails-no-baseline"  # ... and the candidate fails: red, nothing hides it
    # The candidate fails while the baseline was not tested (infra, skipped, corrupt): red, and
    # named as the candidate's failure (the baseline's state hides nothing).
    FAILS_UNTESTED_BASELINE = "fails-baseline-untested"
    NOT_COMPARABLE = "not-comparable"  # both pass, but different vLLM/model/engine args
    QUARANTINED = "quarantined"  # a candidate failure listed in the quarantine (harness.spec.quarantine)

    def __str__(self) -> str:
        return self.value


# The build rule: a candidate that fails is red unless it is an expected failure, whatever the
# baseline did (both-fail is red: a break on ROCm and CUDA alike is still a break).
VERDICT_EXIT = {
    Verdict.PARITY: EXIT_OK, Verdict.FIXED: EXIT_OK, Verdict.BOTH_FAIL: EXIT_FAILED,
    Verdict.XFAIL: EXIT_OK, Verdict.SKIPPED: EXIT_OK, Verdict.NEW: EXIT_OK,
    Verdict.ALONE: EXIT_OK, Verdict.NOT_COMPARABLE: EXIT_OK, Verdict.QUARANTINED: EXIT_OK,
    Verdict.DIVERGENCE: EXIT_FAILED, Verdict.REGRESSION: EXIT_FAILED,
    Verdict.XPASS: EXIT_FAILED, Verdict.NEW_FAILING: EXIT_FAILED,
    Verdict.ALONE_FAILING: EXIT_FAILED, Verdict.FAILS_UNTESTED_BASELINE: EXIT_FAILED,
    Verdict.INFRA: EXIT_INFRA, Verdict.MISSING: EXIT_INFRA, Verdict.CORRUPT: EXIT_INFRA,
}


# A baseline that says nothing about the code: it must not hide the candidate's own verdict.
UNTESTED = (Outcome.INFRA, Outcome.SKIPPED, Outcome.CORRUPT)


def outcome_of(result: Result | None, problem: str | None = None) -> Outcome:
    if result is None:
        return Outcome.MISSING if problem in (None, "missing") else Outcome.CORRUPT
    if result.status == "error":  # no verdict on the code (harness.outcomes.INFRA_CLASSES)
        return Outcome.INFRA
    if result.status == "xpassed":
        return Outcome.XPASS_STRICT if result.expect.strict else Outcome.PASS
    return {"passed": Outcome.PASS, "failed": Outcome.FAIL, "xfailed": Outcome.XFAIL,
            "skipped": Outcome.SKIPPED}[result.status]


def alone_verdict(candidate: Outcome) -> Verdict:
    """No baseline side at all: the candidate's own outcome decides."""
    return {Outcome.PASS: Verdict.ALONE, Outcome.FAIL: Verdict.ALONE_FAILING,
            Outcome.XPASS_STRICT: Verdict.XPASS, Outcome.XFAIL: Verdict.XFAIL,
            Outcome.INFRA: Verdict.INFRA, Outcome.SKIPPED: Verdict.SKIPPED,
            Outcome.MISSING: Verdict.MISSING, Outcome.CORRUPT: Verdict.CORRUPT}[candidate]


def parity_verdict(baseline: Outcome, candidate: Outcome) -> Verdict:
    """The verdict before outputs are compared (PARITY may still become DIVERGENCE)."""
    if baseline is Outcome.MISSING:
        if candidate in (Outcome.MISSING, Outcome.CORRUPT):
            return Verdict.MISSING if candidate is Outcome.MISSING else Verdict.CORRUPT
        if candidate is Outcome.INFRA:
            return Verdict.INFRA
        return Verdict.NEW_FAILING if candidate in (Outcome.FAIL, Outcome.XPASS_STRICT) \
            else Verdict.NEW
    if baseline in UNTESTED and candidate is Outcome.FAIL:
        return Verdict.FAILS_UNTESTED_BASELINE  # the candidate's own failure shows
    if baseline in UNTESTED and candidate is Outcome.XPASS_STRICT:
        return Verdict.XPASS
    if Outcome.CORRUPT in (baseline, candidate):
        return Verdict.CORRUPT
    if candidate is Outcome.MISSING:
        return Verdict.MISSING
    if Outcome.INFRA in (baseline, candidate):
        return Verdict.INFRA
    if Outcome.SKIPPED in (baseline, candidate):
        return Verdict.SKIPPED
    if candidate is Outcome.XPASS_STRICT:
        return Verdict.XPASS
    if candidate is Outcome.XFAIL:
        return Verdict.XFAIL
    # A baseline's stale strict xfail is the baseline's problem: its code passed.
    baseline_ok = baseline in (Outcome.PASS, Outcome.XPASS_STRICT)
    candidate_ok = candidate is Outcome.PASS
    if baseline_ok and candidate_ok:
        return Verdict.PARITY
    if baseline_ok:
        return Verdict.REGRESSION
    if candidate_ok:
        return Verdict.FIXED
    return Verdict.BOTH_FAIL
