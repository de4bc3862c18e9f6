"""`harness compare RUN_DIR [RUN_DIR2]`: parity, outputs and environment across platforms/runs.

Exit codes (harness/outcomes.py): 0 parity (fixed, expected failures, skips, not comparable,
and a candidate that passes with no baseline); 1 a case that fails on the candidate (regression,
both-fail, fails with no baseline, a new failing case), an output divergence or a strict
unexpected pass; 2 usage or input error; 3 results missing or corrupt, or an infrastructure
error that left a case untested. A failure outranks an infrastructure error when both occur.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.cli import _platform_list, output_file
from harness.outcomes import EXIT_USAGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="results/<run-id>; with two, the baseline is read from the first "
                             "and the candidates from the second")
    parser.add_argument("--baseline", default=None,
                        help="baseline platform (default: cuda, else the hf reference; with two "
                             "runs and no platform named: each shared platform with itself)")
    parser.add_argument("--candidate", type=_platform_list, default=None,
                        help="candidate platform(s), comma-separated (default: every other "
                             "platform of the run)")
    parser.add_argument("--baseline-run", type=Path, default=None, metavar="DIR",
                        help="a stored earlier run (or a build's downloaded artifacts) that "
                             "supplies the baseline platform when RUN_DIR has no results for it "
                             "(an AMD-only organisation runs no CUDA side); without it, the "
                             "candidate is reported on its own")
    parser.add_argument("--reference", default="hf",
                        help="platform consulted when the two sides disagree ('none': never)")
    parser.add_argument("--markdown", type=output_file, default=None,
                        help="write a Buildkite annotation (Markdown, under 1 MiB)")
    parser.add_argument("--junit", type=output_file, default=None, help="write JUnit XML")
    parser.add_argument("--json", type=output_file, default=None,
                        help="write the JSON summary")
    parser.add_argument("--quiet", action="store_true", help="no terminal table")
    parser.add_argument("--quarantine", type=Path, default=None, metavar="FILE",
                        help="the quarantine list (default: cases/quarantine.yaml when present): "
                             "a listed candidate failure is shown, counted and linked as "
                             "'quarantined' and does not fail the build until its date")
    parser.add_argument("--skips", action="store_true",
                        help="vllm_tests cases: list every upstream test that runs on the "
                             "baseline and is skipped on the candidate, grouped by reason")


def _with_baseline_run(args: argparse.Namespace):
    """The run directories and platforms to compare, with --baseline-run filling an absent
    baseline side (used only when this run has no results for the baseline platform)."""
    from harness.compare.load import platforms_in
    from harness.compare.select import DEFAULT_BASELINES, REFERENCE

    if args.baseline_run is None or len(args.run_dirs) != 1:
        return args.run_dirs, args.baseline, args.candidate
    here = platforms_in(args.run_dirs[0])
    stored = platforms_in(args.baseline_run)
    baseline = args.baseline or next((p for p in DEFAULT_BASELINES if p in stored), None)
    if baseline is None or baseline in here:
        return args.run_dirs, args.baseline, args.candidate
    candidates = args.candidate or [p for p in here if p not in (baseline, REFERENCE)]
    return [args.baseline_run, args.run_dirs[0]], baseline, candidates


def run(args: argparse.Namespace) -> int:
    from harness.results import cycle_collection_paused

    with cycle_collection_paused():  # the reports walk every result read (see compare_runs)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from harness.compare import SelectionError, compare_runs
    from harness.report.junit import render_junit
    from harness.report.markdown import LinkStyle, render_markdown
    from harness.report.summary import write_summary
    from harness.report.terminal import comparison_table
    from harness.results import write_atomic

    if len(args.run_dirs) > 2:
        print("error: give one or two run directories", file=sys.stderr)
        return EXIT_USAGE
    from harness.spec.quarantine import default_quarantine, load_quarantine
    from harness.spec.case import SpecError

    reference = None if args.reference in ("", "none") else args.reference
    run_dirs, baseline, candidates = _with_baseline_run(args)
    try:
        quarantine = (load_quarantine(args.quarantine) if args.quarantine is not None
                      else default_quarantine())
        comparison = compare_runs(run_dirs, baseline, candidates, reference, quarantine)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SelectionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        print(comparison_table(comparison))
    if args.skips:
        from harness.report.nodes import skips_text

        print(skips_text(comparison))
    if args.markdown:
        links = LinkStyle.from_env(relative_to=args.markdown.parent)
        write_atomic(args.markdown, render_markdown(comparison, links))
    if args.junit:
        write_atomic(args.junit, render_junit(comparison))
    if args.json:
        write_summary(args.json, comparison)
    code = comparison.exit_code
    if not args.quiet:
        print(f"exit {code}")
    return code
