"""Per-node history of vllm_tests cases, without a row per passing test per night.

A night of AMD's CI is ~75,000 upstream test results per platform; nearly all pass, and pass
again the next night. The store keeps what a person asks about: which nodes are not passing now,
since which night (the first bad night of the current streak), and every change of a node's
state. A passing node that stays passing costs nothing, ever:

* ``node_state``: one row per (platform, node) that is **not passing** now (failed, error,
  skipped, xfailed), with its exception class, first line and the night it began. A node that
  passes again is deleted from it.
* ``node_changes``: one row per (night, platform, node) whose state changed from the node's
  previous stored state (absent = passing); a night adds exactly what changed.
* ``test_nodes``: node ids, interned per case, for the nodes that ever appear above.

A node missing from a night (not run: another selection, or its job hit infrastructure) keeps
its state. Nights are applied in ingest order, as they arrive; the tables are created the first
time a run is stored with this harness (an older store gains them, its schema version stays).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.history.db import Connection

NODE_SCHEMA = """
CREATE TABLE IF NOT EXISTS test_nodes (
    id {ID}, case_ref BIGINT NOT NULL, node_id TEXT NOT NULL, UNIQUE (case_ref, node_id)
);
CREATE TABLE IF NOT EXISTS node_state (
    platform TEXT NOT NULL, node_ref BIGINT NOT NULL, outcome TEXT NOT NULL,
    exception TEXT NOT NULL, message TEXT NOT NULL, since_run BIGINT NOT NULL,
    PRIMARY KEY (platform, node_ref)
);
CREATE TABLE IF NOT EXISTS node_changes (
    run_ref BIGINT NOT NULL, node_ref BIGINT NOT NULL, outcome TEXT NOT NULL,
    exception TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS node_changes_by_node ON node_changes (node_ref)
"""
PASSED = "passed"
CHUNK = 500


def ensure_tables(conn: Connection) -> None:
    """Create the node tables when missing (inside the caller's write transaction)."""
    if {"test_nodes", "node_state", "node_changes"} <= conn.table_names():
        return
    for statement in filter(str.strip, NODE_SCHEMA.format(ID=conn.ID).split(";")):
        conn.execute(statement)


def _text(node) -> str:
    return node.skip_reason if node.outcome in ("skipped", "xfailed") else node.message


def _node_refs(conn: Connection, case_ref: int, node_ids: list[str]) -> dict[str, int]:
    """Ids of ``node_ids`` of one case, interning the missing ones."""
    found: dict[str, int] = {}
    for start in range(0, len(node_ids), CHUNK):
        chunk = node_ids[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(conn.execute(f"SELECT node_id, id FROM test_nodes WHERE case_ref = ? AND "
                                  f"node_id IN ({marks})", (case_ref, *chunk)))
    missing = [nid for nid in node_ids if nid not in found]
    if missing:
        first = conn.scalar("SELECT coalesce(max(id), 0) + 1 FROM test_nodes")
        rows = [(i, case_ref, nid) for i, nid in enumerate(missing, start=first)]
        conn.bulk_insert("test_nodes", ("id", "case_ref", "node_id"), rows)
        found.update((nid, i) for i, _, nid in rows)
    return found


def store_nodes(conn: Connection, run_ref: int, platform: str, case_ref: int,
                nodes) -> int:
    """Apply one result's nodes to the history (in the caller's write transaction); returns the
    number of changes stored."""
    current = {nid: (ref, outcome, exception) for nid, ref, outcome, exception in conn.execute(
        "SELECT t.node_id, s.node_ref, s.outcome, s.exception FROM node_state s JOIN test_nodes t "
        "ON t.id = s.node_ref WHERE s.platform = ? AND t.case_ref = ?", (platform, case_ref))}
    changed = []
    for node in nodes:
        if node.outcome == PASSED:
            if node.node_id in current:  # passes again
                changed.append(node)
            continue
        was = current.get(node.node_id)
        if was is None or was[1] != node.outcome or was[2] != node.exception:
            changed.append(node)
    if not changed:
        return 0
    refs = _node_refs(conn, case_ref, [node.node_id for node in changed])
    conn.executemany("INSERT INTO node_changes (run_ref, node_ref, outcome, exception, message) "
                     "VALUES (?, ?, ?, ?, ?)", [(run_ref, refs[n.node_id], n.outcome, n.exception,
                                                 _text(n)) for n in changed])
    gone = [(platform, refs[n.node_id]) for n in changed if n.node_id in current]
    conn.executemany("DELETE FROM node_state WHERE platform = ? AND node_ref = ?", gone)
    conn.executemany("INSERT INTO node_state (platform, node_ref, outcome, exception, message, "
                     "since_run) VALUES (?, ?, ?, ?, ?, ?)",
                     [(platform, refs[n.node_id], n.outcome, n.exception, _text(n), run_ref)
                      for n in changed if n.outcome != PASSED])
    return len(changed)


@dataclass(frozen=True)
class NodeLine:
    """A node that is not passing now on a platform (the dashboard's per-node history)."""

    case_id: str
    node_id: str
    platform: str
    outcome: str
    exception: str
    message: str
    since_run_id: str  # the first night of this state (the first bad night when it failed)
    changes: int  # how many times its state changed, over the store's history


BAD_FIRST = {"failed": 0, "error": 0, "skipped": 1, "xfailed": 2}


def load_node_lines(conn: Connection) -> list[NodeLine]:
    """Every node not passing now, failures first, then by case, node and platform."""
    if "node_state" not in conn.table_names():
        return []
    rows = conn.execute(
        "SELECT c.case_id, t.node_id, s.platform, s.outcome, s.exception, s.message, u.run_id, "
        "(SELECT count(*) FROM node_changes x WHERE x.node_ref = s.node_ref AND x.run_ref IN "
        "(SELECT id FROM runs WHERE platform = s.platform)) "
        "FROM node_state s JOIN test_nodes t ON t.id = s.node_ref "
        "JOIN cases c ON c.id = t.case_ref JOIN runs u ON u.id = s.since_run")
    lines = [NodeLine(*row) for row in rows]
    lines.sort(key=lambda n: (BAD_FIRST.get(n.outcome, 3), n.case_id, n.node_id, n.platform))
    return lines
