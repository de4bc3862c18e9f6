"""`harness run --platform P --in-place`: a container platform's cases in this environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.results import read_result
from tests.conftest import CASES, REPO


def harness(*argv: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "harness", *argv], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_dry_run_is_the_local_worker_with_the_platforms_name():
    done = harness("run", "--platform", "rocm", "--in-place", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{sys.executable} -m harness.worker -p harness.worker.plugin")
    assert "--harness-platform rocm" in done.stdout
    assert "docker" not in done.stdout and "podman" not in done.stdout


def test_engine_or_gpus_with_in_place_is_a_usage_error():
    for extra in (["--gpus", "0"], ["--engine", "podman"]):
        done = harness("run", "--platform", "rocm", "--in-place", *extra)
        assert done.returncode == 2 and "--in-place starts no container" in done.stderr


def test_in_place_results_say_no_container_was_started(tmp_path: Path):
    # The rocm platform here: hub models with an empty cache, so the job stops at model
    # resolution (the platform's model source and environment are the rocm platform's).
    env = {"HF_HOME": str(tmp_path / "hf")}
    done = harness("run", "--platform", "rocm", "--in-place", "--skip-preflight", "-k", "qwen",
                   "--results",
                   str(tmp_path), "--run-id", "inplace", env=env)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    result = read_result(tmp_path / "inplace/rocm/qwen2_5_vl_vit_cudagraph.json")
    assert result.platform == "rocm" and result.fingerprint["accelerator"] == "rocm"
    assert result.fingerprint["launch"] == "in-place"
    assert result.fingerprint["container_started_by_harness"] is False
    assert "Qwen/Qwen2.5-VL-3B-Instruct at revision" in result.message
    assert result.engine["env"]["HF_HUB_OFFLINE"] == "1"  # the platform's environment
