"""A ROCm failure is never hidden by CUDA's side: when the baseline was not tested (infra,
skipped, a corrupt file), the candidate's own failure is the verdict, exit 1, and the
annotation and JUnit name it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from harness.commands.cli import main
from harness.compare import compare_runs
from harness.compare.verdicts import Outcome, Verdict, parity_verdict
from tests.test_compare_data import PHI, QWEN, failed, infra, make_run

ROCM_FAILS = failed("'list' object has no attribute 'to'", "crash")


def _skipped(r):
    return r.model_copy(update={"status": "skipped", "failure_class": None,
                                "message": "skipped: no GPU agent"})


@pytest.mark.parametrize("cuda", [infra("oom", "container was OOM-killed"), _skipped, "corrupt"],
                         ids=["infra", "skipped", "corrupt"])
def test_rocm_failing_beside_an_untested_cuda_is_red_and_named(tmp_path, cuda, capsys):
    run = make_run(tmp_path, {"cuda": None if cuda == "corrupt" else {PHI: cuda},
                              "rocm": {PHI: ROCM_FAILS}})
    if cuda == "corrupt":
        (run / "cuda" / f"{PHI}.json").write_text("{not json")
    md, xml = tmp_path / "c.md", tmp_path / "c.xml"
    code = main(["compare", str(run), "--baseline", "cuda", "--candidate", "rocm",
                 "--markdown", str(md), "--junit", str(xml)])
    assert code == 1, capsys.readouterr().out
    [case] = [c for p in compare_runs([run]).pairs for c in p.cases if c.case_id == PHI]
    assert case.verdict is Verdict.FAILS_UNTESTED_BASELINE
    assert case.detail.startswith("fails on rocm: crash: 'list' object has no attribute 'to'")
    assert "cuda not tested" in case.detail
    annotation = md.read_text()
    assert "fails\\-baseline\\-untested" in annotation or "fails-baseline-untested" in annotation
    assert "fails on rocm: crash" in annotation and "not tested" in annotation
    rocm = ET.parse(xml).getroot().find(f".//testcase[@classname='harness.rocm'][@name='{PHI}']")
    failure = rocm.find("failure")
    assert failure is not None and "fails on rocm: crash" in failure.get("message")


def test_the_candidates_own_verdict_shows_for_every_untested_baseline():
    for baseline in (Outcome.INFRA, Outcome.SKIPPED, Outcome.CORRUPT):
        assert parity_verdict(baseline, Outcome.FAIL) is Verdict.FAILS_UNTESTED_BASELINE
        assert parity_verdict(baseline, Outcome.XPASS_STRICT) is Verdict.XPASS
    # Nothing red where the candidate itself did not fail.
    assert parity_verdict(Outcome.INFRA, Outcome.PASS) is Verdict.INFRA
    assert parity_verdict(Outcome.SKIPPED, Outcome.PASS) is Verdict.SKIPPED


def test_qwen_untouched_stays_parity(tmp_path):
    run = make_run(tmp_path, {"cuda": {PHI: infra()}, "rocm": {PHI: ROCM_FAILS}})
    verdicts = {c.case_id: c.verdict for p in compare_runs([run]).pairs for c in p.cases}
    assert verdicts[QWEN] is Verdict.PARITY
