"""Triage over a synthetic year in the history store (SQLite and PostgreSQL) with planted
patterns: a node that fails three nights running while others pass, a signature on ROCm only
from night N, one shared with CUDA, one new tonight; the dashboard and the annotation show the
table; stores of schema 2 are migrated."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.history.runread import RunBatch
from harness.history.store import SCHEMA_VERSION, open_store, store_run
from tests.synthetic_history import PLATFORMS, Outcome, Place, node_for
from harness.history.publish import page_from_store
from harness.signatures.triage import triage
from harness.signatures.triage_read import from_store
from tests.test_history_data import cases, factory

NIGHTS = 365
BAD_NODE = "rocm-node-bad"
HANG = "HW Exception by GPU node-3 (Agent handle: 0x5a1c2e0) reason :GPU Hang"
AITER = "[aiter] failed jit build [module_moe_ck2stages]"
RAGGED = "AttributeError: 'list' object has no attribute 'to'"
OOM = "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2.00 GiB"
NAMES = cases(8)
NODE_CASE, ROCM_CASE, SHARED_CASE, NEW_CASE = NAMES[:4]
NODE_NIGHTS, ROCM_FROM, SHARED_FROM = (100, 101, 102), 300, 200


def scenario(case: str, platform: str, night: int) -> Outcome:
    if case == NODE_CASE and platform == "rocm" and night in NODE_NIGHTS:
        return Outcome("error", "gpu-hang", "worker aborted (exit 134): GPU hang", log_line=HANG,
                       node=BAD_NODE)
    if case == ROCM_CASE and platform == "rocm" and night >= ROCM_FROM:
        return Outcome("failed", "crash", "offline engine failed during startup", log_line=AITER)
    if case == SHARED_CASE and platform in ("rocm", "cuda") and night >= SHARED_FROM:
        return Outcome("failed", "crash", "offline engine failed during generate",
                       log_line=RAGGED)
    if case == NEW_CASE and platform == "rocm" and night == NIGHTS - 1:
        return Outcome("error", "oom", "offline engine failed during startup", log_line=OOM)
    return Outcome()


def year_batches(nights: int = NIGHTS) -> list[RunBatch]:
    rows_of = factory()
    batches = []
    for night in range(nights):
        rows = [rows_of.row(i, Place(night, platform, accel, name), scenario(name, platform, night))
                for platform, accel in PLATFORMS for i, name in enumerate(NAMES)]
        batches.append(RunBatch(rows[0].run_id, Path(f"/nightly/{rows[0].run_id}"), None, rows))
    return batches


@pytest.fixture(scope="module")
def year_store(module_store):
    target = module_store()
    conn = open_store(target)
    try:
        for batch in year_batches():
            store_run(conn, batch)
    finally:
        conn.close()
    return target


def run_id(night: int) -> str:
    return Place(night, "rocm", "rocm", NAMES[0]).run_id


def test_triage_names_each_planted_pattern(year_store):
    conn = open_store(year_store, create=False)
    try:
        began = time.monotonic()
        groups = {g.rule: g for g in triage(*from_store(conn))}
        elapsed = time.monotonic() - began
    finally:
        conn.close()
    assert set(groups) == {"rocm-gpu-hang", "aiter-jit-build-failed", "phi4mm-ragged-image-mask",
                           "gpu-out-of-memory"}
    hang = groups["rocm-gpu-hang"]
    assert hang.node_local == BAD_NODE and hang.verdict == f"node problem: {BAD_NODE}"
    assert (hang.nights, hang.jobs, hang.nodes) == (3, 3, [BAD_NODE])
    assert (hang.first_seen, hang.last_seen) == (run_id(100), run_id(102))
    aiter = groups["aiter-jit-build-failed"]
    assert aiter.vendor == "ROCm only" and aiter.node_local is None
    assert aiter.first_seen == run_id(ROCM_FROM) and aiter.nights == NIGHTS - ROCM_FROM
    assert aiter.key == "module=module_moe_ck2stages" and len(aiter.nodes) > 1
    shared = groups["phi4mm-ragged-image-mask"]
    assert shared.vendor == "shared with CUDA" and shared.platforms == ["cuda", "rocm"]
    assert shared.first_seen == run_id(SHARED_FROM) and not shared.new_tonight
    new = groups["gpu-out-of-memory"]
    assert new.new_tonight and new.verdict == "new tonight" and new.nights == 1
    assert not any(g.new_tonight for g in groups.values() if g is not new)
    print(f"triage over {NIGHTS} nights: {elapsed:.2f} s")


def test_harness_triage_prints_table_markdown_and_json(year_store, capsys, tmp_path):
    assert main(["triage", "--db", year_store]) == 0
    table = capsys.readouterr().out
    assert f"node problem: {BAD_NODE}" in table and "shared with CUDA" in table
    assert main(["triage", "--db", year_store, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("### Failure signatures")
    assert ("| [rocm-gpu-hang \\[reason=GPU Hang\\]]"
            "(https://github.com/vllm-project/vllm/issues/27499) |") in md  # its known issue
    out = tmp_path / "triage.json"
    assert main(["triage", "--db", year_store, "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text())["signatures"]
    assert {d["rule"]: d["verdict"] for d in data}["gpu-out-of-memory"] == "new tonight"
    assert main(["triage", "--db", year_store, "--nights", "30"]) == 0
    recent = capsys.readouterr().out
    assert "rocm-gpu-hang" not in recent and "aiter-jit-build-failed" in recent


def test_the_dashboard_shows_the_signature_table(year_store, tmp_path):
    conn = open_store(year_store, create=False)
    try:
        text, _ = page_from_store(conn, tmp_path / "d.html", shown_nights=14)
    finally:
        conn.close()
    section = text[text.index('<section id="signatures">'):]
    section = section[:section.index("</section>")]
    assert "aiter-jit-build-failed" in section and "ROCm only" in section
    assert "shared with CUDA" in section and "new tonight" in section
    assert "rocm-gpu-hang" not in section  # nights 100-102 are not among the last 14


def test_a_schema_2_store_is_migrated_and_its_failures_signed(new_store):
    target = new_store()
    conn = open_store(target)
    try:
        for batch in year_batches(3):
            store_run(conn, batch)
        # make it what a schema-2 store was: no signatures or bisects table, version 2
        with conn.write():
            conn.execute("DROP TABLE signatures")
            conn.execute("DROP TABLE bisects")  # schema 3 brought both
            conn.execute("UPDATE harness_meta SET value = '2' WHERE key = 'schema_version'")
            conn.execute("UPDATE results SET log_tail = ?, status = 'error' WHERE id = 1",
                         (HANG,))
    finally:
        conn.close()
    conn = open_store(target, create=False)
    try:
        assert conn.scalar("SELECT value FROM harness_meta WHERE key = 'schema_version'") \
            == str(SCHEMA_VERSION)
        rows = list(conn.execute("SELECT result_ref, rule, sig_key, node FROM signatures"))
        assert rows == [(1, "rocm-gpu-hang", "reason=GPU Hang", None)]
    finally:
        conn.close()


def test_nodes_rotate_so_a_healthy_case_passes_on_several():
    assert len({node_for("rocm", NODE_CASE, n) for n in range(8)}) > 1


def test_the_compare_annotation_shows_the_signature_table(tmp_path):
    from harness.compare import compare_runs
    from harness.report.markdown import render_markdown
    from harness.results import Signature, Where
    from tests.test_compare_data import PHI, make_run

    def crashed(node: str, accelerator: str):
        sig = Signature(rule="phi4mm-ragged-image-mask", failure_class="crash",
                        line=RAGGED, line_no=40, source="phi4mm_variable_crop.log",
                        where=Where(hostname=node))
        return lambda r: r.model_copy(update={
            "status": "failed", "failure_class": "crash", "message": "offline engine failed",
            "signature": sig, "fingerprint": {**r.fingerprint, "accelerator": accelerator}})

    run = make_run(tmp_path, {"cuda": {PHI: crashed("h100-1", "cuda")},
                              "rocm": {PHI: crashed("mi300-1", "rocm")}})
    text = render_markdown(compare_runs([run]))
    table = text[text.index("### Failure signatures"):]
    assert "| phi4mm-ragged-image-mask | crash |" in table
    assert "| cuda, rocm | h100-1, mi300-1 | shared with CUDA |" in table


def test_harness_triage_over_run_directories_names_a_node_problem(tmp_path, capsys):
    from harness.results import Signature, Where
    from tests.test_compare_data import PHI, make_run

    def on(node: str, hang: bool, night: int):
        def apply(r):
            fp = {**r.fingerprint, "accelerator": "rocm", "hostname": node}
            update = {"fingerprint": fp, "started_at": f"2026-01-0{night}T02:00:00+00:00"}
            if hang:
                update.update(status="error", failure_class="gpu-hang", signature=Signature(
                    rule="rocm-gpu-hang", failure_class="gpu-hang", key="reason=GPU Hang",
                    line=HANG, line_no=7, source="phi4mm_variable_crop.log",
                    where=Where(hostname=node)))
            return r.model_copy(update=update)
        return apply

    runs = [make_run(tmp_path, {"rocm": {PHI: on(node, hang, night)}}, name=f"night-{night}")
            for night, node, hang in ((1, "mi300-2", False), (2, "mi300-7", True),
                                      (3, "mi300-7", True), (4, "mi300-3", False))]
    assert main(["triage", *map(str, runs), "--format", "json"]) == 0
    [group] = json.loads(capsys.readouterr().out)["signatures"]
    assert (group["rule"], group["nights"], group["first_seen"], group["last_seen"]) == (
        "rocm-gpu-hang", 2, "night-2", "night-3")
    assert group["verdict"] == "node problem: mi300-7" and not group["new_tonight"]
    assert main(["triage", str(tmp_path / "missing")]) == 2
