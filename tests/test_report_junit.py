"""JUnit XML: parses, one testcase per case x platform, stable names, failures with messages."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.compare import compare_runs
from harness.report.junit import render_junit
from tests.test_compare_data import (PHI, QWEN, expected_to_fail, failed, infra, make_run,
                                     outside_top, real_result, swap_token, with_request)


def junit_cases(xml_text: str) -> dict[tuple[str, str], ET.Element]:
    root = ET.fromstring(xml_text.encode())
    cases = root.findall("./testsuite/testcase")
    keyed = {(c.get("classname"), c.get("name")): c for c in cases}
    assert len(keyed) == len(cases)  # no duplicate testcase
    return keyed


def outcome_of(element: ET.Element) -> str:
    child = next((c for c in element if c.tag != "properties"), None)
    return "passed" if child is None else child.tag


def test_one_testcase_per_case_and_platform_with_verdicts(tmp_path):
    request = real_result().requests[0]
    stranger = with_request(request.id, swap_token(2, outside_top(request, 2)))
    run = make_run(tmp_path, {"hf": None, "cuda": {PHI: failed()},
                              "rocm": {QWEN: stranger, PHI: failed()},
                              "cpu": {QWEN: infra("oom", "killed \x1b[31m\x00for memory"),
                                      PHI: expected_to_fail("xfailed")}})
    comparison = compare_runs([run])  # cuda against rocm and cpu; hf is the reference
    xml_text = render_junit(comparison)
    cases = junit_cases(xml_text)
    assert set(cases) == {(f"harness.{p}", c) for p in ("cuda", "rocm", "cpu")
                          for c in (QWEN, PHI)}
    assert outcome_of(cases[("harness.cuda", QWEN)]) == "passed"
    assert outcome_of(cases[("harness.cuda", PHI)]) == "failure"  # the baseline's own failure
    divergence = cases[("harness.rocm", QWEN)].find("failure")
    assert divergence.get("type") == "divergence"
    assert "outputs diverge" in divergence.get("message")
    assert "not in the baseline's top-5" in divergence.text
    assert "the reference hf agrees with cuda, not rocm" in divergence.text
    assert cases[("harness.rocm", PHI)].find("failure").get("type") == "both-fail"
    error = cases[("harness.cpu", QWEN)].find("error")
    assert error.get("type") == "infra" and "killed for memory" in error.get("message")
    assert "expected failure on cpu" in cases[("harness.cpu", PHI)].find("skipped").get("message")
    root = ET.fromstring(xml_text.encode())
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == \
        ("6", "3", "1", "1")


def test_names_are_stable_across_runs_and_missing_files_are_errors(tmp_path):
    first = make_run(tmp_path, {"cuda": None, "rocm": None}, name="build-1")
    second = make_run(tmp_path, {"cuda": None, "rocm": None}, name="build-2")
    (second / "rocm" / f"{QWEN}.json").unlink()
    names_1 = set(junit_cases(render_junit(compare_runs([first]))))
    cases_2 = junit_cases(render_junit(compare_runs([second])))
    assert names_1 == set(cases_2)
    error = cases_2[("harness.rocm", QWEN)].find("error")
    assert error.get("type") == "missing-result"
    assert f"{second / 'rocm' / QWEN}.json: missing" in error.get("message")


def test_cross_run_comparison_reports_only_the_candidate_run(tmp_path):
    last_night = make_run(tmp_path, {"rocm": None}, name="nightly-1")
    today = make_run(tmp_path, {"rocm": {QWEN: failed()}}, name="nightly-2")
    cases = junit_cases(render_junit(compare_runs([last_night, today])))
    assert set(cases) == {("harness.rocm", QWEN), ("harness.rocm", PHI)}
    regression = cases[("harness.rocm", QWEN)].find("failure")
    assert regression.get("type") == "regression"
    assert "reproduce: harness run" in regression.text
