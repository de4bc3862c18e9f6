"""`harness ingest RUN_DIR...`: add runs to the history store (SQLite), each whole or not at all.

Storing a run again changes nothing. A half-written run (a temp file left by an interrupted write,
a corrupt or missing result) is refused with every offending file named, and nothing of it is
stored; the other runs named on the command line are still stored. Exit 2 if any run was refused.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE
from harness.history.runread import IncompleteRun, read_run
from harness.history.store import DEFAULT_DB, StoreError, open_store, store_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="results/<run-id> directories")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB,
                        help=f"history store (default: {DEFAULT_DB})")


def run(args: argparse.Namespace) -> int:
    try:
        conn = open_store(args.db)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = EXIT_OK
    try:
        for run_dir in args.run_dirs:
            try:
                batch = read_run(run_dir)
            except IncompleteRun as exc:
                print(f"error: {exc}", file=sys.stderr)
                code = EXIT_USAGE
                continue
            try:
                outcome = store_run(conn, batch)
            except sqlite3.OperationalError as exc:  # e.g. locked past the busy timeout
                print(f"error: {args.db}: {exc} (storing {run_dir}; nothing of it stored)",
                      file=sys.stderr)
                return EXIT_INFRA
            print(f"{run_dir}: {outcome.added} result(s) added, {outcome.unchanged} already "
                  f"stored ({', '.join(batch.platforms)})")
            for job_id in outcome.conflicts:
                print(f"warning: {run_dir}: {job_id} was stored before with other content; "
                      f"the stored one is kept", file=sys.stderr)
    finally:
        conn.close()
    return code
