"""Which history store a command uses: ``--db PATH|URL``, or ``--db-env NAME`` (a URL by name).

A database URL holds a password: on Buildkite it lives in the agent's environment and is named,
never written into a pipeline, a command line or a message (messages show it without password).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.history.db import target_from_env
from harness.history.store import DEFAULT_DB

ENV_NAME_HELP = "environment variable holding the store (a postgresql:// URL or a path)"


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", default=None, metavar="PATH|URL",
                       help=f"history store: an SQLite file or a postgresql:// URL "
                            f"(default: {DEFAULT_DB})")
    where.add_argument("--db-env", default=None, metavar="NAME", help=ENV_NAME_HELP)


def store_target(args: argparse.Namespace) -> str | Path:
    """The store named on the command line; StoreError when --db-env names an unset variable."""
    if args.db_env:
        return target_from_env(args.db_env)
    return args.db if args.db is not None else DEFAULT_DB
