"""What a retried run step fetches first: the earlier job's results of its platform.

Buildkite retries a run step that exited 3 (infrastructure), possibly on another agent. The
repeat rule (harness.host.repeats) needs the earlier job's result to tell "the same node-caused class
on two nodes" (the case's failure) from "once here" (still infrastructure): the retried job
downloads its step's earlier artifacts (``--include-retried-jobs``: by default the agent serves
only the newest job of a retry chain) into the run directory, where ``harness run`` keeps an
earlier node's infrastructure error as ``<case>.attempt0.json`` and judges with it. A first
attempt (``BUILDKITE_RETRY_COUNT`` 0) downloads nothing; a failed download is said and ignored.
"""

from __future__ import annotations


def earlier_results_command(platform: str) -> str:
    from harness.host.buildkite.shell import RESULTS, RUN_ID, Raw, sh

    query = Raw(f'"{RESULTS}/{RUN_ID}/{platform}/*.json"')
    download = sh("buildkite-agent", "artifact", "download", query, ".", "--step",
                  Raw('"$$BUILDKITE_STEP_KEY"'), "--include-retried-jobs")
    said = sh("echo", f"harness: no earlier {platform} results of this step to judge with")
    return (f'if [ "$${{BUILDKITE_RETRY_COUNT:-0}}" -gt 0 ]; then {download} || {said}; fi')
