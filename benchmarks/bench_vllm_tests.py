"""vllm_tests at the scale of AMD's nightly: 75,000 upstream test nodes per side.

    .venv/bin/python benchmarks/bench_vllm_tests.py [--nodes 75000] [--cases 50]

Two synthetic nights of result files (``cuda`` the baseline, ``rocm`` the candidate; the nodes
spread over ``--cases`` vllm_tests results per side: ~97% pass, skips, failures; night 2 breaks
a few hundred nodes on rocm, fixes some, skips some more), then, each against its goal and
against a naive baseline measured in this same process on the same files:

- the per-node diff of one night (``harness compare``'s own path: reading the result files and
  diffing every node): goal <= 2 s. Naive: every file read by pydantic (``read_result``, the
  authority) and nodes compared as ``model_dump()`` dicts keyed by (node id, outcome, exception).
- ingesting night 2 into a store that holds night 1 (read_run + store_run, SQLite): goal <= 5 s,
  and the rows it adds. Naive: one row per node per platform per night in a table with an index
  (150,000 rows a night at this scale).

Prints the figures and the ratios; exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.compare import compare_runs  # noqa: E402
from harness.history.runread import read_run  # noqa: E402
from harness.history.store import open_store, store_run  # noqa: E402
from harness.results import cycle_collection_paused, iter_result_files, read_result  # noqa: E402

DIFF_GOAL_S, INGEST_GOAL_S = 2.0, 5.0
AREAS = ("kernels/attention", "kernels/moe", "models/multimodal", "v1/engine", "entrypoints",
         "compile", "quantization", "distributed", "samplers", "lora")
EXCEPTIONS = ("AssertionError", "RuntimeError", "torch.OutOfMemoryError", "ValueError")


def node_ids(n: int, cases: int) -> list[list[str]]:
    per = n // cases
    out = []
    for c in range(cases):
        area = AREAS[c % len(AREAS)]
        out.append([f"tests/{area}/test_mod{c}_{i // 50}.py::test_{i % 50}[cfg{i % 7}-{i}]"
                    for i in range(per)])
    return out


def state(rng: random.Random, night: int, platform: str, index: int) -> tuple[str, str, str]:
    """(outcome, exception, text) of one node on one side and night; deterministic."""
    roll = (index * 2654435761) % 1000
    if roll < 20:
        return "skipped", "", "requires CUDA" if platform == "rocm" or roll < 10 else "slow"
    if roll < 30 and platform == "rocm":
        return "skipped", "", "not supported on ROCm"
    if roll < 36:
        exc = EXCEPTIONS[index % len(EXCEPTIONS)]
        return "failed", exc, f"{exc}: known failure {index % 13}"
    if platform == "rocm" and night == 2 and roll < 40:
        exc = EXCEPTIONS[(index + 1) % len(EXCEPTIONS)]
        return "failed", exc, f"{exc}: broke on night 2"
    if platform == "rocm" and night == 2 and roll < 44:
        return "skipped", "", "not supported on ROCm"
    return "passed", "", ""


def write_night(root: Path, night: int, ids: list[list[str]]) -> Path:
    run = root / f"night-{night}"
    rng = random.Random(night)
    index = 0
    for platform in ("cuda", "rocm"):
        (run / platform).mkdir(parents=True)
        index = 0
        for c, nodes in enumerate(ids):
            tests, failing = [], 0
            for nid in nodes:
                outcome, exc, text = state(rng, night, platform, index)
                index += 1
                failing += outcome == "failed"
                tests.append({"node_id": nid, "outcome": outcome, "duration_s": 0.25,
                              "exception": exc, "message": text if exc else "",
                              "skip_reason": "" if exc else text})
            case_id = f"upstream_{c:03d}"
            result = {"schema_version": 1, "run_id": run.name, "job_id": f"{case_id}@{platform}",
                      "case_id": case_id, "platform": platform,
                      "status": "failed" if failing else "passed",
                      "failure_class": "check-failed" if failing else None,
                      "message": f"{failing} failed", "engine": {"mode": "vllm_tests"},
                      "fingerprint": {"platform": platform, "vllm": "0.32.0",
                                      "accelerator": platform},
                      "started_at": f"2026-12-0{night}T01:00:00+00:00",
                      "finished_at": f"2026-12-0{night}T02:00:00+00:00", "tests": tests}
            (run / platform / f"{case_id}.json").write_text(json.dumps(result))
    return run


def timed(fn, *args):
    began = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - began, out


def ours_diff(run: Path):
    comparison = compare_runs([run], "cuda", ["rocm"])
    counts: dict[str, int] = {}
    for case in comparison.pairs[0].cases:
        for verdict, n in case.nodes.counts().items():
            counts[verdict] = counts.get(verdict, 0) + n
    return counts


def naive_diff(run: Path):
    with cycle_collection_paused():
        sides = {p: {} for p in ("cuda", "rocm")}
        for path in iter_result_files(run):
            sides[path.parent.name][path.stem] = read_result(path)
        counts: dict[str, int] = {}
        for case_id, b in sides["cuda"].items():
            c = sides["rocm"][case_id]
            b_keys = {(d["node_id"], d["outcome"], d["exception"]): d
                      for d in (_dump(t) for t in b.tests)}
            c_keys = {(d["node_id"], d["outcome"], d["exception"]): d
                      for d in (_dump(t) for t in c.tests)}
            same = b_keys.keys() & c_keys.keys()
            counts["same"] = counts.get("same", 0) + len(same)
            b_by = {k[0]: k for k in b_keys.keys() - same}
            for key in c_keys.keys() - same:
                old = b_by.get(key[0])
                kind = "changed" if old else "new"
                counts[kind] = counts.get(kind, 0) + 1
        return counts


def _dump(node) -> dict:
    return {"node_id": node.node_id, "outcome": node.outcome, "exception": node.exception,
            "message": node.message, "skip_reason": node.skip_reason}


def ours_ingest(db: Path, run: Path) -> int:
    conn = open_store(db)
    try:
        return store_run(conn, read_run(run)).added
    finally:
        conn.close()


NAIVE_SCHEMA = """CREATE TABLE IF NOT EXISTS node_results (run_id TEXT, platform TEXT, case_id TEXT,
    node_id TEXT, outcome TEXT, exception TEXT, message TEXT, duration_s REAL);
CREATE INDEX IF NOT EXISTS node_results_by_node ON node_results (node_id, platform)"""


def naive_ingest(db: Path, run: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        conn.executescript(NAIVE_SCHEMA)
        rows = []
        for path in iter_result_files(run):
            data = json.loads(path.read_bytes())
            rows += [(data["run_id"], data["platform"], data["case_id"], t["node_id"],
                      t["outcome"], t["exception"], t["message"] or t["skip_reason"],
                      t["duration_s"]) for t in data["tests"]]
        with conn:
            conn.executemany("INSERT INTO node_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)
    finally:
        conn.close()


def rows_in(db: Path, tables: tuple[str, ...]) -> int:
    conn = sqlite3.connect(db)
    try:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables
                   if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone())
    finally:
        conn.close()


STORE_TABLES = ("results", "runs", "cases", "fingerprints", "test_nodes", "node_state",
                "node_changes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=75_000, help="nodes per side")
    parser.add_argument("--cases", type=int, default=50, help="vllm_tests results per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vllm-tests-") as tmp:
        root = Path(tmp)
        ids = node_ids(args.nodes, args.cases)
        nights = [write_night(root, n, ids) for n in (1, 2)]
        total = sum(map(len, ids))
        print(f"{total} nodes per side in {args.cases} results per side, 2 nights")

        ours_s, counts = timed(ours_diff, nights[1])
        naive_s, naive_counts = timed(naive_diff, nights[1])
        print(f"diff night 2: {ours_s:.2f} s (goal <= {DIFF_GOAL_S:g} s), naive {naive_s:.2f} s, "
              f"ratio naive/ours {naive_s / ours_s:.1f}x")
        print(f"  node verdicts: {counts}")
        print(f"  naive (unclassified): {naive_counts}")

        ours_db, naive_db = root / "history.sqlite", root / "naive.sqlite"
        first_s, _ = timed(ours_ingest, ours_db, nights[0])
        before = rows_in(ours_db, STORE_TABLES)
        second_s, added = timed(ours_ingest, ours_db, nights[1])
        grew = rows_in(ours_db, STORE_TABLES) - before
        naive_first_s, _ = timed(naive_ingest, naive_db, nights[0])
        naive_before = rows_in(naive_db, ("node_results",))
        naive_s2, _ = timed(naive_ingest, naive_db, nights[1])
        naive_grew = rows_in(naive_db, ("node_results",)) - naive_before
        print(f"ingest night 1 (first): ours {first_s:.2f} s, naive {naive_first_s:.2f} s")
        print(f"ingest night 2: {second_s:.2f} s (goal <= {INGEST_GOAL_S:g} s), naive "
              f"{naive_s2:.2f} s, ratio naive/ours {naive_s2 / second_s:.1f}x")
        print(f"  store grew by {grew} rows ({added} result rows + node changes), naive by "
              f"{naive_grew} rows: {naive_grew / max(grew, 1):.0f}x fewer rows")
        print(f"  store size: ours {ours_db.stat().st_size / 2**20:.1f} MiB, naive "
              f"{naive_db.stat().st_size / 2**20:.1f} MiB after 2 nights")
    missed = [what for what, ok in (("diff", ours_s <= DIFF_GOAL_S),
                                    ("ingest", second_s <= INGEST_GOAL_S)) if not ok]
    if missed:
        print(f"goal missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
