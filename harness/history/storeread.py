"""Reading the history store: only what the page shows.

The nights first (one row per run and platform), then the results of a window of nights, by the
(run_ref, case_ref) index; the stored past of a few series; the details of the cells that show
them. The schema and writing are harness.history.store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from harness.history.db import Connection
from harness.history.queries import Key, Night, Row
from harness.history.store import CHUNK, ids_of, most_common

__all__ = ["Detail", "RunRef", "changed_requests", "load_details", "load_nights", "load_rows",
           "load_series"]


@dataclass(frozen=True)
class RunRef:
    """A stored (run, platform): where its results are, and which night it belongs to."""

    ref: int
    night: int
    platform: str


def load_nights(conn: Connection) -> list[Night]:
    """Runs in order: by start time, then build number, then run id (a run is one night)."""
    by_run: dict[str, dict] = {}
    for ref, run_id, platform, started_at, build, commit, url, accel, run_dir, annotation in \
            conn.execute("SELECT id, run_id, platform, started_at, build_number, commit_sha, "
                         "build_url, accelerator, run_dir, annotation FROM runs"):
        info = by_run.setdefault(run_id, {"started": [], "builds": [], "commits": [],
                                          "urls": [], "platforms": {}, "refs": {}})
        if started_at:
            info["started"].append(started_at)
        if build is not None:
            info["builds"].append(build)
        info["commits"].append(commit)
        info["urls"].append(url)
        info["platforms"][platform] = (run_dir, annotation, accel)
        info["refs"][platform] = ref
    ordered = sorted(by_run.items(), key=lambda kv: (
        min(kv[1]["started"], default=""), max(kv[1]["builds"], default=-1), kv[0]))
    return [Night(index=i, run_id=run_id, started_at=min(info["started"], default=None),
                  build_number=max(info["builds"], default=None),
                  commit=most_common((c, 1) for c in info["commits"]),
                  build_url=most_common((u, 1) for u in info["urls"]),
                  platforms=info["platforms"], refs=info["refs"])
            for i, (run_id, info) in enumerate(ordered)]


def _run_refs(nights: Iterable[Night]) -> dict[int, RunRef]:
    return {ref: RunRef(ref, night.index, platform)
            for night in nights for platform, ref in night.refs.items()}


_ROW_QUERY = ("SELECT run_ref, case_ref, fingerprint_id, status, failure_class, output_key, "
              "total_s, id FROM results")


def _rows(conn: Connection, runs: dict[int, RunRef], query: str, params: Sequence) -> list[Row]:
    cases = dict(conn.execute("SELECT id, case_id FROM cases"))
    builds = {fid: (build, commit) for fid, build, commit
              in conn.execute("SELECT id, build_number, commit_sha FROM fingerprints")}
    rows = []
    append = rows.append  # the loop is the cost: keep it plain
    for run_ref, case_ref, fid, status, fclass, output, total, rid in conn.execute(query, params):
        run = runs.get(run_ref)
        if run is None:
            continue
        build, commit = builds[fid]
        append(Row(cases[case_ref], run.platform, run.night, status, fclass, build, commit,
                   output, total, rid))
    rows.sort(key=lambda r: r.night)
    return rows


def load_rows(conn: Connection, nights: Sequence[Night], first_night: int = 0) -> list[Row]:
    """Stored results as query rows, ordered by night: the nights from ``first_night`` on."""
    runs = _run_refs(n for n in nights if n.index >= first_night)
    if first_night <= 0:
        return _rows(conn, runs, _ROW_QUERY, ())
    out: list[Row] = []
    refs = sorted(runs)
    for start in range(0, len(refs), CHUNK):  # by the (run_ref, case_ref) index
        chunk = refs[start:start + CHUNK]
        out += _rows(conn, runs, f"{_ROW_QUERY} WHERE run_ref IN ({','.join('?' * len(chunk))})",
                     chunk)
    out.sort(key=lambda r: r.night)
    return out


def load_series(conn: Connection, nights: Sequence[Night], keys: Sequence[Key],
                before_night: int) -> dict[Key, list[Row]]:
    """The whole stored past (nights before ``before_night``) of a few case x platform series,
    looked up pair by pair through the (run_ref, case_ref) index."""
    wanted = set(keys)
    if not wanted or before_night <= 0:
        return {}
    case_refs = sorted(ids_of(conn, "cases", "case_id", sorted({c for c, _ in wanted})).values())
    platforms = {platform for _, platform in wanted}
    runs = {ref: run for ref, run in _run_refs(n for n in nights if n.index < before_night).items()
            if run.platform in platforms}
    out: dict[Key, list[Row]] = {key: [] for key in wanted}
    refs = sorted(runs)
    step = max(1, CHUNK - len(case_refs))
    for start in range(0, len(refs), step):
        chunk = refs[start:start + step]
        for row in _rows(conn, runs, f"{_ROW_QUERY} WHERE run_ref IN "
                         f"({','.join('?' * len(chunk))}) AND case_ref IN "
                         f"({','.join('?' * len(case_refs))})", [*chunk, *case_refs]):
            if (row.case_id, row.platform) in wanted:
                out[(row.case_id, row.platform)].append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r.night)
    return out


@dataclass(frozen=True)
class Detail:
    """What a cell shows beyond its colour: for the board's tooltips, links and lists."""

    message: str
    log_path: str
    log_tail: str
    vllm_version: str | None
    image_digest: str | None


_DETAIL_QUERY = ("SELECT r.id, r.message, r.log_path, r.log_tail, f.vllm_version, "
                 "f.image_digest FROM results r JOIN fingerprints f ON f.id = r.fingerprint_id ")


def load_details(conn: Connection, result_ids: Iterable[int]) -> dict[int, Detail]:
    """Details of the given results (by primary key): only the cells that show them."""
    details: dict[int, Detail] = {}
    wanted = sorted(set(result_ids))
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start:start + CHUNK]
        for rid, message, log_path, log_tail, vllm, image in conn.execute(
                _DETAIL_QUERY + f"WHERE r.id IN ({','.join('?' * len(chunk))})", chunk):
            details[rid] = Detail(message, log_path, log_tail, vllm, image)
    return details


def _digests(text: str | None) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (text or "").splitlines() if "=" in line)


def changed_requests(conn: Connection, before_id: int, after_id: int) -> list[str]:
    """Request ids whose output digest differs between two results of one case."""
    texts = dict(conn.execute("SELECT id, request_digests FROM results WHERE id IN (?, ?)",
                              (before_id, after_id)))
    before, after = _digests(texts.get(before_id)), _digests(texts.get(after_id))
    return sorted(rid for rid in before.keys() | after.keys() if before.get(rid) != after.get(rid))


def signature_keys(conn: Connection, result_ids: Iterable[int]) -> dict[int, str]:
    """``rule [key]`` of each given result that has a signature (by result primary key): what
    "the same failure" is across nights (the auto-bisect's one bisect per failure)."""
    found: dict[int, str] = {}
    wanted = sorted(set(result_ids))
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start:start + CHUNK]
        for ref, rule, key in conn.execute(
                "SELECT result_ref, rule, sig_key FROM signatures WHERE rule IS NOT NULL AND "
                f"result_ref IN ({','.join('?' * len(chunk))})", chunk):
            found[ref] = f"{rule} [{key}]" if key else rule
    return found
