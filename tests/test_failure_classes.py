"""Failure classes: the retry rule, GPU hangs, harness errors, raising checks, a full disk.

Workers here are stand-in Python processes (real processes, named as stand-ins) that end the
way a real worker would: they write result files or die with a given exit code.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.host.execute import execute
from harness.host.launch.local import LocalLaunch, WorkerRequest
from harness.outcomes import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from harness.signatures.exits import classify_exit
from harness.plan import plan
from harness.results import (DiskFull, Result, read_result, write_atomic, write_result)
from harness.spec.case import load_cases, load_platforms
from harness.worker.checks import Observed, evaluate
from harness.worker.job import final_status
from tests.conftest import CASES, REAL_RUN, REPO

REAL = REAL_RUN / "real-cpu-1" / "cpu"


class StandInWorker(LocalLaunch):
    """Runs a stand-in script in place of pytest; ``attempt`` counts launches (retries)."""

    def __init__(self, request: WorkerRequest, script: str, counter: list[int]):
        super().__init__(request)
        self.script, self.counter = script, counter
        counter.append(len(counter) + 1)
        self.attempt = counter[-1]

    def argv(self) -> list[str]:
        cases = ",".join(Path(p).stem for p in self.request.case_files)
        return [sys.executable, "-c", self.script, str(self.attempt), cases,
                str(self.request.results_dir / self.request.run_id / "cpu")]


def setup(tmp_path: Path, results: Path | None = None):
    platforms = load_platforms(CASES / "platforms.yaml")
    cpu = platforms["cpu"]
    jobs = plan(load_cases([CASES]), {"cpu": cpu}, ["cpu"])
    files = sorted({Path(j.case.source) for j in jobs})
    request = WorkerRequest(cpu, files, CASES / "platforms.yaml", results or tmp_path, "r1",
                            None, REPO)
    return jobs, request


# A stand-in worker: for each case of its case files, writes the real passed result, or the
# same result turned into an error of the class given for this attempt.
WRITES = '''
import json, sys
from harness.runinfo import buildkite_fields, hostname
attempt, cases, out = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
plan = PLAN
for case in cases:
    data = json.load(open(f"{REAL}/{case}.json"))
    data["fingerprint"].update(hostname=hostname(), buildkite=buildkite_fields())  # this node
    klass = plan.get(case, [None, None])[attempt - 1]
    if klass:
        data.update(status="error", failure_class=klass, message=f"attempt {attempt}: {klass}")
    open(f"{out}/{case}.log", "w").write(f"engine log of attempt {attempt}\\n")
    data["log"] = {"path": f"{case}.log", "tail": f"engine log of attempt {attempt}"}
    json.dump(data, open(f"{out}/{case}.json", "w"))
print("stand-in worker attempt", attempt, cases, flush=True)
'''


def _writes(plan: dict[str, list[str | None]]) -> str:
    return WRITES.replace("PLAN", repr(plan)).replace("{REAL}", str(REAL))


def _run(tmp_path, plan, results=None):
    jobs, request = setup(tmp_path, results)
    counter: list[int] = []
    script = _writes(plan)
    run = execute(jobs, request, StandInWorker(request, script, counter),
                  relaunch=lambda r: StandInWorker(r, script, counter))
    return run, {r.case_id: r for r in run.results}, counter


def test_the_same_infra_like_failure_on_the_retry_is_the_cases_failure(tmp_path):
    run, by_case, launches = _run(tmp_path, {"qwen2_5_vl_vit_cudagraph": ["oom", "oom"]})
    qwen = by_case["qwen2_5_vl_vit_cudagraph"]
    assert launches == [1, 2]  # one retry, of the failing job only
    assert (qwen.status, qwen.failure_class) == ("failed", "oom")
    assert "both attempts" in qwen.message
    assert [(a.attempt, a.failure_class) for a in qwen.attempts] == [(1, "oom"), (2, "oom")]
    # each attempt keeps its own signature (here: nothing in its logs, the harness's message)
    assert qwen.attempts[0].signature.line == "attempt 1: oom"
    assert qwen.signature.line.endswith("attempt 2: oom")
    assert qwen.attempts[0].log.path == "qwen2_5_vl_vit_cudagraph.attempt1.log"
    run_dir = tmp_path / "r1" / "cpu"
    assert "attempt 1" in (run_dir / "qwen2_5_vl_vit_cudagraph.attempt1.log").read_text()
    assert read_result(run_dir / "qwen2_5_vl_vit_cudagraph.attempt1.json").failure_class == "oom"
    assert read_result(run_dir / "qwen2_5_vl_vit_cudagraph.json") == qwen
    assert by_case["phi4mm_variable_crop"].status == "passed"  # not rerun: its result stays
    assert run.exit_code == EXIT_FAILED


def test_a_startup_timeout_that_passes_on_the_retry_passes_with_the_first_attempt_on_record(
        tmp_path):
    run, by_case, _ = _run(tmp_path, {"qwen2_5_vl_vit_cudagraph": ["startup-timeout", None]})
    qwen = by_case["qwen2_5_vl_vit_cudagraph"]
    assert qwen.status == "passed" and run.exit_code == EXIT_OK
    assert [a.failure_class for a in qwen.attempts] == ["startup-timeout", None]


def test_a_different_infra_failure_on_the_retry_stays_an_infrastructure_error(tmp_path):
    run, by_case, _ = _run(tmp_path, {"phi4mm_variable_crop": ["gpu-hang", "oom"]})
    phi = by_case["phi4mm_variable_crop"]
    assert (phi.status, phi.failure_class) == ("error", "oom") and run.exit_code == EXIT_INFRA
    assert len(phi.attempts) == 2


def test_harness_errors_and_test_failures_are_not_retried(tmp_path):
    run, by_case, launches = _run(tmp_path, {"phi4mm_variable_crop": ["harness-error", None]})
    assert launches == [1]
    assert by_case["phi4mm_variable_crop"].failure_class == "harness-error"
    assert run.exit_code == EXIT_INFRA


# ---------------------------------------------------------------- GPU hang


@pytest.mark.parametrize("code,log,expected", [
    (-6, "HW Exception by GPU node-1 (Agent handle: 0x5f) reason :GPU Hang", "gpu-hang"),
    (134, ":0:rocdevice.cpp:2875: Callback: Queue aborting with error : "
          "HSA_STATUS_ERROR_EXCEPTION: An HSAIL operation resulted in a hardware exception", "gpu-hang"),
    (-6, "terminate called after throwing an instance of 'std::runtime_error'", "crash"),
    (-9, "", "oom"),
    (1, "torch.OutOfMemoryError: HIP out of memory", "oom"),
    (1, "ValueError: bad", "crash"),
])
def test_exit_classification(code, log, expected):
    assert classify_exit(code, log) == expected


def test_a_worker_aborted_by_a_gpu_hang_is_gpu_hang_and_retried(tmp_path):
    """A GPU hang twice on one node is the node's (harness.host.repeats): infrastructure, exit 3,
    the node named; Buildkite's retry may land elsewhere."""
    jobs, request = setup(tmp_path)
    counter: list[int] = []
    script = ("import os, sys; print('HW Exception by GPU node-2 (Agent handle: 0x1) reason "
              ":GPU Hang', flush=True); os.abort()")
    run = execute(jobs, request, StandInWorker(request, script, counter),
                  relaunch=lambda r: StandInWorker(r, script, counter))
    assert counter == [1, 2]
    assert {(r.status, r.failure_class) for r in run.results} == {("error", "gpu-hang")}
    assert all(f"host {platform.node()}" in r.message for r in run.results)
    assert run.exit_code == EXIT_INFRA
    # the signature: the hang the worker printed (its own log), with where it ran
    assert {(r.signature.rule, r.signature.key, r.signature.source, r.signature.line_no)
            for r in run.results} == {("rocm-gpu-hang", "reason=GPU Hang", "worker.log", 1)}
    assert all(read_result(request.results_dir / "r1" / "cpu" / f"{r.case_id}.json").signature
               == r.signature for r in run.results)


# ---------------------------------------------------------------- harness errors


def _request(rid, tokens):
    from harness.results import RequestResult, TopLogprob

    return RequestResult(id=rid, ok=True, token_ids=tokens, prompt_tokens=40,
                         logprobs=[[TopLogprob(token_id=t, logprob=-0.5)] for t in tokens])


def test_a_raising_check_records_error_for_itself_and_keeps_the_others():
    case = load_cases([CASES / "phi4mm_variable_crop.yaml"])[0]
    observed = Observed(capabilities=set(), startup_s=5.0,
                        requests=[_request("landscape", [1]), _request("portrait", [2]),
                                  _request("small", [3])], log_text="all fine",
                        probes={"phi4mm_stack_with_pad": {"ok": True},
                                "phi4mm_schema_ragged_masks": {"ok": True}},
                        traces={"phi4mm_image_batches": [{"phase": "requests", "unexpected": "format"}]})
    checks = {c.kind: c for c in evaluate(case.checks, observed)}
    assert checks["ragged_batch"].outcome == "error"
    assert "KeyError" in checks["ragged_batch"].message
    assert checks["requests_succeed"].outcome == "passed" and checks["log_absent"].outcome == "passed"


def test_an_exception_in_the_harness_is_harness_error_not_infra(tmp_path, monkeypatch):
    from harness.worker import job as job_module
    from harness.worker.engine import EnginePool

    jobs, _ = setup(tmp_path)

    def broken(job, ctx, *build_log):
        raise KeyError("choices")  # e.g. a changed response format

    monkeypatch.setattr(job_module, "resolve_model", broken)
    ctx = job_module.RunContext(tmp_path, "r1", REPO, tmp_path / "models")
    result = job_module.run_job(jobs[0], ctx, EnginePool())
    assert (result.status, result.failure_class) == ("error", "harness-error")
    assert "not a verdict on vLLM" in result.message and "KeyError" in result.harness_traceback
    assert final_status("harness-error", result.expect) == "error"


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the test needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> None:
    handle = open(directory / f"filler-{uuid.uuid4().hex}", "wb", buffering=0)
    try:
        while True:
            handle.write(b"x" * 4096)
    except OSError:
        pass
    finally:
        handle.close()


def test_atomic_write_on_a_full_disk_raises_disk_full_and_keeps_the_old_file(small_disk):
    path = small_disk / "r" / "case.json"
    write_atomic(path, "old content\n")
    _fill(small_disk)
    with pytest.raises(DiskFull) as caught:
        write_atomic(path, "y" * 200_000)
    assert "no space left" in str(caught.value) and str(path) in str(caught.value)
    assert path.read_text() == "old content\n"
    assert [p.name for p in path.parent.iterdir()] == ["case.json"]  # no temp file left


def test_a_run_that_fills_the_disk_is_an_infrastructure_error_and_keeps_written_results(
        small_disk, tmp_path):
    # The stand-in writes phi4mm's real result, then fills the disk and dies before qwen's.
    jobs, request = setup(tmp_path, results=small_disk)
    out = small_disk / "r1" / "cpu"
    script = (f"import shutil, sys\nshutil.copy({str(REAL / 'phi4mm_variable_crop.json')!r}, "
              f"{str(out / 'phi4mm_variable_crop.json')!r})\n"
              f"f = open({str(small_disk / 'filler')!r}, 'wb')\n"
              "try:\n    while True: f.write(b'x' * 4096); f.flush()\n"
              "except OSError as e: print('filled:', e, flush=True)\nsys.exit(1)\n")
    run = execute(jobs, request, StandInWorker(request, script, []))
    assert run.exit_code == EXIT_INFRA
    assert "no space left on device" in run.problem.lower()
    by_case = {r.case_id: r for r in run.results}
    assert by_case["qwen2_5_vl_vit_cudagraph"].failure_class == "disk-full"
    assert "disk full" in by_case["qwen2_5_vl_vit_cudagraph"].message
    assert read_result(out / "phi4mm_variable_crop.json") == by_case["phi4mm_variable_crop"]
    assert by_case["phi4mm_variable_crop"].status == "passed"


def test_the_real_worker_stops_on_a_full_disk_and_the_run_says_so(small_disk, cases_copy):
    """The real pytest worker (no engine: both jobs are skips here) writing results onto a full
    disk: it stops with exit 3 and "disk full", the launcher's own log copy fails too, and the
    run is an infrastructure error that names the cause."""
    for name in ("qwen2_5_vl_vit_cudagraph.yaml", "phi4mm_variable_crop.yaml"):
        path = cases_copy / name
        text = path.read_text()
        assert "\n  cpu:" not in text.split("\nplatforms:\n", 1)[-1]
        path.write_text(text.replace("\nplatforms:\n",
                                     "\nplatforms:\n  cpu: {skip: disk-full test}\n", 1))
    platforms = load_platforms(cases_copy / "platforms.yaml")
    jobs = plan(load_cases([cases_copy]), {"cpu": platforms["cpu"]}, ["cpu"])
    request = WorkerRequest(platforms["cpu"], sorted({Path(j.case.source) for j in jobs}),
                            cases_copy / "platforms.yaml", small_disk, "full", None, REPO)
    (small_disk / "full" / "cpu").mkdir(parents=True)
    _fill(small_disk)
    run = execute(jobs, request, LocalLaunch(request))
    assert run.exit_code == EXIT_INFRA
    assert "no space left on device" in run.problem.lower()
    assert {r.failure_class for r in run.results} == {"disk-full"}
    assert "harness: disk full" in run.outcome.disk_full  # the worker itself said why it stopped


def test_a_gpu_hang_that_passes_on_the_retry_is_a_pass_not_infra(tmp_path):
    jobs, request = setup(tmp_path)
    counter: list[int] = []
    hang = ("import os, sys; print('HW Exception by GPU node-2 reason :GPU Hang', flush=True); "
            "os.abort()")
    passes = _writes({})

    def relaunch(r):
        return StandInWorker(r, passes, counter)

    run = execute(jobs, request, StandInWorker(request, hang, counter), relaunch=relaunch)
    assert {r.status for r in run.results} == {"passed"} and run.exit_code == EXIT_OK
    assert {r.attempts[0].failure_class for r in run.results} == {"gpu-hang"}
