"""The first real nights, rehearsed here: vLLM-shaped images in a loopback registry
(tests/vllm_images.py), the shipped platforms with one override (tests/rehearsal_setup.py).

* ``test_harness_run_in_a_raw_vllm_image``: ``harness run --platform rocm --image <the raw
  nightly stand-in>`` runs both cases in an image with vLLM and no pytest, nothing installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import read_result
from tests.conftest import REPO
from tests.hub_fixtures import fake_hub_cache
from tests.rehearsal_setup import write_cases
from tests.vllm_images import fake_commit, vllm_version

pytestmark = pytest.mark.container

CASE_IDS = ["phi4mm_variable_crop", "qwen2_5_vl_vit_cudagraph"]
RUN_TIMEOUT_S = 1500


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory) -> Path:
    """The agents' Hugging Face cache: the cases' hub snapshots (tiny models) already there."""
    home = tmp_path_factory.mktemp("rehearsal-hf")
    fake_hub_cache(home)
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return home


@pytest.fixture(scope="session")
def night1_images(nightlies) -> dict[str, str]:
    """Night 1: vLLM's rocm and cuda nightlies of one commit, `nightly` pointing at them."""
    commit = fake_commit(1)
    return {p: nightlies.publish(p, commit) for p in ("rocm", "cuda")}


def harness(*args: str, env: dict[str, str], cwd: Path = REPO,
            timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_harness_run_in_a_raw_vllm_image(tmp_path, docker_engine, nightlies, night1_images,
                                         hf_home):
    image = night1_images["rocm"]
    # The image is shaped like vLLM's: vLLM with a ROCm build's version, no pytest, no harness.
    probe = docker_engine("run", "--rm", "--network=host", "--entrypoint", "python3", image, "-c",
                          "import importlib.util as u, importlib.metadata as m; "
                          "print(m.version('vllm'), u.find_spec('pytest'), "
                          "u.find_spec('harness'))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [vllm_version("rocm", fake_commit(1)), "None", "None"]
    entry = docker_engine("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image)
    assert entry.stdout.strip() == '["vllm","serve"]'
    cases = write_cases(tmp_path / "cases", nightlies.registry)
    results = tmp_path / "results"
    env = {**os.environ, **docker_engine.env, "HF_HOME": str(hf_home)}
    began = time.monotonic()
    done = harness("run", "--platform", "rocm", "--image", image, "--cases", str(cases),
                   "--platforms-file", str(cases / "platforms.yaml"), "--results", str(results),
                   "--run-id", "raw", env=env)
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    for case in CASE_IDS:
        result = read_result(results / "raw" / "rocm" / f"{case}.json")
        assert result.status == "passed", (case, result.message)
        fp = result.fingerprint
        assert fp["vllm"] == vllm_version("rocm", fake_commit(1)) and fp["container"]
        assert fp["image"] == image and fp["launch"] == "container"
        assert fp["image_digest"].startswith(f"{nightlies.repository('rocm')}@sha256:")
    # Nothing was installed into the image: it is byte for byte what the registry holds.
    after = docker_engine("image", "inspect", "--format", "{{.Id}}", image)
    pulled = docker_engine("pull", image)
    assert pulled.returncode == 0 and "Image is up to date" in pulled.stdout
    assert docker_engine("image", "inspect", "--format", "{{.Id}}", image).stdout == after.stdout
    print(f"\nharness run --platform rocm --image <raw stand-in>: {wall:.0f} s for both cases")
