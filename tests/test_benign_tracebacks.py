"""A traceback vLLM prints and survives is not a failure: `log_absent` keeps the regression's
own signatures as failures, refuses a pattern any traceback matches, and records every
traceback's exception line as evidence."""

from __future__ import annotations

import pytest

from harness.spec.case import SpecError, load_case, load_cases
from harness.worker.checks import Observed, evaluate, traceback_summaries
from tests.conftest import CASES

BENIGN = """INFO 12-03 vllm starting
WARNING 12-03 [utils.py:42] Traceback (most recent call last):
WARNING 12-03 [utils.py:42]   File "x.py", line 1, in <module>
WARNING 12-03 [utils.py:42]     import flash_attn
WARNING 12-03 [utils.py:42] ModuleNotFoundError: No module named 'flash_attn'
INFO 12-03 falling back to the Triton backend
Traceback (most recent call last):
  File "autotune.py", line 9, in run
RuntimeError: autotune config 3 failed, retrying
INFO 12-03 Application startup complete.
"""


def _log_checks(case_id: str, log_text: str):
    [case] = [c for c in load_cases([CASES]) if c.id == case_id]
    checks = [c for c in case.checks if c.kind == "log_absent"]
    return evaluate(checks, Observed(capabilities=set(), startup_s=1.0, requests=[],
                                     log_text=log_text, probes={}, traces={}))


@pytest.mark.parametrize("case_id", ["qwen2_5_vl_vit_cudagraph", "phi4mm_variable_crop"])
def test_a_survived_traceback_passes_and_is_kept_as_evidence(case_id):
    [check] = _log_checks(case_id, BENIGN)
    assert check.outcome == "passed", check.message
    assert check.evidence["tracebacks"] == [
        "ModuleNotFoundError: No module named 'flash_attn'",
        "RuntimeError: autotune config 3 failed, retrying"]
    assert "2 other traceback(s)" in check.message


@pytest.mark.parametrize("case_id, signature", [
    ("qwen2_5_vl_vit_cudagraph", "torch._subclasses.schema_check_mode.SchemaCheckMode failed"),
    ("phi4mm_variable_crop", "AttributeError: 'list' object has no attribute 'to'")])
def test_the_regressions_own_signature_still_fails(case_id, signature):
    [check] = _log_checks(case_id, BENIGN + f"Traceback (most recent call last):\n{signature}\n")
    assert check.outcome == "failed"


def test_a_pattern_matching_any_traceback_is_refused(tmp_path):
    text = (CASES / "phi4mm_variable_crop.yaml").read_text().replace(
        """patterns: ["has no attribute 'to'"]""",
        """patterns: ["Traceback \\\\(most recent call last\\\\)", "has no attribute 'to'"]""")
    assert "Traceback" in text
    path = tmp_path / "phi4mm_variable_crop.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="matches any traceback"):
        load_case(path)


def test_summaries_of_plain_and_prefixed_tracebacks():
    assert traceback_summaries("no tracebacks here") == []
    assert traceback_summaries(BENIGN)[1].startswith("RuntimeError")
