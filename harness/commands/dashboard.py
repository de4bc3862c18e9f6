"""`harness dashboard`: render the history store as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.cli import output_file, positive_int
from harness.outcomes import EXIT_OK, EXIT_USAGE
from harness.history.board import DEFAULT_NIGHTS
from harness.history.publish import page_from_store
from harness.history.target import add_store_arguments, on_store
from harness.results import write_atomic

DEFAULT_OUT = Path("results/dashboard.html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--out", type=output_file, default=DEFAULT_OUT,
                        help=f"HTML file to write (default: {DEFAULT_OUT})")
    parser.add_argument("--nights", type=positive_int, default=DEFAULT_NIGHTS,
                        help=f"nights shown in the grid (default: {DEFAULT_NIGHTS}); flakiness "
                             "and drift look at a window before them, first-bad builds as far "
                             "back as the store goes")
    parser.add_argument("--quarantine", type=Path, default=None, metavar="FILE",
                        help="the quarantine list shown on the page (default: "
                             "cases/quarantine.yaml when present)")


def run(args: argparse.Namespace) -> int:
    from harness.spec.quarantine import default_quarantine, load_quarantine
    from harness.spec.case import SpecError

    try:
        quarantine = (load_quarantine(args.quarantine) if args.quarantine is not None
                      else default_quarantine())
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    made: list = []
    code = on_store(args, lambda conn: made.append(page_from_store(
        conn, args.out, args.nights, quarantine=quarantine)) or EXIT_OK)
    if code != EXIT_OK:
        return code
    text, board = made[0]
    write_atomic(args.out, text)
    broken = sum(line.broken_now for p in board.platforms for line in p.lines)
    flaky = sum(line.flaky.flaky for p in board.platforms for line in p.lines)
    print(f"{args.out}: {len(board.shown)} of {len(board.nights)} nights, "
          f"{len(board.platforms)} platform(s); broken now: {broken}, flaky: {flaky}")
    return EXIT_OK
