"""Put every model a platform's jobs need on disk before the jobs start.

Hub platforms: each (hub id, revision) is resolved in the platform's cache; only what is
missing is downloaded (huggingface_hub's ``snapshot_download``, once per agent, outside any
job's startup deadline). Tiny platforms: the recipes are built into the model cache.
The download function is a parameter: the hub network is the one thing tests cannot reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.models.hub import SnapshotMissing, resolve_snapshot

Download = Callable[..., str]  # snapshot_download's signature (repo_id, revision, cache_dir)


@dataclass(frozen=True)
class Fetched:
    model: str  # hub id, or tiny recipe name
    revision: str  # the revision asked for ("" for tiny recipes)
    state: str  # "present" | "downloaded" | "built" | "failed"
    detail: str  # the snapshot path, or why it failed


def wanted_snapshots(jobs) -> list[tuple[str, str | None]]:
    """Distinct (hub id, revision) pairs of the jobs, in plan order."""
    return list(dict.fromkeys((job.case.model.hub, job.case.model.revision) for job in jobs
                              if not job.skip_reason and job.case.model is not None))


def fetch_hub(pairs: list[tuple[str, str | None]], cache: Path, platform: str,
              download: Download | None = None) -> list[Fetched]:
    if download is None:
        from huggingface_hub import snapshot_download as download
    out = []
    for repo_id, revision in pairs:
        try:
            snap = resolve_snapshot(repo_id, revision, cache, platform)
            out.append(Fetched(repo_id, snap.commit, "present", str(snap.path)))
            continue
        except SnapshotMissing:
            pass
        try:
            # The token, if any, comes from HF_TOKEN in this environment (by name).
            download(repo_id, revision=revision or "main", cache_dir=str(cache))
            snap = resolve_snapshot(repo_id, revision, cache, platform)
            out.append(Fetched(repo_id, snap.commit, "downloaded", str(snap.path)))
        except Exception as exc:  # network, auth, disk: reported per model, never a traceback
            out.append(Fetched(repo_id, revision or "main", "failed",
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                               if str(exc) else type(exc).__name__))
    return out


def build_tiny(recipes: list[str], model_cache: Path) -> list[Fetched]:
    from harness.models import build_model, model_dir_for

    out = []
    for name in dict.fromkeys(recipes):
        try:
            state = "present" if model_dir_for(name, model_cache).is_dir() else "built"
            out.append(Fetched(name, "", state, str(build_model(name, model_cache))))
        except Exception as exc:
            out.append(Fetched(name, "", "failed", f"{type(exc).__name__}: {exc}"))
    return out
