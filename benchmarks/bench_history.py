"""History store and dashboard at nightly scale: a year of 500 cases x 3 platforms (~550k results).

    .venv/bin/python benchmarks/bench_history.py [--cases 500] [--nights 365] [--real-run DIR]

Every result is derived from the committed real results (tests/data/real_run; see
harness.history.synthetic). Prints figures and ratios against baselines measured in this same
process:

- storing: the store's path (executemany, one transaction per night) against the same code with
  one execute per row, and against a transaction per result (what a naive "insert as you read"
  ingest does; run on a sample of nights and compared by rate);
- a real nightly ingest from files (read_run + store_run on one night of result files);
- the dashboard: loading, querying and rendering the year, against the same for a 30-night store.
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

from harness.history import store  # noqa: E402
from harness.history.board import build_board  # noqa: E402
from harness.history.publish import page_from_store  # noqa: E402
from harness.history.runread import RunBatch, read_run  # noqa: E402
from harness.history.synthetic import (PLATFORMS, Outcome, Place, RowFactory, case_ids,  # noqa
                                       load_templates, write_night)

DEFAULT_REAL_RUN = REPO / "tests" / "data" / "real_run"


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


class RowByRow:
    """The store's connection, with every executemany done as one execute per row: the same
    ingest, less the batching (the baseline for "batched executemany")."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, *args):
        return self.conn.execute(*args)

    def executemany(self, sql, rows):
        for row in rows:
            self.conn.execute(sql, row)


def commit_per_result(conn, batches: list[RunBatch]) -> None:
    """Baseline: "insert as you read": a transaction per result file, rows one at a time."""
    for batch in batches:
        for row in batch.rows:
            store.store_run(RowByRow(conn), RunBatch(batch.run_id, batch.run_dir, None, [row]))


def line(label: str, wall: float, key: str, extra: str = "") -> None:
    print(f"  {label:<46} {wall:7.2f}s wall {CPU[key]:7.2f}s CPU  {extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--sample-nights", type=int, default=2,
                        help="nights stored by the transaction-per-result baseline (it is slow)")
    parser.add_argument("--real-run", type=Path, default=DEFAULT_REAL_RUN)
    args = parser.parse_args()

    real = find_real_run(args.real_run)
    templates = load_templates(real)
    names = case_ids([r for r, _ in templates], args.cases)
    factory = RowFactory([r for r, _ in templates])
    scenario = YearScenario(names, args.nights)
    gen_s, batches = timed(lambda: year_batches(factory, names, args.nights, scenario), "gen")
    n_results = sum(len(b.rows) for b in batches)
    n_requests = sum(len(r.requests) for b in batches for r in b.rows)
    print(f"derived from {len(templates)} real result(s) in {real}")
    print(f"history: {args.nights} nights x {args.cases} cases x {len(PLATFORMS)} platforms = "
          f"{n_results:,} results, {n_requests:,} request rows (generated in {gen_s:.1f}s)")

    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        tmp = Path(tmp)
        # --- storing -----------------------------------------------------------------------
        conn = store.open_store(tmp / "batched.sqlite")
        batched_s, _ = timed(lambda: [store.store_run(conn, b) for b in batches], "batched")
        again_s, outcomes = timed(lambda: store.store_run(conn, batches[-1]), "again")
        assert outcomes.added == 0 and outcomes.unchanged == len(batches[-1].rows)
        conn.close()
        db_mb = (tmp / "batched.sqlite").stat().st_size / 2**20

        conn = store.open_store(tmp / "rows.sqlite")
        per_row_s, _ = timed(lambda: [store.store_run(RowByRow(conn), b) for b in batches],
                             "per_row")
        conn.close()

        sample = batches[:args.sample_nights]
        sample_n = sum(len(b.rows) for b in sample)
        conn = store.open_store(tmp / "commits.sqlite")
        commit_s, _ = timed(lambda: commit_per_result(conn, sample), "commit")
        conn.close()

        rate, commit_rate = n_results / batched_s, sample_n / commit_s
        print("\nstoring the year (results/s; their request rows go along):")
        line("store_run: executemany, a transaction a night", batched_s, "batched",
             f"{rate:9,.0f}/s  store {db_mb:.0f} MiB")
        line("baseline: execute per row, a transaction a night", per_row_s, "per_row",
             f"{n_results / per_row_s:9,.0f}/s  -> batched: {per_row_s / batched_s:.2f}x wall, "
             f"{CPU['per_row'] / CPU['batched']:.2f}x CPU")
        cpu_ratio = (CPU["commit"] / sample_n) / (CPU["batched"] / n_results)
        line(f"baseline: a transaction per result ({sample_n:,})", commit_s, "commit",
             f"{commit_rate:9,.0f}/s  -> batched: {rate / commit_rate:.0f}x wall, "
             f"{cpu_ratio:.1f}x CPU (the year: ~{n_results / commit_rate:,.0f}s)")
        line("the last night again (idempotent: 0 added)", again_s, "again")

        # --- a real nightly ingest from files -----------------------------------------------
        night_dir = write_night(tmp / "results", args.nights, names, templates, scenario,
                                logs=False)
        conn = store.open_store(tmp / "batched.sqlite")
        read_s, batch = timed(lambda: read_run(night_dir), "read")
        store_s, outcome = timed(lambda: store.store_run(conn, batch), "store")
        conn.close()
        print(f"\nnightly `harness ingest` of one night from files ({outcome.added:,} results, "
              "into the year's store):")
        line("validate and read (read_result per file)", read_s, "read",
             f"{read_s / outcome.added * 1e3:.2f} ms/file")
        line("store", store_s, "store",
             f"(365 such nightly ingests: ~{(read_s + store_s) * 365:,.0f}s in all)")

        # --- the dashboard ------------------------------------------------------------------
        out = tmp / "dashboard.html"
        conn = store.open_store(tmp / "batched.sqlite", create=False)
        nights_s, nights = timed(lambda: store.load_nights(conn), "nights")
        rows_s, rows = timed(lambda: store.load_rows(conn, nights), "rows")
        board_s, board = timed(lambda: build_board(nights, rows), "board")
        year_s, (page, _) = timed(lambda: page_from_store(conn, out), "year")
        conn.close()
        small = store.open_store(tmp / "month.sqlite")
        for b in batches[-30:]:
            store.store_run(small, b)
        month_s, (month_page, _) = timed(lambda: page_from_store(small, out), "month")
        small.close()
        cells = sum(len(l.cells) for p in board.platforms for l in p.lines)
        print(f"\ndashboard ({len(board.nights)} nights, {len(rows):,} results; grid of the last "
              f"{len(board.shown)} nights = {cells:,} cells):")
        line("load the nights and every result row", nights_s + rows_s, "rows")
        line("questions (flaky, first bad, drift, parity)", board_s, "board")
        line("whole page from the year's store", year_s, "year",
             f"page {len(page) / 2**20:.1f} MiB")
        line("baseline: whole page from a 30-night store", month_s, "month",
             f"page {len(month_page) / 2**20:.1f} MiB -> the year: {year_s / month_s:.1f}x wall, "
             f"{CPU['year'] / CPU['month']:.1f}x CPU")
        broken = sum(l.broken_now for p in board.platforms for l in p.lines)
        flaky = sum(l.flaky.flaky for p in board.platforms for l in p.lines)
        print(f"  the page shows: broken now {broken}, flaky {flaky}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
