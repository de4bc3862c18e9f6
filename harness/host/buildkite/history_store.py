"""Where a nightly keeps its history: checked before a pipeline is planned. Pure.

The checkout (results/ included) is cleaned between builds, so a store inside it would make
flakiness, first-bad-build and drift a one-night computation.
"""

from __future__ import annotations

import re
from typing import Protocol

from harness.host.buildkite.uploads import PipelineError

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


HISTORY_STORE_HELP = (
    "--nightly needs a history store that outlives the build (the checkout, results/ included, "
    "is cleaned between builds): give --history-db /lasting/path/history.sqlite on the agent the "
    "nightly step runs on (pin it with --queue), or --history-db-env NAME, the agent's "
    "environment variable holding a postgresql:// URL (set it in the agent's environment hook; "
    "the URL is never written into the pipeline)")


class StoreOptions(Protocol):
    """What this check reads of the pipeline's options (pipeline.PipelineOptions)."""

    nightly: bool
    history_db: str | None
    history_db_env: str | None


def check_history_store(options: StoreOptions) -> None:
    """A nightly without a lasting store would compute flakiness and first-bad over one night."""
    if options.history_db and options.history_db_env:
        raise PipelineError("give --history-db or --history-db-env, not both")
    if options.history_db:
        if "://" in options.history_db:
            raise PipelineError("--history-db takes a path; a database URL holds a password: "
                                "put it in the agent's environment and give --history-db-env "
                                "NAME")
        if not options.history_db.startswith("/"):
            raise PipelineError(f"--history-db {options.history_db}: a relative path lies in the "
                                "checkout, which agents clean; give an absolute path")
    if options.history_db_env and not _ENV_NAME_RE.fullmatch(options.history_db_env):
        raise PipelineError("--history-db-env takes an environment variable name (letters, "
                            "digits, _), not a value (not echoed: it may be a secret)")
    if options.nightly and not (options.history_db or options.history_db_env):
        raise PipelineError(HISTORY_STORE_HELP)
