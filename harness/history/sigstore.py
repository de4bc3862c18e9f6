"""The store's ``signatures`` table: where each stored result ran (its node and GPU arch) and,
for a failure, its signature (harness.signatures). One row per result that has either.

Passes are stored with their node too: a failure that follows one node while other nodes pass
the same case is a node problem, not a regression (harness.signatures.triage), and only the
passes tell the two apart.

Stores of schema 2 (before this table) are migrated when opened: the table is created, and
each stored failure gets the signature its stored log tail and message give by the rulebook
in use (its node is unknown: version 2 kept none).
"""

from __future__ import annotations

from typing import Iterable

from harness.history.db import Connection
from harness.history.rows import ResultRow, SignatureRow
from harness.signatures.attach import signature_of
from harness.results import Where
from harness.signatures.rulebook import default_rulebook
from harness.signatures.scan import Source

DDL = """
CREATE TABLE signatures (
    result_ref BIGINT PRIMARY KEY REFERENCES results(id),
    -- the result's run, case and status again: triage reads this table without the results
    run_ref BIGINT NOT NULL REFERENCES runs(id),
    case_ref BIGINT NOT NULL REFERENCES cases(id),
    status TEXT NOT NULL,
    node TEXT, gpu_arch TEXT,
    rule TEXT, sig_key TEXT, sig_class TEXT, line TEXT, line_no BIGINT, source TEXT
);
CREATE INDEX signatures_rule ON signatures (rule);
CREATE INDEX signatures_case ON signatures (case_ref)
"""
COLUMNS = ("result_ref", "run_ref", "case_ref", "status", "node", "gpu_arch", "rule",
           "sig_key", "sig_class", "line", "line_no", "source")
BAD_STATUSES = ("failed", "error", "xpassed")


def ddl_statements() -> list[str]:
    return [s for s in DDL.split(";") if s.strip()]


def row_of(ids: tuple[int, int, int], status: str, node: str | None, gpu_arch: str | None,
           sig: SignatureRow | None) -> tuple:
    if sig is None:
        return (*ids, status, node, gpu_arch, None, None, None, None, None, None)
    return (*ids, status, node, gpu_arch, sig.rule, sig.key, sig.failure_class, sig.line,
            sig.line_no, sig.source)


def insert(conn: Connection, rows: Iterable[tuple[tuple[int, int, int], ResultRow]]) -> None:
    """The signature rows of newly stored results: ((result, run, case) ids, row) pairs."""
    out = [row_of(ids, row.status, row.node, row.gpu_arch, row.signature) for ids, row in rows
           if row.node is not None or row.signature is not None]
    if out:
        conn.bulk_insert("signatures", COLUMNS, out)


def migrate_from_2(conn: Connection) -> int:
    """Add the table to a schema-2 store (inside the caller's write transaction) and sign
    its stored failures from their log tails; returns how many were signed."""
    for statement in ddl_statements():
        conn.execute(statement)
    rulebook = default_rulebook()
    out = []
    for result_id, run_ref, case_ref, status, message, tail in list(conn.execute(
            "SELECT id, run_ref, case_ref, status, message, log_tail FROM results "
            "WHERE status IN (?, ?, ?)", BAD_STATUSES)):
        own = [Source("log_tail", "engine", (tail or "").encode("utf-8")),
               Source("message", "harness", (message or "").encode("utf-8"))]
        sig = signature_of(own, [], Where(), rulebook)
        out.append(row_of((result_id, run_ref, case_ref), status, None, None, SignatureRow(
            sig.rule, sig.key, sig.failure_class, sig.line, sig.line_no, sig.source)))
    if out:
        conn.bulk_insert("signatures", COLUMNS, out)
    return len(out)
