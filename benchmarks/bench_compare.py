"""`harness compare` at scale: 10,000 results (5,000 cases x cuda and rocm), read by today's
reader, by pydantic in one step and by the one reader, each in its own process (wall, CPU and
peak memory apart), in the same run.

    .venv/bin/python benchmarks/bench_compare.py [--cases 5000] [--keep DIR]

Every result is derived from the committed real results (tests/data/real_run; see
tests.synthetic_history): 1% of the cases fail on rocm, 0.5% change their output there.

- baseline ("today"): the reader before the one reader (``json.loads`` then pydantic's
  ``validate_python``, every field kept), taken from the commit pinned in benchmarks/pinned.py;
- pydantic in one step: ``Result.model_validate_json``, traces and check evidence dropped as
  each file is read (the one reader before harness.resultview);
- the one reader (``harness.resultview.read_result_view``): msgspec decodes and validates each
  file into Structs derived from the pydantic models, the same fields dropped.
Every variant reads the sides one after the other (measured: two threads decoding at once, or a
process per side or per half of the cases, were no faster on two cores: what a process saves
in decoding it spends sending the results back). All run the whole command: compare, then the
Markdown, JUnit and JSON reports, which must come out the same byte for byte.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pinned  # noqa: E402
from harness.results import Result, read_result  # noqa: E402

DEFAULT_REAL_RUN = REPO / "tests" / "data" / "real_run"
GOAL_S = 3.0


def baseline_reader(tree: Path):
    """harness.results.read_result as it was at pinned.COMMIT, read from a worktree of that
    commit (the baseline: json.loads, then pydantic's validate_python), on today's models."""
    import harness.results

    return pinned.function(tree, "harness/results.py", "read_result", harness.results)


def pydantic_read_for_compare(path: Path | str) -> Result:
    """The one reader before harness.resultview: pydantic in one step, then the drops."""
    result = read_result(path)
    checks = [c.model_copy(update={"evidence": {}}) for c in result.checks]
    return result.model_copy(update={"traces": {}, "checks": checks})


READERS = {"today": baseline_reader, "pydantic": lambda tree: pydantic_read_for_compare}
LABELS = {"today": "baseline: today's reader", "pydantic": "pydantic in one step",
          "one-reader": "the one reader (msgspec view)"}


def generate(root: Path, cases: int, real_run: Path) -> Path:
    from tests.synthetic_history import Outcome, Place, case_ids, load_templates, synth_result

    templates = load_templates(real_run)
    names = case_ids([r for r, _ in templates], cases)
    run_dir = root / "build-4000"
    for platform in ("cuda", "rocm"):
        (run_dir / platform).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            outcome = Outcome()
            if platform == "rocm" and i % 100 == 7:
                outcome = Outcome("failed", "check-failed", "log_absent: found 'schema_check_mode'")
            elif platform == "rocm" and i % 200 == 11:
                outcome = Outcome(output_variant=1)
            result = synth_result(templates[i % len(templates)][0],
                                  Place(0, platform, platform, name), outcome)
            (run_dir / platform / f"{name}.json").write_text(
                result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return run_dir


def measure(variant: str, run_dir: Path, out: Path, tree: Path) -> dict:
    """One variant, in this process: the whole `harness compare` command."""
    import harness.compare as compare
    from harness.commands.cli import main
    from harness.compare import load

    if variant in READERS:
        reader = READERS[variant](tree)
        compare.load_sides = lambda sides: [load.load_side(d, p, reader=reader)
                                            for d, p in sides]
    began, cpu = time.perf_counter(), time.process_time()
    comparison = compare.compare_runs([run_dir], "cuda", ["rocm"], None)
    compared = {"wall": time.perf_counter() - began, "cpu": time.process_time() - cpu,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "cases": len(comparison.pairs[0].cases)}
    del comparison
    argv = ["compare", str(run_dir), "--baseline", "cuda", "--candidate", "rocm",
            "--reference", "none", "--quiet", "--markdown", str(out / f"{variant}.md"),
            "--junit", str(out / f"{variant}.xml"), "--json", str(out / f"{variant}.json")]
    began, cpu = time.perf_counter(), time.process_time()
    code = main(argv)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    summary = json.loads((out / f"{variant}.json").read_text())
    summary.pop("generated_at", None)
    return {"wall": wall, "cpu": cpu, "exit": code, "compared": compared,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "summary": summary}


def run_variant(variant: str, run_dir: Path, out: Path, tree: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--variant", variant, "--run-dir",
                           str(run_dir), "--out", str(out), "--baseline-tree", str(tree)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"error: variant {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--real-run", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="generate into (or reuse) DIR")
    parser.add_argument("--variant", choices=tuple(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.run_dir, args.out, args.baseline_tree)))
        return 0
    pinned.require()

    from bench_history import find_real_run

    real = find_real_run(args.real_run or DEFAULT_REAL_RUN)
    with pinned.checkout() as tree, tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        root = args.keep or Path(tmp)
        run_dir = root / "build-4000"
        n_files = len(list(run_dir.glob("*/*.json"))) if run_dir.is_dir() else 0
        if n_files != 2 * args.cases:
            began = time.perf_counter()
            run_dir = generate(root, args.cases, real)
            print(f"generated {2 * args.cases:,} results from {real} in "
                  f"{time.perf_counter() - began:.1f}s")
        size = sum(p.stat().st_size for p in run_dir.glob("*/*.json"))
        print(f"{2 * args.cases:,} results ({args.cases:,} cases x cuda, rocm), "
              f"{size / 2**20:.0f} MiB of JSON")
        out = Path(tmp) / "reports"
        out.mkdir(exist_ok=True)
        for path in run_dir.glob("*/*.json"):  # warm the page cache for both alike
            path.read_bytes()
        figures = {variant: run_variant(variant, run_dir, out, tree) for variant in LABELS}
        for variant in LABELS:  # the reports of every variant, byte for byte
            for suffix in ("md", "xml"):
                same = (out / f"{variant}.{suffix}").read_bytes() == \
                    (out / f"today.{suffix}").read_bytes()
                assert same, f"{variant}.{suffix} differs from today's"
    today, new = figures["today"], figures["one-reader"]
    for variant, found in figures.items():
        assert found["summary"] == today["summary"], f"{variant} compared differently"
        assert found["exit"] == 1, variant  # the planted regressions
    n = 2 * args.cases
    for title, pick in ((f"compare_runs: read {n:,} results and compare "
                         f"({new['compared']['cases']:,} cases)", lambda f: f["compared"]),
                        (f"the whole `harness compare` command (again, + Markdown, JUnit, JSON "
                         f"reports), exit {new['exit']}", lambda f: f)):
        print(f"\n{title}:")
        for variant, found in figures.items():
            row = pick(found)
            print(f"  {LABELS[variant]:<32} {row['wall']:6.2f}s wall {row['cpu']:6.2f}s CPU "
                  f"peak {row['peak_mib']:6.0f} MiB")
        old_f, new_f = pick(today), pick(new)
        print(f"  -> the one reader against the baseline: {old_f['wall'] / new_f['wall']:.2f}x "
              f"faster (CPU {old_f['cpu'] / new_f['cpu']:.2f}x), "
              f"{old_f['peak_mib'] / new_f['peak_mib']:.2f}x less peak memory")
    print(f"\ngoal: {n:,} results compared in <= {GOAL_S:.0f} s (at 10,000 results: "
          f"x{10_000 / n:.1f}):")
    for what, found in (("compare_runs", new["compared"]), ("the whole command", new)):
        print(f"  {what:<18} {'met' if found['wall'] <= GOAL_S else 'NOT MET'} "
              f"({found['wall']:.2f}s wall, {found['cpu']:.2f}s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
