"""The harness's overhead over vLLM's own work, on a real CPU run of the cases.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_overhead.py [--cases cases] [-k EXPR]

Runs ``harness run --platform cpu`` once (a real vLLM-CPU engine per engine configuration) and
compares, in that same run, the suite's wall time with the baseline: the sum of each engine's
start and request time as the result files record them. Prints the ratio (goal: at most
1.10) and each job's phases (model, engine start, requests, probes, checks, shutdown, the rest),
plus the time outside any job (harness start, worker start, report). The run's live output is
kept beside the results (``output.txt``), a recording of the progress lines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.results import iter_result_files, read_result  # noqa: E402

GOAL = 1.10
PHASES = [("model", "model_s"), ("engine start", "startup_s"), ("requests", "requests_s"),
          ("probes", "probes_s"), ("checks", "checks_s"), ("shutdown", "shutdown_s")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=str(REPO / "cases"))
    parser.add_argument("-k", dest="keyword", default=None)
    parser.add_argument("--results", type=Path, default=None,
                        help="where to keep the run (default: a temporary directory)")
    args = parser.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    argv = [sys.executable, "-m", "harness", "run", "--platform", "cpu", "--cases", args.cases,
            "--results", str(results), "--run-id", "bench", "--progress", "ci"]
    if args.keyword:
        argv += ["-k", args.keyword]
    began = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - began
    (results / "bench").mkdir(parents=True, exist_ok=True)
    recording = results / "bench" / "output.txt"
    recording.write_text(done.stdout + done.stderr)

    rows, engine_s, jobs_s = [], 0.0, 0.0
    for path in iter_result_files(results / "bench"):
        result = read_result(path)
        t = result.timings
        if result.status == "skipped":
            continue
        own = (0.0 if t.engine_reused else (t.startup_s or 0.0)) + (t.requests_s or 0.0)
        engine_s += own
        jobs_s += t.total_s or 0.0
        phases = {name: getattr(t, field) for name, field in PHASES}
        if t.engine_reused:
            phases["engine start"] = 0.0
        rest = (t.total_s or 0.0) - sum(v or 0.0 for v in phases.values())
        rows.append((result.job_id, result.status, phases, rest, t.total_s or 0.0))

    print(f"harness run exit {done.returncode}; output: {recording}")
    header = "".join(f"{name:>14}" for name, _ in PHASES)
    print(f"{'job':<34}{'status':>8}{header}{'other':>10}{'total':>10}")
    for job_id, status, phases, rest, total in rows:
        cells = "".join(f"{'-' if v is None else f'{v:.1f}':>14}" for v in phases.values())
        print(f"{job_id:<34}{status:>8}{cells}{rest:>10.1f}{total:>10.1f}")
    print(f"outside any job (harness and worker start-up, report): {wall - jobs_s:.1f} s")
    if engine_s <= 0:
        print("no engine time recorded: nothing ran", file=sys.stderr)
        return 1
    ratio = wall / engine_s
    print(f"suite wall time {wall:.1f} s / engine start + requests {engine_s:.1f} s "
          f"= {ratio:.2f}x (goal <= {GOAL:.2f}x: {'met' if ratio <= GOAL else 'NOT met'})")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
