"""The steps the nightly's history step uploads for each bisect it starts, and the line it adds
to the nightly step. Pure.

Per bisect, two steps:

* ``bisect-<id>`` on the platform's queue: ``harness bisect`` of the one failing case, with
  ``--max-total-runs`` at what the night's budget granted (a retry continues within it; it retries
  a lost agent only); it posts its own annotation on the nightly build (first bad, last good,
  the vLLM commits with a compare link, the components that changed and the likely layer) and
  leaves ``results/bisect-<id>/bisect.json``.
* ``bisect-record-<id>`` on the orchestrating queue, after it: stores that result in the history
  store (so the same failure is not bisected again, and the dashboard shows it beside the newly
  broken cell) and renders the dashboard again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from harness.host.bisect.autoplan import Planned
from harness.host.buildkite.shell import AGENT_LOST, Raw, sh
from harness.outcomes import EXIT_FAILED, EXIT_INFRA
from harness.proc import flag_words

if TYPE_CHECKING:
    from harness.host.buildkite.options import PipelineOptions
    from harness.spec.case import Platform

STEP_MARGIN_MIN = 15


def store_args(db: str | None, db_env: str | None) -> list[str]:
    return ["--db-env", db_env] if db_env else ["--db", str(db)]


def bisect_steps(planned: Planned, platform: "Platform", harness: str, results: str,
                 db: str | None, db_env: str | None, queue: str | None) -> list[dict[str, Any]]:
    ident = planned.bisect_id
    folder = f"{results}/bisect-{ident}"
    request = planned.request
    fetch = (sh("buildkite-agent", "artifact", "download", Raw(f'"{folder}/*"'), ".") + " || "
             + sh("echo", "harness: no earlier state of this bisect: starting afresh"))
    argv = [*request.argv(), *(["--results", results] if not request.results else [])]
    bisect = {
        "label": f"bisect {planned.case_id} on {platform.name} (auto)",
        "key": f"bisect-{ident}",
        "commands": [fetch, f"{harness} " + sh(*argv)],
        **({"agents": {"queue": platform.queue}} if platform.queue else {}),
        "timeout_in_minutes": platform.timeout_minutes * planned.max_runs + STEP_MARGIN_MIN,
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]},
        # the nightly is red already for the failure itself; a bisect that found nothing (1)
        # or stopped (3) says so in its annotation
        "soft_fail": [{"exit_status": EXIT_FAILED}, {"exit_status": EXIT_INFRA}],
        "artifact_paths": [f"{folder}/**/*"],
    }
    result = f"{folder}/bisect.json"
    record = {
        "label": f"record bisect {planned.case_id}",
        "key": f"bisect-record-{ident}",
        "depends_on": [{"step": f"bisect-{ident}", "allow_failure": True}],
        "commands": [
            sh("buildkite-agent", "artifact", "download", result, ".") + " || "
            + sh("echo", "harness: the bisect left no result"),
            f"{harness} " + sh("autobisect", "record", "--json", result,
                               *store_args(db, db_env)),
            f"{harness} " + sh("dashboard", *store_args(db, db_env), "--out",
                               f"{results}/dashboard.html"),
        ],
        **({"agents": {"queue": queue}} if queue else {}),
        "timeout_in_minutes": 30,
        "retry": {"automatic": [{"exit_status": AGENT_LOST, "limit": 2}]},
        "soft_fail": [{"exit_status": EXIT_FAILED}, {"exit_status": EXIT_INFRA}],
        "artifact_paths": [f"{results}/dashboard.html"],
    }
    return [bisect, record]


def plan_command(options: "PipelineOptions", platform: str, baseline: str | None,
                 run_dir: Any, db: Sequence[str]) -> list[Any]:
    """`harness autobisect plan ...` for the nightly step (words for pipeline.sh)."""
    return ["autobisect", "plan", "--run-dir", run_dir, *db, "--platform", platform, *flag_words(
        ("--baseline", baseline), ("--cases", options.cases),
        ("--platforms-file", options.platforms_file), ("--queue", options.queue),
        ("--harness-command", options.harness if options.harness != "harness" else None)),
        *options.autobisect_argv()]
