"""The bisects the nightly started (or refused), in the history store: what keeps a case from
being bisected twice for one failure, and what the dashboard shows beside a newly broken cell.

One row per planned bisect (``bisect_id``: the ``harness bisect --id``), written by the nightly's
history step when it uploads the step (status ``running``) and updated by the step that records
the bisect's result (``found``, ``nothing``, ``open``: stopped, e.g. at its run budget). A
refusal is a row too (status ``refused``, with its reason): it blocks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from harness.history.db import Connection

BISECTS_DDL = """;
CREATE TABLE bisects (
    id {ID},
    bisect_id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL, platform TEXT NOT NULL,
    signature TEXT NOT NULL,  -- the failure it chases (harness.host.bisect.autoplan.failure_key: rule [key])
    good_ref TEXT NOT NULL, bad_ref TEXT NOT NULL,  -- the range, as registry tags
    status TEXT NOT NULL,  -- running | found | nothing | open | refused
    run_id TEXT NOT NULL,  -- the nightly run that planned it
    planned_at TEXT NOT NULL, finished_at TEXT,
    max_runs BIGINT, engine_runs BIGINT,
    reason TEXT NOT NULL,  -- a refusal's reason, or the result's headline
    result_json TEXT  -- bisect.json of the finished bisect (harness.host.bisect.summary)
);
CREATE INDEX bisects_by_case ON bisects (case_id, platform)
"""
STATUSES = ("running", "found", "nothing", "open", "refused")
COLUMNS = ("bisect_id", "case_id", "platform", "signature", "good_ref", "bad_ref", "status",
           "run_id", "planned_at", "finished_at", "max_runs", "engine_runs", "reason",
           "result_json")


@dataclass(frozen=True)
class BisectRecord:
    bisect_id: str
    case_id: str
    platform: str
    signature: str
    good_ref: str
    bad_ref: str
    status: str
    run_id: str
    planned_at: str
    finished_at: str | None = None
    max_runs: int | None = None
    engine_runs: int | None = None
    reason: str = ""
    result_json: str | None = None

    def row(self) -> tuple:
        return tuple(getattr(self, name) for name in COLUMNS)


def add_records(conn: Connection, records: Iterable[BisectRecord]) -> int:
    """Store new records; one whose bisect_id is stored already is left as it is."""
    rows = [r.row() for r in records]
    if not rows:
        return 0
    marks = ",".join("?" * len(COLUMNS))
    with conn.write():
        before = conn.scalar("SELECT count(*) FROM bisects")
        conn.executemany(f"INSERT INTO bisects ({','.join(COLUMNS)}) VALUES ({marks}) "
                         "ON CONFLICT DO NOTHING", rows)
        return int(conn.scalar("SELECT count(*) FROM bisects")) - int(before)


def finish(conn: Connection, bisect_id: str, status: str, finished_at: str, engine_runs: int,
           reason: str, result_json: str) -> bool:
    """Record a bisect's result; False when no such bisect was planned."""
    if status not in STATUSES or status in ("running", "refused"):
        raise ValueError(f"a finished bisect's status is found, nothing or open, not {status!r}")
    with conn.write():
        found = conn.scalar("SELECT count(*) FROM bisects WHERE bisect_id = ?", (bisect_id,))
        conn.execute("UPDATE bisects SET status = ?, finished_at = ?, engine_runs = ?, "
                     "reason = ?, result_json = ? WHERE bisect_id = ?",
                     (status, finished_at, engine_runs, reason, result_json, bisect_id))
    return bool(found)


def load_records(conn: Connection, case_ids: Iterable[str] | None = None) -> list[BisectRecord]:
    """Records in the order they were planned (all, or those of ``case_ids``)."""
    sql = f"SELECT {','.join(COLUMNS)} FROM bisects"
    params: list[str] = []
    if case_ids is not None:
        params = sorted(set(case_ids))
        if not params:
            return []
        sql += f" WHERE case_id IN ({','.join('?' * len(params))})"
    return [BisectRecord(*row) for row in conn.execute(sql + " ORDER BY planned_at, id", params)]
