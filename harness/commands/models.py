"""`harness models fetch --platform P`: the models a platform's cases need, on disk, once.

Run it once per agent before `harness run` (the Buildkite run step does): hub snapshots are
downloaded into the cache the platform's engines read (the host's HF_HOME, mounted into
containers), pinned at each case's `model.revision`; what is already there is not fetched
again. Tiny platforms build their recipes. One line per model; exit 0 when all are on disk,
3 when a download failed (retryable), 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.commands.cli import DEFAULT_CASES, _platform_list

    parser.description = __doc__.splitlines()[0]
    sub = parser.add_subparsers(dest="models_command", required=True)
    fetch = sub.add_parser("fetch", help="download hub snapshots / build tiny models")
    fetch.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    fetch.add_argument("--platforms-file", type=Path, default=None)
    fetch.add_argument("--platform", type=_platform_list, required=True)
    fetch.add_argument("-k", dest="keyword", default=None, help="pytest -k expression")


def run(args: argparse.Namespace, download=None) -> int:
    from harness.commands.cli import load_selection
    from harness.models import default_cache_root
    from harness.models.fetch import build_tiny, fetch_hub, wanted_snapshots
    from harness.models.hub import platform_hub_cache

    try:
        _, platforms, _, jobs = load_selection(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    worst = EXIT_OK
    for name in args.platform:
        platform = platforms[name]
        platform_jobs = [job for job in jobs if job.platform.name == name and not job.skip_reason
                         and job.case.model is not None]  # vllm_tests: `harness tests fetch`
        if platform.model_source == "hub":
            cache = platform_hub_cache(platform.launcher, platform.env, os.environ)
            print(f"{name}: hub snapshots in {cache}")
            done = fetch_hub(wanted_snapshots(platform_jobs), cache, name, download)
        else:
            cache = default_cache_root()
            print(f"{name}: tiny models in {cache}")
            done = build_tiny([job.case.model.tiny for job in platform_jobs], cache)
        for item in done:
            label = f"{item.model}@{item.revision}" if item.revision else item.model
            print(f"  {item.state:<10} {label}  {item.detail}")
        if any(item.state == "failed" for item in done):
            worst = EXIT_INFRA
    return worst
