"""The history store and `harness ingest`: whole runs, idempotent, half-written runs refused.

Every test runs twice: on an SQLite file and on a real PostgreSQL server (tests/pgserver.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.history import store as store_module
from harness.history.runread import IncompleteRun, read_run
from harness.history.store import open_store, store_run, StoreError
from harness.history.storeread import load_nights, load_rows
from tests.synthetic_history import commit_of
from harness.results import read_result, write_result
from tests.conftest import REAL_RUN, REPO
from tests.test_history_data import planted_history, real_run


TABLES = ("harness_meta", "fingerprints", "runs", "cases", "results")


def dump(db: str) -> dict[str, list[tuple]]:
    """Every row of every table, in key order: equal dumps are equal stores."""
    conn = open_store(db, create=False)
    try:
        return {table: [tuple(row) for row in conn.execute(
            f"SELECT * FROM {table} ORDER BY 1")] for table in TABLES}
    finally:
        conn.close()


def count(db: str, table: str = "results") -> int:
    conn = open_store(db, create=False)
    try:
        return conn.scalar(f"SELECT count(*) FROM {table}")
    finally:
        conn.close()


@pytest.fixture
def history(tmp_path: Path, new_store):
    runs, planted = planted_history(tmp_path / "results", nights=3, count=4)
    return runs, planted, new_store()


def test_ingest_stores_identity_fingerprint_timings_and_output_digests(history, capsys):
    runs, _, db = history
    assert main(["ingest", "--db", str(db), str(runs[0])]) == 0
    assert "12 result(s) added, 0 already stored (cpu, cuda, rocm)" in capsys.readouterr().out
    source = read_result(runs[0] / "rocm" / f"{read_run(runs[0]).rows[0].case_id}.json")
    conn = open_store(db, create=False)
    row = conn.execute(
        "SELECT status, build_number, commit_sha, vllm_version, image_digest, total_s, "
        "output_digest, id FROM result_history WHERE platform = 'rocm' AND case_id = ?",
        (source.case_id,)).fetchone()
    assert row[:6] == (source.status, int(source.fingerprint["buildkite"]["build_number"]),
                       source.fingerprint["buildkite"]["commit"], source.fingerprint["vllm"],
                       source.fingerprint["image_digest"], source.timings.total_s)
    stored = dict(line.split("=") for line in conn.scalar(
        "SELECT request_digests FROM results WHERE id = ?", (row[7],)).splitlines())
    assert sorted(stored) == sorted(r.id for r in source.requests)
    for request in source.requests:
        want = (hashlib.sha256(",".join(map(str, request.token_ids)).encode()).hexdigest()
                if request.ok and request.token_ids else None)
        assert stored[request.id] == (want or "-")


def test_ingesting_the_same_run_twice_changes_nothing(history, capsys):
    runs, _, db = history
    assert main(["ingest", "--db", str(db), *map(str, runs)]) == 0
    before = dump(db)
    capsys.readouterr()
    assert main(["ingest", "--db", str(db), str(runs[1])]) == 0
    assert "0 result(s) added, 12 already stored" in capsys.readouterr().out
    assert dump(db) == before


def test_a_corrupt_result_file_rejects_the_whole_run_naming_the_file(history, capsys):
    runs, _, db = history
    broken = sorted((runs[1] / "cuda").glob("*.json"))[1]
    text = broken.read_text()
    broken.write_text(text[: len(text) // 2])  # cut mid-write, as a crash without rename would
    assert main(["ingest", "--db", str(db), *map(str, runs)]) == 2
    err = capsys.readouterr().err
    assert f"{runs[1]}: half-written or invalid run, nothing stored" in err
    assert f"{broken}: corrupt JSON at line" in err
    conn = open_store(db, create=False)
    stored_runs = {r for (r,) in conn.execute("SELECT DISTINCT run_id FROM result_history")}
    assert stored_runs == {runs[0].name, runs[2].name}  # the others are stored whole
    assert conn.execute("SELECT count(*) FROM runs WHERE run_id = ?",
                        (runs[1].name,)).fetchone()[0] == 0


def test_a_temp_file_of_an_interrupted_write_rejects_the_run(history):
    runs, _, db = history
    leftover = runs[0] / "rocm" / ".phi.json.k2j3.tmp"
    shutil.copy(sorted((runs[0] / "rocm").glob("*.json"))[0], leftover)
    with pytest.raises(IncompleteRun) as caught:
        read_run(runs[0])
    assert caught.value.problems == [
        f"{leftover}: temp file of an interrupted write (the result is incomplete)"]


def test_a_case_log_without_its_result_rejects_the_run(history):
    runs, _, _ = history
    result = sorted((runs[0] / "cpu").glob("*.json"))[0]
    result.unlink()
    with pytest.raises(IncompleteRun, match=f"{result}: missing"):
        read_run(runs[0])


def test_a_result_in_the_wrong_place_rejects_the_run(history):
    runs, _, _ = history
    path = sorted((runs[0] / "cpu").glob("*.json"))[0]
    write_result(path, read_result(path).model_copy(update={"run_id": "build-1"}))
    with pytest.raises(IncompleteRun, match="run_id 'build-1' does not match its location"):
        read_run(runs[0])


def test_an_empty_run_directory_is_refused(tmp_path, capsys, new_store):
    (tmp_path / "build-9" / "cpu").mkdir(parents=True)
    assert main(["ingest", "--db", new_store(), str(tmp_path / "build-9")]) == 2
    assert "no result files" in capsys.readouterr().err


def test_a_failed_insert_leaves_nothing_behind(history, monkeypatch):
    runs, _, db = history
    conn = open_store(db)
    batch = read_run(runs[0])
    # the last statement of the transaction fails: what went before must not stay
    monkeypatch.setattr(store_module, "RESULT_COLUMNS",
                        (*store_module.RESULT_COLUMNS[:-1], "no_such_column"))
    with pytest.raises(conn.errors):
        store_run(conn, batch)
    assert conn.scalar("SELECT count(*) FROM results") == 0
    assert conn.scalar("SELECT count(*) FROM runs") == 0
    assert conn.scalar("SELECT count(*) FROM cases") == 0


def test_a_changed_file_under_a_stored_key_is_reported_and_the_stored_one_kept(history, capsys):
    runs, _, db = history
    assert main(["ingest", "--db", str(db), str(runs[0])]) == 0
    path = sorted((runs[0] / "cuda").glob("*.json"))[0]
    write_result(path, read_result(path).model_copy(update={"status": "failed",
                                                            "failure_class": "crash"}))
    before = dump(db)
    assert main(["ingest", "--db", str(db), str(runs[0])]) == 0
    assert f"{path.stem}@cuda was stored before with other content" in capsys.readouterr().err
    assert dump(db) == before


def test_nights_are_ordered_by_start_time_then_build_number(tmp_path, new_store):
    db = new_store()
    runs, _ = planted_history(tmp_path / "results", nights=4, count=4)
    # same start for two nights: the build number decides
    for path in (runs[2]).glob("*/*.json"):
        result = read_result(path)
        write_result(path, result.model_copy(update={"started_at": read_result(
            next(runs[1].glob(f"*/{path.stem}.json"))).started_at}))
    conn = open_store(db)
    for run in reversed(runs):  # ingest order must not matter
        store_run(conn, read_run(run))
    nights = load_nights(conn)
    assert [n.run_id for n in nights] == [r.name for r in runs]
    assert [n.commit for n in nights] == [commit_of(n.build_number) for n in nights]
    rows = load_rows(conn, nights)
    assert [r.night for r in rows] == sorted(r.night for r in rows)


def test_the_store_refuses_a_file_that_is_not_a_history_store(tmp_path, capsys):
    not_db = tmp_path / "history.sqlite"
    not_db.write_text("hello")
    assert main(["ingest", "--db", str(not_db), str(real_run())]) == 2
    assert f"{not_db}: not a usable SQLite history store" in capsys.readouterr().err
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a history store"):
        open_store(other)


def test_a_database_holding_other_tables_is_not_taken_for_a_store(new_store):
    db = new_store()
    conn = open_store(db)
    conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.execute("DROP TABLE harness_meta")
    conn.close()
    with pytest.raises(StoreError, match="not a history store"):
        open_store(db)


def test_a_store_of_another_schema_version_is_refused(new_store):
    db = new_store()
    conn = open_store(db)
    conn.execute("UPDATE harness_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="history schema version 99, this harness reads 3"):
        open_store(db)


def test_an_unreachable_postgresql_server_is_named_without_its_password(tmp_path, capsys):
    url = f"postgresql://me:s3cret@/h?host={tmp_path}&port=1"
    assert main(["dashboard", "--db", url, "--out", str(tmp_path / "d.html")]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and "postgresql://me:***@" in err and "s3cret" not in err


def test_the_store_can_be_named_by_an_environment_variable(history, monkeypatch, capsys):
    runs, _, db = history
    monkeypatch.setenv("HISTORY_URL_FOR_TEST", db)
    assert main(["ingest", "--db-env", "HISTORY_URL_FOR_TEST", str(runs[0])]) == 0
    assert count(db) == 12
    monkeypatch.delenv("HISTORY_URL_FOR_TEST")
    assert main(["ingest", "--db-env", "HISTORY_URL_FOR_TEST", str(runs[1])]) == 2
    assert "$HISTORY_URL_FOR_TEST: not set" in capsys.readouterr().err


def test_concurrent_ingests_from_several_processes_lose_nothing_and_add_nothing_twice(
        tmp_path, new_store):
    """Six runs at once, two of them twice, each a separate `harness ingest` process."""
    db = new_store()
    open_store(db).close()
    runs, _ = planted_history(tmp_path / "results", nights=6, count=4)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "harness", "ingest", "--db", db]
    procs = [subprocess.Popen([*argv, str(run)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for run in [*runs, runs[0], runs[3]]]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs), outputs
    assert count(db) == 6 * 12
    assert count(db, "runs") == 6 * 3
    conn = open_store(db, create=False)
    per_run = dict(conn.execute("SELECT run_id, count(*) FROM result_history GROUP BY run_id"))
    assert per_run == {run.name: 12 for run in runs}
    twice = [out for out, _ in outputs if "0 result(s) added, 12 already stored" in out]
    assert len(twice) == 2  # whichever process came second added nothing


def test_the_committed_real_run_ingests_as_it_is(new_store):
    db = new_store()
    assert main(["ingest", "--db", db, str(real_run())]) == 0
    assert count(db) == len(list(real_run().glob("*/*.json")))
    conn = open_store(db, create=False)
    assert all(digests for (digests,) in conn.execute("SELECT request_digests FROM results"))


def test_a_version_1_sqlite_store_is_refused_saying_how_to_start_again(tmp_path):
    old = tmp_path / "history.sqlite"
    conn = sqlite3.connect(old)
    conn.executescript("CREATE TABLE runs (id INTEGER PRIMARY KEY); PRAGMA user_version = 1;")
    conn.close()
    with pytest.raises(StoreError, match=r"history schema version 1, this harness reads 3 "
                                         r"\(start a new store, or backfill one"):
        open_store(old)


def test_a_run_that_used_a_container_is_stored_with_its_side_files(tmp_path, new_store, capsys):
    """A new user's run: the real CPU run plus what a container run, a retry and a tiny-model
    build leave beside the results. Every side file is stored around, none is a missing result."""
    run = tmp_path / "real-cpu-1"
    shutil.copytree(REAL_RUN / "real-cpu-1", run)
    cpu = run / "cpu"
    side = ["container.log", "container-1.log", "worker-1.log",
            "phi4mm_variable_crop.model.log", "qwen2_5_vl_vit_cudagraph.attempt1.log",
            "qwen2_5_vl_vit_cudagraph.attempt1.probes.log"]
    for name in side:
        (cpu / name).write_text(f"written by the harness: {name}\n")
    # A retried job's first attempt keeps its own result beside the final one.
    shutil.copy(cpu / "qwen2_5_vl_vit_cudagraph.json", cpu / "qwen2_5_vl_vit_cudagraph.attempt1.json")
    db = new_store()
    assert main(["ingest", "--db", db, str(run)]) == 0, capsys.readouterr().err
    assert "2 result(s) added" in capsys.readouterr().out
    assert count(db) == 2
    (cpu / "stray_case.log").write_text("a case log whose result never came\n")
    with pytest.raises(IncompleteRun) as caught:
        read_run(run)
    assert caught.value.problems == [f"{cpu / 'stray_case.json'}: missing (its log "
                                     "stray_case.log exists)"]
