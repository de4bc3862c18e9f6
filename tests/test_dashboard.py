"""`harness dashboard` on a 30-night history derived from real results (no browser here).

The page is parsed with the stdlib HTML parser: grid size, planted marks, escaping and the
absence of anything external. test_dashboard_browser.py opens the same page in real Chromium.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.history.html import Markup, escape, href, html
from harness.history.publish import page_from_store
from harness.history.runread import RunBatch, read_run
from harness.history.store import open_store, store_run
from harness.history.dashboard import sparkline
from harness.history.page_assets import NOT_RUN, STATUS_CLASS
from tests.synthetic_history import Outcome, write_history
from tests.test_history_data import cases, templates
from tests.test_history_data import XSS, Planted, planted_history

NIGHTS, CASES, PLATFORMS = 30, 6, 3


class Page(HTMLParser):
    """Just enough of a DOM: elements with their attributes and the text inside them."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.script_bodies: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs, [t for t, _ in self.stack]))
        if tag not in ("meta", "br", "input", "polyline"):
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.texts.append(data)
        if self.stack and self.stack[-1][0] == "script":
            self.script_bodies.append(data)

    def find(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a, _ in self.elements if t == tag]

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a, _ in self.elements if t == tag and cls in a.get("class", "").split()]

    def cells(self) -> list[dict[str, str]]:
        """The grid's cells: a td in a row whose first class names a status (or "not run")."""
        names = {*STATUS_CLASS.values(), NOT_RUN}
        return [a for t, a, stack in self.elements if t == "td" and "tr" in stack
                and a.get("class", "").split()[:1] and a["class"].split()[0] in names]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, module_store) -> tuple[str, Planted, Path, list[Path], str]:
    """The page of a 30-night history, from an SQLite file and from PostgreSQL."""
    root = tmp_path_factory.mktemp("board")
    runs, planted = planted_history(root / "results", nights=NIGHTS, count=CASES)
    db, out = module_store(), root / "results" / "dashboard.html"
    (runs[-1] / "annotation.md").write_text("# last night\n", encoding="utf-8")
    assert main(["ingest", "--db", db, *map(str, runs)]) == 0
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8"), planted, out, runs, db


def test_grid_has_a_row_per_case_and_a_cell_per_night_on_every_platform(rendered):
    text, _, _, _, *_ = rendered
    page = Page(text)
    grids = page.with_class("table", "grid")
    assert [g["data-platform"] for g in grids] == ["cpu", "cuda", "rocm"]
    rows = page.with_class("tr", "line")
    assert len(rows) == CASES * PLATFORMS
    assert len(page.cells()) == CASES * PLATFORMS * NIGHTS
    assert len(page.with_class("th", "night")) == NIGHTS * PLATFORMS


def test_the_planted_regression_is_marked_at_its_first_bad_night(rendered):
    text, planted, _, runs, *_ = rendered
    page = Page(text)
    first_bad = page.with_class("td", "fb")
    assert len(first_bad) == 1
    cell = first_bad[0]
    assert f"{planted.regressed} on rocm, {runs[Planted.BREAK].name}" in cell["title"]
    assert "f" in cell["class"].split()
    # the row header and the summary link to that cell
    assert len([a for a in page.find("a") if a.get("href") == f"#{cell['id']}"]) == 2
    assert f"last good #{4000 + Planted.BREAK - 1}" in text


def test_flaky_and_output_drift_are_marked(rendered):
    text, planted, _, _, *_ = rendered
    page = Page(text)
    problem_rows = {r["data-case"] for r in page.with_class("tr", "problem")}
    assert problem_rows == {planted.regressed, planted.flaky, planted.drifted}
    assert len(page.with_class("td", "dr")) == 1
    assert re.search(rf"<b>{planted.drifted}</b> <span class=\"flag drift\">output changed"
                     rf"</span> at #{4000 + Planted.DRIFT}", text)
    flaky_rows = [line for line in text.splitlines()
                  if f'data-case="{planted.flaky}"' in line]
    assert len(flaky_rows) == PLATFORMS and all("flag flaky" in line for line in flaky_rows)


def test_rocm_vs_cuda_parity_names_the_one_sided_failure(rendered):
    text, planted, _, _, *_ = rendered
    assert 'id="parity-rocm-cuda"' in text
    assert f"bad on rocm only: {planted.regressed}; bad on cuda only: none" in text


def test_logs_and_annotations_link_to_files_beside_the_results(rendered, tmp_path):
    text, planted, out, runs, *_ = rendered
    page = Page(text)
    links = {a["href"] for a in page.find("a")}
    assert f"{runs[-1].name}/rocm/{planted.regressed}.log" in links
    assert f"{runs[-1].name}/rocm/worker.log" in links
    assert f"{runs[-1].name}/annotation.md" in links
    assert f"{runs[-2].name}/annotation.md" not in links  # only where there is one
    for link in links:
        if not link.startswith(("#", "https://")):
            assert (out.parent / link).resolve().is_relative_to(out.parent.resolve())


def test_the_page_is_self_contained(rendered):
    text, _, _, _, *_ = rendered
    page = Page(text)
    assert not page.find("link") and not page.find("img") and not page.find("iframe")
    assert all("src" not in attrs for tag, attrs, _ in page.elements)
    assert len(page.find("script")) == 1
    assert "@import" not in text and "url(" not in text
    # the only absolute URLs are Buildkite build links from the results
    assert set(re.findall(r"https?://[^/\"]+", text)) <= {"https://buildkite.com",
                                                          "http://www.w3.org"}


def test_results_and_log_lines_are_escaped(tmp_path, new_store):
    """A case id and a log line holding a script tag render as text, never as markup."""
    runs, _ = planted_history(tmp_path / "results", nights=2, count=4)
    batch = read_run(runs[-1])
    evil = [dataclasses.replace(row, case_id=f"case-{XSS}", job_id=f"case-{XSS}@{row.platform}",
                                status="failed", failure_class="check-failed",
                                message=f"found {XSS}", log_tail=f"INFO ok\nERROR {XSS}")
            for row in batch.rows[:1]]
    conn = open_store(new_store())
    store_run(conn, read_run(runs[0]))
    store_run(conn, RunBatch(batch.run_id, batch.run_dir, batch.annotation, evil))
    text, _ = page_from_store(conn, tmp_path / "dashboard.html")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f'data-case="case-{escaped}"' in text
    assert f"ERROR {escaped}" in text  # the log line, in the summary's log tail
    assert f"found {escaped}" in text
    assert text.count("<script") == 1 and XSS not in text


def test_template_helper_escapes_by_default():
    assert html("<b>{}</b>", "<i>&\"'") == "<b>&lt;i&gt;&amp;&quot;&#x27;</b>"
    assert html("<p>{}</p>", Markup("<i>ok</i>")) == "<p><i>ok</i></p>"
    assert html("{x:.1f}", x=2.25) == "2.2"
    assert escape(escape("<")) == "&lt;"  # Markup is not escaped twice
    assert href("javascript:alert(1)").startswith("javascript%3A")
    assert href("ftp://host/x") == "#"
    assert href("build-1/cpu/a b.log") == "build-1/cpu/a%20b.log"


def test_sparkline_has_gaps_where_nights_have_no_timing():
    svg = sparkline([1.0, 2.0, None, 4.0, 2.0])
    assert svg.count("<polyline") == 2
    assert sparkline([None, 3.0]) == ""


def test_dashboard_without_a_store_says_so(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    assert main(["dashboard", "--db", str(missing), "--out", str(tmp_path / "d.html")]) == 2
    assert f"{missing}: history store missing" in capsys.readouterr().err
    assert not (tmp_path / "d.html").exists()


def test_a_first_bad_run_before_the_shown_nights_links_to_its_log(rendered, tmp_path):
    _, planted, out, runs, db = rendered
    narrow = out.parent / "narrow.html"
    assert main(["dashboard", "--db", db, "--out", str(narrow),
                 "--nights", "4"]) == 0
    text = narrow.read_text(encoding="utf-8")
    page = Page(text)
    assert len(page.cells()) == CASES * PLATFORMS * 4
    assert not page.with_class("td", "fb")  # the first bad night is not among the four
    since = [a for a in page.find("a") if "flag" in a.get("class", "")
             and a["href"] == f"{runs[Planted.BREAK].name}/rocm/{planted.regressed}.log"]
    assert since, "the first-bad link should lead to that night's log"
    # the output change happened before the four nights: no longer a problem row
    problem_rows = {r["data-case"] for r in page.with_class("tr", "problem")}
    assert planted.drifted not in problem_rows


def test_an_empty_store_renders_a_page_that_says_so(tmp_path, new_store):
    db = new_store()
    open_store(db).close()
    out = tmp_path / "d.html"
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    assert "no runs stored" in out.read_text(encoding="utf-8")


def test_plain_cells_are_their_status_alone_and_bad_cells_carry_title_and_log(rendered):
    """Most cells pass: they are written as a class only (the script adds tooltip and link)."""
    text, planted, _, runs, *_ = rendered
    page = Page(text)
    cells = page.cells()
    plain = [c for c in cells if c["class"] in ("p", "xf", "s", "n")]
    assert len(plain) > len(cells) * 0.8 and all("title" not in c for c in plain)
    bad = [c for c in cells if c["class"].split()[0] in ("f", "e", "xp")]
    assert bad and all(" on " in c["title"] for c in bad)
    heads = page.with_class("th", "night")
    assert heads[-1]["data-run"] == runs[-1].name and heads[0]["data-dir"] == f"{runs[0].name}/cpu"
    times = [r["data-t"].split(" ") for r in page.with_class("tr", "line")]
    assert all(len(t) == NIGHTS for t in times)
    assert all(float(v) > 0 for t in times for v in t if v != "-")


def test_median_and_p90_job_duration_per_night_per_platform(rendered):
    import json
    import math
    import statistics

    text, _, _, runs, *_ = rendered
    page = Page(text)
    assert [t["id"] for t in page.with_class("table", "durations")] == [
        "durations-cpu", "durations-cuda", "durations-rocm"]
    section = text[text.index('id="durations-cuda"'):]
    section = section[:section.index("</table>")]
    for night, run in ((-1, runs[-1]), (-3, runs[-3])):
        totals = sorted(json.loads(p.read_text())["timings"]["total_s"]
                        for p in (run / "cuda").glob("*.json"))
        p90 = totals[math.ceil(0.9 * len(totals)) - 1]
        median_row = re.search(r"<tr><th>median</th>(.*?)</tr>", section).group(1)
        p90_row = re.search(r"<tr><th>p90</th>(.*?)</tr>", section).group(1)
        assert re.findall(r"<td>([^<]*)</td>", median_row)[night] == \
            f"{statistics.median(totals):.1f}s"
        assert re.findall(r"<td>([^<]*)</td>", p90_row)[night] == f"{p90:.1f}s"


def test_a_case_broken_since_before_the_loaded_window_still_names_its_first_bad_build(
        tmp_path, new_store, capsys):
    """45 nights, 2 shown: only the last 30 are read whole; the break at night 5 is older."""
    names = cases(2)
    broken = names[1]

    def scenario(case, platform, night):
        return (Outcome("failed", "check-failed", "broken") if case == broken and night >= 5
                else Outcome())

    runs = write_history(tmp_path / "results", 45, names, templates(), scenario,
                         platforms=[("rocm", "rocm")], logs=False)
    db, out = new_store(), tmp_path / "results" / "d.html"
    assert main(["ingest", "--db", db, *map(str, runs)]) == 0
    assert main(["dashboard", "--db", db, "--out", str(out), "--nights", "2"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "since #4005; last good #4004" in text
    assert len(Page(text).cells()) == 2 * 2
