"""The dashboard in real headless Chromium (Debian's `chromium`), on a 30-night history.

Two drivers: Chromium's own CLI (--dump-dom, --screenshot: needs nothing but chromium), and
Playwright (catches page errors and console errors, and drives the filter). Both assert on the
DOM after scripts ran and save a screenshot under results/.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.history.page_assets import NOT_RUN, STATUS_CLASS
from tests.conftest import REPO, require_tools
from tests.test_history_data import Planted, planted_history

pytestmark = pytest.mark.browser

NIGHTS, CASES, PLATFORMS = 30, 6, 3
SCREENSHOT = REPO / "results" / "dashboard-test.png"
CLI_SCREENSHOT = REPO / "results" / "dashboard-test-cli.png"
TIMEOUT_S = 90
QUIET_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]


def chromium() -> str:
    require_tools("chromium")
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def page_file(tmp_path_factory, module_store) -> tuple[Path, Planted, list[Path]]:
    root = tmp_path_factory.mktemp("browser")
    runs, planted = planted_history(root / "results", nights=NIGHTS, count=CASES)
    db, out = module_store(), root / "results" / "dashboard.html"
    assert main(["ingest", "--db", db, *map(str, runs)]) == 0
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    return out, planted, runs


class Dom(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]

    def cells(self) -> list[dict[str, str]]:
        names = {*STATUS_CLASS.values(), NOT_RUN}
        return [a for t, a in self.elements if t == "td"
                and a.get("class", "").split()[:1] and a["class"].split()[0] in names]


def test_chromium_cli_renders_the_grid_and_runs_the_script(page_file, tmp_path):
    out, planted, runs = page_file
    exe = chromium()
    base = [exe, *QUIET_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dumped = subprocess.run([*base, "--dump-dom", out.as_uri()], capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Dom(dumped.stdout)
    root = next(attrs for tag, attrs in dom.elements if tag == "html")
    assert root.get("data-js") == "ok", "the inline script did not run to its end"
    assert len(dom.with_class("table", "grid")) == PLATFORMS
    assert len(dom.with_class("tr", "line")) == CASES * PLATFORMS
    assert len(dom.cells()) == CASES * PLATFORMS * NIGHTS
    # the script drew a sparkline in every row's time cell
    assert len([a for t, a in dom.elements if t == "svg" and a.get("class") == "spark"]) >= \
        CASES * PLATFORMS
    (first_bad,) = dom.with_class("td", "fb")
    assert f"{planted.regressed} on rocm, {runs[Planted.BREAK].name}" in first_bad["title"]

    CLI_SCREENSHOT.parent.mkdir(exist_ok=True)
    CLI_SCREENSHOT.unlink(missing_ok=True)
    shot = subprocess.run([*base, f"--screenshot={CLI_SCREENSHOT}", "--window-size=1600,1400",
                           "--hide-scrollbars", out.as_uri()], capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert CLI_SCREENSHOT.stat().st_size > 10_000


def test_playwright_sees_no_script_errors_and_the_planted_regression(page_file):
    from playwright import sync_api  # the test extra; it drives the system chromium
    out, planted, runs = page_file
    exe = chromium()
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=QUIET_FLAGS[1:],
                                     timeout=TIMEOUT_S * 1000)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_S * 1000)
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}")
                    if msg.type == "error" else None)
            page.on("request", lambda request: requests.append(request.url))
            page.goto(out.as_uri(), wait_until="load")

            grids = page.eval_on_selector_all(
                "table.grid", "ts => ts.map(t => [t.dataset.platform, "
                "t.querySelectorAll('tbody tr').length, "
                "t.querySelectorAll('tbody tr')[0].querySelectorAll('td:not(.t)').length])")
            assert grids == [[p, CASES, NIGHTS] for p in ("cpu", "cuda", "rocm")]
            mark = page.locator("td.fb")
            assert mark.count() == 1
            assert mark.evaluate("td => td.closest('table').dataset.platform") == "rocm"
            assert mark.evaluate("td => td.closest('tr').dataset.case") == planted.regressed
            column = mark.evaluate("td => td.cellIndex - 2")  # after the name and the time
            assert column == Planted.BREAK
            # a plain cell gets its tooltip when pointed at, from its row and column
            plain = page.locator(f'table[data-platform="cuda"] tr[data-case="{planted.regressed}"]'
                                 " td.p").last
            plain.hover()
            assert plain.get_attribute("title").startswith(
                f"{planted.regressed} on cuda, {runs[-1].name} (#{4000 + NIGHTS - 1}, commit ")
            assert page.locator("svg.spark").count() >= CASES * PLATFORMS
            assert page.locator("html").get_attribute("data-js") == "ok"

            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # the filter: only broken, flaky or changed rows stay visible
            page.check("#filter-problems")
            visible = page.eval_on_selector_all(
                "tr.line", "rs => rs.filter(r => r.offsetParent !== null)"
                ".map(r => r.dataset.case)")
            assert set(visible) == {planted.regressed, planted.flaky, planted.drifted}
            page.fill("#filter-text", planted.regressed)  # and, of those, the names holding it
            assert page.locator("tr.line:not(.hidden)").count() == len(
                [case for case in visible if planted.regressed in case])
        finally:
            browser.close()
    assert errors == []
    assert requests == [out.as_uri()], "the page fetched something besides itself"
