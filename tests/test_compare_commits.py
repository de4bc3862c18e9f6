"""One commit, different spellings: abbreviations of different lengths name the same commit."""

from __future__ import annotations

from harness.compare import Verdict, compare_runs
from harness.compare.core import same_commit_spelling
from tests.test_compare_data import QWEN, fingerprint, make_run

FULL = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"


def test_abbreviations_of_one_commit_are_the_same_commit():
    assert same_commit_spelling("1a2b3c4", FULL)
    assert same_commit_spelling("1A2B3C4D5", "1a2b3c4d")
    assert same_commit_spelling("0.32.0.dev5+g1a2b3c4", f"0.32.0.dev5+g{FULL[:12]}")
    assert not same_commit_spelling("1a2b3c4", "1a2b3c5")
    assert not same_commit_spelling("1a2b3c", "1a2b3c4")  # under 7 digits: not a commit id
    assert not same_commit_spelling("0.32.0.dev5+g1a2b3c4", "0.32.0.dev6+g1a2b3c4d")


def test_results_naming_one_commit_at_two_lengths_are_compared(tmp_path):
    run = make_run(tmp_path, {
        "cuda": {QWEN: fingerprint(vllm_commit="1a2b3c4", vllm="0.32.0.dev5+g1a2b3c4")},
        "rocm": {QWEN: fingerprint(vllm_commit=FULL[:12], vllm=f"0.32.0.dev5+g{FULL[:12]}")}})
    [case] = [c for p in compare_runs([run]).pairs for c in p.cases if c.case_id == QWEN]
    assert case.verdict is Verdict.PARITY, case.detail
    other = make_run(tmp_path, {"cuda": {QWEN: fingerprint(vllm_commit="1a2b3c4")},
                                "rocm": {QWEN: fingerprint(vllm_commit="9f9f9f9")}}, name="r2")
    [case] = [c for p in compare_runs([other]).pairs for c in p.cases if c.case_id == QWEN]
    assert case.verdict is Verdict.NOT_COMPARABLE and "vLLM commits" in case.detail


def test_results_asked_different_inputs_are_not_output_compared(tmp_path):
    """Last night's CUDA side made with other images than tonight's ROCm side: outputs differ
    because the inputs did, which is no divergence."""
    def inputs(digest):
        return lambda r: r.model_copy(update={"engine": {**r.engine, "inputs_digest": digest}})

    run = make_run(tmp_path, {"cuda": {QWEN: inputs("aaaa")}, "rocm": {QWEN: inputs("bbbb")}})
    [case] = [c for p in compare_runs([run]).pairs for c in p.cases if c.case_id == QWEN]
    assert case.verdict is Verdict.NOT_COMPARABLE and "different inputs" in case.detail
    same = make_run(tmp_path, {"cuda": {QWEN: inputs("aaaa")}, "rocm": {QWEN: inputs("aaaa")}},
                    name="r3")
    [case] = [c for p in compare_runs([same]).pairs for c in p.cases if c.case_id == QWEN]
    assert case.verdict is Verdict.PARITY


def test_the_inputs_digest_follows_prompts_and_images_only():
    from harness.spec.case import load_case
    from harness.worker.inputs import inputs_digest
    from tests.conftest import CASES

    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    assert inputs_digest(case) == inputs_digest(case.model_copy(update={"title": "other"}))
    other = case.model_copy(update={"requests": case.requests[:-1]})
    assert inputs_digest(case) != inputs_digest(other)
