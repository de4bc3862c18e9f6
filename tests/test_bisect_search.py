"""The bisect's pure core: search, flake-aware confirmation, skips, resume (harness/bisect)."""

from __future__ import annotations

import math

import pytest

from harness.host.bisect.search import (Done, Next, RunRecord, SearchConfig, decide, run_counts,
                                   step_bound, verdict)
from harness.host.bisect.state import BisectState, Candidate, Step


def bisect(config: SearchConfig, oracle, limit: int = 200) -> tuple[Done, list[RunRecord]]:
    """Drive decide() with ``oracle(candidate, nth_run_of_it) -> outcome`` until it is done."""
    runs: list[RunRecord] = []
    for _ in range(limit):
        decision = decide(config, runs)
        if isinstance(decision, Done):
            return decision, runs
        nth = sum(r.candidate == decision.candidate for r in runs)
        runs.append(RunRecord(decision.candidate, oracle(decision.candidate, nth),
                              decision.purpose))
    raise AssertionError("the search did not finish")


def breaks_at(first_bad: int):
    return lambda candidate, nth: "fail" if candidate >= first_bad else "pass"


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("confirmations", [0, 1, 2])
def test_every_first_bad_is_found_within_ceil_log2_steps(verify, confirmations):
    for n in range(2, 34):
        for first_bad in range(1, n):
            config = SearchConfig(n, confirmations, verify)
            done, runs = bisect(config, breaks_at(first_bad))
            assert done.found and (done.last_good, done.first_bad) == (first_bad - 1, first_bad)
            counts = run_counts(config, runs)
            assert counts.steps <= math.ceil(math.log2(n)), (n, first_bad, runs)
            assert counts.within_bound
            assert counts.end_checks == (2 if verify else 0)
            # Every failing candidate that ran got exactly its confirmations, nothing else did.
            failing = {r.candidate for r in runs if r.outcome == "fail"}
            assert counts.confirmations == confirmations * len(failing)
            assert not any(r.purpose == "confirm" and r.candidate < first_bad for r in runs)


def test_eight_tags_cost_at_most_three_steps_plus_confirmations_and_end_checks():
    config = SearchConfig(8, confirmations=1)
    done, runs = bisect(config, breaks_at(5))
    counts = run_counts(config, runs)
    assert step_bound(8) == 3 and counts.steps <= 3
    assert counts.total == counts.end_checks + counts.steps + counts.confirmations
    assert [r.purpose for r in runs][:3] == ["verify-bad", "confirm", "verify-good"]
    assert done.first_bad == 5


def test_a_candidate_failing_one_run_in_two_is_not_named_first_bad():
    # Candidate 3 fails its first run, passes the next (one in two); the real break is at 6.
    def oracle(candidate, nth):
        if candidate == 3:
            return "fail" if nth % 2 == 0 else "pass"
        return breaks_at(6)(candidate, nth)

    config = SearchConfig(8, confirmations=1)
    done, runs = bisect(config, oracle)
    assert done.first_bad == 6 and done.last_good == 5
    assert [r.outcome for r in runs if r.candidate == 3] == ["fail", "pass"]
    assert verdict([r for r in runs if r.candidate == 3], 1) == "flaky"
    # Without confirmation the same flake is (wrongly) named: confirmation is what prevents it.
    unconfirmed, _ = bisect(SearchConfig(8, confirmations=0), oracle)
    assert unconfirmed.first_bad == 3


def test_a_flaky_bad_end_is_not_bisected():
    done, runs = bisect(SearchConfig(8, 1), lambda c, nth: "fail" if nth == 0 else "pass")
    assert not done.found and "intermittently" in done.problem
    assert [r.purpose for r in runs] == ["verify-bad", "confirm"]


def test_more_confirmations_need_every_run_to_fail():
    runs = [RunRecord(7, "fail", "verify-bad"), RunRecord(7, "fail", "confirm")]
    assert decide(SearchConfig(8, confirmations=2), runs) == Next(7, "confirm")
    assert verdict(runs, 2) == "confirming" and verdict(runs, 1) == "bad"


def test_an_unpullable_candidate_is_skipped_and_the_search_goes_around_it():
    def oracle(candidate, nth):
        return "infra" if candidate == 3 else breaks_at(5)(candidate, nth)

    config = SearchConfig(8, 1)
    done, runs = bisect(config, oracle)
    assert done.found and (done.last_good, done.first_bad) == (4, 5) and done.undecided == ()
    assert [r.outcome for r in runs if r.candidate == 3] == ["infra"]  # never retried


def test_a_skipped_candidate_next_to_the_break_is_named_as_possibly_first_bad():
    def oracle(candidate, nth):
        return "infra" if candidate == 5 else breaks_at(5)(candidate, nth)

    done, _ = bisect(SearchConfig(8, 1), oracle)
    assert (done.last_good, done.first_bad, done.undecided) == (4, 6, (5,))


@pytest.mark.parametrize("oracle, problem", [
    (lambda c, nth: "pass", "the bad end passed"),
    (lambda c, nth: "fail", "the good end fails too"),
    (lambda c, nth: "infra" if c == 7 else "pass", "bad end could not be run"),
    (lambda c, nth: "infra" if c == 0 else "fail", "good end could not be run"),
])
def test_ends_that_do_not_verify_stop_the_search(oracle, problem):
    done, runs = bisect(SearchConfig(8, 1), oracle)
    assert not done.found and problem in done.problem
    assert all(r.purpose in ("verify-bad", "verify-good", "confirm") for r in runs)


def test_unverified_ends_are_assumed_not_run():
    done, runs = bisect(SearchConfig(8, 1, verify_ends=False), breaks_at(2))
    assert done.first_bad == 2 and {r.candidate for r in runs} <= set(range(1, 7))


def test_a_pass_after_the_first_bad_is_noted():
    # Candidate 6 passed although 5 and 7 fail: reported, the first bad stays 5.
    runs = [RunRecord(7, "fail", "verify-bad"), RunRecord(7, "fail", "confirm"),
            RunRecord(0, "pass", "verify-good"), RunRecord(6, "pass", "step"),
            RunRecord(5, "fail", "step"), RunRecord(5, "fail", "confirm"),
            RunRecord(4, "pass", "step")]
    decision = decide(SearchConfig(8, 1), runs)
    assert isinstance(decision, Done) and decision.first_bad == 5
    assert any("candidate 6 passed after" in note for note in decision.notes)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        SearchConfig(1)
    with pytest.raises(ValueError, match="confirmations"):
        SearchConfig(4, confirmations=-1)
    with pytest.raises(ValueError, match="only 4 candidates"):
        decide(SearchConfig(4), [RunRecord(9, "pass", "step")])


def state_for(n: int) -> BisectState:
    return BisectState(id="t", case="c", platform="p", good="v0", bad=f"v{n - 1}",
                       confirmations=1, verify_ends=True, source="file:x",
                       candidates=[Candidate(ref=f"r/x:v{i}") for i in range(n)])


@pytest.mark.parametrize("stop_after", range(0, 9))
def test_resume_from_the_state_file_continues_without_repeating(stop_after):
    """Interrupt after any number of runs, round-trip the state through its JSON file format,
    continue: the runs are exactly those of an uninterrupted bisect, none repeated."""
    def oracle(candidate, nth):
        return "infra" if candidate == 2 else breaks_at(6)(candidate, nth)

    state = state_for(10)
    full_done, full_runs = bisect(state.config(), oracle)
    for _ in range(stop_after):
        decision = decide(state.config(), state.runs())
        if isinstance(decision, Done):
            break
        nth = sum(s.candidate == decision.candidate for s in state.steps)
        state.steps.append(Step(number=len(state.steps) + 1, name=f"s{len(state.steps)}",
                                candidate=decision.candidate, purpose=decision.purpose,
                                outcome=oracle(decision.candidate, nth), status="x"))
    resumed = BisectState.model_validate_json(state.model_dump_json())
    runs = resumed.runs()
    while not isinstance(decision := decide(resumed.config(), runs), Done):
        nth = sum(r.candidate == decision.candidate for r in runs)
        runs.append(RunRecord(decision.candidate, oracle(decision.candidate, nth),
                              decision.purpose))
    assert runs == full_runs and decision == full_done
