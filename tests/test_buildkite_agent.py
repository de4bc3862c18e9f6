"""harness.host.buildkite.agent: the one gateway to `buildkite-agent`.

There is no Buildkite build here, so calls "on Buildkite" go to the fake agent in tests/bin
(it records its arguments and keeps artifacts, annotations and meta-data in a folder).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from harness.host.buildkite.agent import (ANNOTATION_MAX_BYTES, Agent, AgentError, fit_annotation,
                                     on_buildkite)
from tests.conftest import REPO

FAKE_AGENT = REPO / "tests" / "bin" / "buildkite-agent"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "buildkite"


def fake_agent(state: Path, **extra: str) -> Agent:
    environ = {"BUILDKITE": "true", "PATH": os.environ["PATH"],
               "FAKE_BUILDKITE_DIR": str(state), **extra}
    return Agent(environ=environ, executable=str(FAKE_AGENT), notices=io.StringIO())


def calls(state: Path) -> list[dict]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def test_outside_buildkite_every_call_is_skipped_with_one_notice_line(tmp_path: Path):
    notices = io.StringIO()
    # A missing executable proves nothing is run: running it would raise AgentError.
    agent = Agent(environ={"PATH": "/nonexistent"}, executable=str(tmp_path / "missing"),
                  notices=notices)
    assert not agent.active
    assert agent.annotate("body", context="harness-compare-cuda-vs-rocm") is False
    assert agent.artifact_upload("results/**/*") is False
    assert agent.artifact_download("results/**/*", tmp_path) is False
    assert agent.meta_data_set("k", "v") is False
    assert agent.meta_data_get("k", default="d") == "d"
    assert agent.pipeline_upload("steps: []") is False
    lines = notices.getvalue().splitlines()
    assert len(lines) == 6
    assert all(line.startswith("harness: not on Buildkite (BUILDKITE unset), skipped: "
                               "buildkite-agent ") for line in lines)
    assert "annotate --context harness-compare-cuda-vs-rocm" in lines[0]


def test_on_buildkite_reads_the_agents_own_variable():
    assert on_buildkite({"BUILDKITE": "true"})
    assert not on_buildkite({})
    assert not on_buildkite({"BUILDKITE_BUILD_NUMBER": "7"})  # set by hand: not a Buildkite job


def test_annotate_posts_body_context_and_style_fake_buildkite_agent(state: Path):
    agent = fake_agent(state)
    assert agent.annotate("## parity\n", context="harness-compare-cuda-vs-rocm", style="success")
    assert (state / "annotations" / "harness-compare-cuda-vs-rocm.md").read_text() == "## parity\n"
    assert (state / "annotations" / "harness-compare-cuda-vs-rocm.style").read_text() == "success"
    assert calls(state)[0]["argv"] == ["annotate", "--context", "harness-compare-cuda-vs-rocm",
                                       "--style", "success"]
    # Same context: the retry's annotation replaces the first; --append adds to it.
    agent.annotate("## regression\n", context="harness-compare-cuda-vs-rocm", style="error")
    assert (state / "annotations" / "harness-compare-cuda-vs-rocm.md").read_text() == \
        "## regression\n"
    agent.annotate("more\n", context="harness-compare-cuda-vs-rocm", style="error", append=True)
    assert (state / "annotations" / "harness-compare-cuda-vs-rocm.md").read_text() == \
        "## regression\nmore\n"


def test_annotation_never_carries_a_secret_fake_buildkite_agent(state: Path):
    token = "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3"
    agent = fake_agent(state, HF_TOKEN=token, MY_API_KEY="s3cr3t-value")
    agent.annotate(f"log: token={token} key=s3cr3t-value\n", context="harness-test")
    body = (state / "annotations" / "harness-test.md").read_text()
    assert token not in body and "s3cr3t-value" not in body
    assert "***" in body
    assert token not in (state / "calls.jsonl").read_text()


def test_annotation_bad_context_or_style_is_refused_before_any_call(state: Path):
    agent = fake_agent(state)
    with pytest.raises(ValueError, match="context"):
        agent.annotate("x", context="has space")
    with pytest.raises(ValueError, match="style"):
        agent.annotate("x", context="ok", style="loud")
    assert not (state / "calls.jsonl").exists()


def test_oversized_annotation_is_cut_on_a_line_with_a_note():
    body = "".join(f"| row {i} | passed |\n" for i in range(100_000))
    fitted = fit_annotation(body)
    assert len(fitted.encode()) <= ANNOTATION_MAX_BYTES
    assert fitted.endswith("full report is in the step's artifacts)_\n")
    assert fitted.split("\n\n_(truncated")[0].endswith("| passed |\n")
    assert fit_annotation("short\n") == "short\n"


def test_artifact_upload_then_download_round_trip_fake_buildkite_agent(state: Path, tmp_path,
                                                                        monkeypatch):
    work = tmp_path / "work"
    (work / "results" / "build-7" / "rocm").mkdir(parents=True)
    (work / "results" / "build-7" / "rocm" / "case.json").write_text("{}")
    monkeypatch.chdir(work)
    agent = fake_agent(state)
    assert agent.artifact_upload("results/build-7/rocm/*")
    assert agent.artifact_download("results/build-7/**/*", tmp_path / "down", step="run-rocm")
    assert (tmp_path / "down" / "results" / "build-7" / "rocm" / "case.json").read_text() == "{}"
    assert calls(state)[1]["argv"] == ["artifact", "download", "results/build-7/**/*",
                                       str(tmp_path / "down"), "--step", "run-rocm"]


def test_failed_call_raises_agent_error_naming_the_command_fake_buildkite_agent(state: Path,
                                                                                 tmp_path):
    agent = fake_agent(state)
    with pytest.raises(AgentError,
                       match=r"artifact download nothing/\* exited 1: .*No artifacts found"):
        agent.artifact_download("nothing/*", tmp_path)


def test_meta_data_round_trip_fake_buildkite_agent(state: Path):
    agent = fake_agent(state)
    assert agent.meta_data_set("harness-run-id", "build-7")
    assert agent.meta_data_get("harness-run-id") == "build-7"
    assert agent.meta_data_get("absent", default="none") == "none"


def test_pipeline_upload_is_interpolated_like_buildkite_fake_buildkite_agent(state: Path):
    agent = fake_agent(state, BUILDKITE_BUILD_NUMBER="7")
    assert agent.pipeline_upload("steps:\n- command: echo build-$BUILDKITE_BUILD_NUMBER $$HOME\n")
    assert (state / "uploads" / "1.yml").read_text() == \
        "steps:\n- command: echo build-7 $HOME\n"


def test_an_agent_that_does_not_answer_times_out_fake_buildkite_agent(state: Path):
    agent = fake_agent(state, FAKE_BUILDKITE_HANG_S="30")
    agent.timeout_s = 0.5
    with pytest.raises(AgentError, match="meta-data get k: no answer within 0.5 s"):
        agent.meta_data_get("k")


def test_missing_agent_binary_on_buildkite_is_an_agent_error(tmp_path: Path):
    agent = Agent(environ={"BUILDKITE": "true"}, executable=str(tmp_path / "missing"))
    with pytest.raises(AgentError, match="not found on PATH"):
        agent.annotate("x", context="c")
