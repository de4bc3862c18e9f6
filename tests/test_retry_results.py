"""A retried run step first downloads its step's earlier results (--include-retried-jobs), so
`harness run` can judge a node-caused class on two nodes (harness.host.repeats); a first attempt
downloads nothing. Run through bash with the stand-in buildkite-agent (tests/bin)."""

from __future__ import annotations

import os
import subprocess

from harness.host.buildkite.retry_results import earlier_results_command
from tests.conftest import REPO


def shell(command: str, tmp_path, retry_count: str):
    # Buildkite's upload-time interpolation: $BUILDKITE_BUILD_NUMBER expands, $$ is a $.
    text = command.replace("$BUILDKITE_BUILD_NUMBER", "7").replace("$$", "$")
    env = {**os.environ, "PATH": f"{REPO / 'tests' / 'bin'}:{os.environ['PATH']}",
           "FAKE_BUILDKITE_DIR": str(tmp_path / "bk"), "BUILDKITE_RETRY_COUNT": retry_count,
           "BUILDKITE_STEP_KEY": "run-rocm"}
    return subprocess.run(["bash", "-c", text], cwd=tmp_path / "work", env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_retried_job_fetches_the_earlier_jobs_results_and_a_first_one_does_not(tmp_path):
    earlier = tmp_path / "bk" / "retried" / "results" / "build-7" / "rocm"
    earlier.mkdir(parents=True)
    (earlier / "phi4mm_variable_crop.json").write_text('{"from": "the earlier job"}')
    (tmp_path / "work").mkdir()
    command = earlier_results_command("rocm")
    first = shell(command, tmp_path, "0")
    assert first.returncode == 0 and not (tmp_path / "work" / "results").exists()
    retried = shell(command, tmp_path, "1")
    assert retried.returncode == 0, retried.stderr
    got = tmp_path / "work" / "results" / "build-7" / "rocm" / "phi4mm_variable_crop.json"
    assert got.read_text() == '{"from": "the earlier job"}'


def test_nothing_to_download_is_said_and_not_a_failure(tmp_path):
    (tmp_path / "work").mkdir()
    done = shell(earlier_results_command("rocm"), tmp_path, "2")
    assert done.returncode == 0 and "no earlier rocm results" in done.stdout
