"""Sharding: which jobs a parallel Buildkite job runs. Pure planning, no I/O.

Like pytest-xdist's ``LoadScopeScheduling``, jobs are placed by *scope*: here the scope is
(platform, engine key), because jobs with the same engine key can share one running engine and
an engine start is the expensive part of a job. Every parallel job of a step computes the same
``ShardPlan`` from the same job list (same commit, same ``-k``), so no coordination is needed:
``BUILDKITE_PARALLEL_JOB`` alone says which part is ours, and every job lands in exactly one
shard.

Placement is deterministic and independent of YAML key order: scopes are ordered by size, then
by their smallest job id, and each goes to the least-loaded shard (lowest index on ties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.plan import Job


def validate_shard(index: int, count: int) -> None:
    """Raise ValueError unless ``0 <= index < count``."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in 0..{count - 1}, got {index}")


def _scopes(jobs: Sequence[Job]) -> dict[tuple[str, str], list[str]]:
    scopes: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        scopes.setdefault((job.platform.name, job.engine_key), []).append(job.id)
    return scopes


def useful_shards(jobs: Sequence[Job], requested: int) -> int:
    """How many shards of ``jobs`` can all be non-empty, at most ``requested``, per platform.

    The pipeline uses this for a step's ``parallelism`` so that no Buildkite job starts only to
    find nothing to run.
    """
    if requested < 1:
        raise ValueError(f"parallelism must be at least 1, got {requested}")
    per_platform: dict[str, int] = {}
    for platform, _ in _scopes(jobs):
        per_platform[platform] = per_platform.get(platform, 0) + 1
    return min([requested, *per_platform.values()]) if per_platform else 1


@dataclass(frozen=True)
class ShardPlan:
    """Job id -> shard index, for one shard count; each platform is balanced on its own."""

    count: int
    assignment: Mapping[str, int]

    @classmethod
    def build(cls, jobs: Sequence[Job], count: int) -> "ShardPlan":
        validate_shard(0, count)
        by_platform: dict[str, list[list[str]]] = {}
        for (platform, _), ids in _scopes(jobs).items():
            by_platform.setdefault(platform, []).append(sorted(ids))
        assignment: dict[str, int] = {}
        for platform in sorted(by_platform):
            load = [0] * count
            # Largest scope first (classic LPT), ties broken by id: stable under reordering.
            for ids in sorted(by_platform[platform], key=lambda s: (-len(s), s[0])):
                target = min(range(count), key=lambda i: (load[i], i))
                load[target] += len(ids)
                assignment.update((job_id, target) for job_id in ids)
        return cls(count, assignment)

    def jobs_for(self, jobs: Sequence[Job], index: int) -> list[Job]:
        """The jobs of shard ``index``, in their original (plan) order."""
        validate_shard(index, self.count)
        return [job for job in jobs if self.assignment[job.id] == index]


def select_shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """The jobs that the ``index``-th of ``count`` parallel jobs runs (what ``harness run`` needs).

    May be empty when ``count`` exceeds the number of engine scopes on a platform: that shard
    has nothing to do and should exit 0.
    """
    validate_shard(index, count)
    return ShardPlan.build(jobs, count).jobs_for(jobs, index)
