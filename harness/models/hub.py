"""Hub models: where the Hugging Face cache is, and which snapshot a (repo id, revision) is.

Resolution is huggingface_hub's own (``snapshot_download(..., local_files_only=True)``), the
same code vLLM and transformers use, so "resolved here" means "the engine will find it". It
runs before an engine starts: a missing snapshot is a one-line error naming the id and the
revision within seconds, not a 15-minute startup that ends in a download or a timeout.

The cache directory follows huggingface_hub's rules, read from a given environment (the
engine's, which may set HF_HOME), not from this process's import-time constants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

FETCH_HINT = "harness models fetch --platform {platform}"


class SnapshotMissing(Exception):
    """The pinned snapshot is not in the local cache (and the hub is not to be asked)."""


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    revision: str  # what was asked for (a commit, or "main")
    commit: str  # the 40-hex commit the cache resolved it to
    path: Path  # <cache>/models--org--name/snapshots/<commit>


def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """huggingface_hub's cache: HF_HUB_CACHE, else HF_HOME/hub, else XDG or ~/.cache."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def host_hf_home(environ: Mapping[str, str] | None = None) -> Path:
    """The host's HF_HOME, which container platforms mount as the container's HF_HOME."""
    env = os.environ if environ is None else environ
    return Path(env.get("HF_HOME") or Path(env.get("HOME") or Path.home()) / ".cache/huggingface")


def platform_hub_cache(launcher: str, platform_env: Mapping[str, str],
                       environ: Mapping[str, str] | None = None) -> Path:
    """The hub cache, on this host, that a platform's engines will read.

    Container platforms mount the host's HF_HOME at the container's HF_HOME, so it is
    ``<host HF_HOME>/hub``; local platforms see this environment plus the platform's own.
    """
    env = dict(os.environ if environ is None else environ)
    if launcher == "container":
        return host_hf_home(env) / "hub"
    return hub_cache_dir({**env, **platform_env})


def repo_folder(cache: Path, repo_id: str) -> Path:
    """``models--org--name``: the hub layout's folder for a model repository."""
    return cache / ("models--" + repo_id.replace("/", "--"))


def resolve_snapshot(repo_id: str, revision: str | None, cache: Path,
                     platform: str = "P") -> Snapshot:
    """The cached snapshot of ``repo_id`` at ``revision`` (default ``main``), hub not asked."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    wanted = revision or "main"
    try:
        path = Path(snapshot_download(repo_id, revision=wanted, cache_dir=str(cache),
                                      local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise SnapshotMissing(
            f"{repo_id} at revision {wanted} is not in the Hugging Face cache {cache} "
            f"({type(exc).__name__}); fetch it first: "
            f"{FETCH_HINT.format(platform=platform)}") from None
    return Snapshot(repo_id, wanted, path.name, path)
