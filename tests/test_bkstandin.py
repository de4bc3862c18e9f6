"""The Buildkite stand-in of the rehearsal: its pure scheduling (tests/bkstandin_plan.py) and a
small real build through its runner (tests/bkstandin_run.py), in seconds."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.bkstandin_plan import (Build, Job, UnderstoodError, next_step, outcome, parse_upload,
                                  retries_left)
from tests.bkstandin_run import Agent, run_build


def steps(*raw: dict, source: str = "schedule"):
    return parse_upload({"steps": list(raw)}, source)


@pytest.mark.parametrize("raw, message", [
    ({"key": "a", "command": "x", "plugins": [{"docker#v5": {}}]}, "attribute(s) ['plugins']"),
    ({"key": "a", "command": "x", "parallelism": 2}, "attribute(s) ['parallelism']"),
    ("wait", "wait/block/trigger"),
    ({"key": "a", "command": "x", "if": "build.branch == 'main'"}, "is not understood"),
    ({"key": "a", "command": "x", "agents": {"gpu": "mi300"}}, "agent targeting"),
    ({"key": "a", "command": "x", "retry": {"manual": False}}, "retry ['manual']"),
    ({"key": "a"}, "without commands"),
])
def test_anything_not_understood_is_an_error_never_skipped(raw, message):
    with pytest.raises(UnderstoodError, match=re.escape(message)):
        steps(raw)
    with pytest.raises(UnderstoodError, match="top-level"):
        parse_upload({"steps": [], "env": {"A": "1"}}, "schedule")


def test_if_on_build_source_selects_steps():
    raw = [{"key": "a", "command": "x", "if": 'build.source != "schedule"'},
           {"key": "b", "command": "x", "if": 'build.source == "schedule"'}]
    assert [s.key for s in steps(*raw)] == ["b"]
    assert [s.key for s in steps(*raw, source="ui")] == ["a"]


def test_depends_on_allow_failure_and_broken_dependants():
    build = Build()
    build.add(steps({"key": "run", "command": "x"},
                    {"key": "cmp", "command": "x", "depends_on": [{"step": "run",
                                                                   "allow_failure": True}]},
                    {"key": "strict", "command": "x", "depends_on": "run"},
                    {"key": "after-strict", "command": "x", "depends_on": ["strict"]},
                    {"key": "free", "command": "x"}))
    assert next_step(build).key == "run"
    build.outcomes["run"] = "failed"
    assert next_step(build).key == "cmp"  # allow_failure: runs after a failed dependency
    assert build.outcomes["strict"] == "broken" and build.outcomes["after-strict"] == "broken"
    build.outcomes["cmp"] = "passed"
    assert next_step(build).key == "free"
    build.outcomes["free"] = "passed"
    assert next_step(build) is None and not build.passed
    with pytest.raises(UnderstoodError, match="depends on unknown"):
        build.add(steps({"key": "late", "command": "x", "depends_on": "nope"}))
    with pytest.raises(UnderstoodError, match="uploaded twice"):
        build.add(steps({"key": "run", "command": "x"}))


def test_retry_by_exit_status_each_rule_with_its_limit():
    [step] = steps({"key": "r", "command": "x", "retry": {"automatic": [
        {"exit_status": -1, "limit": 2}, {"exit_status": 3, "limit": 1}]}})
    jobs = [Job("r", 0, 3, "a")]
    assert retries_left(step, jobs, 3)
    jobs.append(Job("r", 1, 3, "a"))
    assert not retries_left(step, jobs, 3)  # the exit-3 rule's one retry is used
    assert retries_left(step, jobs + [Job("r", 2, -1, "a")], -1)  # the agent-lost rule is not
    assert not retries_left(step, [Job("r", 0, 1, "a")], 1)  # no rule for a test failure
    assert not retries_left(step, [Job("r", 0, None, "a")], None)  # a timeout is not retried
    [star] = steps({"key": "s", "command": "x", "retry": {"automatic": [{"exit_status": "*",
                                                                         "limit": 1}]}})
    assert retries_left(star, [Job("s", 0, 7, "a")], 7)


def test_soft_fail_by_exit_status_or_always():
    [some, every, none] = steps({"key": "a", "command": "x", "soft_fail": [{"exit_status": 3}]},
                                {"key": "b", "command": "x", "soft_fail": True},
                                {"key": "c", "command": "x"})
    assert (outcome(some, 3), outcome(some, 1), outcome(some, 0)) == \
        ("soft_failed", "failed", "passed")
    assert outcome(every, 1) == "soft_failed" and outcome(none, 3) == "failed"
    assert outcome(some, None) == "failed"  # a timed-out job is not an exit status


# ---------------------------------------------------------------- a real small build


GENERATED = """\
steps:
  - key: produce
    label: produce
    commands:
      - mkdir -p out/build-$BUILDKITE_BUILD_NUMBER
      - echo "$$BUILDKITE_RETRY_COUNT $$ROCR_VISIBLE_DEVICES $$BUILDKITE_AGENT_META_DATA_RENDER" > out/build-$BUILDKITE_BUILD_NUMBER/r.txt
      - test -e marker-from-an-earlier-job && exit 9 || true
      - touch marker-from-an-earlier-job
      - '[ "$$BUILDKITE_RETRY_COUNT" = 1 ] || exit 3'
    agents: {queue: gpu}
    retry: {automatic: [{exit_status: 3, limit: 1}]}
    artifact_paths: ["out/build-$BUILDKITE_BUILD_NUMBER/*"]
  - key: consume
    label: consume
    depends_on: [{step: produce, allow_failure: true}]
    commands:
      - buildkite-agent artifact download "out/build-$BUILDKITE_BUILD_NUMBER/*" .
      - buildkite-agent annotate --context c --style info < out/build-$BUILDKITE_BUILD_NUMBER/r.txt
  - key: slow
    label: slow
    commands: ["sleep 30"]
    timeout_in_minutes: 0.02
    soft_fail: true
"""


def test_a_small_build_runs_uploads_retries_artifacts_annotations_timeouts(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".buildkite").mkdir(parents=True)
    (repo / "generated.yml").write_text(GENERATED)
    (repo / ".buildkite/pipeline.yml").write_text(textwrap.dedent("""\
        steps:
          - key: upload
            label: upload
            command: buildkite-agent pipeline upload generated.yml
        """))
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline")
    commit = git("rev-parse", "HEAD")
    agents = [Agent("cpu-1", "default", {"PATH": "/usr/bin:/bin"}),
              Agent("gpu-0", "gpu", {"PATH": "/usr/bin:/bin", "ROCR_VISIBLE_DEVICES": "0"},
                    {"render": "/dev/dri/renderD128"})]
    run = run_build(repo, commit, agents, tmp_path / "state", number=7)
    assert [(j.step, j.attempt, j.exit_status, j.agent) for j in run.build.jobs] == [
        ("default-upload", 0, 0, "cpu-1"), ("upload", 0, 0, "cpu-1"),
        ("produce", 0, 3, "gpu-0"), ("produce", 1, 0, "gpu-0"),  # fresh checkout: no marker
        ("consume", 0, 0, "cpu-1"), ("slow", 0, None, "cpu-1")]
    assert run.build.outcomes["slow"] == "soft_failed" and run.passed
    assert run.annotation("c").strip() == "1 0 /dev/dri/renderD128"
    assert (run.artifact("out/build-7/r.txt")).is_file()
    assert "timed out" in run.log("slow")
    assert json.loads((run.state / "build.json").read_text())["number"] == 7
    with pytest.raises(UnderstoodError, match="no agent serves queue 'gpu'"):
        run_build(repo, commit, agents[:1], tmp_path / "state2", number=8)
