"""Shell text for Buildkite steps: quoting, Buildkite's `$$` escape, and the names every step
uses (the run id, the results folder, the agent-lost exit status). Below every step builder."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

RUN_ID = "build-$BUILDKITE_BUILD_NUMBER"  # harness.runid.new_run_id gives the same on Buildkite
RESULTS = "results"
AGENT_LOST = -1  # Buildkite's exit status for a job whose agent disappeared


@dataclass(frozen=True)
class Raw:
    """Shell text written as is (variables, operators); everything else is quoted."""

    text: str


def sh(*words: str | Raw) -> str:
    """One command line: literal words quoted for the shell and escaped for Buildkite."""
    return " ".join(w.text if isinstance(w, Raw) else shlex.quote(w).replace("$", "$$")
                    for w in words)
