"""`harness triage [RUN_DIR...] [--db ...]`: failures grouped by signature across the jobs of
runs and the nights of the history store: first/last seen, nights, jobs, platforms, nodes, new
tonight, ROCm only or shared with CUDA, node-local (a node problem, not a regression).

Without run directories it reads the store (default results/history.sqlite); with them, only
them, unless a store is named too (then the runs count as the nights after the stored ones;
a run already stored is read from the store)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.cli import output_file, positive_int
from harness.history.target import add_store_arguments, on_store
from harness.outcomes import EXIT_OK, EXIT_USAGE
from harness.results import write_atomic
from harness.signatures import triage_render
from harness.signatures.rulebook import rule_links
from harness.signatures.triage import triage
from harness.signatures.triage_read import from_runs, from_store

FORMATS = ("table", "markdown", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (results/<run>)")
    add_store_arguments(parser)
    parser.add_argument("--nights", type=positive_int, default=None,
                        help="only the store's last N nights (default: all)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--out", type=output_file, default=None,
                        help="write there instead of printing")


def run(args: argparse.Namespace) -> int:
    for run_dir in args.runs:
        if not run_dir.is_dir():
            print(f"error: {run_dir}: not a run directory", file=sys.stderr)
            return EXIT_USAGE
    occurrences, passes, nights = [], [], []
    if not args.runs or args.db or args.db_env:
        read: list = []
        code = on_store(args, lambda conn: read.append(from_store(conn, args.nights)) or EXIT_OK)
        if code != EXIT_OK:
            return code
        occurrences, passes, nights = read[0]
    stored = {n.run_id for n in nights}
    fresh = [r for r in args.runs if r.name not in stored]
    if fresh:
        more = from_runs(fresh, first_index=len(nights))
        occurrences, passes, nights = occurrences + more[0], passes + more[1], nights + more[2]
    groups = triage(occurrences, passes, nights, rule_links())
    render = {"table": triage_render.terminal, "markdown": triage_render.markdown,
              "json": triage_render.as_json}[args.format]
    text = render(groups)
    text = text if text.endswith("\n") else text + "\n"
    if args.out:
        write_atomic(args.out, text)
        print(f"{args.out}: {len(groups)} signature(s) over {len(nights)} night(s)")
    else:
        sys.stdout.write(text)
    return EXIT_OK
