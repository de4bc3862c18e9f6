"""One place for each rule: classes, exit codes, severity, process groups, host/worker split."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import outcomes, proc
from harness.runinfo import git_state
from tests.conftest import REPO

HARNESS = REPO / "harness"


def _sources():
    return [p for p in HARNESS.rglob("*.py") if "phi4mm_remote" not in p.parts]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_exit_codes_classes_and_severity_are_defined_only_in_outcomes():
    defined = re.compile(r"^(EXIT_(OK|FAILED|USAGE|INFRA|REGRESSION)|INFRA_CLASSES|RETRIED_CLASSES|Status|FailureClass|"
                         r"CheckOutcome)\s*(,\s*\w+\s*)*=", re.M)
    elsewhere = {str(p.relative_to(REPO)) for p in _sources()
                 if p.name != "outcomes.py" and defined.search(p.read_text())}
    assert elsewhere == set()
    ranked = re.compile(r"def (_severity|worst_exit)\b")
    assert {p.name for p in _sources() if ranked.search(p.read_text())} == {"outcomes.py"}


def test_severity_failure_outranks_infra_and_usage_outranks_all():
    assert outcomes.worst_exit([0, 3, 1]) == outcomes.EXIT_FAILED
    assert outcomes.worst_exit([0, 3]) == outcomes.EXIT_INFRA
    assert outcomes.worst_exit([1, 2]) == outcomes.EXIT_USAGE
    assert outcomes.worst_exit([]) == outcomes.EXIT_OK


def test_every_retried_class_is_infrastructure_and_container_classes_exist():
    assert outcomes.RETRIED_CLASSES <= outcomes.INFRA_CLASSES <= set(outcomes.FAILURE_CLASSES)
    for name in ("gpu-hang", "harness-error", "disk-full", "image-missing", "container-start",
                 "command-not-found", "container-lost"):
        assert name in outcomes.FAILURE_CLASSES
    assert "harness-error" not in outcomes.RETRIED_CLASSES  # a bug in the harness repeats
    assert {"startup-timeout", "oom", "gpu-hang"} <= outcomes.RETRIED_CLASSES
    assert outcomes.VERDICT_CLASSES == {"crash", "request-error", "check-failed"}


def test_host_side_does_not_import_the_worker_and_there_is_no_import_cycle():
    host = [HARNESS / "host" / "execute.py", *(HARNESS / "host" / "launch").glob("*.py")]
    for path in host:
        worker = {m for m in _imports(path) if m.startswith("harness.worker")}
        assert worker == set(), f"{path.name} reaches into {worker}"
    assert "harness.host.execute" not in _imports(HARNESS / "host" / "launch" / "container.py")


def test_process_groups_are_signalled_and_started_only_by_proc():
    offenders = {str(p.relative_to(REPO)) for p in _sources() if p.name != "proc.py"
                 and re.search(r"os\.killpg|start_new_session|subprocess\.run\(.*engine_prefix",
                               p.read_text())}
    assert offenders == set()


def test_one_escalation_sigint_then_sigterm_then_sigkill(tmp_path):
    # A child that ignores SIGINT and SIGTERM: only the last step of the escalation ends it,
    # and it records which signals reached it.
    script = ("import signal, sys, time\n"
              "def seen(n, f): print('got', n, flush=True)\n"
              "signal.signal(signal.SIGINT, seen); signal.signal(signal.SIGTERM, seen)\n"
              "print('ready', flush=True)\n"
              "while True: time.sleep(0.1)\n")
    log = tmp_path / "child.log"
    child = proc.start([sys.executable, "-c", script], log)
    try:
        deadline = time.monotonic() + 20
        while "ready" not in proc.read_tail(log):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        saved = getattr(proc, "TERM_GRACE_S", None)
        proc.TERM_GRACE_S = 0.5
        code = proc.stop(child, grace_s=0.5)
    finally:
        proc.TERM_GRACE_S = saved
        if child.poll() is None:  # whatever stop() did, leave nothing behind
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
    assert code == -signal.SIGKILL and time.monotonic() - began < 10
    got = [line.split()[1] for line in proc.read_tail(log).splitlines() if line.startswith("got")]
    assert got == [str(int(signal.SIGINT)), str(int(signal.SIGTERM))]


def test_call_stops_a_hung_client_at_its_deadline():
    began = time.monotonic()
    done = proc.call([sys.executable, "-c", "import time; print('x', flush=True); "
                      "time.sleep(60)"], timeout_s=1, grace_s=0.5)
    assert done is not None and done.returncode is None and time.monotonic() - began < 20
    assert proc.call(["/nonexistent/docker", "inspect"], timeout_s=1) is None


def test_memory_watch_sees_this_groups_peak_and_restarts_per_job(tmp_path):
    script = ("import time\nblock = bytearray(120 * 1024 * 1024)\n"
              "for i in range(0, len(block), 4096): block[i] = 1\n"
              "print('big', flush=True)\ntime.sleep(1.5)\ndel block\n"
              "print('small', flush=True)\ntime.sleep(60)\n")
    log = tmp_path / "m.log"
    child = proc.start([sys.executable, "-c", script], log)
    watch = proc.MemoryWatch(child.pid, interval_s=0.1)
    try:
        deadline = time.monotonic() + 30
        while "small" not in proc.read_tail(log):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert watch.peak_mb is not None and watch.peak_mb > 100
        watch.reset()  # the next job on the same engine
        deadline = time.monotonic() + 10  # a loaded machine may take a while to sample again
        while watch.peak_mb is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watch.peak_mb is not None and watch.peak_mb < 100
    finally:
        watch.close()
        proc.stop(child, grace_s=1)


def test_git_state_has_a_dirty_flag_and_the_launcher_value_wins(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / "f").write_text("1")
    subprocess.run(git + ["add", "f"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    commit, dirty = git_state(repo, environ={})
    assert len(commit) == 40 and dirty is False
    (repo / "f").write_text("2")
    assert git_state(repo, environ={}) == (commit, True)
    assert git_state(repo, environ={"HARNESS_GIT_COMMIT": "abc", "HARNESS_GIT_DIRTY": "0"}) \
        == ("abc", False)
