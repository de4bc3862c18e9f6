"""Put every model a platform's jobs need on disk before the jobs start.

Hub platforms: each (hub id, revision) is resolved in the platform's cache; only what is
missing is downloaded (huggingface_hub's ``snapshot_download``, once per agent, outside any
job's startup deadline). Tiny platforms: the recipes are built into the model cache.
The download function is a parameter: the hub network is the one thing tests cannot reach.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.models.hub import SnapshotMissing, resolve_snapshot

Download = Callable[..., str]  # snapshot_download's signature (repo_id, revision, cache_dir)
# The whole fetch's deadline (the Buildkite run step's timeout counts it): a hub that stops
# answering ends the fetch as a failure (exit 3) instead of holding the agent until the step
# is killed.
FETCH_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Fetched:
    model: str  # hub id, or tiny recipe name
    revision: str  # the revision asked for ("" for tiny recipes)
    state: str  # "present" | "downloaded" | "built" | "failed"
    detail: str  # the snapshot path, or why it failed


def wanted_snapshots(jobs) -> list[tuple[str, str | None]]:
    """Distinct (hub id, revision) pairs of the jobs, in plan order."""
    return list(dict.fromkeys((job.case.model.hub, job.case.model.revision) for job in jobs
                              if not job.skip_reason))


def fetch_hub(pairs: list[tuple[str, str | None]], cache: Path, platform: str,
              download: Download | None = None,
              timeout_s: float = FETCH_TIMEOUT_S) -> list[Fetched]:
    if download is None:
        from huggingface_hub import snapshot_download as download
    out = []
    deadline = time.monotonic() + timeout_s
    for repo_id, revision in pairs:
        try:
            snap = resolve_snapshot(repo_id, revision, cache, platform)
            out.append(Fetched(repo_id, snap.commit, "present", str(snap.path)))
            continue
        except SnapshotMissing:
            pass
        try:
            # The token, if any, comes from HF_TOKEN in this environment (by name).
            _within(deadline, timeout_s, download, repo_id, revision=revision or "main",
                    cache_dir=str(cache))
            snap = resolve_snapshot(repo_id, revision, cache, platform)
            out.append(Fetched(repo_id, snap.commit, "downloaded", str(snap.path)))
        except Exception as exc:  # network, auth, disk: reported per model, never a traceback
            out.append(Fetched(repo_id, revision or "main", "failed",
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                               if str(exc) else type(exc).__name__))
    return out


class FetchTimeout(Exception):
    pass


def _within(deadline: float, timeout_s: float, call: Callable[..., object], *args, **kwargs):
    """``call`` in a daemon thread, given until ``deadline``: a download that does not finish
    in time is reported and left behind (it ends with the process), never waited on."""
    if time.monotonic() >= deadline:
        raise FetchTimeout(f"not started: the fetch's {timeout_s:.0f} s deadline has passed")
    outcome: list = []

    def target():
        try:
            outcome.append((True, call(*args, **kwargs)))
        except BaseException as exc:  # handed to the caller, which reports it
            outcome.append((False, exc))

    worker = threading.Thread(target=target, daemon=True, name="hub-download")
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise FetchTimeout(f"not finished within the fetch's {timeout_s:.0f} s deadline")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


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
