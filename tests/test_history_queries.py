"""The history queries, each on histories generated from real result files (no store, no I/O)."""

from __future__ import annotations

import dataclasses

import pytest

from harness.history.queries import (FlakeRule, first_bad, flakiness, output_drift, parity,
                                     series_by_key)
from harness.history.rows import output_digest, result_row, token_digest, utc_timestamp
from tests.synthetic_history import PLATFORMS, Outcome, Place, commit_of, synth_result
from tests.test_history_data import Planted, cases, factory, templates

PASS, FAIL = Outcome(), Outcome("failed", "check-failed", "a check failed")


def series_of(pattern: str):
    """One case on one platform, a night per letter: P pass, F fail, E error, S skip, X xfail."""
    letters = {"P": PASS, "F": FAIL, "E": Outcome("error", "timeout", "overran"),
               "S": Outcome("skipped"), "X": Outcome("xfailed", "check-failed")}
    name = cases(1)[0]
    rows = factory().query_rows(len(pattern), [name],
                                lambda case, platform, night: letters[pattern[night]],
                                platforms=[("rocm", "rocm")])
    return series_by_key(rows).get((name, "rocm"), [])


# --- flakiness ------------------------------------------------------------------------------

def test_steady_passes_and_steady_failures_are_not_flaky():
    assert not flakiness(series_of("P" * 20)).flaky
    broken = flakiness(series_of("F" * 20))
    assert not broken.flaky and broken.fail_rate == 1.0


def test_intermittent_failures_over_five_runs_are_flaky():
    result = flakiness(series_of("PFPPFPPFPP"))
    assert result.flaky
    assert result.fail_rate == pytest.approx(0.3)
    assert result.events == (("quarantined", 4),)  # 2 of 5 once the window holds five runs


def test_fewer_than_five_counted_runs_decide_nothing():
    assert not flakiness(series_of("PFPF")).flaky
    # skipped nights are not runs of the code: still four runs
    assert not flakiness(series_of("PSFSSPSF")).flaky


def test_rate_bounds_are_inclusive():
    ten_percent = series_of("PPPPFPPPPP")  # judged once, over all ten runs
    assert flakiness(ten_percent, FlakeRule(window=10, min_runs=10)).flaky
    assert not flakiness(ten_percent, FlakeRule(window=10, min_runs=10, low=0.11)).flaky
    ninety_percent = series_of("FFFFFFFFPF")
    assert flakiness(ninety_percent, FlakeRule(window=10, min_runs=10)).flaky
    assert not flakiness(ninety_percent, FlakeRule(window=10, min_runs=10, high=0.89)).flaky


def test_reinstated_after_five_passes_in_a_row():
    result = flakiness(series_of("PFPFP" + "PPPPP" + "PP"))
    assert result.events == (("quarantined", 4), ("reinstated", 8))
    assert not result.flaky


def test_failing_again_after_reinstatement_quarantines_again():
    result = flakiness(series_of("PFPFP" + "PPPPP" + "FP"))
    assert [event for event, _ in result.events] == ["quarantined", "reinstated", "quarantined"]
    assert result.flaky


def test_a_plain_regression_is_not_called_flaky():
    regression = series_of("P" * 10 + "F" * 4)  # 4 of 14 failed: inside 10-90%, never recovered
    assert not flakiness(regression).flaky
    # the bare rate rule would call it flaky: this is why the board asks for a recovery too
    assert flakiness(regression, FlakeRule(require_recovery=False)).flaky


def test_infra_errors_count_as_failures_for_flakiness():
    assert flakiness(series_of("PEPPEPPEPP")).flaky


# --- first bad build ------------------------------------------------------------------------

def test_first_bad_is_the_first_failure_after_the_last_pass_with_the_commit_range():
    found = first_bad(series_of("PPFPPPFFF"))
    assert found.first_bad.night == 6 and found.last_good.night == 5
    assert found.bad_runs == 3
    good_build, bad_build = found.build_range
    assert (good_build, bad_build) == (Place(5, "rocm", "rocm", "x").build,
                                       Place(6, "rocm", "rocm", "x").build)
    assert found.commit_range == (commit_of(good_build), commit_of(bad_build))


def test_first_bad_skips_skipped_nights_and_counts_errors_as_bad():
    found = first_bad(series_of("PPSESF"))
    assert (found.last_good.night, found.first_bad.night) == (1, 3)


def test_no_first_bad_while_the_latest_run_passes():
    assert first_bad(series_of("PFFFP")) is None
    assert first_bad(series_of("PPX")) is None  # an expected failure is good
    assert first_bad(series_of("")) is None


def test_never_passed_has_no_last_good():
    found = first_bad(series_of("FFF"))
    assert found.last_good is None and found.first_bad.night == 0
    assert found.commit_range[0] is None


# --- output drift ---------------------------------------------------------------------------

def test_output_drift_between_passing_nights():
    name = cases(1)[0]
    rows = factory().query_rows(
        6, [name], lambda c, p, night: {2: FAIL}.get(night, Outcome(output_variant=night >= 3)),
        platforms=[("cuda", "cuda")])
    drifts = output_drift(series_by_key(rows)[(name, "cuda")])
    # night 1 passed with the real tokens; night 2 failed; night 3 passed with a shifted token
    assert [(d.before.night, d.after.night) for d in drifts] == [(1, 3)]


def test_no_drift_when_outputs_stay_the_same_or_only_timings_change():
    name = cases(1)[0]
    rows = factory().query_rows(5, [name], lambda c, p, n: Outcome(time_factor=1 + n),
                                platforms=[("cuda", "cuda")])
    assert output_drift(series_by_key(rows)[(name, "cuda")]) == []


# --- ROCm vs CUDA parity --------------------------------------------------------------------

def test_parity_per_night_names_the_cases_bad_on_one_side():
    names = cases(4)

    def scenario(case, platform, night):
        if case == names[0] and platform == "rocm" and night == 1:
            return FAIL
        if case == names[1] and night == 1:
            return FAIL  # both platforms
        if case == names[2] and platform == "cuda" and night == 1:
            return Outcome("skipped")
        if case == names[3] and platform == "cuda" and night == 1:
            return Outcome(output_variant=2)
        return PASS

    rows = factory().query_rows(2, names, scenario)
    nights = parity(rows, "rocm", "cuda")
    assert [n.night for n in nights] == [0, 1]
    assert nights[0].mismatches == 0 and nights[0].both_good == 4
    last = nights[1]
    assert last.only_a_bad == [names[0]] and last.only_b_bad == []
    assert last.both_bad == 1
    assert last.only_on_a == [names[2]]  # skipped on cuda: not a mismatch
    assert last.outputs_differ == [names[3]]


# --- rows and generated histories -----------------------------------------------------------

def test_output_digest_is_sha256_of_the_token_ids_per_request():
    result, _ = templates()[0]
    row = result_row(result, "f" * 64)
    with_tokens = [r for r in result.requests if r.ok and r.token_ids]
    assert with_tokens, "the real result should hold generated token ids"
    digests = {q.request_id: q.output_digest for q in row.requests}
    import hashlib
    first = with_tokens[0]
    assert digests[first.id] == hashlib.sha256(
        ",".join(map(str, first.token_ids)).encode()).hexdigest()
    assert output_digest([("b", "2"), ("a", "1")]) == output_digest([("a", "1"), ("b", "2")])
    assert token_digest([1, 23]) != token_digest([12, 3])


def test_timestamps_are_normalised_to_utc():
    assert utc_timestamp("2026-01-01T03:00:00+01:00") == "2026-01-01T02:00:00+00:00"
    assert utc_timestamp("2026-01-01T02:00:00Z") == "2026-01-01T02:00:00+00:00"
    assert utc_timestamp("") is None


def test_row_factory_matches_rows_of_written_results():
    """The benchmark's file-less rows equal what ingesting the generated file would store."""
    pairs = templates()
    fast = factory()
    place = Place(3, "rocm", "rocm", cases(1)[0])
    for outcome in (PASS, FAIL, Outcome(output_variant=1, time_factor=1.5)):
        slow = result_row(synth_result(pairs[0][0], place, outcome), "sha")
        quick = fast.row(0, place, outcome)
        assert dataclasses.replace(quick, file_sha256="sha") == slow


def test_planted_history_has_one_of_each_question_to_answer():
    names = cases(6)
    planted = Planted(names)
    series = series_by_key(factory().query_rows(30, names, planted))
    assert first_bad(series[(planted.regressed, "rocm")]).first_bad.night == Planted.BREAK
    assert all(first_bad(series[(planted.regressed, p)]) is None
               for p, _ in PLATFORMS if p != "rocm")
    assert all(flakiness(series[(planted.flaky, p)]).flaky for p, _ in PLATFORMS)
    assert [d.after.night for d in output_drift(series[(planted.drifted, "cuda")])] == [
        Planted.DRIFT]
    steady = [n for n in names if n not in (planted.regressed, planted.flaky, planted.drifted)]
    assert not any(flakiness(series[(n, p)]).flaky or first_bad(series[(n, p)])
                   for n in steady for p, _ in PLATFORMS)
