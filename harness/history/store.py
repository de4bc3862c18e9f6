"""The history store: one SQLite file (stdlib sqlite3), ``results/history.sqlite`` by default.

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
from harness.history.rows import ResultRow
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
    run_id TEXT NOT NULL, platform TEXT NOT NULL,
    started_at TEXT, build_number INTEGER, commit_sha TEXT, build_url TEXT, accelerator TEXT,
    run_dir TEXT NOT NULL, annotation TEXT, ingested_at TEXT NOT NULL,
    PRIMARY KEY (run_id, platform)
) WITHOUT ROWID;
CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL, platform TEXT NOT NULL, case_id TEXT NOT NULL, job_id TEXT NOT NULL,
    fingerprint_id INTEGER NOT NULL REFERENCES fingerprints(id),
    status TEXT NOT NULL, failure_class TEXT, message TEXT NOT NULL,
    started_at TEXT, finished_at TEXT,
    startup_s REAL, requests_s REAL, total_s REAL, peak_rss_mb REAL,
    output_digest TEXT, log_path TEXT NOT NULL, log_tail TEXT NOT NULL, file_sha256 TEXT NOT NULL,
    UNIQUE (run_id, platform, case_id)
);
CREATE TABLE requests (
    result_id INTEGER NOT NULL REFERENCES results(id),
    request_id TEXT NOT NULL, ok INTEGER NOT NULL, output_digest TEXT,
    n_tokens INTEGER NOT NULL, latency_s REAL,
    PRIMARY KEY (result_id, request_id)
) WITHOUT ROWID;
CREATE VIEW result_history AS
    SELECT r.*, f.build_number, f.commit_sha, f.vllm_version, f.image_digest, f.build_url,
           f.accelerator
    FROM results r JOIN fingerprints f ON f.id = r.fingerprint_id;
"""

INSERT_RESULT = """INSERT INTO results (id, run_id, platform, case_id, job_id, fingerprint_id,
    status, failure_class, message, started_at, finished_at, startup_s, requests_s, total_s,
    peak_rss_mb, output_digest, log_path, log_tail, file_sha256)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_REQUEST = """INSERT INTO requests (result_id, request_id, ok, output_digest, n_tokens,
    latency_s) VALUES (?, ?, ?, ?, ?, ?)"""
INSERT_FINGERPRINT = """INSERT OR IGNORE INTO fingerprints (key, build_number, commit_sha,
    vllm_version, image_digest, build_url, accelerator) VALUES (?, ?, ?, ?, ?, ?, ?)"""


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


def _fingerprint_ids(conn: sqlite3.Connection, rows: list[ResultRow]) -> dict[str, int]:
    distinct = {row.fingerprint.key: row.fingerprint for row in rows}
    conn.executemany(INSERT_FINGERPRINT, [
        (key, fp.build_number, fp.commit, fp.vllm_version, fp.image_digest, fp.build_url,
         fp.accelerator) for key, fp in distinct.items()])
    ids = {}
    keys = list(distinct)
    for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        ids.update(conn.execute(f"SELECT key, id FROM fingerprints WHERE key IN ({marks})", chunk))
    return ids


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
            "SELECT platform, case_id, file_sha256 FROM results WHERE run_id = ?",
            (batch.run_id,))}
        new: list[ResultRow] = []
        for row in batch.rows:
            sha = stored.get((row.platform, row.case_id))
            if sha is None:
                new.append(row)
            elif sha == row.file_sha256:
                outcome.unchanged += 1
            else:
                outcome.conflicts.append(f"{row.job_id}")
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
    conn.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
    # A platform stored before with part of its cases: its start is the earliest of all of them.
    conn.executemany("UPDATE runs SET started_at = min(coalesce(started_at, ?1), ?1) "
                     "WHERE run_id = ?2 AND platform = ?3 AND ?1 IS NOT NULL",
                     [(started, run_id, platform) for run_id, platform, started, *_ in run_rows])
    fingerprint_ids = _fingerprint_ids(conn, rows)
    first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM results").fetchone()[0]
    result_values, request_values = [], []
    for offset, row in enumerate(rows):
        result_id = first_id + offset
        result_values.append((
            result_id, row.run_id, row.platform, row.case_id, row.job_id,
            fingerprint_ids[row.fingerprint.key], row.status, row.failure_class, row.message,
            row.started_at, row.finished_at, row.startup_s, row.requests_s, row.total_s,
            row.peak_rss_mb, row.output_digest, row.log_path, row.log_tail, row.file_sha256))
        request_values.extend((result_id, q.request_id, int(q.ok), q.output_digest, q.n_tokens,
                               q.latency_s) for q in row.requests)
    conn.executemany(INSERT_RESULT, result_values)
    conn.executemany(INSERT_REQUEST, request_values)


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
    query = ("SELECT r.case_id, r.platform, r.run_id, r.status, r.failure_class, f.build_number, "
             "f.commit_sha, r.output_digest, r.total_s, r.id FROM results r "
             "JOIN fingerprints f ON f.id = r.fingerprint_id")
    rows = [Row(case, platform, index[run_id], status, fclass, build, commit, digest, total, rid)
            for case, platform, run_id, status, fclass, build, commit, digest, total, rid
            in conn.execute(query)]
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


def load_details(conn: sqlite3.Connection, result_ids: list[int]) -> dict[int, Detail]:
    details: dict[int, Detail] = {}
    for start in range(0, len(result_ids), 500):
        chunk = result_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for rid, message, log_path, log_tail, vllm, image in conn.execute(
                "SELECT r.id, r.message, r.log_path, r.log_tail, f.vllm_version, f.image_digest "
                f"FROM results r JOIN fingerprints f ON f.id = r.fingerprint_id "
                f"WHERE r.id IN ({marks})", chunk):
            details[rid] = Detail(message, log_path, log_tail, vllm, image)
    return details


def changed_requests(conn: sqlite3.Connection, before_id: int, after_id: int) -> list[str]:
    """Request ids whose output digest differs between two results of one case."""
    def digests(result_id: int) -> dict[str, str | None]:
        return dict(conn.execute("SELECT request_id, output_digest FROM requests "
                                 "WHERE result_id = ?", (result_id,)))

    before, after = digests(before_id), digests(after_id)
    return sorted(rid for rid in before.keys() | after.keys() if before.get(rid) != after.get(rid))
