"""`harness ingest RUN_DIR...`: add runs to the history store, each whole or not at all.

Storing a run again changes nothing. A half-written run (a temp file left by an interrupted write,
a corrupt or missing result) is refused with every offending file named, and nothing of it is
stored; the other runs named on the command line are still stored. Exit 2 if any run was refused.

``--buildkite-build BUILD_ID`` (repeatable) backfills from earlier builds: their result artifacts
are downloaded (``buildkite-agent artifact download --build``) under ``--results-dir`` and
ingested like any run directory, so a new store starts from what Buildkite still keeps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE
from harness.host.buildkite.backfill import BackfillError, download_builds
from harness.history.db import StoreError
from harness.history.runread import IncompleteRun, read_run
from harness.history.store import open_store, store_run
from harness.history.target import add_store_arguments, store_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR",
                        help="results/<run-id> directories")
    add_store_arguments(parser)
    parser.add_argument("--buildkite-build", dest="builds", action="append", default=[],
                        metavar="BUILD_ID",
                        help="backfill from this earlier Buildkite build's result artifacts "
                             "(its build UUID, as in $BUILDKITE_BUILD_ID); repeatable, oldest "
                             "first or in any order")
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="where backfilled artifacts are downloaded (default: results)")


def run(args: argparse.Namespace) -> int:
    if not args.run_dirs and not args.builds:
        print("error: give RUN_DIR(s) or --buildkite-build BUILD_ID", file=sys.stderr)
        return EXIT_USAGE
    try:
        conn = open_store(store_target(args))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = EXIT_OK
    try:
        run_dirs = list(args.run_dirs)
        if args.builds:
            try:
                found = download_builds(args.builds, args.results_dir)
            except BackfillError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_INFRA
            for build, dirs in found.items():
                print(f"buildkite build {build}: {', '.join(map(str, dirs)) or 'no runs'}")
                run_dirs += dirs
        for run_dir in run_dirs:
            try:
                batch = read_run(run_dir)
            except IncompleteRun as exc:
                print(f"error: {exc}", file=sys.stderr)
                code = EXIT_USAGE
                continue
            try:
                outcome = store_run(conn, batch)
            except conn.errors as exc:  # e.g. locked past the busy timeout
                print(f"error: {conn.label}: {str(exc).strip()} (storing {run_dir}; nothing of "
                      "it stored)", file=sys.stderr)
                return EXIT_INFRA
            print(f"{run_dir}: {outcome.added} result(s) added, {outcome.unchanged} already "
                  f"stored ({', '.join(batch.platforms)})")
            for job_id in outcome.conflicts:
                print(f"warning: {run_dir}: {job_id} was stored before with other content; "
                      f"the stored one is kept", file=sys.stderr)
    finally:
        conn.close()
    return code
