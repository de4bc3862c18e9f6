"""The auto-bisect for real: images in a loopback registry (tests/engines.py), real docker
containers, the stand-in worker (tests/bisect_standin.py) recording each image's stack with the
real reader (harness/worker/stack.py).

* A planted break where only the ROCm version the image records (/opt/rocm/.info/version)
  changes between two of 9 nightly tags: `harness bisect --confirm-at final` names the first bad
  tag in at most ceil(log2 9) + 4 engine runs and reports "ROCm stack changed only" with the
  component that changed, in the report, the terminal and bisect.json.
* The nightly's own trigger on the same kind of images: two nights ingested into a history
  store, `harness autobisect plan` (fake buildkite-agent) uploads the bisect step by itself;
  running the uploaded step's commands finds the first bad tag within the bound, posts the
  annotation with the component diff, and its record step puts the result in the store and on
  the dashboard beside the broken case.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.host.bisect.state import load_state
from tests.conftest import CASES, REPO
from tests.nightly_images import build_and_push, rocm_nightlies
from tests.test_bisect_real import (CASE, PLATFORM, bisect_env, docker, harness_bisect,  # noqa
                                    our_containers, stand_in_platforms)

pytestmark = pytest.mark.container

TAGS, FIRST_BAD = 9, 6


def test_a_rocm_version_change_alone_is_reported_as_rocm_stack_changed_only(
        tmp_path, docker, docker_engine, registry, docker_base_image):
    tags = rocm_nightlies(TAGS, FIRST_BAD)
    refs = build_and_push(docker, registry, docker_base_image, "vllm/rocm-stack", tags, tmp_path)
    results = tmp_path / "results"
    args = ["--case", CASE, "--platform", PLATFORM, "--good", tags[0].tag,
            "--bad", tags[-1].tag, "--tags-from", f"{registry.address}/vllm/rocm-stack",
            "--tag-pattern", "nightly-.*", "--confirm-at", "final", "--cases", str(CASES),
            "--platforms-file", str(stand_in_platforms(tmp_path, docker_base_image)),
            "--results", str(results), "--id", "stack", "--json", str(tmp_path / "out.json")]
    began = time.monotonic()
    child = harness_bisect(args, bisect_env(docker_engine))
    out, _ = child.communicate(timeout=1800)
    wall = time.monotonic() - began
    assert child.returncode == 0, out[-6000:]
    state = load_state(results / "bisect-stack")
    assert [c.ref for c in state.candidates] == refs
    runs, bound = len(state.steps), math.ceil(math.log2(TAGS)) + 4
    assert runs <= bound, out
    assert f"first bad: {refs[FIRST_BAD]}" in out and f"last good: {refs[FIRST_BAD - 1]}" in out
    assert "likely layer: ROCm stack changed only" in out
    assert "changed ROCm: 6.4.1-120 -> 7.0.0-38" in out
    report = (results / "bisect-stack" / "report.md").read_text()
    assert "**Likely layer: ROCm stack changed only**" in report
    assert "| ROCm | `6.4.1-120` | `7.0.0-38` |" in report
    data = json.loads((tmp_path / "out.json").read_text())
    assert data == json.loads((results / "bisect-stack" / "bisect.json").read_text())
    assert data["status"] == "found" and data["first_bad"]["ref"] == refs[FIRST_BAD]
    assert data["components"] == {"layer": "ROCm stack changed only", "known": True, "changed": [
        {"component": "rocm", "before": "6.4.1-120", "after": "7.0.0-38"}]}
    assert data["engine_runs"] == runs and data["within_bound"]
    # each step recorded the image's stack with the real reader: vLLM the same everywhere
    stacks = {s.candidate: s.fingerprint["stack"] for s in state.steps}
    assert {s["vllm"] for s in stacks.values()} == {"0.32.0"}
    assert all(s["rocm"] == ("7.0.0-38" if i >= FIRST_BAD else "6.4.1-120")
               for i, s in stacks.items())
    assert our_containers(docker) == []
    print(f"\nROCm-stack bisect: {wall:.0f} s wall, {runs} engine runs over {TAGS} tags "
          f"(bound ceil(log2({TAGS})) + 4 = {bound})")


# ---------------------------------------------------------------- the nightly's own trigger


def night_result(run_id: str, platform: str, status: str, image_digest: str | None,
                 started: str, commit: str):
    from harness.results import LogInfo, Result

    bad = status == "failed"
    return Result(run_id=run_id, job_id=f"{CASE}@{platform}", case_id=CASE, platform=platform,
                  status=status, failure_class="crash" if bad else None,
                  message="engine died" if bad else "", log=LogInfo(tail="-"),
                  fingerprint={"image_digest": image_digest, "container": True,
                               "buildkite": {"commit": commit}},
                  started_at=started, finished_at=started)


def nightly_platforms(tmp_path: Path, image: str) -> Path:
    """A platforms file whose `rocm` runs in a real docker container with the stand-in worker
    (what the bisect step runs here in place of an MI300 agent)."""
    path = stand_in_platforms(tmp_path, image)
    data = yaml.safe_load(path.read_text())
    data["platforms"]["rocm"] = {**data["platforms"][PLATFORM], "queue": "mi300"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_step(step: dict, cwd: Path, env: dict[str, str]) -> str:
    """The step's commands as a Buildkite agent runs them: one shell, stop at the first
    failing command; its exit status is returned with the output."""
    script = "set -e\n" + "\n".join(step["commands"])
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def test_night_twos_rocm_break_uploads_its_bisect_which_names_the_first_bad_and_the_layer(
        tmp_path, docker, docker_engine, registry, docker_base_image):
    from harness.host.bisect.registry import registry_candidates
    from harness.commands.cli import main
    from harness.history.bisects import load_records
    from harness.history.store import open_store
    from harness.results import result_path, write_result

    repo = f"{registry.address}/vllm/vllm-openai-rocm"
    tags = rocm_nightlies(TAGS, FIRST_BAD)
    refs = build_and_push(docker, registry, docker_base_image, "vllm/vllm-openai-rocm", tags,
                          tmp_path)
    digests = {c.ref: f"{repo}@{c.digest}" for c in registry_candidates(repo, "nightly-.*")}
    results, db = tmp_path / "results", str(tmp_path / "history.sqlite")
    nights = [("build-1", "passed", refs[0], "2026-12-01T02:00:00+00:00"),
              ("build-2", "failed", refs[-1], "2026-12-02T02:00:00+00:00")]
    for run_id, status, ref, started in nights:
        commit = f"{run_id}".ljust(40, "0")
        write_result(result_path(results, run_id, "rocm", CASE),
                     night_result(run_id, "rocm", status, digests[ref], started, commit))
        write_result(result_path(results, run_id, "cuda", CASE),
                     night_result(run_id, "cuda", "passed", None, started, commit))
        assert main(["ingest", "--db", db, str(results / run_id)]) == 0
    state = tmp_path / "buildkite"
    env = {**bisect_env(docker_engine), "BUILDKITE": "true", "FAKE_BUILDKITE_DIR": str(state),
           "BUILDKITE_BUILD_NUMBER": "2",
           "PATH": f"{REPO / 'tests' / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("HARNESS_AUTOBISECT", None)
    plan = ["autobisect", "plan", "--db", db, "--run-dir", str(results / "build-2"),
            "--platform", "rocm", "--baseline", "cuda", "--cases", str(CASES),
            "--platforms-file", str(nightly_platforms(tmp_path, docker_base_image)),
            "--harness-command", f"{sys.executable} -m harness"]
    planned = subprocess.run([sys.executable, "-m", "harness", *plan], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    [upload] = sorted((state / "uploads").glob("*.yml"))
    bisect_step, record_step = yaml.safe_load(upload.read_text())["steps"]
    assert bisect_step["agents"] == {"queue": "mi300"}
    assert f"--case {CASE} " in bisect_step["commands"][-1]  # the failing case alone
    plan_note = (state / "annotations" / "harness-autobisect-rocm.md").read_text()
    assert "Started 1 bisect(s)" in plan_note and f"`{tags[0].tag}`" in plan_note

    began = time.monotonic()
    out = run_step(bisect_step, REPO, env)  # agents run steps in the checkout
    wall = time.monotonic() - began
    assert out.startswith("exit 0"), out[-6000:]
    ident = bisect_step["key"].removeprefix("bisect-")
    data = json.loads((results / f"bisect-{ident}" / "bisect.json").read_text())
    assert data["first_bad"]["ref"] == refs[FIRST_BAD]
    assert data["last_good"]["ref"] == refs[FIRST_BAD - 1]
    bound = math.ceil(math.log2(TAGS)) + 4
    assert data["candidates"] == TAGS and data["engine_runs"] <= bound
    note = (state / "annotations" / f"harness-bisect-{ident}.md").read_text()
    assert "**Likely layer: ROCm stack changed only**" in note
    assert "| ROCm | `6.4.1-120` | `7.0.0-38` |" in note
    assert f"first bad: {refs[FIRST_BAD]}" in note

    out = run_step(record_step, REPO, env)
    assert out.startswith("exit 0"), out[-4000:]
    conn = open_store(db, create=False)
    [record] = [r for r in load_records(conn) if r.status != "refused"]
    conn.close()
    assert (record.bisect_id, record.status) == (ident, "found")
    page = (results / "dashboard.html").read_text()
    assert f"auto-bisect: first bad <code>{refs[FIRST_BAD]}</code>" in page
    assert "ROCm stack changed only" in page

    # The same night's history step again (a retry), or the next night: not bisected twice.
    again = subprocess.run([sys.executable, "-m", "harness", *plan], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "(already-bisected)" in again.stdout, again.stdout
    assert len(list((state / "uploads").glob("*.yml"))) == 1
    assert our_containers(docker) == []
    print(f"\nnightly auto-bisect: {wall:.0f} s wall, {data['engine_runs']} engine runs over "
          f"{TAGS} tags (bound {bound})")
