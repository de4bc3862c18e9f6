"""Fill the history store from earlier Buildkite builds: their result artifacts, downloaded.

``buildkite-agent artifact download --build BUILD_ID`` fetches another build's artifacts (the
agent itself has no way to list builds: the ids come from the Buildkite UI or API, e.g.
``bk build list``). Each build's ``results/<run-id>/<platform>/*`` land under the results
directory as they would in that build's own nightly step, and are ingested like any run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from harness.host.buildkite.agent import Agent, AgentError

# Result files and logs sit directly in the platform directory: "<platform>/*" finds them whether
# the artifact search reads "*" as one path segment or as any text (as harness.host.buildkite does).
QUERY = "results/build-*/*/*"


class BackfillError(RuntimeError):
    """No earlier build could be downloaded (not on Buildkite, or every download failed)."""


def download_builds(builds: Sequence[str], results_dir: Path,
                    agent: Agent | None = None) -> dict[str, list[Path]]:
    """Run directories found per build, downloaded under ``results_dir``."""
    agent = agent or Agent()
    if not agent.active:
        raise BackfillError("--buildkite-build needs a Buildkite agent (BUILDKITE=true and "
                            "buildkite-agent on PATH): the artifacts are fetched through it")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[Path]] = {}
    failures = []
    for build in builds:
        with tempfile.TemporaryDirectory(prefix=".backfill-", dir=results_dir) as tmp:
            try:
                agent.artifact_download(QUERY, tmp, build=build)
            except AgentError as exc:
                failures.append(f"build {build}: {exc}")
                print(f"warning: build {build}: nothing downloaded ({exc})", file=sys.stderr)
                continue
            runs = []
            for run in sorted(p for p in (Path(tmp) / "results").glob("*") if p.is_dir()):
                target = results_dir / run.name
                shutil.copytree(run, target, dirs_exist_ok=True)
                runs.append(target)
            found[build] = runs
    if failures and not found:
        raise BackfillError("no earlier build could be downloaded:\n  " + "\n  ".join(failures))
    return found
