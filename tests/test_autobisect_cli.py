"""`harness autobisect plan|record` against a real history store (SQLite and PostgreSQL) and the
fake buildkite-agent (tests/bin): refusals are annotated with their reasons and recorded, a
finished bisect is recorded, the dashboard shows the line beside the newly broken cell."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.history.bisects import BisectRecord, add_records, load_records
from harness.history.store import open_store
from tests.synthetic_history import Outcome, write_history
from tests.conftest import REPO
from tests.test_history_data import real_run
from tests.synthetic_history import load_templates
from harness.report.markdown import escape

CASES = ["phi4mm_variable_crop", "qwen2_5_vl_vit_cudagraph"]
BROKEN = CASES[0]


def scenario(case_id: str, platform: str, night: int) -> Outcome:
    if case_id == BROKEN and platform == "rocm" and night >= 3:
        return Outcome("failed", "crash", "engine died")
    return Outcome()


@pytest.fixture
def nightly(tmp_path: Path, monkeypatch, new_store):
    runs = write_history(tmp_path / "results", 4, CASES, load_templates(real_run()), scenario)
    db = new_store()
    for run in runs:
        assert main(["ingest", "--db", db, str(run)]) == 0
    state = tmp_path / "buildkite"
    monkeypatch.setenv("BUILDKITE", "true")
    monkeypatch.setenv("FAKE_BUILDKITE_DIR", str(state))
    monkeypatch.setenv("PATH", f"{REPO / 'tests' / 'bin'}:{os.environ['PATH']}")
    monkeypatch.delenv("HARNESS_AUTOBISECT", raising=False)
    return db, runs[-1], state


def annotation(state: Path) -> str:
    return (state / "annotations" / "harness-autobisect-rocm.md").read_text()


def test_the_kill_switch_is_said_in_the_annotation_and_recorded(nightly, monkeypatch, capsys):
    db, run, state = nightly
    monkeypatch.setenv("HARNESS_AUTOBISECT", "off")
    assert main(["autobisect", "plan", "--db", db, "--run-dir", str(run), "--platform", "rocm",
                 "--baseline", "cuda"]) == 0
    text = annotation(state)
    assert "**Off: HARNESS\\_AUTOBISECT=off in the environment.**" in text
    assert f"**{escape(BROKEN)}** (kill-switch): auto-bisect is off" in text
    assert not (state / "uploads").exists()  # nothing uploaded
    conn = open_store(db, create=False)
    [record] = load_records(conn)
    assert (record.case_id, record.status) == (BROKEN, "refused")
    assert record.reason.startswith("kill-switch: ")
    conn.close()
    plan = json.loads((run / "autobisect-rocm.json").read_text())
    assert plan["off"] and plan["refusals"][0]["kind"] == "kill-switch"


def test_an_unreachable_registry_is_a_refusal_with_its_error(nightly):
    db, run, state = nightly
    assert main(["autobisect", "plan", "--db", db, "--run-dir", str(run), "--platform", "rocm",
                 "--no-autobisect"]) == 0
    assert "the pipeline was generated with --no-autobisect" in annotation(state)
    assert main(["autobisect", "plan", "--db", db, "--run-dir", str(run), "--platform", "rocm",
                 "--bisect-tags-from", "127.0.0.1:9/vllm/vllm-openai-rocm"]) == 0
    text = annotation(state)
    assert (f"**{escape(BROKEN)}** (registry): the tags of 127.0.0.1:9/vllm/vllm-openai-rocm "
            "are unknown") in text and "ConnectionError" in text


def test_a_finished_bisect_is_recorded_and_shown_beside_the_broken_cell(nightly, tmp_path):
    db, run, _ = nightly
    conn = open_store(db, create=False)
    add_records(conn, [BisectRecord("auto-x-1", BROKEN, "rocm", "crash", "nightly-a",
                                    "nightly-b", "running", run.name,
                                    "2026-12-03T02:00:00+00:00", max_runs=8)])
    conn.close()
    result = tmp_path / "bisect.json"
    result.write_text(json.dumps({
        "id": "auto-x-1", "status": "found", "engine_runs": 7,
        "headline": "first bad: r/x:nightly-5",
        "first_bad": {"ref": "r/x:nightly-5"}, "last_good": {"ref": "r/x:nightly-4"},
        "components": {"layer": "ROCm stack changed only", "known": True,
                       "changed": [{"component": "rocm", "before": "6.4.1", "after": "7.0.0"}]}}))
    assert main(["autobisect", "record", "--db", db, "--json", str(result)]) == 0
    conn = open_store(db, create=False)
    [record] = load_records(conn)
    assert (record.status, record.engine_runs) == ("found", 7)
    conn.close()
    out = tmp_path / "dashboard.html"
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    page = out.read_text()
    assert "auto-bisect: first bad <code>r/x:nightly-5</code>" in page
    assert "ROCm stack changed only" in page and "ROCm 6.4.1 \u2192 7.0.0" in page
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["autobisect", "record", "--db", db, "--json", str(bad)]) == 2


def test_a_quiet_night_posts_no_annotation(nightly, capsys):
    db, run, state = nightly
    first = run.parent / "build-4000"  # every case passed that night
    assert main(["autobisect", "plan", "--db", db, "--run-dir", str(first), "--platform",
                 "rocm", "--baseline", "cuda"]) == 0
    assert "No case newly broken on rocm tonight" in capsys.readouterr().out
    assert not (state / "annotations").exists()
    plan = json.loads((first / "autobisect-rocm.json").read_text())
    assert plan["bisects"] == [] and plan["refusals"] == []
