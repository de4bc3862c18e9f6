"""The JSON summary for the dashboard, and the terminal table."""

from __future__ import annotations

import json

from harness.compare import compare_runs
from harness.report.summary import SCHEMA, summary, write_summary
from harness.report.terminal import comparison_table, run_table
from tests.test_compare_data import (PHI, QWEN, failed, make_run, real_result, second_choice,
                                     swap_token, with_request)


def test_summary_holds_verdicts_divergences_and_problems(tmp_path):
    request = real_result().requests[0]
    runner_up = with_request(request.id, swap_token(2, second_choice(request, 2)))
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: runner_up, PHI: failed()}})
    (run / "cuda" / f"{PHI}.json").write_text("not json")
    path = tmp_path / "dash" / "summary.json"
    write_summary(path, compare_runs([run]))
    data = json.loads(path.read_text())
    # ROCm's failure beside a corrupt CUDA file is ROCm's failure (red), not hidden as corrupt.
    assert data["schema"] == SCHEMA and data["exit_code"] == 1
    (pair,) = data["pairs"]
    assert pair["baseline"]["platform"] == "cuda" and pair["candidate"]["run_id"] == "run-1"
    assert pair["counts"] == {"parity": 1, "fails-baseline-untested": 1}
    cases = {c["case_id"]: c for c in pair["cases"]}
    assert cases[PHI]["baseline"]["problem"]["path"].endswith(f"cuda/{PHI}.json")
    assert "corrupt JSON" in cases[PHI]["baseline"]["problem"]["problem"]
    swapped = next(r for r in cases[QWEN]["outputs"]["requests"] if r["divergence"])
    assert swapped["ok"] and swapped["divergence"]["tolerated"]
    assert swapped["divergence"]["position"] == 2
    assert len(swapped["divergence"]["baseline_top"]) == 5
    assert not list(path.parent.glob(".*"))  # written atomically: no temp file left


def test_summary_is_plain_json_without_nan(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": None})
    text = json.dumps(summary(compare_runs([run]), generated_at="2026-01-01T00:00:00+00:00"),
                      allow_nan=False)
    assert '"generated_at": "2026-01-01T00:00:00+00:00"' in text


def test_terminal_table_keeps_run_table_and_adds_the_comparison(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": {QWEN: failed()}})
    table = comparison_table(compare_runs([run]))
    lines = table.splitlines()
    assert lines[0] == "cuda (baseline) vs rocm (candidate), run run-1"
    assert lines[1].split() == ["case", "cuda", "rocm", "verdict", "detail"]
    assert any(line.startswith(QWEN) and "regression" in line for line in lines)
    assert "summary: 1 parity, 1 regression" in table
    assert run_table([real_result()]).splitlines()[0].split()[:2] == ["job", "status"]
