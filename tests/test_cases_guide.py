"""docs/cases.md cannot rot: its YAML blocks are extracted and validated, and what it lists
(check kinds, capabilities, probes, traces) must match the code. A case without a tiny recipe
is planned everywhere and reported skipped, with its reason, on CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.plan import NO_TINY_REASON, plan
from harness.results import read_result
from harness.spec.case import _CHECK_KINDS, load_case, load_cases, load_platforms
from harness.worker.probes import PROBES
from harness.worker.traces import TRACES
from tests.conftest import CASES, REPO

GUIDE = REPO / "docs" / "cases.md"
BLOCK_RE = re.compile(r"^```yaml (case|check)\n(.*?)^```$", re.S | re.M)


def blocks(kind: str) -> list[str]:
    return [body for found, body in BLOCK_RE.findall(GUIDE.read_text()) if found == kind]


def write_case(directory: Path, text: str) -> Path:
    first = text.splitlines()[0]
    assert first.startswith("# cases/") and first.endswith(".yaml"), first
    path = directory / Path(first[2:]).name
    path.write_text(text)
    return path


def test_the_guide_has_a_whole_case_and_a_block_per_check_kind():
    assert len(blocks("case")) == 1
    kinds = {item["kind"] for body in blocks("check") for item in yaml.safe_load(body)}
    assert kinds == _CHECK_KINDS


def test_the_guides_example_case_validates_and_plans(tmp_path):
    path = write_case(tmp_path, blocks("case")[0])
    case = load_case(path)
    platforms = load_platforms(CASES / "platforms.yaml")
    jobs = {job.platform.name: job for job in plan([case], platforms, list(platforms))}
    assert jobs["cpu"].skip_reason == NO_TINY_REASON  # no tiny recipe: skipped on CPU
    assert jobs["cpu-podman"].skip_reason == NO_TINY_REASON
    assert jobs["cuda"].skip_reason is None and jobs["rocm"].skip_reason is None
    assert jobs["rocm"].expect.outcome == "xfail"
    assert jobs["rocm"].engine_args["enforce_eager"] is True
    validated = subprocess.run([sys.executable, "-m", "harness", "validate", str(path)],
                               cwd=REPO, capture_output=True, text=True, timeout=60)
    assert validated.returncode == 0, validated.stderr


@pytest.mark.parametrize("index", range(8))
def test_each_check_snippet_validates_inside_a_case(tmp_path, index):
    snippets = blocks("check")
    if index >= len(snippets):
        pytest.fail(f"the guide has {len(snippets)} check blocks; update this test's range")
    case = yaml.safe_load(blocks("case")[0])
    case["checks"] = yaml.safe_load(snippets[index])
    if any(check["kind"] == "lora_applied" for check in case["checks"]):
        case["engine"]["lora"] = {"name": "vision", "path": "vision-lora"}  # what it checks
    path = tmp_path / "snippet.yaml"
    path.write_text(yaml.safe_dump(case))
    load_case(path)  # raises SpecError with file:line: key on any mistake


def test_every_declared_capability_probe_and_trace_is_in_the_guide():
    text = GUIDE.read_text()
    platforms = load_platforms(CASES / "platforms.yaml")
    capabilities = {c for p in platforms.values() for c in p.capabilities}
    assert capabilities, "platforms declare no capability: the guide's table would be empty"
    for name in capabilities | set(PROBES) | set(TRACES):
        assert f"`{name}`" in text, f"{name} is not documented in docs/cases.md"


def test_a_tiny_model_is_required_for_an_hf_reference(tmp_path):
    case = yaml.safe_load(blocks("case")[0])
    case["model"]["reference"] = "hf"
    path = tmp_path / "hfref.yaml"
    path.write_text(yaml.safe_dump(case))
    with pytest.raises(Exception, match=r"hfref.yaml:\d+: model: .*reference: hf runs on the tiny recipe"):
        load_case(path)


def test_a_case_without_tiny_recipe_is_reported_skipped_on_cpu_with_its_reason(tmp_path):
    """The real worker (pytest + plugin) on the CPU platform, Buildkite mode: no engine starts
    for a skipped job, and its log group says why."""
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "platforms.yaml").write_text((CASES / "platforms.yaml").read_text())
    write_case(cases, blocks("case")[0])
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(cases),
         "--results", str(tmp_path / "results"), "--run-id", "guide"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "BUILDKITE": "true"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = read_result(tmp_path / "results" / "guide" / "cpu" / "gemma3_mixed_image_sizes.json")
    assert result.status == "skipped" and result.message == NO_TINY_REASON
    lines = done.stdout.splitlines()
    assert "--- :vllm: gemma3_mixed_image_sizes@cpu (server, (no tiny recipe))" in lines
    assert f"[gemma3_mixed_image_sizes@cpu] skipped: {NO_TINY_REASON}" in lines
    assert "^^^ +++" not in lines  # skipped is not a failure: the group stays collapsed
    assert (f"[gemma3_mixed_image_sizes@cpu] verdict: skipped after 0 s: {NO_TINY_REASON}"
            in lines)
    assert load_cases([cases])  # the directory as a whole validates too
