"""What did not run is shown as not run: not-applicable checks in every report, and a job whose
decisive checks all did not apply (Qwen's encoder-cudagraph warm-up on CPU) is not a plain pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.compare import compare_runs
from harness.history.publish import page_from_store
from harness.history.runread import read_run
from harness.history.store import open_store, store_run
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.terminal import comparison_table, run_table
from harness.results import NOT_DECISIVE, CheckResult, Result, status_label
from tests.test_compare_data import PHI, QWEN, make_run


def cpu_like(result: Result) -> Result:
    """The real CPU result as the worker now writes it: the warm-up check is decisive, n/a."""
    checks = [c.model_copy(update={"decisive": c.kind == "log_present"}) for c in result.checks]
    return result.model_copy(update={
        "checks": checks,
        "message": f"{NOT_DECISIVE}: its decisive checks did not apply on cpu: "
                   "3:log_present: platform lacks encoder_cudagraph"})


def test_the_recorded_cpu_result_has_an_undecided_warmup_check():
    check = CheckResult(name="3:log_present", kind="log_present", outcome="not-applicable",
                        message="platform lacks encoder_cudagraph", decisive=True)
    result = Result(run_id="r", job_id="q@cpu", case_id="q", platform="cpu", status="passed",
                    checks=[check])
    assert status_label(result) == "passed (not decisive: 1 n/a)"
    plain = result.model_copy(update={"checks": [check.model_copy(update={"decisive": False})]})
    assert status_label(plain) == "passed (1 n/a)"


def _run(tmp_path):
    return make_run(tmp_path, {"hf": None, "cpu": {QWEN: cpu_like}})


def test_terminal_tables_show_not_applicable_and_not_decisive(tmp_path):
    run = _run(tmp_path)
    from harness.compare.load import load_side

    cpu = load_side(run, "cpu")
    table = run_table(list(cpu.results.values()))
    assert "passed (not decisive: 1 n/a)" in table
    assert "not applicable on cpu: qwen2_5_vl_vit_cudagraph@cpu: 4:log_present" in table
    comparison = comparison_table(compare_runs([run], baseline="hf", candidates=["cpu"]))
    assert "passed (not decisive: 1 n/a)" in comparison
    assert "not applicable on cpu:" in comparison and "[decisive]" in comparison


def test_markdown_and_junit_show_not_applicable(tmp_path):
    comparison = compare_runs([_run(tmp_path)], baseline="hf", candidates=["cpu"])
    markdown = render_markdown(comparison)
    assert "not applicable" in markdown and "platform lacks encoder\\_cudagraph" in markdown
    assert "not decisive" in markdown
    root = ET.fromstring(render_junit(comparison))
    qwen = next(t for t in root.iter("testcase")
                if t.get("name") == QWEN and t.get("classname") == "harness.cpu")
    properties = {p.get("name"): p.get("value") for p in qwen.iter("property")}
    assert properties["not-applicable:4:log_present"].startswith(
        "platform lacks encoder_cudagraph")
    skipped = qwen.find("skipped")
    assert skipped is not None and "not decisive" in skipped.get("message")
    phi = next(t for t in root.iter("testcase")
               if t.get("name") == PHI and t.get("classname") == "harness.cpu")
    assert phi.find("skipped") is None  # phi4mm's decisive check ran on CPU: a plain pass


def test_dashboard_marks_a_pass_that_was_not_decisive(tmp_path):
    run = _run(tmp_path)
    conn = open_store(tmp_path / "h.sqlite")
    store_run(conn, read_run(run))
    text, _ = page_from_store(conn, tmp_path / "dashboard.html")
    assert 'class="p nd' in text and NOT_DECISIVE in text
