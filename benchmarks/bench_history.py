"""History store and dashboard at nightly scale: a year of 500 cases x 3 platforms (547,500 results).

    .venv/bin/python benchmarks/bench_history.py [--cases 500] [--nights 365] [--no-postgres]
                                                 [--no-browser] [--real-run DIR]

Every result is derived from the committed real results (tests/data/real_run; see
tests.synthetic_history). Figures, each against its goal, and ratios against the baseline,
the implementation before issue 14 (the v1 store, page and dashboard, loaded from a worktree of
the commit pinned in benchmarks/pinned.py), measured in this same process on the same histories:

- storing the year (a transaction a night): v1 on SQLite, this store on SQLite (goal <= 10 s),
  and on PostgreSQL (a real server started here, tests/pgserver.py);
- a real nightly ingest from files (read_run + store_run on one night of result files);
- the page from the year's store: v1 against this one (goal <= 3 s, <= 2 MiB for the 30-night
  grid of 45,000 cells), on SQLite and PostgreSQL; then the page opened in headless Chromium
  (Playwright): load time, script errors (goal: none).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from harness.history import store  # noqa: E402
from harness.history.publish import page_from_store  # noqa: E402
from harness.history.runread import RunBatch, read_run  # noqa: E402
from tests.synthetic_history import (PLATFORMS, Outcome, Place, RowFactory, case_ids,  # noqa
                                       load_templates, write_night)
import pinned  # noqa: E402

STORE_GOAL_S, PAGE_GOAL_S, PAGE_GOAL_MIB = 10.0, 3.0, 2.0
DEFAULT_REAL_RUN = REPO / "tests" / "data" / "real_run"
V1_MODULES = ("store", "dashboard", "publish")  # the baseline, from pinned.COMMIT, in import order


def find_real_run(path: Path) -> Path:
    if list(path.glob("*/*.json")):
        return path
    runs = sorted({p.parent.parent for p in path.glob("*/*/*.json")})
    if not runs:
        sys.exit(f"error: {path}: no real results (<run>/<platform>/<case>.json) to derive from")
    return runs[-1]


class YearScenario:
    """Mostly passing; a few flaky cases, regressions that stay, and output changes."""

    def __init__(self, names: list[str], nights: int, seed: int = 7):
        rng = random.Random(seed)
        some = max(1, len(names) // 100)
        self.flaky = set(rng.sample(names, 2 * some))
        self.breaks = {name: rng.randrange(nights) for name in rng.sample(names, some)}
        self.drifts = {name: rng.randrange(nights) for name in rng.sample(names, some)}

    def __call__(self, case: str, platform: str, night: int) -> Outcome:
        if case in self.breaks and platform == "rocm" and night >= self.breaks[case]:
            return Outcome("failed", "check-failed", "log_absent: found 'schema_check_mode'")
        if case in self.flaky and (night * 7 + len(platform)) % 5 == 0:
            return Outcome("error", "timeout", "worker overran its deadline")
        variant = 1 if case in self.drifts and night >= self.drifts[case] else 0
        return Outcome(time_factor=1 + (len(case) * 31 + night * 17) % 20 / 100,
                       output_variant=variant)


def year_batches(factory: RowFactory, names: list[str], nights: int, scenario) -> list[RunBatch]:
    batches = []
    for night in range(nights):
        rows = [factory.row(i, Place(night, platform, accel, name),
                            scenario(name, platform, night))
                for platform, accel in PLATFORMS for i, name in enumerate(names)]
        batches.append(RunBatch(rows[0].run_id, Path(f"/nightly/{rows[0].run_id}"), None, rows))
    return batches


CPU: dict[str, float] = {}  # label -> CPU seconds, next to the wall-clock figures


def timed(fn, label: str = ""):
    """Wall-clock seconds and the value; the process's CPU seconds go to CPU[label]."""
    began, cpu = time.perf_counter(), time.process_time()
    value = fn()
    CPU[label] = time.process_time() - cpu
    return time.perf_counter() - began, value


def line(label: str, wall: float, key: str, extra: str = "") -> None:
    print(f"  {label:<46} {wall:7.2f}s wall {CPU[key]:7.2f}s CPU  {extra}")


def verdict(value: float, goal: float, unit: str) -> str:
    return f"goal <= {goal:g} {unit}: {'met' if value <= goal else 'NOT MET'}"


def store_year(conn, batches: list[RunBatch], label: str):
    wall, _ = timed(lambda: [store.store_run(conn, b) for b in batches], label)
    again, outcome = timed(lambda: store.store_run(conn, batches[-1]), label + "-again")
    assert outcome.added == 0 and outcome.unchanged == len(batches[-1].rows)
    return wall, again


def page_year(conn, out: Path, label: str):
    wall, (page, board) = timed(lambda: page_from_store(conn, out), label)
    out.write_text(page, encoding="utf-8")
    return wall, page, board


def open_in_chromium(page_path: Path) -> tuple[float, list[str], str | None, int]:
    """Seconds to the load event, page and console errors, data-js, and cells in the DOM."""
    import shutil

    from playwright import sync_api

    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("error: chromium not installed (make test installs it)")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, timeout=120_000, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}")
                    if msg.type == "error" else None)
            began = time.perf_counter()
            page.goto(page_path.as_uri(), wait_until="load")
            loaded = time.perf_counter() - began
            js = page.locator("html").get_attribute("data-js")
            cells = page.eval_on_selector_all("table.grid tbody td:not(.t)", "c => c.length")
            page.locator("table.grid tbody td.p").first.hover()
            if not page.locator("table.grid tbody td.p").first.get_attribute("title"):
                errors.append("a plain cell got no tooltip")
        finally:
            browser.close()
    return loaded, errors, js, cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--real-run", type=Path, default=DEFAULT_REAL_RUN)
    args = parser.parse_args()
    pinned.require()

    real = find_real_run(args.real_run)
    templates = load_templates(real)
    names = case_ids([r for r, _ in templates], args.cases)
    factory = RowFactory([r for r, _ in templates])
    scenario = YearScenario(names, args.nights)
    gen_s, batches = timed(lambda: year_batches(factory, names, args.nights, scenario), "gen")
    n_results = sum(len(b.rows) for b in batches)
    print(f"derived from {len(templates)} real result(s) in {real}")
    print(f"history: {args.nights} nights x {args.cases} cases x {len(PLATFORMS)} platforms = "
          f"{n_results:,} results (generated in {gen_s:.1f}s)")

    postgres = None
    if not args.no_postgres:
        from tests.pgserver import running_postgres
        postgres = running_postgres()
        server = postgres.__enter__()
    try:
        with pinned.checkout() as tree, \
                tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
            v1 = pinned.load(tree, [f"harness.history.{name}" for name in V1_MODULES])
            run(Path(tmp), args, batches, n_results, names, templates, scenario,
                server if postgres else None, v1)
    finally:
        if postgres is not None:
            postgres.__exit__(None, None, None)
    return 0


def run(tmp: Path, args, batches, n_results, names, templates, scenario, server, v1) -> None:
    store_v1, publish_v1 = v1["harness.history.store"], v1["harness.history.publish"]
    # --- storing -----------------------------------------------------------------------------
    old = store_v1.open_store(tmp / "v1.sqlite")
    v1_s, _ = timed(lambda: [store_v1.store_run(old, b) for b in batches], "v1")
    old.close()
    conn = store.open_store(tmp / "year.sqlite")
    new_s, again_s = store_year(conn, batches, "sqlite")
    conn.close()
    size = {name: sum(p.stat().st_size for p in tmp.glob(f"{name}.sqlite*"))
            / 2**20 for name in ("v1", "year")}
    print("\nstoring the year, a transaction a night (results/s):")
    line("baseline: v1 store (SQLite)", v1_s, "v1",
         f"{n_results / v1_s:9,.0f}/s  store {size['v1']:.0f} MiB")
    line("this store, SQLite", new_s, "sqlite",
         f"{n_results / new_s:9,.0f}/s  store {size['year']:.0f} MiB  -> {v1_s / new_s:.2f}x "
         f"faster; {verdict(new_s, STORE_GOAL_S, 's')}")
    line("  the last night again (0 added)", again_s, "sqlite-again")
    pg_url = None
    if server is not None:
        pg_url = server.new_database("bench")
        pg = store.open_store(pg_url)
        pg_s, pg_again = store_year(pg, batches, "pg")
        pg.close()
        line("this store, PostgreSQL 15 (local socket)", pg_s, "pg",
             f"{n_results / pg_s:9,.0f}/s  -> {v1_s / pg_s:.2f}x the v1 SQLite rate")
        line("  the last night again (0 added)", pg_again, "pg-again")

    # --- a real nightly ingest from files ----------------------------------------------------
    night_dir = write_night(tmp / "results", args.nights, names, templates, scenario,
                            logs=False)
    conn = store.open_store(tmp / "year.sqlite")
    read_s, batch = timed(lambda: read_run(night_dir), "read")
    store_s, outcome = timed(lambda: store.store_run(conn, batch), "store")
    conn.close()
    print(f"\nnightly `harness ingest` of one night from files ({outcome.added:,} results, "
          "into the year's store):")
    line("validate and read (the one reader, harness.resultview)", read_s, "read",
         f"{read_s / outcome.added * 1e3:.2f} ms/file")
    line("store (SQLite)", store_s, "store")
    old = store_v1.open_store(tmp / "v1.sqlite", create=False)
    store_v1.store_run(old, batch)  # every store holds the same nights for the pages below
    old.close()
    if pg_url is not None:
        pg = store.open_store(pg_url, create=False)
        store.store_run(pg, batch)
        pg.close()

    # --- the page ----------------------------------------------------------------------------
    out = tmp / "dashboard.html"
    old = store_v1.open_store(tmp / "v1.sqlite", create=False)
    v1_page_s, (v1_page, _) = timed(lambda: publish_v1.page_from_store(old, out), "v1-page")
    old.close()
    conn = store.open_store(tmp / "year.sqlite", create=False)
    page_s, page, board = page_year(conn, out, "page")
    conn.close()
    cells = sum(len(l.cells) for p in board.platforms for l in p.lines)
    mib, v1_mib = len(page.encode()) / 2**20, len(v1_page.encode()) / 2**20
    print(f"\nthe page ({len(board.nights)} nights stored; grid of the last {len(board.shown)} "
          f"nights = {cells:,} cells):")
    line("baseline: v1 page from the v1 store", v1_page_s, "v1-page", f"page {v1_mib:.1f} MiB")
    line("this page, SQLite", page_s, "page",
         f"page {mib:.2f} MiB  -> {v1_page_s / page_s:.1f}x faster, {v1_mib / mib:.1f}x "
         f"smaller; {verdict(page_s, PAGE_GOAL_S, 's')}; {verdict(mib, PAGE_GOAL_MIB, 'MiB')}")
    if pg_url is not None:
        pg = store.open_store(pg_url, create=False)
        pg_page_s, pg_page, _ = page_year(pg, tmp / "dashboard-pg.html", "pg-page")
        pg.close()
        same = pg_page.split("generated ", 1)[0] == page.split("generated ", 1)[0]
        line("this page, PostgreSQL", pg_page_s, "pg-page",
             f"page {len(pg_page.encode()) / 2**20:.2f} MiB, "
             f"{'the same page' if same else 'A DIFFERENT PAGE'}; "
             f"{verdict(pg_page_s, PAGE_GOAL_S, 's')}")
    broken = sum(l.broken_now for p in board.platforms for l in p.lines)
    flaky = sum(l.flaky.flaky for p in board.platforms for l in p.lines)
    print(f"  the page shows: broken now {broken}, flaky {flaky}")
    if not args.no_browser:
        loaded, errors, js, dom_cells = open_in_chromium(out)
        print(f"  headless Chromium: load event after {loaded:.2f}s, {dom_cells:,} cells in the "
              f"DOM, script ran to its end: {js == 'ok'}, errors: {errors or 'none'} "
              f"(goal: no script error: {'met' if not errors and js == 'ok' else 'NOT MET'})")


if __name__ == "__main__":
    sys.exit(main())
