"""execute(): every planned job ends with a result, whatever the worker process does.

The worker here is a stand-in Python process (a real process, not a mock) that misbehaves
on purpose: collects nothing, overruns its deadline, or dies half-way.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from harness.host.execute import EXIT_INFRA, EXIT_OK, execute
from harness.host.launch.local import LocalLaunch, WorkerRequest
from harness.plan import plan
from harness.results import read_result
from harness.spec.case import load_cases, load_platforms
from tests.conftest import CASES, REAL_RUN, REPO


class StandInLaunch(LocalLaunch):
    def __init__(self, request: WorkerRequest, script: str):
        super().__init__(request)
        self.script = script

    def argv(self) -> list[str]:
        return [sys.executable, "-c", self.script]


def setup(tmp_path: Path, timeout_minutes: float = 5):
    platforms = load_platforms(CASES / "platforms.yaml")
    cpu = platforms["cpu"].model_copy(update={"timeout_minutes": timeout_minutes})
    jobs = plan(load_cases([CASES]), {"cpu": cpu}, ["cpu"])
    request = WorkerRequest(cpu, [CASES], CASES / "platforms.yaml", tmp_path, "r1", None, REPO)
    return jobs, request


def test_nothing_collected_is_an_error_not_a_pass(tmp_path):
    jobs, request = setup(tmp_path)
    run = execute(jobs, request, StandInLaunch(request, "print('collected 0 items'); exit(5)"))
    assert run.exit_code == EXIT_INFRA
    assert {(r.status, r.failure_class) for r in run.results} == {("error", "collection")}
    assert "collected 0 items" in run.results[0].log.tail
    assert read_result(tmp_path / "r1" / "cpu" / "phi4mm_variable_crop.json").status == "error"


def test_deadline_overrun_gives_timeout_results_with_log_tail(tmp_path):
    jobs, request = setup(tmp_path, timeout_minutes=0.05)  # 3 s
    script = "import time; print('engine warming up', flush=True); time.sleep(600)"
    run = execute(jobs, request, StandInLaunch(request, script))
    assert run.outcome.timed_out and run.outcome.duration_s < 600  # did not wait for the sleep
    assert {r.failure_class for r in run.results} == {"timeout"}
    assert "engine warming up" in run.results[0].log.tail
    assert run.exit_code == EXIT_INFRA


def test_worker_dying_half_way_keeps_the_written_result(tmp_path):
    jobs, request = setup(tmp_path)
    real = REAL_RUN / "real-cpu-1" / "cpu" / "phi4mm_variable_crop.json"
    target = tmp_path / "r1" / "cpu" / "phi4mm_variable_crop.json"
    script = (f"import shutil, os; shutil.copy({str(real)!r}, {str(target)!r}); "
              "os.kill(os.getpid(), 9)")
    run = execute(jobs, request, StandInLaunch(request, script))
    by_case = {r.case_id: r for r in run.results}
    assert by_case["phi4mm_variable_crop"].status == "passed"
    assert by_case["qwen2_5_vl_vit_cudagraph"].failure_class == "worker-died"  # not `crash`: no verdict
    assert "exited -9" in by_case["qwen2_5_vl_vit_cudagraph"].message


def test_stale_results_of_a_retried_run_are_not_reused(tmp_path):
    jobs, request = setup(tmp_path)
    stale = tmp_path / "r1" / "cpu"
    stale.mkdir(parents=True)
    for name in ("phi4mm_variable_crop.json", "qwen2_5_vl_vit_cudagraph.json"):
        shutil.copy(REAL_RUN / "real-cpu-1" / "cpu" / name, stale / name)
    run = execute(jobs, request, StandInLaunch(request, "exit(0)"))
    assert {r.status for r in run.results} == {"error"}
    assert run.exit_code != EXIT_OK


def test_missing_container_client_is_an_infra_error(tmp_path):
    jobs, request = setup(tmp_path)

    class NoDocker(LocalLaunch):
        def argv(self):
            return ["/nonexistent/docker", "run", "image"]

    run = execute(jobs, request, NoDocker(request))
    assert {(r.status, r.failure_class) for r in run.results} == {("error", "infra")}
    assert "/nonexistent/docker" in run.results[0].message
    assert "cannot start the worker" in run.results[0].log.tail
    assert run.exit_code == EXIT_INFRA


def test_interrupted_at_the_deadline_is_reported_as_timeout(tmp_path):
    # The stand-in writes what the real worker writes when our SIGINT lands mid-job.
    jobs, request = setup(tmp_path, timeout_minutes=0.05)
    real = REAL_RUN / "real-cpu-1" / "cpu" / "phi4mm_variable_crop.json"
    target = tmp_path / "r1" / "cpu" / "phi4mm_variable_crop.json"
    script = (
        "import json, signal, time\n"
        f"def stop(*_):\n"
        f"    data = json.load(open({str(real)!r}))\n"
        "    data.update(status='error', failure_class='interrupted', message='interrupted')\n"
        f"    json.dump(data, open({str(target)!r}, 'w'))\n"
        "    raise SystemExit(2)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "time.sleep(600)\n")
    run = execute(jobs, request, StandInLaunch(request, script))
    by_case = {r.case_id: r for r in run.results}
    assert by_case["phi4mm_variable_crop"].failure_class == "timeout"
    assert "deadline" in by_case["phi4mm_variable_crop"].message
    assert read_result(target).failure_class == "timeout"
    assert by_case["qwen2_5_vl_vit_cudagraph"].failure_class == "timeout"
