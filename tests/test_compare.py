"""`harness compare` on copies of real result files: parity verdicts, outputs, environment,
reference, missing/corrupt files, platform selection and exit codes."""

from __future__ import annotations

import json

import pytest

from harness.commands.cli import main
from harness.compare import SelectionError, Verdict, compare_runs
from harness.compare.core import public_version
from harness.compare.select import select
from harness.compare.verdicts import Outcome, parity_verdict
from tests.test_compare_data import (PHI, QWEN, add_platform, expected_to_fail, failed,
                                     fingerprint, infra, make_run, outside_top, real_result,
                                     second_choice, swap_token, with_request)


def verdicts(comparison) -> dict[str, str]:
    (pair,) = comparison.pairs
    return {case.case_id: str(case.verdict) for case in pair.cases}


def case_of(comparison, case_id: str = QWEN):
    return next(c for p in comparison.pairs for c in p.cases if c.case_id == case_id)


def test_identical_platforms_are_at_parity(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": None})
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "parity", PHI: "parity"}
    assert comparison.exit_code == 0
    qwen = case_of(comparison)
    assert qwen.outputs.policy == "logprobs_close" and qwen.outputs.max_logprob_diff == 0.0
    assert comparison.pairs[0].environment == ()


def test_regression_fixed_and_both_fail(tmp_path):
    run = make_run(tmp_path, {"cuda": {PHI: failed("ragged_batch: one crop count")},
                              "rocm": {QWEN: failed(), PHI: failed("crash: list has no .to")}})
    comparison = compare_runs([run], baseline="cuda", candidates=["rocm"])
    assert verdicts(comparison) == {QWEN: "regression", PHI: "both-fail"}
    assert comparison.exit_code == 1
    assert "passes on cuda, fails on rocm: check-failed: log_absent" in case_of(comparison).detail
    reverse = compare_runs([run], baseline="rocm", candidates=["cuda"])
    assert verdicts(reverse) == {QWEN: "fixed", PHI: "both-fail"}
    assert reverse.exit_code == 1  # a failure on both sides is still a failure: red


def test_both_fail_is_red_and_xfail_with_a_reason_is_not(tmp_path):
    run = make_run(tmp_path, {"cuda": {PHI: failed()}, "rocm": {PHI: failed(), QWEN: None}})
    comparison = compare_runs([run])
    assert verdicts(comparison)[PHI] == "both-fail" and comparison.exit_code == 1
    run = make_run(tmp_path, {"cuda": {PHI: failed()}, "rocm": {PHI: expected_to_fail("xfailed")}},
                   name="run-2")
    comparison = compare_runs([run])
    assert verdicts(comparison)[PHI] == "xfail" and comparison.exit_code == 0


def test_infra_errors_are_kept_apart_from_test_failures(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: infra("oom", "container was OOM-killed"),
                                                     PHI: failed()}})
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "infra", PHI: "regression"}
    assert "rocm: oom: container was OOM-killed" in case_of(comparison).detail
    assert comparison.exit_code == 1  # the regression outranks the infrastructure error
    only_infra = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: infra()}}, name="run-2")
    assert compare_runs([only_infra]).exit_code == 3


def test_expected_failure_and_strict_unexpected_pass(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: expected_to_fail("xfailed"),
                                                     PHI: expected_to_fail("xpassed")}})
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "xfail", PHI: "xpass"}
    assert "ROCm ViT capture bug https://github.com/vllm-project/vllm/pull/43647" in \
        case_of(comparison).detail
    assert "remove the expectation" in case_of(comparison, PHI).detail
    assert comparison.exit_code == 1
    lenient = make_run(tmp_path, {"cuda": None,
                                  "rocm": {PHI: expected_to_fail("xpassed", strict=False)}},
                       name="run-2")
    assert verdicts(compare_runs([lenient]))[PHI] == "parity"


def test_changed_token_exact_versus_logprobs_close(tmp_path):
    request = real_result().requests[0]
    runner_up = with_request(request.id, swap_token(2, second_choice(request, 2)))
    stranger = with_request(request.id, swap_token(2, outside_top(request, 2)))
    exact = lambda r: r.model_copy(update={"compare": {**r.compare, "policy": "exact"}})  # noqa: E731

    tolerated = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: runner_up}}, name="tolerated")
    case = case_of(compare_runs([tolerated]))
    assert case.verdict is Verdict.PARITY and "1 tolerated token swap" in case.detail

    strict = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: lambda r: exact(runner_up(r))}},
                      name="exact")
    case = case_of(compare_runs([strict]))
    assert case.verdict is Verdict.DIVERGENCE and case.exit_code == 1
    assert f"request {request.id}: token" in case.detail and "at position 2" in case.detail

    diverged = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: stranger}}, name="diverged")
    comparison = compare_runs([diverged])
    case = case_of(comparison)
    assert case.verdict is Verdict.DIVERGENCE and comparison.exit_code == 1
    assert "not in the baseline's top-5" in case.detail


def test_missing_and_corrupt_result_files_are_named(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": None})
    (run / "rocm" / f"{QWEN}.json").unlink()
    (run / "rocm" / f"{PHI}.json").write_text('{"schema_version": 1, "run_id": ')
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "missing-result", PHI: "corrupt-result"}
    assert f"{run / 'rocm' / QWEN}.json: missing" in case_of(comparison).detail
    assert f"{run / 'rocm' / PHI}.json: corrupt JSON at line 1" in case_of(comparison, PHI).detail
    assert comparison.exit_code == 3


def test_result_under_the_wrong_name_or_schema_is_corrupt(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": None})
    (run / "rocm" / f"{PHI}.json").write_text((run / "rocm" / f"{QWEN}.json").read_text())
    data = json.loads((run / "cuda" / f"{QWEN}.json").read_text())
    data["schema_version"] = 7
    (run / "cuda" / f"{QWEN}.json").write_text(json.dumps(data))
    comparison = compare_runs([run])
    assert f"holds case '{QWEN}', not '{PHI}'" in case_of(comparison, PHI).detail
    assert "schema_version 7 is not 1" in case_of(comparison).detail
    assert comparison.exit_code == 3


def test_case_on_one_side_only_is_reported(tmp_path):
    run = tmp_path / "run-1"
    add_platform(run, "cuda", cases=(QWEN,))
    add_platform(run, "rocm", mutate={PHI: failed()})
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "parity", PHI: "new-failing"}
    assert "only on rocm (failed); no result on cuda" in case_of(comparison, PHI).detail
    assert comparison.exit_code == 1
    add_platform(tmp_path / "run-2", "cuda", cases=(PHI,))
    add_platform(tmp_path / "run-2", "rocm")
    comparison = compare_runs([tmp_path / "run-2"])
    assert verdicts(comparison)[QWEN] == "new" and comparison.exit_code == 0


def test_named_platform_without_results_is_missing_not_a_pass(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "cpu": None})
    comparison = compare_runs([run], baseline="cuda", candidates=["rocm"])
    assert set(verdicts(comparison).values()) == {"missing-result"}
    assert comparison.exit_code == 3
    absent_baseline = compare_runs([run], baseline="rocm", candidates=["cpu"])
    assert set(verdicts(absent_baseline).values()) == {"no-baseline"}
    assert absent_baseline.exit_code == 0
    assert any("rocm: no such directory" in note for note in absent_baseline.notes)


def test_a_missing_baseline_side_does_not_hide_the_candidates_failures(tmp_path):
    run = make_run(tmp_path, {"rocm": {PHI: failed("crash: list has no .to")}})
    comparison = compare_runs([run], baseline="cuda", candidates=["rocm"])
    assert verdicts(comparison) == {QWEN: "no-baseline", PHI: "fails-no-baseline"}
    assert comparison.exit_code == 1
    assert "fails on rocm: check-failed: crash: list has no .to; no cuda baseline" in \
        case_of(comparison, PHI).detail


def test_baseline_run_supplies_an_absent_baseline_from_a_stored_run(tmp_path, capsys):
    stored = make_run(tmp_path, {"cuda": None}, name="nightly-41")
    tonight = make_run(tmp_path, {"rocm": {PHI: failed()}}, name="build-42")
    code = main(["compare", str(tonight), "--baseline", "cuda", "--candidate", "rocm",
                 "--baseline-run", str(stored)])
    out = capsys.readouterr().out
    assert code == 1 and "regression" in out and "nightly-41" in out
    assert main(["compare", str(tonight), "--baseline", "cuda", "--candidate", "rocm",
                 "--quiet"]) == 1  # no baseline anywhere: rocm alone, still red


def test_environment_differences_are_listed(tmp_path):
    changes = fingerprint(vllm="0.33.0rc1", image_digest="sha256:abc", device="1x MI300X")
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: changes, PHI: changes}})
    env = {d.key: (d.baseline, d.candidate) for d in compare_runs([run]).pairs[0].environment}
    real = real_result().fingerprint
    assert env["vllm"] == ((real["vllm"],), ("0.33.0rc1",))
    assert env["image_digest"][1] == ("sha256:abc",)
    assert env["device"][1] == ("1x MI300X",)
    assert "hostname" not in env and "torch" not in env


def test_two_runs_compare_each_platform_with_itself(tmp_path):
    last_night = make_run(tmp_path, {"rocm": None, "cuda": None}, name="nightly-41")
    today = make_run(tmp_path, {"rocm": {QWEN: failed()}, "cuda": None}, name="nightly-42")
    comparison = compare_runs([last_night, today])
    pairs = {(p.baseline.run_id, p.baseline.platform, p.candidate.run_id, p.candidate.platform):
             {c.case_id: str(c.verdict) for c in p.cases} for p in comparison.pairs}
    assert pairs[("nightly-41", "rocm", "nightly-42", "rocm")][QWEN] == "regression"
    assert pairs[("nightly-41", "cuda", "nightly-42", "cuda")][QWEN] == "parity"
    only_rocm = compare_runs([last_night, today], baseline="rocm")
    assert [(p.baseline.platform, p.candidate.platform) for p in only_rocm.pairs] == \
        [("rocm", "rocm")]
    assert "rocm (nightly-41), fails on rocm (nightly-42)" in case_of(only_rocm).detail


def test_reference_says_which_side_agrees(tmp_path):
    request = real_result().requests[0]
    stranger = with_request(request.id, swap_token(2, outside_top(request, 2)))
    run = make_run(tmp_path, {"hf": None, "cuda": None, "rocm": {QWEN: stranger}})
    comparison = compare_runs([run])
    assert [(p.baseline.platform, p.candidate.platform) for p in comparison.pairs] == \
        [("cuda", "rocm")]  # hf is the reference here, not a candidate
    case = case_of(comparison)
    assert case.verdict is Verdict.DIVERGENCE
    assert case.reference.platform == "hf" and case.reference.agrees_with == "baseline"
    swapped = compare_runs([run], baseline="rocm", candidates=["cuda"])
    assert case_of(swapped).reference.agrees_with == "candidate"
    without = compare_runs([run], reference=None)
    assert case_of(without).reference is None


def test_reference_without_native_model_says_so(tmp_path):
    no_ref = lambda r: r.model_copy(update={  # noqa: E731
        "status": "skipped", "message": "Phi4MM's modelling code is remote code", "requests": []})
    run = make_run(tmp_path, {"hf": {PHI: no_ref}, "cuda": {PHI: failed()}, "rocm": None})
    case = case_of(compare_runs([run]), PHI)
    assert case.verdict is Verdict.FIXED
    assert case.reference.agrees_with == "" and "remote code" in case.reference.note


def test_baseline_hf_candidate_cpu(tmp_path):
    run = make_run(tmp_path, {"hf": None, "cpu": None})
    comparison = compare_runs([run])  # defaults: no cuda here, so hf is the baseline
    assert [(p.baseline.platform, p.candidate.platform) for p in comparison.pairs] == \
        [("hf", "cpu")]
    assert comparison.exit_code == 0


def test_different_models_are_not_output_compared(tmp_path):
    hub = lambda r: r.model_copy(update={  # noqa: E731
        "engine": {**r.engine, "model": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "requests": [q.model_copy(update={"token_ids": q.token_ids[::-1]}) for q in r.requests]})
    run = make_run(tmp_path, {"cuda": {QWEN: hub}, "cpu": None})
    case = case_of(compare_runs([run]))
    assert case.verdict is Verdict.NOT_COMPARABLE and case.exit_code == 0
    assert "not comparable: different models" in case.detail
    rebuilt = lambda digest: lambda r: r.model_copy(update={  # noqa: E731
        "engine": {**r.engine, "recipe_digest": digest}})
    run = make_run(tmp_path, {"cuda": {QWEN: rebuilt("aaa")}, "cpu": {QWEN: rebuilt("bbb")}},
                   name="run-2")
    assert "different model builds (aaa vs bbb)" in case_of(compare_runs([run])).detail


@pytest.mark.parametrize("baseline,candidate", [(o, p) for o in Outcome for p in Outcome])
def test_every_outcome_pair_has_a_verdict(baseline, candidate):
    assert isinstance(parity_verdict(baseline, candidate), Verdict)


def test_selection_defaults_and_usage_errors():
    assert select(["cpu", "cuda", "hf", "rocm"], None, None, None).pairs == \
        (("cuda", "cpu"), ("cuda", "rocm"))
    assert select(["cpu", "cuda", "hf", "rocm"], None, None, None).reference == (0, "hf")
    assert select(["cpu", "hf"], None, None, None).reference is None  # hf is the baseline
    with pytest.raises(SelectionError, match="name the baseline"):
        select(["cpu", "rocm"], None, None, None)
    with pytest.raises(SelectionError, match="nothing to compare cuda with"):
        select(["cuda"], None, None, None)
    with pytest.raises(SelectionError, match="both baseline and candidate"):
        select(["cuda", "rocm"], None, "rocm", ["rocm"])
    with pytest.raises(SelectionError, match="share no platform"):
        select(["cuda"], ["rocm"], None, None)
    assert select(["rocm"], ["rocm", "hf"], None, None).reference == (1, "hf")


def test_cli_exit_codes_and_outputs(tmp_path, capsys):
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: failed()}})
    md, xml, summary = tmp_path / "out" / "c.md", tmp_path / "out" / "c.xml", tmp_path / "c.json"
    code = main(["compare", str(run), "--markdown", str(md), "--junit", str(xml),
                 "--json", str(summary)])
    assert code == 1
    out = capsys.readouterr().out
    assert "regression" in out and "exit 1" in out
    assert md.is_file() and xml.is_file()
    assert json.loads(summary.read_text())["exit_code"] == 1
    assert not list(tmp_path.glob("out/.*.tmp"))  # atomic writes leave no temp files
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["compare", str(run), "--baseline", "cuda", "--candidate", "cuda"]) == 2
    assert main(["compare", str(run), str(run), str(run)]) == 2
    parity = make_run(tmp_path, {"cuda": None, "rocm": None}, name="run-2")
    assert main(["compare", str(parity), "--quiet"]) == 0
    (parity / "rocm" / f"{QWEN}.json").unlink()
    assert main(["compare", str(parity), "--quiet"]) == 3


def test_different_vllm_commits_or_engine_args_are_not_comparable(tmp_path):
    commit = lambda c: fingerprint(vllm="0.33.0.dev1+g" + c, vllm_commit=c)  # noqa: E731
    run = make_run(tmp_path, {"cuda": {QWEN: commit("aaaaaaa"), PHI: commit("aaaaaaa")},
                              "rocm": {QWEN: commit("bbbbbbb"), PHI: lambda r: failed()(
                                  commit("bbbbbbb")(r))}})
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "not-comparable", PHI: "regression"}
    assert "not comparable: different vLLM commits (aaaaaaa vs bbbbbbb)" in case_of(comparison).detail
    assert "[not comparable: different vLLM commits" in case_of(comparison, PHI).detail
    assert comparison.exit_code == 1  # the failure on rocm still decides
    args = lambda n: lambda r: r.model_copy(update={  # noqa: E731
        "engine": {**r.engine, "args": {**r.engine["args"], "max_num_seqs": n}}})
    run = make_run(tmp_path, {"cuda": {QWEN: args(2)}, "rocm": {QWEN: args(4)}}, name="run-2")
    assert "different engine args" in case_of(compare_runs([run])).detail


def test_sides_that_ran_different_requests_are_not_comparable(tmp_path):
    # The case gained a request between the runs: not a divergence of the outputs.
    dropped = lambda r: r.model_copy(update={"requests": r.requests[:-1]})  # noqa: E731
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: dropped}})
    case = case_of(compare_runs([run]))
    assert case.verdict is Verdict.NOT_COMPARABLE and case.exit_code == 0
    last = case.baseline.requests[-1].id
    assert f"different requests (baseline only: {last})" in case.detail


def test_rocm_and_cuda_builds_of_one_vllm_are_compared_on_outputs(tmp_path):
    """Real ROCm and CUDA builds carry a local version suffix (PEP 440 "+..."): the same public
    version (and commit) is the same vLLM, so the outputs are compared; another version is not."""
    build = lambda v: fingerprint(vllm=v, vllm_commit=None)  # noqa: E731 (releases: no commit)
    run = make_run(tmp_path, {"cuda": {QWEN: build("0.32.0+cu130"), PHI: build("0.32.0+cu130")},
                              "rocm": {QWEN: build("0.32.0+rocm711"), PHI: build("0.33.0+rocm711")}})
    comparison = compare_runs([run])
    assert verdicts(comparison) == {QWEN: "parity", PHI: "not-comparable"}
    assert case_of(comparison).outputs is not None and case_of(comparison).outputs.ok
    assert ("different vLLM versions (0.32.0+cu130 vs 0.33.0+rocm711)"
            in case_of(comparison, PHI).detail)
    assert public_version("0.11.1rc2.dev123+g1a2b3c4d.rocm711") == "0.11.1rc2.dev123"
