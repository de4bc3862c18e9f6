"""The worker's own dependencies for an image that lacks them: any vLLM image is a drop-in.

vLLM's published images (``vllm/vllm-openai-rocm:nightly-<commit>``, a PR build) carry vLLM
and everything it imports, but no pytest, which the worker is. Nothing is installed into the
image: the pure-Python distributions the worker needs beyond vLLM's (pytest and what it
requires) are copied from THIS host's environment (where the harness is installed, so they
are here) into a folder under the host cache, once per set of versions, and mounted
read-only into the container; ``harness.worker`` appends it to ``sys.path`` after the image's
own packages, so an image that has pytest (``harness image build``) keeps its own.

Only pure-Python distributions qualify: a compiled one built for the host's Python could
not load in the image's. A worker dependency that is not pure Python is an error here,
before any container starts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Mapping

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

WORKER_DISTRIBUTIONS = ("pytest",)  # the worker's imports that vLLM's own requirements lack
MOUNT_DIR = "/opt/harness-worker-deps"
ENV_NAME = "HARNESS_WORKER_DEPS"
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


class WorkerDepsError(RuntimeError):
    """A worker dependency is missing on this host or is not pure Python."""


def closure(names: tuple[str, ...] = WORKER_DISTRIBUTIONS) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need, with their requirements (markers evaluated
    for this host's Python), each once, in a stable order."""
    env = default_environment()
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(name) for name in names]
    while todo:
        requirement = todo.pop()
        key = canonicalize_name(requirement.name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise WorkerDepsError(f"the worker needs {requirement.name}, which is not installed "
                                  "here (install the harness: pip install -e .)") from None
        found[key] = dist
        for text in dist.requires or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({**env, "extra": ""}):
                todo.append(needed)
    return [found[key] for key in sorted(found)]


def _files(dist: metadata.Distribution) -> list[tuple[Path, str]]:
    """(source, path relative to site-packages) of a distribution's importable files."""
    out = []
    for file in dist.files or []:
        relative = file.as_posix()
        if relative.startswith("../") or "__pycache__" in file.parts:
            continue  # console scripts beside the environment; byte code is rebuilt anyway
        if relative.endswith(COMPILED_SUFFIXES):
            raise WorkerDepsError(f"worker dependency {dist.metadata['Name']} is not pure Python "
                                  f"({relative}); it cannot be mounted into another Python")
        out.append((Path(str(dist.locate_file(file))), relative))
    return out


def cache_root(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home()) / ".cache/vllm-harness/worker-deps"


def worker_deps_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder to mount at MOUNT_DIR: built once per set of versions, atomically (a rename),
    world-readable (the container may run as any user)."""
    environ = os.environ if environ is None else environ
    dists = closure()
    pins = "\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists)
    target = cache_root(environ) / hashlib.sha256(pins.encode()).hexdigest()[:16]
    if (target / "PINS").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        for dist in dists:
            for source, relative in _files(dist):
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
        (staging / "PINS").write_text(pins + "\n")
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another run built it first: theirs is the same
            if not (target / "PINS").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
