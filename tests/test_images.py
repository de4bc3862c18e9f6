"""Image names and the build command (pure; the real build/push/pull: tests/test_images_real.py)."""

from __future__ import annotations

import time

import pytest

from harness.host import images
from harness.spec.case import load_platforms
from tests.conftest import CASES

PLATFORMS = load_platforms(CASES / "platforms.yaml")


def test_name_is_registry_namespace_platform_and_version():
    assert images.image_ref("127.0.0.1:5000", "team", "rocm", "0.11.1") == \
        "127.0.0.1:5000/team/vllm-harness:rocm-0.11.1"


def test_default_settings_are_not_amds_namespace():
    registry, namespace = images.settings({})
    assert (registry, namespace) == ("localhost", "vllm-harness")
    assert not images.platform_image(PLATFORMS["rocm"], {}).startswith("rocm/")
    assert images.settings({"HARNESS_REGISTRY": "ghcr.io"}, namespace="me") == ("ghcr.io", "me")


def test_explicit_image_and_override_win():
    assert images.platform_image(PLATFORMS["cpu-podman"], {}) == "localhost/vllm-harness:cpu"
    assert images.platform_image(PLATFORMS["rocm"], {}, "x/y:z") == "x/y:z"


@pytest.mark.parametrize(("version", "commit", "tags"), [
    ("0.32.0", None, ["0.32.0"]),
    ("0.11.1rc2.dev5+g1a2b3c4d.rocm700", "1a2b3c4d5e6f7a8b9c0d", ["0.11.1rc2.dev5-g1a2b3c4d.rocm700",
                                                                 "1a2b3c4d5e6f"]),
    (None, "abcdef1234567890", ["abcdef123456"]),
    (None, None, []),
])
def test_version_tags_are_valid_tags(version, commit, tags):
    assert images.version_tags(version, commit) == tags


@pytest.mark.parametrize(("image", "registry", "repository"), [
    ("127.0.0.1:5077/ns/vllm-harness:cpu-0.32.0", "127.0.0.1:5077", "127.0.0.1:5077/ns/vllm-harness"),
    ("localhost/vllm-harness:cpu", "localhost", "localhost/vllm-harness"),
    ("vllm/vllm-openai-rocm:nightly-abc", "docker.io", "vllm/vllm-openai-rocm"),
    ("ghcr.io/me/x@sha256:00", "ghcr.io", "ghcr.io/me/x"),
])
def test_registry_and_repository_of_a_reference(image, registry, repository):
    assert images.registry_of(image) == registry
    assert images.repository_of(image) == repository


def test_digest_is_the_one_of_the_images_own_repository():
    info = {"Id": "sha256:local", "RepoDigests": ["other/x@sha256:aaa", "reg:1/ns/x@sha256:bbb"]}
    assert images.digest_of("reg:1/ns/x:tag", info) == "reg:1/ns/x@sha256:bbb"
    assert images.digest_of("elsewhere/y:1", info) == "other/x@sha256:aaa"
    assert images.digest_of("z:1", {"Id": "sha256:local"}) == "sha256:local"


def test_build_pulls_its_base_and_passes_the_platforms_args():
    rocm = PLATFORMS["rocm"]
    argv = images.build_argv(["/usr/bin/docker"], rocm, "r/n/vllm-harness:rocm-latest")
    assert argv == ["/usr/bin/docker", "build", "--pull", "-f", "docker/Dockerfile.rocm",
                    "--build-arg", "BASE_IMAGE=vllm/vllm-openai-rocm",
                    "--build-arg", "BASE_TAG=nightly", "--label", "vllm-harness.image=rocm",
                    "-t", "r/n/vllm-harness:rocm-latest", "."]
    podman = images.build_argv(images.client("podman", PLATFORMS["cpu-podman"], {}),
                               PLATFORMS["cpu-podman"], "t")
    assert podman[:4] == ["podman", "--runtime", "runc", "build"] and "--network=host" in podman


def test_image_command_names_and_refuses_bad_input(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    def image(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness", "image", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HARNESS_REGISTRY": "reg.example:5000"})

    named = image("name", "--platform", "rocm", "--namespace", "team")
    assert named.returncode == 0 and named.stdout.strip() == "vllm/vllm-openai-rocm:nightly"
    local = image("build", "--platform", "cpu")
    assert local.returncode == 2 and "runs on this host" in local.stderr
    unknown = image("pull", "--platform", "nope")
    assert unknown.returncode == 2 and "unknown platform 'nope'" in unknown.stderr


def _stand_in_client(tmp_path, body: str) -> list[str]:
    """A stand-in engine client (not docker): a shell script whose `pull` does what ``body``
    says. The real registry-stopped-mid-pull case is in tests/test_images_real.py."""
    script = tmp_path / "stand-in-client"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return [str(script)]


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


def test_a_pull_whose_registry_stops_answering_is_stopped_and_names_the_registry(tmp_path):
    from harness.host import images

    registry = f"127.0.0.1:{_closed_port()}"
    client = _stand_in_client(tmp_path, "echo 'Pulling fs layer'; exec sleep 600")
    began = time.monotonic()
    outcome = images.pull(client, f"{registry}/ns/x:1", {"PATH": "/usr/bin:/bin"},
                          probe_every_s=0.2)
    assert time.monotonic() - began < 60  # not the 600 s the client would wait
    assert (outcome.ok, outcome.failure_class) == (False, "registry")
    assert f"registry {registry} stopped answering" in outcome.message


def test_a_pull_that_finishes_is_ok_and_a_missing_image_is_named(tmp_path):
    from harness.host import images

    ok = images.pull(_stand_in_client(tmp_path, "exit 0"), "127.0.0.1:1/ns/x:1", {})
    assert ok.ok
    missing = images.pull(_stand_in_client(
        tmp_path, "echo 'Error response from daemon: manifest unknown' >&2; exit 1"),
        "127.0.0.1:1/ns/x:1", {})
    assert (missing.ok, missing.failure_class) == (False, "image-missing")
