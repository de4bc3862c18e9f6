"""What the auto-bisect decides on, read from where it lives: the history store (nights, the
candidate platform's results with their image digests, tonight's baseline results, earlier
bisects), tonight's run directory (how many attempts a failure made) and the registry (the
nightly tags, oldest first). The decision itself is harness.host.bisect.autoplan (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

from harness.host.bisect.autoplan import Observation, Tag, Tags
from harness.host.bisect.candidates import CandidateError, by_creation_time, tag_of
from harness.bisect_command import image_repository
from harness.host.bisect.registry import RegistryError, registry_candidates
from harness.history.db import Connection
from harness.history.storeread import load_details, load_nights, load_rows, signature_keys
from harness.results import ResultFileError, read_result, result_path

WINDOW_NIGHTS = 30  # nights read back for a last good (older ones are stale anyway)


def load_observations(conn: Connection, platform: str, baseline: str | None,
                      run_id: str | None) -> tuple[list[str], dict[str, list[Observation]],
                                                   dict[str, Observation]]:
    """(night run ids up to tonight, per case its results on ``platform``, tonight's baseline
    result per case). Tonight is ``run_id`` (the run just ingested), else the latest night."""
    with conn.read():
        nights = load_nights(conn)
        if run_id is not None:
            known = [n.run_id for n in nights]
            if run_id not in known:
                raise LookupError(f"{run_id}: not in the history store (ingest it first)")
            nights = nights[:known.index(run_id) + 1]
        if not nights:
            return [], {}, {}
        tonight = nights[-1].index
        rows = [r for r in load_rows(conn, nights, max(0, tonight - WINDOW_NIGHTS))
                if r.night <= tonight]
        broken = {r.case_id for r in rows if r.platform == platform and r.night == tonight
                  and r.status not in ("passed", "xfailed", "skipped")}
        mine = [r for r in rows if r.platform == platform and r.case_id in broken]
        images = {rid: d.image_digest for rid, d in
                  load_details(conn, [r.result_id for r in mine]).items()}
        signed = signature_keys(conn, [r.result_id for r in mine])
    by_run = {n.index: n.run_id for n in nights}
    series: dict[str, list[Observation]] = {}
    for r in mine:
        series.setdefault(r.case_id, []).append(Observation(
            r.night, by_run[r.night], r.status, r.failure_class, r.commit,
            images.get(r.result_id), signature=signed.get(r.result_id)))
    base = {r.case_id: Observation(r.night, by_run[r.night], r.status, r.failure_class, r.commit)
            for r in rows if baseline and r.platform == baseline and r.night == tonight}
    return [n.run_id for n in nights], series, base


def with_attempts(series: dict[str, list[Observation]], run_dir: Path | None,
                  platform: str) -> dict[str, list[Observation]]:
    """Tonight's observations with the attempts their result files record (the store keeps no
    attempts); unreadable files leave them unknown."""
    if run_dir is None:
        return series
    out = {}
    for case_id, rows in series.items():
        last = rows[-1]
        try:
            result = read_result(result_path(run_dir.parent, run_dir.name, platform, case_id))
            attempts: int | None = max(1, len(result.attempts))
        except ResultFileError:
            attempts = None
        out[case_id] = [*rows[:-1], Observation(**{**last.__dict__, "attempts": attempts})]
    return out


def repositories(series: Mapping[str, list[Observation]], tags_from: str | None) -> list[str]:
    """The registries to ask: the setting, or each broken case's image repository."""
    if tags_from:
        return [tags_from]
    found = {image_repository(o.image_digest) for rows in series.values() for o in rows
             if o.image_digest}
    return sorted(r for r in found if r)


Lister = Callable[[str, str], list]


def read_tags(repos: Iterable[str], pattern: str, lister: Lister = registry_candidates
              ) -> dict[str, Tags]:
    """Each repository's tags matching ``pattern``, oldest first by image creation time."""
    out = {}
    for repo in repos:
        try:
            ordered = by_creation_time(lister(repo, pattern))
        except (RegistryError, CandidateError) as exc:
            out[repo] = Tags(repo, error=str(exc))
            continue
        out[repo] = Tags(repo, tuple(Tag(tag_of(c.ref), c.digest) for c in ordered))
    return out
