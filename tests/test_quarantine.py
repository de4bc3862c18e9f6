"""The quarantine list: a quarantined candidate failure is shown, counted and linked in the
terminal table, Markdown, JUnit, JSON summary and dashboard, does not fail the build, and
expires by itself (the day after `until` the same failure is red again)."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.compare import Verdict, compare_runs
from harness.spec.quarantine import load_quarantine
from harness.spec.case import SpecError
from tests.test_compare_data import PHI, QWEN, failed, make_run

LINK = "https://github.com/vllm-project/vllm/issues/99999"
TODAY = dt.datetime.now(dt.timezone.utc).date()


def quarantine_file(tmp_path: Path, until: dt.date, platform: str = "rocm") -> Path:
    path = tmp_path / "quarantine.yaml"
    path.write_text(f"quarantine:\n  - case: {PHI}\n    platform: {platform}\n"
                    f"    until: {until.isoformat()}\n    link: {LINK}\n"
                    "    reason: ragged masks on MI300\n")
    return path


def compare_cli(tmp_path: Path, run: Path, quarantine: Path, capsys):
    out = tmp_path / "out"
    code = main(["compare", str(run), "--baseline", "cuda", "--candidate", "rocm",
                 "--quarantine", str(quarantine), "--markdown", str(out / "c.md"),
                 "--junit", str(out / "c.xml"), "--json", str(out / "c.json")])
    return code, capsys.readouterr().out, out


def test_a_quarantined_failure_is_green_shown_counted_and_linked(tmp_path, capsys):
    run = make_run(tmp_path, {"cuda": None, "rocm": {PHI: failed("'list' has no .to", "crash")}})
    code, table, out = compare_cli(tmp_path, run, quarantine_file(tmp_path, TODAY), capsys)
    assert code == 0, table
    assert "quarantined" in table and LINK in table and TODAY.isoformat() in table
    assert "regression" in table  # what it would be without the quarantine
    markdown = (out / "c.md").read_text()
    assert f"[{LINK.replace('_', '')}]({LINK})" in markdown.replace("\\", "")
    assert "quarantined" in markdown
    case = ET.parse(out / "c.xml").getroot().find(f".//testcase[@classname='harness.rocm']"
                                                   f"[@name='{PHI}']")
    assert case.find("skipped") is not None and LINK in case.find("skipped").get("message")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["quarantine:link"] == LINK and props["quarantine:until"] == TODAY.isoformat()
    summary = json.loads((out / "c.json").read_text())
    [pair] = summary["pairs"]
    assert pair["counts"]["quarantined"] == 1
    [phi] = [c for c in pair["cases"] if c["case_id"] == PHI]
    assert phi["quarantine"] == {"until": TODAY.isoformat(), "link": LINK,
                                 "reason": "ragged masks on MI300", "expired": False}


def test_the_day_after_until_the_failure_is_red_again(tmp_path, capsys):
    run = make_run(tmp_path, {"cuda": None, "rocm": {PHI: failed("'list' has no .to", "crash")}})
    yesterday = TODAY - dt.timedelta(days=1)
    code, table, out = compare_cli(tmp_path, run, quarantine_file(tmp_path, yesterday), capsys)
    assert code == 1
    assert "quarantine expired" in table and LINK in table
    assert "expired on rocm" in (out / "c.md").read_text()
    entries = load_quarantine(quarantine_file(tmp_path, TODAY))
    on = compare_runs([run], "cuda", ["rocm"], quarantine=entries, today=TODAY)
    after = compare_runs([run], "cuda", ["rocm"], quarantine=entries,
                         today=TODAY + dt.timedelta(days=1))
    assert [c.verdict for c in on.pairs[0].cases if c.case_id == PHI] == [Verdict.QUARANTINED]
    assert [c.verdict for c in after.pairs[0].cases if c.case_id == PHI] == [Verdict.REGRESSION]
    assert on.exit_code == 0 and after.exit_code == 1


def test_only_its_case_and_platform_and_only_failures_are_quarantined(tmp_path):
    run = make_run(tmp_path, {"cuda": None, "rocm": {PHI: failed(), QWEN: failed()}})
    entries = load_quarantine(quarantine_file(tmp_path, TODAY))
    comparison = compare_runs([run], "cuda", ["rocm"], quarantine=entries, today=TODAY)
    verdicts = {c.case_id: c.verdict for c in comparison.pairs[0].cases}
    assert verdicts == {PHI: Verdict.QUARANTINED, QWEN: Verdict.REGRESSION}
    other = load_quarantine(quarantine_file(tmp_path, TODAY, platform="cuda"))
    comparison = compare_runs([run], "cuda", ["rocm"], quarantine=other, today=TODAY)
    assert {c.case_id: c.verdict for c in comparison.pairs[0].cases}[PHI] is Verdict.REGRESSION
    passing = make_run(tmp_path, {"cuda": None, "rocm": None}, name="r2")
    comparison = compare_runs([passing], "cuda", ["rocm"], quarantine=entries, today=TODAY)
    assert {c.case_id: c.verdict for c in comparison.pairs[0].cases}[PHI] is Verdict.PARITY


@pytest.mark.parametrize("entry, key", [
    ("case: Bad Id", "quarantine[0].case"), ("link: javascript:alert(1)", "quarantine[0].link"),
    ("until: someday", "quarantine[0].until"), ("extra: 1", "quarantine[0].extra")])
def test_a_bad_quarantine_file_is_one_line_exit_2(tmp_path, entry, key, capsys):
    fields = {"case": PHI, "platform": "rocm", "until": "2026-12-31", "link": LINK}
    name = entry.split(":")[0]
    fields[name] = entry.split(": ", 1)[1]
    path = tmp_path / "quarantine.yaml"
    path.write_text("quarantine:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in fields.items())
                    + "\n")
    with pytest.raises(SpecError):
        load_quarantine(path)
    run = make_run(tmp_path, {"cuda": None, "rocm": None})
    assert main(["compare", str(run), "--quarantine", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and key in err


def test_the_dashboard_marks_a_quarantined_case_with_its_link(tmp_path):

    run = make_run(tmp_path, {"cuda": None, "rocm": {PHI: failed()}}, name="build-1")
    db = tmp_path / "history.sqlite"
    assert main(["ingest", "--db", str(db), str(run)]) == 0
    out = tmp_path / "dashboard.html"
    quarantine = quarantine_file(tmp_path, TODAY)
    assert main(["dashboard", "--db", str(db), "--out", str(out),
                 "--quarantine", str(quarantine)]) == 0
    page = out.read_text()
    assert f'<a class="flag quarantined" href="{LINK}"' in page
    assert f"quarantined {TODAY.isoformat()}" in page
    expired = quarantine_file(tmp_path, TODAY - dt.timedelta(days=1))
    assert main(["dashboard", "--db", str(db), "--out", str(out),
                 "--quarantine", str(expired)]) == 0
    assert "quarantine expired" in out.read_text()
