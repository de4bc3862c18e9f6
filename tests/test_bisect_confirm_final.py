"""The search with confirm_at="final": the bad end and the candidate it ends on are confirmed,
a failing step is taken as bad meanwhile (harness/host/bisect/search.py). Pure."""

from __future__ import annotations

import json
import math

import pytest

from harness.host.bisect.search import Done, Next, RunRecord, SearchConfig, decide, run_counts
from tests.test_bisect_search import bisect, breaks_at


@pytest.mark.parametrize("n", range(2, 20))
def test_final_confirmation_finds_every_first_bad_in_ceil_log2_plus_4_runs(n):
    for first in range(1, n):
        config = SearchConfig(n, confirmations=1, confirm_at="final")
        done, runs = bisect(config, breaks_at(first))
        assert done.found and (done.last_good, done.first_bad) == (first - 1, first)
        assert len(runs) <= math.ceil(math.log2(n)) + 4, (n, first, runs)
        assert run_counts(config, runs).within_bound
        confirmed = [r.candidate for r in runs if r.purpose == "confirm"]
        assert confirmed == sorted(set([n - 1, first]), reverse=True)  # the bad end, the found


def test_a_flaky_step_passes_its_final_confirmation_and_the_search_goes_on_right_of_it():
    # 3 fails once then passes; the real break is at 6.
    def oracle(candidate, nth):
        if candidate == 3:
            return "fail" if nth == 0 else "pass"
        return "fail" if candidate >= 6 else "pass"

    done, runs = bisect(SearchConfig(8, confirmations=1, confirm_at="final"), oracle)
    assert (done.last_good, done.first_bad) == (5, 6)
    assert RunRecord(3, "pass", "confirm") in runs


def test_the_good_end_failing_once_is_confirmed_before_giving_up():
    runs = [RunRecord(7, "fail", "verify-bad"), RunRecord(7, "fail", "confirm"),
            RunRecord(0, "fail", "verify-good")]
    config = SearchConfig(8, confirmations=1, confirm_at="final")
    assert decide(config, runs) == Next(0, "confirm")
    done = decide(config, runs + [RunRecord(0, "fail", "confirm")])
    assert isinstance(done, Done) and "good end fails too" in done.problem


def test_confirm_at_is_checked():
    with pytest.raises(ValueError, match="confirm_at"):
        SearchConfig(4, confirm_at="sometimes")


def test_max_total_runs_is_a_budget_a_rerun_does_not_renew(tmp_path, capsys):
    """A bisect that already made its runs stops before starting another one (no engine)."""
    from harness.host.bisect.state import BisectState, Candidate, Step, save_state
    from harness.commands.cli import main
    from tests.conftest import CASES

    refs = [f"127.0.0.1:9/vllm/x:nightly-{i}" for i in range(4)]
    (tmp_path / "candidates.txt").write_text("\n".join(refs) + "\n")
    steps = [Step(number=1, name="01", candidate=3, purpose="verify-bad", outcome="fail",
                  status="failed"),
             Step(number=2, name="02", candidate=3, purpose="confirm", outcome="fail",
                  status="failed")]
    save_state(tmp_path / "results" / "bisect-t", BisectState(
        id="t", case="phi4mm_variable_crop", platform="cpu-podman", good="nightly-0",
        bad="nightly-3", confirmations=1, confirm_at="final", verify_ends=True,
        source=f"file:{tmp_path / 'candidates.txt'}",
        candidates=[Candidate(ref=r) for r in refs], steps=steps))
    args = ["bisect", "--case", "phi4mm_variable_crop", "--platform", "cpu-podman",
            "--good", "nightly-0", "--bad", "nightly-3", "--candidates",
            str(tmp_path / "candidates.txt"), "--confirm-at", "final", "--cases", str(CASES),
            "--results", str(tmp_path / "results"), "--id", "t", "--max-total-runs", "2"]
    assert main(args) == 3
    out = capsys.readouterr().out
    assert "stopped at --max-total-runs 2" in out and "step 3" not in out
    data = json.loads((tmp_path / "results" / "bisect-t" / "bisect.json").read_text())
    assert data["status"] == "open" and data["engine_runs"] == 2
