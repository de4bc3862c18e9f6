"""Live progress lines: modes, Buildkite log groups, heartbeats with the engine's last log line,
the streamed engine log, and phase timing. Real threads and files; no engine needed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.commands.cli import choose_mode
from harness.worker.progress import PhaseClock, Progress, last_line


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("requested, environ, isatty, mode", [
    ("auto", {"BUILDKITE": "true"}, True, "buildkite"),
    ("auto", {}, True, "tty"),
    ("auto", {}, False, "ci"),
    ("auto", {"BUILDKITE": "false"}, False, "ci"),
    ("off", {"BUILDKITE": "true"}, True, "off"),
    ("ci", {}, True, "ci"),
])
def test_mode_follows_the_flag_then_buildkite_then_the_terminal(requested, environ, isatty, mode):
    assert choose_mode(requested, environ, isatty) == mode


def test_buildkite_groups_each_job_and_expands_only_failed_ones():
    lines: list[str] = []
    progress = Progress("buildkite", write=lines.append)
    progress.job_started("qwen@cpu", "server, qwen2_5_vl_tiny")
    progress.phase("engine starting")
    progress.job_finished("passed", 12.0)
    progress.job_started("phi4mm@cpu")
    progress.job_finished("failed", 30.0, "offline engine failed during generate")
    assert lines[0] == "--- :vllm: qwen@cpu (server, qwen2_5_vl_tiny)"
    assert lines[1] == "[qwen@cpu] engine starting"
    assert lines[2] == "[qwen@cpu] verdict: passed after 12 s"
    assert lines[3] == "--- :vllm: phi4mm@cpu"
    assert lines[4] == "[phi4mm@cpu] verdict: failed after 30 s: offline engine failed during generate"
    assert lines[5] == "^^^ +++"
    assert lines.count("^^^ +++") == 1


def test_ci_mode_has_no_group_markers():
    lines: list[str] = []
    progress = Progress("ci", write=lines.append)
    progress.job_started("a@cpu")
    progress.job_finished("error", 1.0, "boom")
    assert not any(line.startswith(("--- ", "^^^")) for line in lines)
    assert lines[-1] == "[a@cpu] verdict: error after 1 s: boom"


def test_off_mode_prints_nothing():
    lines: list[str] = []
    progress = Progress("off", write=lines.append)
    progress.job_started("a@cpu")
    progress.phase("model")
    progress.job_finished("failed", 1.0)
    assert lines == []


def test_heartbeat_names_elapsed_time_and_the_engines_last_log_line(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("INFO loading weights\nINFO compiling graph 3/7\n\n")
    lines: list[str] = []
    progress = Progress("tty", write=lines.append, heartbeat_s=0.2)
    progress.job = "q@cpu"
    with progress.waiting("engine starting", log):
        assert wait_for(lambda: any("engine starting (" in line for line in lines))
    beat = next(line for line in lines if "engine starting (" in line)
    assert beat.startswith("[q@cpu] engine starting (") and beat.endswith(
        "s): INFO compiling graph 3/7")


def test_ready_callback_announces_ready_once(tmp_path):
    ready: list[float | None] = [None]
    lines: list[str] = []
    progress = Progress("ci", write=lines.append)
    progress.job = "p@cpu"
    with progress.waiting("engine starting", tmp_path / "none.log", ready=lambda: ready[0]):
        time.sleep(0.7)
        ready[0] = 41.6
        assert wait_for(lambda: any("ready" in line for line in lines))
        time.sleep(0.7)
    assert [line for line in lines if "ready" in line] == [
        "[p@cpu] engine ready after 42 s; requests"]


def test_stream_engine_log_copies_new_complete_lines_only(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("written before the job\n")
    lines: list[str] = []
    progress = Progress("ci", write=lines.append, stream_log=True)
    with progress.waiting("engine starting", log):
        with open(log, "a") as handle:
            handle.write("line one\nline two\npartial")
            handle.flush()
            assert wait_for(lambda: "  | line two" in lines)
            handle.write(" now complete\n")
    assert [line for line in lines if line.startswith("  | ")] == [
        "  | line one", "  | line two", "  | partial now complete"]


def test_progress_lines_are_redacted():
    lines: list[str] = []
    progress = Progress("ci", write=lines.append, redact=lambda t: t.replace("s3cr3t", "***"))
    progress.job_started("a@cpu")
    progress.phase("engine args --token s3cr3t")
    assert "s3cr3t" not in "".join(lines)


def test_last_line_is_shortened_and_skips_blank_lines(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("first\n" + "y" * 500 + "\n   \n")
    line = last_line(log)
    assert line.startswith("yyy") and line.endswith("...") and len(line) == 160
    assert last_line(tmp_path / "missing.log") == ""


def test_phase_clock_adds_up_repeated_phases():
    clock = PhaseClock()
    for _ in range(2):
        with clock.timed("probes"):
            time.sleep(0.01)
    with pytest.raises(RuntimeError), clock.timed("checks"):
        raise RuntimeError("a phase that fails is still timed")
    assert clock.seconds["probes"] >= 0.02 and "checks" in clock.seconds


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="progress mode 'loud'"):
        Progress("loud")


def test_worker_gets_no_capture_and_the_progress_options(tmp_path):
    from harness.host.launch.local import LocalLaunch, WorkerRequest
    from harness.spec.case import load_platforms
    from tests.conftest import CASES, REPO

    platform = load_platforms(CASES / "platforms.yaml")["cpu"]
    request = WorkerRequest(platform, [CASES], CASES / "platforms.yaml", tmp_path, "r", None,
                            REPO, progress="buildkite", stream_engine_log=True)
    argv = LocalLaunch(request).argv()
    assert "--capture=no" in argv
    assert argv[argv.index("--harness-progress") + 1] == "buildkite"
    assert "--harness-stream-engine-log" in argv
    assert Path(argv[-1]) == CASES.resolve()
