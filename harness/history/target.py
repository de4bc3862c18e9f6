"""Which history store a command uses: ``--db PATH|URL``, or ``--db-env NAME`` (a URL by name).

A database URL holds a password: on Buildkite it lives in the agent's environment and is named,
never written into a pipeline, a command line or a message (messages show it without password).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from harness.history.db import StoreError, target_from_env
from harness.history.store import DEFAULT_DB, open_store
from harness.outcomes import EXIT_INFRA, EXIT_USAGE

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


def on_store(args: argparse.Namespace, work: Callable[..., int], *, create: bool = False,
             open_failed: int = EXIT_USAGE) -> int:
    """Open the store named on the command line, return ``work(conn)``, close it. A store that
    cannot be opened gives ``open_failed`` (an unset --db-env, a bad path: a usage error unless
    the caller says otherwise); a database error while working gives exit 3. One line each."""
    try:
        conn = open_store(store_target(args), create=create)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return open_failed
    try:
        return work(conn)
    except conn.errors as exc:
        print(f"error: {conn.label}: {str(exc).strip()}", file=sys.stderr)
        return EXIT_INFRA
    finally:
        conn.close()
