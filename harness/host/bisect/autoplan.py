"""Which newly broken cases the nightly bisects by itself, and why the others are not. Pure:
nights, results, registry tags, settings and earlier bisect records in; the bisects to upload and
the refusals (each with its reason) out. ``harness autobisect`` does the I/O around it.

A case is bisected when, on the candidate platform (ROCm) tonight:

* it failed (status ``failed``: a verdict, not infrastructure), and when its class is one the
  run retries in-process, the retry failed too;
* the baseline platform (CUDA) passed it on the same vLLM commit, or did not run it;
* it passed on a night at most ``max_age_nights`` nights before tonight (the last good), and
  both the last good image and the first bad one are still among the registry's nightly tags;
* no bisect for the same case and failure is running, and none concluded for the same range;
* tonight's bisects together stay within ``budget_runs`` engine runs;
* the kill switch is not set.

Every bisect runs that one case only, with ``confirm_at=final``: at most ceil(log2 n) + 4 runs
over n tags without flakes, capped by ``--max-total-runs`` at what the budget granted it (a rerun does not renew it).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from harness.bisect_command import BisectRequest, image_repository
from harness.history.bisects import BisectRecord
from harness.outcomes import is_retried

DEFAULT_MAX_AGE_NIGHTS = 3
DEFAULT_BUDGET_RUNS = 24
DEFAULT_TAG_PATTERN = "nightly-.*"
RUNNING_EXPIRES_H = 24  # a bisect still "running" after this long was lost: it blocks nothing
KILL_SWITCH_ENV = "HARNESS_AUTOBISECT"  # "off" (or 0, false, no) turns the auto-bisect off
OFF_WORDS = ("off", "0", "false", "no", "disabled")
CONCLUDED = ("found", "nothing", "open")
# Why a case was not bisected: the kind names the guard (tests and the annotation use them).
KINDS = ("kill-switch", "not-a-failure", "retry", "baseline", "never-passed", "stale",
         "no-image", "registry", "not-in-registry", "already-bisected", "budget", "upload")


def failure_key(status: str, failure_class: str | None, signature: str | None = None) -> str:
    """What "the same failure" is for one-bisect-per-failure: the failure signature (its rule
    and captures, ``rule [key]``) when the result has one, else the failure class (a store
    written before signatures, an unsigned result)."""
    return signature or failure_class or status


def kill_switch(environ: Mapping[str, str], pipeline_off: bool) -> str | None:
    """Why the auto-bisect is off tonight (the pipeline setting or the variable), or None."""
    if pipeline_off:
        return "the pipeline was generated with --no-autobisect"
    value = environ.get(KILL_SWITCH_ENV, "").strip().lower()
    if value in OFF_WORDS:
        return f"{KILL_SWITCH_ENV}={value} in the environment"
    return None


@dataclass(frozen=True)
class Settings:
    platform: str = "rocm"
    baseline: str | None = "cuda"
    max_age_nights: int = DEFAULT_MAX_AGE_NIGHTS
    budget_runs: int = DEFAULT_BUDGET_RUNS
    confirmations: int = 1
    tags_from: str | None = None  # default: the repository of the first bad image
    tag_pattern: str = DEFAULT_TAG_PATTERN
    off: str | None = None  # the kill switch's reason, when set
    cases: str | None = None  # passed on to `harness bisect`
    platforms_file: str | None = None


@dataclass(frozen=True)
class Observation:
    """One case's result on one night (plain data from the store or the run directory)."""

    night: int  # index of the night, in order
    run_id: str
    status: str
    failure_class: str | None = None
    commit: str | None = None  # the vLLM commit under test
    image_digest: str | None = None  # repo@sha256:... as the result's fingerprint has it
    attempts: int | None = None  # attempts the run made (None: not known here)
    signature: str | None = None  # "rule [key]" of the failure (harness.signatures), if signed


@dataclass(frozen=True)
class Tag:
    tag: str
    digest: str  # sha256:... (the manifest digest the registry answers with)


@dataclass(frozen=True)
class Tags:
    """A repository's tags that match the pattern, oldest first; or why they are unknown."""

    repository: str
    tags: tuple[Tag, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Planned:
    case_id: str
    signature: str
    good: Tag
    bad: Tag
    candidates: int  # tags from good to bad, both included
    max_runs: int
    request: BisectRequest

    @property
    def bisect_id(self) -> str:
        return str(self.request.bisect_id)


@dataclass(frozen=True)
class Refusal:
    case_id: str
    kind: str  # one of KINDS
    reason: str


@dataclass
class Plan:
    bisects: list[Planned] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    budget_runs: int = 0

    @property
    def runs_granted(self) -> int:
        return sum(b.max_runs for b in self.bisects)


def max_runs_for(candidates: int, confirmations: int) -> int:
    """Runs of a bisect with confirm_at=final and no flake: the two end checks, the steps, and
    the confirmations of the bad end and of the first bad (ceil(log2 n) + 4 for one)."""
    return 2 + math.ceil(math.log2(max(candidates, 2))) + 2 * confirmations


def bisect_id(case_id: str, platform: str, signature: str, good: str, bad: str) -> str:
    digest = hashlib.sha256(repr((case_id, platform, signature, good, bad)).encode())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{case_id}-{platform}")[:50].strip("-.")
    return f"auto-{slug}-{digest.hexdigest()[:10]}"


def _digest(image_digest: str | None) -> str:
    return (image_digest or "").rsplit("@", 1)[-1]


def _blocking(records: Sequence[BisectRecord], case_id: str, platform: str, signature: str,
              good: str, bad: str, now: datetime) -> BisectRecord | None:
    for record in reversed(records):  # the latest first
        if (record.case_id, record.platform, record.signature) != (case_id, platform, signature):
            continue
        if record.status == "running":
            planned = datetime.fromisoformat(record.planned_at)
            if now - planned < timedelta(hours=RUNNING_EXPIRES_H):
                return record
        elif record.status in CONCLUDED and (record.good_ref, record.bad_ref) == (good, bad):
            return record
    return None


def _eligible(settings: Settings, tonight: Observation, baseline: Observation | None
              ) -> tuple[str, str] | None:
    """(kind, reason) when tonight's result is not one to bisect."""
    if tonight.status != "failed":
        what = f"{tonight.status}" + (f" [{tonight.failure_class}]" if tonight.failure_class
                                      else "")
        return "not-a-failure", (f"{what} is not a failure of the case (infrastructure or no "
                                 "verdict on the code): nothing to bisect")
    if is_retried(tonight.failure_class) and tonight.attempts is not None \
            and tonight.attempts < 2:
        return "retry", (f"[{tonight.failure_class}] was not retried in-process (1 attempt): "
                         "one occurrence of a machine-like failure is not a verdict")
    if baseline is not None and baseline.status not in ("skipped",):
        name = settings.baseline
        if baseline.status not in ("passed", "xfailed"):
            return "baseline", (f"{name} {baseline.status} it too"
                                f" [{baseline.failure_class or '-'}]: not a {settings.platform}-"
                                "only break")
        if baseline.commit and tonight.commit and baseline.commit != tonight.commit:
            return "baseline", (f"{name} passed on vLLM commit {baseline.commit[:12]}, "
                                f"{settings.platform} failed on {tonight.commit[:12]}: not the "
                                "same commit")
    return None


def plan(settings: Settings, nights: Sequence[str], series: Mapping[str, Sequence[Observation]],
         baseline: Mapping[str, Observation], tags: Mapping[str, Tags],
         records: Sequence[BisectRecord], now: datetime) -> Plan:
    """The bisects tonight. ``nights``: run ids in order (the last is tonight); ``series``: per
    case, its results on ``settings.platform`` in night order; ``baseline``: tonight's result
    per case on the baseline platform; ``tags``: per repository, its nightly tags."""
    out = Plan(budget_runs=settings.budget_runs)
    tonight_index = len(nights) - 1
    for case_id in sorted(series):
        rows = list(series[case_id])
        if not rows or rows[-1].night != tonight_index or rows[-1].status in (
                "passed", "xfailed", "skipped"):
            continue  # not run tonight, or not broken tonight: nothing to decide
        refusal = _decide(settings, case_id, rows, baseline.get(case_id), tags, records, now,
                          nights, out)
        if refusal is not None:
            out.refusals.append(Refusal(case_id, *refusal))
    return out


def _decide(settings: Settings, case_id: str, rows: list[Observation],
            baseline: Observation | None, tags: Mapping[str, Tags],
            records: Sequence[BisectRecord], now: datetime, nights: Sequence[str],
            out: Plan) -> tuple[str, str] | None:
    tonight = rows[-1]
    if settings.off:
        return "kill-switch", f"auto-bisect is off: {settings.off}"
    not_eligible = _eligible(settings, tonight, baseline)
    if not_eligible:
        return not_eligible
    good_rows = [r for r in rows[:-1] if r.status in ("passed", "xfailed")]
    if not good_rows:
        return "never-passed", "no passing night in the stored window: no good end to start from"
    last_good = good_rows[-1]
    first_bad = next(r for r in rows if r.night > last_good.night and r.status == "failed")
    age = tonight.night - last_good.night
    if age > settings.max_age_nights:
        return "stale", (f"the last good night ({last_good.run_id}) is {age} nights old, more "
                         f"than the {settings.max_age_nights} allowed")
    if not _digest(last_good.image_digest) or not _digest(first_bad.image_digest):
        which = last_good if not _digest(last_good.image_digest) else first_bad
        return "no-image", f"{which.run_id} recorded no image digest: no range of images"
    repository = settings.tags_from or image_repository(str(first_bad.image_digest))
    listed = tags.get(repository or "")
    if listed is None or listed.error:
        why = listed.error if listed is not None else "not asked"
        return "registry", f"the tags of {repository} are unknown ({why})"
    position = {tag.digest: i for i, tag in enumerate(listed.tags)}
    ends = []
    for role, row in (("last good", last_good), ("first bad", first_bad)):
        if _digest(row.image_digest) not in position:
            return "not-in-registry", (f"the {role} image of {row.run_id} "
                                       f"({_digest(row.image_digest)[:19]}) is no longer among "
                                       f"the {repository} tags matching {settings.tag_pattern!r}")
        ends.append(position[_digest(row.image_digest)])
    low, high = ends
    if low >= high:
        return "not-in-registry", (f"the last good image is not older than the first bad one "
                                   f"among the {repository} tags")
    good, bad = listed.tags[low], listed.tags[high]
    signature = failure_key(tonight.status, tonight.failure_class, tonight.signature)
    blocking = _blocking(records, case_id, settings.platform, signature, good.tag, bad.tag, now)
    if blocking is not None:
        what = ("running since " + blocking.planned_at if blocking.status == "running"
                else f"{blocking.status}" + (f": {blocking.reason}" if blocking.reason else ""))
        return "already-bisected", (f"already bisected for [{signature}] "
                                    f"({blocking.bisect_id}, {what})")
    candidates = high - low + 1
    cost = max_runs_for(candidates, settings.confirmations)
    if out.runs_granted + cost > settings.budget_runs:
        return "budget", (f"budget spent: tonight's bisects may make {settings.budget_runs} "
                          f"engine runs, {out.runs_granted} are granted, this one needs up to "
                          f"{cost}")
    ident = bisect_id(case_id, settings.platform, signature, good.tag, bad.tag)
    request = BisectRequest(
        case_id, settings.platform, good.tag, bad.tag, tags_from=repository,
        tag_pattern=settings.tag_pattern, confirmations=settings.confirmations,
        confirm_at="final", cases=settings.cases, platforms_file=settings.platforms_file,
        bisect_id=ident, max_total_runs=cost, json_out=None)
    out.bisects.append(Planned(case_id, signature, good, bad, candidates, cost, request))
    return None
