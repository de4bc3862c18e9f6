"""The history store: an SQLite file (``results/history.sqlite`` by default) or a PostgreSQL URL.

A run is stored whole in one transaction, or not at all. Storing a run again changes nothing:
results are keyed by (run id, platform, case id) and a key already present is kept as stored
(a different file under the same key is reported, not merged). Both engines get the same schema
and the same queries (harness.history.db).

Reading it is harness.history.storeread.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Iterable, Sequence

from harness.history import sigstore
from harness.history.bisects import BISECTS_DDL
from harness.history.db import Connection, StoreError, connect, shown_target
from harness.history.nodes import ensure_tables as ensure_node_tables, store_nodes
from harness.history.rows import Fingerprint, ResultRow
from harness.history.runread import RunBatch
from harness.results import cycle_collection_paused

__all__ = ["CHUNK", "DEFAULT_DB", "SCHEMA_VERSION", "Connection", "StoreError", "StoreOutcome",
           "ids_of", "most_common", "open_store", "store_run"]

DEFAULT_DB = Path("results/history.sqlite")
SCHEMA_VERSION = 3  # 3: failure signatures (harness.history.sigstore) and bisects (.bisects)
CHUNK = 500  # bound parameters per IN (...): under SQLite's limit

SCHEMA = """
CREATE TABLE harness_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fingerprints (
    id {ID},
    key TEXT NOT NULL UNIQUE,
    build_number BIGINT, commit_sha TEXT, vllm_version TEXT, image_digest TEXT,
    build_url TEXT, accelerator TEXT
);
CREATE TABLE runs (
    id {ID},
    run_id TEXT NOT NULL, platform TEXT NOT NULL,
    started_at TEXT, build_number BIGINT, commit_sha TEXT, build_url TEXT, accelerator TEXT,
    run_dir TEXT NOT NULL, annotation TEXT, ingested_at TEXT NOT NULL,
    UNIQUE (run_id, platform)
);
CREATE TABLE cases (id {ID}, case_id TEXT NOT NULL UNIQUE);
-- One row per result file. The page reads a window of nights through (run_ref, case_ref).
CREATE TABLE results (
    id {ID},
    run_ref BIGINT NOT NULL REFERENCES runs(id),
    case_ref BIGINT NOT NULL REFERENCES cases(id),
    fingerprint_id BIGINT NOT NULL REFERENCES fingerprints(id),
    status TEXT NOT NULL, failure_class TEXT, total_s {REAL},
    output_key BIGINT,  -- output_digest's first 8 bytes, signed: compared for equality only
    job_id TEXT NOT NULL, message TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    startup_s {REAL}, requests_s {REAL}, peak_rss_mb {REAL},
    output_digest TEXT,  -- over every request's digest (harness.history.rows.output_digest)
    request_digests TEXT NOT NULL,  -- "request id=sha256 of its token ids" lines ("-": none)
    log_path TEXT NOT NULL, log_tail TEXT NOT NULL, file_sha256 TEXT NOT NULL,
    UNIQUE (run_ref, case_ref)
);
-- One row per result with everything, for people at the sqlite3/psql prompt.
CREATE VIEW result_history AS
    SELECT r.id, u.run_id, u.platform, c.case_id, r.job_id, r.status, r.failure_class,
           r.message, r.started_at, r.finished_at, r.startup_s, r.requests_s, r.total_s,
           r.peak_rss_mb, r.output_digest, r.request_digests, r.log_path, r.log_tail,
           r.file_sha256, f.build_number, f.commit_sha, f.vllm_version, f.image_digest,
           f.build_url, f.accelerator
    FROM results r JOIN runs u ON u.id = r.run_ref JOIN cases c ON c.id = r.case_ref
    JOIN fingerprints f ON f.id = r.fingerprint_id
"""

# A result as stored: its ids and the two derived columns first, then ResultRow's own fields as
# they are, which one attrgetter call per row takes out at C speed (the row loop is the cost).
_ROW_FIELDS = ("status", "failure_class", "total_s", "job_id", "message", "started_at",
               "finished_at", "startup_s", "requests_s", "peak_rss_mb", "output_digest",
               "log_path", "log_tail", "file_sha256")
RESULT_COLUMNS = ("id", "run_ref", "case_ref", "fingerprint_id", "output_key", "request_digests",
                  *_ROW_FIELDS)
_row_fields = attrgetter(*_ROW_FIELDS)
_fingerprint_of = attrgetter("fingerprint")
INSERT_FINGERPRINT = """INSERT INTO fingerprints (key, build_number, commit_sha,
    vllm_version, image_digest, build_url, accelerator) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING"""
INSERT_RUN = """INSERT INTO runs (run_id, platform, started_at, build_number,
    commit_sha, build_url, accelerator, run_dir, annotation, ingested_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
INSERT_CASE = "INSERT INTO cases (case_id) VALUES (?) ON CONFLICT DO NOTHING"
EARLIER_START = """UPDATE runs SET started_at = ? WHERE run_id = ? AND platform = ?
    AND (started_at IS NULL OR started_at > ?)"""


def output_key(digest: str | None) -> int | None:
    """The digest's first 8 bytes as a signed 64-bit integer (what a BIGINT holds)."""
    if digest is None:
        return None
    key = int(digest[:16], 16)
    return key - (1 << 64) if key >= 1 << 63 else key


@dataclass
class StoreOutcome:
    run_id: str
    added: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)  # keys stored before with other content


def _create_or_check(conn: Connection, create: bool) -> None:
    tables = conn.table_names()
    if "harness_meta" in tables:
        version = conn.scalar("SELECT value FROM harness_meta WHERE key = ?",
                              ("schema_version",))
        if version == "2":
            _migrate_from_2(conn)
        elif version != str(SCHEMA_VERSION):
            raise StoreError(f"{conn.label}: history schema version {version}, this harness "
                             f"reads {SCHEMA_VERSION}")
        return
    if conn.kind == "sqlite":
        old = conn.scalar("PRAGMA user_version")
        if old:  # version 1 kept its version there
            raise StoreError(f"{conn.label}: history schema version {old}, this harness reads "
                             f"{SCHEMA_VERSION} (start a new store, or backfill one with "
                             "`harness ingest --buildkite-build`)")
    if tables:
        raise StoreError(f"{conn.label}: a database, but not a history store "
                         f"(it holds {', '.join(sorted(tables)[:5])})")
    if not create:
        raise StoreError(f"{conn.label}: history store missing (run `harness ingest` first)")
    ddl = SCHEMA.format(ID=conn.ID, REAL=conn.REAL)
    with conn.write():
        if "harness_meta" in conn.table_names():
            return  # another process created it while this one waited for the lock
        for statement in [*filter(str.strip, (ddl + BISECTS_DDL.format(ID=conn.ID)).split(";")),
                          *sigstore.ddl_statements()]:
            conn.execute(statement)
        conn.execute("INSERT INTO harness_meta (key, value) VALUES (?, ?)",
                     ("schema_version", str(SCHEMA_VERSION)))


def _migrate_from_2(conn: Connection) -> None:
    """Schema 2 -> 3, once, under the writers' lock (another process may have done it):
    the bisects table, and the signatures table with the stored failures signed."""
    with conn.write():
        if conn.scalar("SELECT value FROM harness_meta WHERE key = ?",
                       ("schema_version",)) != "2":
            return
        for statement in filter(str.strip, BISECTS_DDL.format(ID=conn.ID).split(";")):
            conn.execute(statement)
        sigstore.migrate_from_2(conn)
        conn.execute("UPDATE harness_meta SET value = ? WHERE key = ?",
                     (str(SCHEMA_VERSION), "schema_version"))


def open_store(target: str | Path, create: bool = True) -> Connection:
    """The store at ``target`` (a path or a postgresql:// URL), created when missing."""
    conn = connect(target, create)
    try:
        conn.setup()
        _create_or_check(conn, create)
    except conn.errors as exc:
        conn.close()
        kind = "SQLite" if conn.kind == "sqlite" else "PostgreSQL"
        raise StoreError(f"{shown_target(target)}: not a usable {kind} history store "
                         f"({str(exc).strip()})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def ids_of(conn: Connection, table: str, column: str, keys: Sequence[str]) -> dict[str, int]:
    """``{key: id}`` of the stored rows of ``table`` whose ``column`` is one of ``keys``."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(conn.execute(f"SELECT {column}, id FROM {table} WHERE {column} IN ({marks})",
                                  chunk))
    return found


# --- writing -------------------------------------------------------------------------------

def _interned(conn: Connection, table: str, column: str, insert: str,
              new_rows: dict[str, tuple]) -> dict[str, int]:
    """Ids of the keys of ``new_rows`` in ``table``: looked up, and only the missing inserted
    (a night's cases and fingerprints are nearly always stored already)."""
    keys = sorted(new_rows)
    found = ids_of(conn, table, column, keys)
    missing = [key for key in keys if key not in found]
    if missing:
        conn.executemany(insert, [new_rows[key] for key in missing])
        found.update(ids_of(conn, table, column, missing))
    return found


def _fingerprint_ids(conn: Connection, objects: dict[int, Fingerprint]) -> dict[int, int]:
    """Fingerprint row ids by ``id()`` of the rows' Fingerprint objects (``objects``): rows of
    a night share a few, so each distinct one is hashed once, not once per row."""
    keys = {fp: fp.key for fp in set(objects.values())}
    by_key = _interned(conn, "fingerprints", "key", INSERT_FINGERPRINT, {
        key: (key, fp.build_number, fp.commit, fp.vllm_version, fp.image_digest, fp.build_url,
              fp.accelerator) for fp, key in keys.items()})
    return {obj: by_key[keys[fp]] for obj, fp in objects.items()}


def most_common(pairs: Iterable[tuple[object, int]]) -> object:
    """The most frequent value that is not None (a tie: the first seen), or None; values come
    as (value, times) in order of first appearance."""
    counts: Counter = Counter()
    for value, times in pairs:
        if value is not None:
            counts[value] += times
    return counts.most_common(1)[0][0] if counts else None


def _run_rows(batch: RunBatch, rows: list[ResultRow], objects: dict[int, Fingerprint],
              now: str) -> list[tuple]:
    """A runs row per platform. Fingerprint fields are summed over the distinct Fingerprint
    objects (``objects``, by ``id()``) with their row counts: the same as over every row."""
    by_platform: dict[str, list[ResultRow]] = {}
    for row in rows:
        by_platform.setdefault(row.platform, []).append(row)
    out = []
    for platform, mine in sorted(by_platform.items()):
        fps = [(objects[obj], times) for obj, times in Counter(map(id, map(
            _fingerprint_of, mine))).items()]  # in order of first appearance
        started = min(filter(None, [row.started_at or row.finished_at for row in mine]),
                      default=None)
        out.append((batch.run_id, platform, started,
                    max((fp.build_number for fp, _ in fps if fp.build_number is not None),
                        default=None),
                    most_common((fp.commit, n) for fp, n in fps),
                    most_common((fp.build_url, n) for fp, n in fps),
                    most_common((fp.accelerator, n) for fp, n in fps),
                    str(batch.run_dir), batch.annotation, now))
    return out


def _new_rows(batch: RunBatch, stored: dict[tuple[str, str], str],
              outcome: StoreOutcome) -> list[ResultRow]:
    """The rows of a run stored before in part: those not stored yet. The others count as
    unchanged, or as conflicts when their file differs from the stored one."""
    new = []
    for row in batch.rows:
        sha = stored.get((row.platform, row.case_id))
        if sha is None:
            new.append(row)
        elif sha == row.file_sha256:
            outcome.unchanged += 1
        else:
            outcome.conflicts.append(row.job_id)
    return new


def store_run(conn: Connection, batch: RunBatch) -> StoreOutcome:
    """Add a validated run in one transaction; keys already stored are left as they are."""
    outcome = StoreOutcome(batch.run_id)
    # thousands of acyclic tuples a night, freed by reference counting: no cycle collection
    # walking them meanwhile (harness.results)
    with conn.write(), cycle_collection_paused():
        stored = {}
        # run first, then its results by the (run_ref, case_ref) index: a join from runs can
        # make the planner scan every stored result, every night
        for ref, platform in list(conn.execute("SELECT id, platform FROM runs WHERE run_id = ?",
                                               (batch.run_id,))):
            stored.update(((platform, case), sha) for case, sha in conn.execute(
                "SELECT c.case_id, r.file_sha256 FROM results r JOIN cases c "
                "ON c.id = r.case_ref WHERE r.run_ref = ?", (ref,)))
        new = _new_rows(batch, stored, outcome) if stored else list(batch.rows)
        if new:
            _insert(conn, batch, new)
    outcome.added = len(new)
    return outcome


def _request_digests(row: ResultRow) -> str:
    return "\n".join([f"{q.request_id}={q.output_digest or '-'}" for q in row.requests])


def _insert(conn: Connection, batch: RunBatch, rows: list[ResultRow]) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    objects = {id(fp): fp for fp in map(_fingerprint_of, rows)}  # rows hold them: ids stay
    run_rows = _run_rows(batch, rows, objects, now)
    conn.executemany(INSERT_RUN, run_rows)
    # A platform stored before with part of its cases: its start is the earliest of all of them.
    conn.executemany(EARLIER_START, [(started, run_id, platform, started)
                                     for run_id, platform, started, *_ in run_rows if started])
    run_refs = dict(conn.execute("SELECT platform, id FROM runs WHERE run_id = ?",
                                 (batch.run_id,)))
    case_refs = _interned(conn, "cases", "case_id", INSERT_CASE,
                          {row.case_id: (row.case_id,) for row in rows})
    fingerprint_ids = _fingerprint_ids(conn, objects)
    # Writers are serialised (Connection.write), so the next ids are free.
    first_id = conn.scalar("SELECT coalesce(max(id), 0) + 1 FROM results")
    tested = [row for row in rows if row.tests]
    if tested:  # vllm_tests results: what changed of their nodes (harness.history.nodes)
        ensure_node_tables(conn)
        for row in tested:
            store_nodes(conn, run_refs[row.platform], row.platform, case_refs[row.case_id],
                        row.tests)
    conn.bulk_insert("results", RESULT_COLUMNS, [
        (result_id, run_refs[row.platform], case_refs[row.case_id],
         fingerprint_ids[id(row.fingerprint)], output_key(row.output_digest),
         _request_digests(row)) + _row_fields(row)
        for result_id, row in enumerate(rows, start=first_id)])
    sigstore.insert(conn, (((result_id, run_refs[row.platform], case_refs[row.case_id]), row)
                           for result_id, row in enumerate(rows, start=first_id)))
