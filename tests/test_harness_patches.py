"""A harness patch (an in-engine trace or a test mutation) that no longer applies to the vLLM
under test, e.g. a renamed private method, is the harness's error, not a `crash` of vLLM; and
`crash` has one meaning: the engine died (a worker that dies is `worker-died`, no verdict)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.outcomes import INFRA_CLASSES, VERDICT_CLASSES
from harness.worker.engine import EngineFailure
from harness.worker.offline import OfflineEngine

# Stands in for a newer vLLM whose private method was renamed: the real vLLM, with the method
# the trace hooks removed before the real offline child runs.
RENAMED = """#!{python}
import runpy, sys
from vllm.model_executor.models import phi4mm
phi4mm.Phi4MMForCausalLM._process_image_input_v2 = phi4mm.Phi4MMForCausalLM._process_image_input
del phi4mm.Phi4MMForCausalLM._process_image_input
assert sys.argv[1:3] == ["-m", "harness.worker.offline_child"], sys.argv
sys.argv = ["offline_child", *sys.argv[3:]]
runpy.run_module("harness.worker.offline_child", run_name="__main__")
"""


def test_a_trace_whose_vllm_method_is_gone_is_a_harness_error_not_a_crash(tmp_path):
    stand_in = tmp_path / "python-renamed-vllm"
    stand_in.write_text(RENAMED.format(python=sys.executable))
    stand_in.chmod(0o755)
    engine = OfflineEngine(str(tmp_path / "no-model-needed"), {}, {"PYTHONPATH": str(
        Path(__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"},
        tmp_path / "case.log", ["phi4mm_image_batches"], timeout_s=120, python=str(stand_in))
    with pytest.raises(EngineFailure) as failed:
        engine.generate([], top_k=1)
    assert failed.value.failure_class == "harness-error", str(failed.value)
    assert "no longer applies" in str(failed.value) and "_process_image_input" in str(failed.value)


def test_crash_is_only_the_engines_and_a_dead_worker_is_no_verdict():
    assert "crash" in VERDICT_CLASSES
    assert "worker-died" in INFRA_CLASSES and "harness-error" in INFRA_CLASSES
