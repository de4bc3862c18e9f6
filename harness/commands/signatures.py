"""`harness signatures test [LOG_DIR...]`: check the rulebook (signatures.yaml): validate it,
run every rule against every fixture, and report coverage over directories of logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.outcomes import EXIT_FAILED, EXIT_OK
from harness.signatures.rulebook import RULES_ENV, RULES_FILE, load_rulebook
from harness.signatures.selftest import coverage, fixture_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="signatures_command", required=True)
    test = sub.add_parser("test", help="every rule against every fixture; coverage over logs")
    test.add_argument("log_dirs", nargs="*", type=Path,
                      help="run or platform directories (result files and their logs), or "
                           "directories of .log files: the share of failed jobs classified")
    test.add_argument("--rules", type=Path, default=None,
                      help=f"the rulebook (default: ${RULES_ENV}, else {RULES_FILE.name})")


def run(args: argparse.Namespace) -> int:
    rulebook = load_rulebook(args.rules)  # a bad file: SpecError, one line, exit 2 (cli)
    problems = fixture_problems(rulebook)
    print(f"{rulebook.path}: {len(rulebook.rules)} rules, {len(rulebook.ignore)} ignore "
          f"patterns; fixtures: {len(rulebook.rules) - len({p.split(': ')[1] for p in problems})}"
          f" of {len(rulebook.rules)} matched by their own rule first")
    for problem in problems:
        print(f"FAIL {problem}")
    for directory in args.log_dirs:
        if not directory.is_dir():
            raise FileNotFoundError(2, "not a directory", str(directory))
    if args.log_dirs:
        found = coverage(rulebook, args.log_dirs)
        print(f"coverage: {found.classified} of {found.failed} failed jobs classified "
              f"({found.share:.0%})")
        for rule, count in found.by_rule.most_common():
            print(f"  {count:6d}  {rule}")
        for line in found.unclassified[:20]:
            print(f"  unclassified: {line}")
        for line in found.unreadable:
            print(f"  unreadable: {line}")
    return EXIT_FAILED if problems else EXIT_OK
