"""Bisect records in the history store (harness/history/bisects.py), on SQLite and PostgreSQL,
and the migration of a version 2 store (before bisect records) to version 3."""

from __future__ import annotations

import pytest

from harness.commands.cli import main
from harness.history import store as store_module
from harness.history.bisects import BisectRecord, add_records, finish, load_records
from harness.history.store import SCHEMA, SCHEMA_VERSION, open_store
from tests.test_history_data import real_run


def record(bisect_id="b1", status="running", case="phi4mm_variable_crop", **changes):
    fields = dict(bisect_id=bisect_id, case_id=case, platform="rocm", signature="crash",
                  good_ref="nightly-aaaa", bad_ref="nightly-bbbb", status=status,
                  run_id="build-2", planned_at="2026-12-02T03:00:00+00:00", max_runs=8)
    fields.update(changes)
    return BisectRecord(**fields)


def version_2_store(target) -> None:
    """A store exactly as the harness before bisect records created it, with a night in it."""
    conn = store_module.connect(target, create=True)
    conn.setup()
    with conn.write():
        for statement in filter(str.strip, SCHEMA.format(ID=conn.ID, REAL=conn.REAL).split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO harness_meta (key, value) VALUES (?, ?)",
                     ("schema_version", "2"))
    conn.close()


def test_a_version_2_store_is_migrated_keeping_its_nights(new_store):
    db = new_store()
    version_2_store(db)
    assert main(["ingest", "--db", db, str(real_run())]) == 0  # opens (and migrates) it
    conn = open_store(db, create=False)
    assert conn.scalar("SELECT value FROM harness_meta WHERE key = 'schema_version'") \
        == str(SCHEMA_VERSION) == "3"
    assert conn.scalar("SELECT count(*) FROM results") > 0
    assert add_records(conn, [record()]) == 1
    conn.close()
    again = open_store(db, create=False)  # a migrated store opens as it is
    assert [r.bisect_id for r in load_records(again)] == ["b1"]
    again.close()


def test_records_are_added_once_finished_and_read_back(new_store):
    conn = open_store(new_store())
    assert add_records(conn, [record(), record("r1", "refused", reason="budget spent")]) == 2
    assert add_records(conn, [record(status="found")]) == 0  # same id: kept as stored
    assert finish(conn, "b1", "found", "2026-12-02T04:00:00+00:00", 7, "first bad: x", "{}")
    assert not finish(conn, "nope", "found", "t", 1, "", "{}")
    with pytest.raises(ValueError, match="found, nothing or open"):
        finish(conn, "b1", "refused", "t", 1, "", "{}")
    got = {r.bisect_id: r for r in load_records(conn)}
    assert (got["b1"].status, got["b1"].engine_runs, got["b1"].reason) == ("found", 7,
                                                                           "first bad: x")
    assert got["r1"].reason == "budget spent"
    assert load_records(conn, ["other_case"]) == [] and len(load_records(conn, [])) == 0
    conn.close()
