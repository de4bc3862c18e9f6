"""The Buildkite step that runs `harness bisect` on the platform's queue. Pure.

The bisect is resumable from its state file, so the step first fetches the state (and step
results) an earlier attempt of this job uploaded, then continues; an infrastructure exit (3:
interrupted, lost container, registry unreachable) or a lost agent retries the job, which picks
up where the previous attempt stopped. The bisect posts its own annotation.
"""

from __future__ import annotations

from typing import Any

from harness.bisect_command import BisectRequest
from harness.host.buildkite.pipeline import (AGENT_LOST, EXIT_INFRA, RESULTS, TIMEOUT_MARGIN_MIN, Raw,
                                        run_budget_min, sh)
from harness.spec.case import Platform

# A bisect over vLLM's nightly window (14 ROCm images kept) makes at most 2 end checks and
# ceil(log2(14)) = 4 steps, and confirms the bad end and each bad step: the step's deadline
# allows that many platform deadlines (skipped candidates cost more; a retry continues).
WINDOW_STEPS = 4


def expected_max_runs(confirmations: int) -> int:
    return 2 + WINDOW_STEPS + (1 + WINDOW_STEPS) * confirmations


def bisect_step(request: BisectRequest, platform: Platform, harness: str = "harness"
                ) -> dict[str, Any]:
    results = request.results or RESULTS
    artifacts = f"{results}/bisect-*/**/*"
    fetch = (sh("buildkite-agent", "artifact", "download", Raw(f'"{results}/bisect-*"'), ".")
             + " || " + sh("echo", "harness: no earlier bisect state: starting afresh"))
    return {
        "label": f"bisect {request.case} on {platform.name}",
        "key": f"bisect-{platform.name}",
        "commands": [fetch, f"{harness} " + sh(*request.argv())],
        **({"agents": {"queue": platform.queue}} if platform.queue else {}),
        # Each run pulls its candidate image first: its pull counts, as in a run step.
        "timeout_in_minutes": (run_budget_min(platform)
                               * expected_max_runs(request.confirmations) + TIMEOUT_MARGIN_MIN),
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2},
                                {"exit_status": EXIT_INFRA, "limit": 2}]},
        "artifact_paths": [artifacts],
    }
