"""The repeat rule (harness.host.repeats): who is to blame when a retried job fails the same way
again. Node-caused classes stay infrastructure on one node and name it; on two nodes (an earlier
Buildkite job's result left in the run directory, as the retried step downloads it) they are
the case's failure. Code-caused classes repeating are the case's failure on one node.

Workers are the stand-in processes of tests/test_failure_classes.py (real processes).
"""

from __future__ import annotations

import json
import platform

import pytest

from harness.outcomes import (CODE_CAUSED_CLASSES, EXIT_FAILED, EXIT_INFRA, EXIT_OK,
                              NODE_CAUSED_CLASSES, RETRIED_CLASSES)
from harness.host.repeats import Node, node_of, repeat_update
from harness.results import read_result
from tests.test_failure_classes import REAL, _run

HOST = platform.node()
QWEN = "qwen2_5_vl_vit_cudagraph"


def test_every_retried_class_is_either_the_nodes_or_the_codes():
    assert NODE_CAUSED_CLASSES | CODE_CAUSED_CLASSES == RETRIED_CLASSES
    assert not NODE_CAUSED_CLASSES & CODE_CAUSED_CLASSES
    assert {"gpu-hang", "infra", "container-start", "container-lost"} == NODE_CAUSED_CLASSES


@pytest.mark.parametrize("klass", sorted(NODE_CAUSED_CLASSES))
def test_a_node_caused_class_twice_on_one_node_stays_infrastructure_and_names_the_node(
        tmp_path, klass, monkeypatch):
    monkeypatch.setenv("BUILDKITE_AGENT_NAME", "mi300-agent-7")
    run, by_case, launches = _run(tmp_path, {QWEN: [klass, klass]})
    qwen = by_case[QWEN]
    assert launches == [1, 2]
    assert (qwen.status, qwen.failure_class) == ("error", klass)
    assert f"host {HOST} (agent mi300-agent-7)" in qwen.message and "node's fault" in qwen.message
    assert [a.node for a in qwen.attempts] == [f"host {HOST} (agent mi300-agent-7)"] * 2
    assert run.exit_code == EXIT_INFRA


@pytest.mark.parametrize("klass", sorted(CODE_CAUSED_CLASSES))
def test_a_code_caused_class_twice_on_one_node_is_the_cases_failure(tmp_path, klass):
    run, by_case, _ = _run(tmp_path, {QWEN: [klass, klass]})
    assert (by_case[QWEN].status, by_case[QWEN].failure_class) == ("failed", klass)
    assert run.exit_code == EXIT_FAILED


def _leave_other_nodes_error(tmp_path, klass: str, hostname: str) -> None:
    """What the retried Buildkite step finds after downloading the earlier job's artifacts."""
    out = tmp_path / "r1" / "cpu"
    out.mkdir(parents=True, exist_ok=True)
    data = json.loads((REAL / f"{QWEN}.json").read_text())
    data.update(status="error", failure_class=klass, message=f"earlier job: {klass}")
    data["fingerprint"].update(hostname=hostname, buildkite={"agent_name": "mi300-agent-3"})
    (out / f"{QWEN}.json").write_text(json.dumps(data))


def test_the_same_node_caused_class_on_two_nodes_is_the_cases_failure(tmp_path):
    _leave_other_nodes_error(tmp_path, "gpu-hang", "mi300-node-a")
    run, by_case, _ = _run(tmp_path, {QWEN: ["gpu-hang", "gpu-hang"]})
    qwen = by_case[QWEN]
    assert (qwen.status, qwen.failure_class) == ("failed", "gpu-hang"), qwen.message
    assert "two nodes" in qwen.message and "mi300-node-a" in qwen.message and HOST in qwen.message
    assert [a.attempt for a in qwen.attempts] == [0, 1, 2]
    run_dir = tmp_path / "r1" / "cpu"
    assert read_result(run_dir / f"{QWEN}.attempt0.json").fingerprint["hostname"] == "mi300-node-a"
    assert read_result(run_dir / f"{QWEN}.json") == qwen
    assert run.exit_code == EXIT_FAILED


def test_another_nodes_error_followed_by_a_pass_here_is_a_pass_with_it_on_record(tmp_path):
    _leave_other_nodes_error(tmp_path, "gpu-hang", "mi300-node-a")
    run, by_case, launches = _run(tmp_path, {})
    assert launches == [1] and by_case[QWEN].status == "passed" and run.exit_code == EXIT_OK
    assert by_case[QWEN].attempts[0].node == "host mi300-node-a (agent mi300-agent-3)"


def test_an_earlier_result_from_this_node_is_stale_not_evidence(tmp_path):
    _leave_other_nodes_error(tmp_path, "gpu-hang", HOST)
    run, by_case, _ = _run(tmp_path, {})
    assert by_case[QWEN].status == "passed" and not by_case[QWEN].attempts
    assert not (tmp_path / "r1" / "cpu" / f"{QWEN}.attempt0.json").exists()


def test_unknown_node_identity_never_makes_a_verdict():
    assert Node(None, None).same_as(Node("b", "y"))
    assert not Node("a", None).same_as(Node("b", None))
    assert not Node("a", "x").same_as(Node("a", "y"))  # two agents on one host: two nodes
    assert node_of({"hostname": "h", "buildkite": {"agent_name": "a"}}) == Node("h", "a")
    assert str(Node("h", None)) == "host h"


def test_different_classes_or_a_pass_change_nothing():
    from harness.results import read_result as read

    result = read(REAL / f"{QWEN}.json")
    hang = result.model_copy(update={"status": "error", "failure_class": "gpu-hang"})
    oom = result.model_copy(update={"status": "error", "failure_class": "oom"})
    assert repeat_update(hang, oom) == {} and repeat_update(hang, result) == {}


def test_earlier_attempts_beside_a_result_are_evidence_not_results(tmp_path):
    """`<case>.attempt0.json`/`.attempt1.json` sit beside the job's result: compare and ingest
    read the result, not the attempts as cases of their own (they were reported corrupt)."""
    from harness.compare import compare_runs
    from tests.test_compare_data import make_run

    run = make_run(tmp_path, {"cuda": None, "rocm": None})
    for n in (0, 1):
        (run / "rocm" / f"{QWEN}.attempt{n}.json").write_text((run / "rocm" / f"{QWEN}.json")
                                                              .read_text())
    comparison = compare_runs([run])
    assert sorted(c.case_id for c in comparison.pairs[0].cases) == sorted(
        [QWEN, "phi4mm_variable_crop"])
    assert comparison.exit_code == EXIT_OK
