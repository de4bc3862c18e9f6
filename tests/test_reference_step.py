"""The nightly `harness reference` step: transformers on one GPU agent with the hub weights,
after the run steps; compare uses it (verdict line and annotation name the side that agrees)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from harness.commands.cli import main
from harness.compare import Verdict, compare_runs
from tests.conftest import BUILDKITE_SCHEMA, REPO
from tests.test_compare_data import QWEN, make_run, outside_top, real_result, swap_token, \
    with_request

NIGHTLY = ["--nightly", "--gpu-reference", "--history-db-env", "HARNESS_HISTORY_DB"]


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def steps_of(capsys, *argv: str) -> dict[str, dict]:
    assert main(["pipeline", *argv]) == 0
    text = capsys.readouterr().out
    document = yaml.safe_load(text)
    jsonschema.Draft7Validator(json.loads(BUILDKITE_SCHEMA.read_text())).validate(document)
    return {step["key"]: step for step in document["steps"] if "key" in step}


def test_the_nightly_runs_the_reference_on_a_gpu_agent_after_the_runs(capsys):
    steps = steps_of(capsys, *NIGHTLY)
    ref = steps["reference-hf"]
    assert ref["agents"] == {"queue": "amd_mi300_1"}  # the candidate's GPU queue
    assert {d["step"] for d in ref["depends_on"]} == {"run-rocm", "run-cuda", "run-cpu"} & \
        {k for k in steps if k.startswith("run-")}
    fetch, reference = ref["commands"]
    assert fetch.startswith("harness models fetch --platform rocm")
    assert "--model-source hub --device cuda" in reference
    assert "--run-id build-$BUILDKITE_BUILD_NUMBER" in reference
    assert ref["artifact_paths"] == ["results/build-$BUILDKITE_BUILD_NUMBER/hf-cuda/**/*"]
    compare = steps["compare-cuda-vs-rocm"]
    assert {"step": "reference-hf", "allow_failure": True} in compare["depends_on"]
    text = " ".join(compare["commands"])
    assert '"results/build-$BUILDKITE_BUILD_NUMBER/hf-cuda/*"' in text
    assert "--reference hf-cuda" in text
    order = list(steps)
    assert order.index("reference-hf") < order.index("compare-cuda-vs-rocm")


def test_no_reference_step_outside_the_nightly_or_without_a_gpu_platform(capsys):
    assert "reference-hf" not in steps_of(capsys)
    steps = steps_of(capsys, *NIGHTLY, "--platform", "cpu")
    assert "reference-hf" not in steps
    assert not any("--reference" in " ".join(s.get("commands", [])) for s in steps.values())


def test_compare_names_the_side_the_gpu_reference_agrees_with(tmp_path, capsys):
    request = real_result().requests[0]
    stranger = with_request(request.id, swap_token(2, outside_top(request, 2)))
    run = make_run(tmp_path, {"hf-cuda": None, "cuda": None, "rocm": {QWEN: stranger}})
    md = tmp_path / "c.md"
    code = main(["compare", str(run), "--baseline", "cuda", "--candidate", "rocm",
                 "--reference", "hf-cuda", "--markdown", str(md)])
    assert code == 1
    [case] = [c for p in compare_runs([run], "cuda", ["rocm"], "hf-cuda").pairs
              for c in p.cases if c.case_id == QWEN]
    assert case.verdict is Verdict.DIVERGENCE
    assert case.reference.platform == "hf-cuda" and case.reference.agrees_with == "baseline"
    annotation = md.read_text()
    assert "hf\\-cuda" in annotation or "hf-cuda" in annotation
    assert "agrees" in annotation
