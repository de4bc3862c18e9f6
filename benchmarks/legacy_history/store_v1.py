"""[The baseline: harness/history/store.py as it was before issue 14 (commit b00817f), kept callable
for benchmarks/bench_history.py to measure today's implementation against.]

The history store: one SQLite file (stdlib sqlite3), ``results/history.sqlite`` by default.

A run is stored whole in one transaction, or not at all. Storing a run again changes nothing:
results are keyed by (run id, platform, case id) and a key already present is kept as stored
(a different file under the same key is reported, not merged).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.history.queries import Night, Row
from harness.history.rows import Fingerprint, ResultRow
from harness.history.runread import RunBatch

DEFAULT_DB = Path("results/history.sqlite")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # another ingest holding the write lock: wait this long, then fail

SCHEMA = """
CREATE TABLE fingerprints (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    build_number INTEGER, commit_sha TEXT, vllm_version TEXT, image_digest TEXT,
    build_url TEXT, accelerator TEXT
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL, platform TEXT NOT NULL,
    started_at TEXT, build_number INTEGER, commit_sha TEXT, build_url TEXT, accelerator TEXT,
    run_dir TEXT NOT NULL, annotation TEXT, ingested_at TEXT NOT NULL,
    UNIQUE (run_id, platform)
);
CREATE TABLE cases (id INTEGER PRIMARY KEY, case_id TEXT NOT NULL UNIQUE);
-- What every question reads, for the whole history: kept narrow so a year loads in a second.
CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    run_ref INTEGER NOT NULL REFERENCES runs(id),
    case_ref INTEGER NOT NULL REFERENCES cases(id),
    fingerprint_id INTEGER NOT NULL REFERENCES fingerprints(id),
    status TEXT NOT NULL, failure_class TEXT, total_s REAL,
    output_key INTEGER,  -- output_digest's first 8 bytes, signed: compared for equality only
    UNIQUE (run_ref, case_ref)
);
-- What only the shown cells and lists need.
CREATE TABLE result_details (
    result_id INTEGER PRIMARY KEY REFERENCES results(id),
    job_id TEXT NOT NULL, message TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    startup_s REAL, requests_s REAL, peak_rss_mb REAL, output_digest TEXT,
    log_path TEXT NOT NULL, log_tail TEXT NOT NULL, file_sha256 TEXT NOT NULL
);
CREATE TABLE requests (
    result_id INTEGER NOT NULL REFERENCES results(id),
    request_id TEXT NOT NULL, ok INTEGER NOT NULL,
    output_digest TEXT,  -- sha256 of the generated token ids (harness.history.rows)
    n_tokens INTEGER NOT NULL, latency_s REAL,
    PRIMARY KEY (result_id, request_id)
) WITHOUT ROWID;
-- One row per result with everything, for people at the sqlite3 prompt.
CREATE VIEW result_history AS
    SELECT r.id, u.run_id, u.platform, c.case_id, d.job_id, r.status, r.failure_class,
           d.message, d.started_at, d.finished_at, d.startup_s, d.requests_s, r.total_s,
           d.peak_rss_mb, d.output_digest, d.log_path, d.log_tail, d.file_sha256,
           f.build_number, f.commit_sha, f.vllm_version, f.image_digest, f.build_url,
           f.accelerator
    FROM results r JOIN runs u ON u.id = r.run_ref JOIN cases c ON c.id = r.case_ref
    JOIN result_details d ON d.result_id = r.id JOIN fingerprints f ON f.id = r.fingerprint_id;
"""

INSERT_RESULT = """INSERT INTO results (id, run_ref, case_ref, fingerprint_id, status,
    failure_class, total_s, output_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_DETAIL = """INSERT INTO result_details (result_id, job_id, message, started_at,
    finished_at, startup_s, requests_s, peak_rss_mb, output_digest, log_path, log_tail,
    file_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_REQUEST = """INSERT INTO requests (result_id, request_id, ok, output_digest, n_tokens,
    latency_s) VALUES (?, ?, ?, ?, ?, ?)"""
INSERT_FINGERPRINT = """INSERT OR IGNORE INTO fingerprints (key, build_number, commit_sha,
    vllm_version, image_digest, build_url, accelerator) VALUES (?, ?, ?, ?, ?, ?, ?)"""
INSERT_RUN = """INSERT OR IGNORE INTO runs (run_id, platform, started_at, build_number,
    commit_sha, build_url, accelerator, run_dir, annotation, ingested_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def output_key(digest: str | None) -> int | None:
    return None if digest is None else int.from_bytes(bytes.fromhex(digest[:16]), "big",
                                                      signed=True)


class StoreError(Exception):
    """The store file is unusable (not SQLite, another schema, missing); names the file."""


@dataclass
class StoreOutcome:
    run_id: str
    added: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)  # keys stored before with other content


def open_store(path: Path, create: bool = True) -> sqlite3.Connection:
    path = Path(path)
    if not create and not path.is_file():
        raise StoreError(f"{path}: history store missing (run `harness ingest` first)")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and create:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{path}: an SQLite file, but not a history store")
            conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{path}: history schema version {version}, this harness reads "
                             f"{SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable SQLite history store ({exc})") from None
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _most_common(values) -> object:
    present = [v for v in values if v is not None]
    return Counter(present).most_common(1)[0][0] if present else None


def _fingerprint_ids(conn: sqlite3.Connection, rows: list[ResultRow]) -> dict[Fingerprint, int]:
    distinct = {fp: fp.key for fp in {row.fingerprint for row in rows}}
    conn.executemany(INSERT_FINGERPRINT, [
        (key, fp.build_number, fp.commit, fp.vllm_version, fp.image_digest, fp.build_url,
         fp.accelerator) for fp, key in distinct.items()])
    by_key = {}
    keys = list(distinct.values())
    for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        by_key.update(conn.execute(f"SELECT key, id FROM fingerprints WHERE key IN ({marks})",
                                   chunk))
    return {fp: by_key[key] for fp, key in distinct.items()}


def _run_rows(batch: RunBatch, rows: list[ResultRow], now: str) -> list[tuple]:
    out = []
    for platform in sorted({row.platform for row in rows}):
        mine = [row for row in rows if row.platform == platform]
        stamps = [row.started_at or row.finished_at for row in mine]
        out.append((batch.run_id, platform, min((s for s in stamps if s), default=None),
                    max((r.fingerprint.build_number for r in mine
                         if r.fingerprint.build_number is not None), default=None),
                    _most_common(r.fingerprint.commit for r in mine),
                    _most_common(r.fingerprint.build_url for r in mine),
                    _most_common(r.fingerprint.accelerator for r in mine),
                    str(batch.run_dir), batch.annotation, now))
    return out


def store_run(conn: sqlite3.Connection, batch: RunBatch) -> StoreOutcome:
    """Add a validated run in one transaction; keys already stored are left as they are."""
    outcome = StoreOutcome(batch.run_id)
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored = {(p, c): sha for p, c, sha in conn.execute(
            "SELECT u.platform, c.case_id, d.file_sha256 FROM results r "
            "JOIN runs u ON u.id = r.run_ref JOIN cases c ON c.id = r.case_ref "
            "JOIN result_details d ON d.result_id = r.id WHERE u.run_id = ?", (batch.run_id,))}
        new: list[ResultRow] = []
        for row in batch.rows:
            sha = stored.get((row.platform, row.case_id))
            if sha is None:
                new.append(row)
            elif sha == row.file_sha256:
                outcome.unchanged += 1
            else:
                outcome.conflicts.append(row.job_id)
        if new:
            _insert(conn, batch, new)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    outcome.added = len(new)
    return outcome


def _insert(conn: sqlite3.Connection, batch: RunBatch, rows: list[ResultRow]) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_rows = _run_rows(batch, rows, now)
    conn.executemany(INSERT_RUN, run_rows)
    # A platform stored before with part of its cases: its start is the earliest of all of them.
    conn.executemany("UPDATE runs SET started_at = min(coalesce(started_at, ?1), ?1) "
                     "WHERE run_id = ?2 AND platform = ?3 AND ?1 IS NOT NULL",
                     [(started, run_id, platform) for run_id, platform, started, *_ in run_rows])
    run_refs = dict(conn.execute("SELECT platform, id FROM runs WHERE run_id = ?",
                                 (batch.run_id,)))
    conn.executemany("INSERT OR IGNORE INTO cases (case_id) VALUES (?)",
                     [(case,) for case in sorted({row.case_id for row in rows})])
    case_refs = dict(conn.execute("SELECT case_id, id FROM cases"))
    fingerprint_ids = _fingerprint_ids(conn, rows)
    first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM results").fetchone()[0]
    results, details, requests = [], [], []
    for result_id, row in enumerate(rows, start=first_id):
        results.append((result_id, run_refs[row.platform], case_refs[row.case_id],
                        fingerprint_ids[row.fingerprint], row.status, row.failure_class,
                        row.total_s, output_key(row.output_digest)))
        details.append((result_id, row.job_id, row.message, row.started_at, row.finished_at,
                        row.startup_s, row.requests_s, row.peak_rss_mb, row.output_digest,
                        row.log_path, row.log_tail, row.file_sha256))
        requests.extend((result_id, q.request_id, int(q.ok), q.output_digest, q.n_tokens,
                         q.latency_s) for q in row.requests)
    conn.executemany(INSERT_RESULT, results)
    conn.executemany(INSERT_DETAIL, details)
    conn.executemany(INSERT_REQUEST, requests)


# --- reading -------------------------------------------------------------------------------

def load_nights(conn: sqlite3.Connection) -> list[Night]:
    """Runs in order: by start time, then build number, then run id (a run is one night)."""
    by_run: dict[str, dict] = {}
    for run_id, platform, started_at, build, commit, url, accel, run_dir, annotation in \
            conn.execute("SELECT run_id, platform, started_at, build_number, commit_sha, "
                         "build_url, accelerator, run_dir, annotation FROM runs"):
        info = by_run.setdefault(run_id, {"started": [], "builds": [], "commits": [],
                                          "urls": [], "platforms": {}})
        if started_at:
            info["started"].append(started_at)
        if build is not None:
            info["builds"].append(build)
        info["commits"].append(commit)
        info["urls"].append(url)
        info["platforms"][platform] = (run_dir, annotation, accel)
    ordered = sorted(by_run.items(), key=lambda kv: (
        min(kv[1]["started"], default=""), max(kv[1]["builds"], default=-1), kv[0]))
    return [Night(index=i, run_id=run_id, started_at=min(info["started"], default=None),
                  build_number=max(info["builds"], default=None),
                  commit=_most_common(info["commits"]), build_url=_most_common(info["urls"]),
                  platforms=info["platforms"])
            for i, (run_id, info) in enumerate(ordered)]


def load_rows(conn: sqlite3.Connection, nights: list[Night]) -> list[Row]:
    """Every stored result as a query row, ordered by night."""
    index = {night.run_id: night.index for night in nights}
    runs = {ref: (index[run_id], platform) for ref, run_id, platform
            in conn.execute("SELECT id, run_id, platform FROM runs")}
    cases = dict(conn.execute("SELECT id, case_id FROM cases"))
    builds = {fid: (build, commit) for fid, build, commit
              in conn.execute("SELECT id, build_number, commit_sha FROM fingerprints")}
    rows = []
    append = rows.append  # half a million rows: the loop is the cost, keep it plain
    for run_ref, case_ref, fid, status, fclass, output, total, rid in conn.execute(
            "SELECT run_ref, case_ref, fingerprint_id, status, failure_class, output_key, "
            "total_s, id FROM results"):
        night, platform = runs[run_ref]
        build, commit = builds[fid]
        append(Row(cases[case_ref], platform, night, status, fclass, build, commit, output,
                   total, rid))
    rows.sort(key=lambda r: r.night)
    return rows


@dataclass(frozen=True)
class Detail:
    """What a cell shows beyond its colour: for the board's tooltips, links and lists."""

    message: str
    log_path: str
    log_tail: str
    vllm_version: str | None
    image_digest: str | None


_DETAIL_QUERY = ("SELECT r.id, d.message, d.log_path, d.log_tail, f.vllm_version, "
                 "f.image_digest FROM results r JOIN result_details d ON d.result_id = r.id "
                 "JOIN fingerprints f ON f.id = r.fingerprint_id ")


def load_details(conn: sqlite3.Connection, run_ids: list[str],
                 result_ids: list[int] = ()) -> dict[int, Detail]:
    """Details of every result of the given runs (an indexed range each), and of some others."""
    details: dict[int, Detail] = {}

    def add(query: str, params) -> None:
        for rid, message, log_path, log_tail, vllm, image in conn.execute(query, params):
            details[rid] = Detail(message, log_path, log_tail, vllm, image)

    wanted = set(run_ids)
    for ref, run_id in conn.execute("SELECT id, run_id FROM runs"):
        if run_id in wanted:
            add(_DETAIL_QUERY + "WHERE r.run_ref = ?", (ref,))
    missing = sorted(set(result_ids) - details.keys())
    for start in range(0, len(missing), 500):  # stay under SQLite's bound-parameter limit
        chunk = missing[start:start + 500]
        add(_DETAIL_QUERY + f"WHERE r.id IN ({','.join('?' * len(chunk))})", chunk)
    return details


def changed_requests(conn: sqlite3.Connection, before_id: int, after_id: int) -> list[str]:
    """Request ids whose output digest differs between two results of one case."""
    def digests(result_id: int) -> dict[str, str | None]:
        return dict(conn.execute("SELECT request_id, output_digest FROM requests "
                                 "WHERE result_id = ?", (result_id,)))

    before, after = digests(before_id), digests(after_id)
    return sorted(rid for rid in before.keys() | after.keys() if before.get(rid) != after.get(rid))
