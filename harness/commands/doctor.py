"""`harness doctor [--platform P]`: preflight checks, one line each, with the fix.

Engine answers, image present and its age, /dev/kfd and render nodes (and the render gid), GPUs
clean (free memory near total), HF_TOKEN set (by name), the pinned hub snapshots present and,
for models that run their repository's code (Phi-4-multimodal), that code loading under the
image's transformers, disk space for models, results and images. Exit 0 when nothing failed (warnings allowed), 3 when a check failed, 2 on bad input.
`harness run` runs the cheap part of this itself and stops early on a failure.
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
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--platforms-file", type=Path, default=None)
    parser.add_argument("--platform", type=_platform_list, default=None,
                        help="comma-separated platforms (default: the default platforms)")
    parser.add_argument("--engine", choices=["docker", "podman"], default=None)
    parser.add_argument("--in-place", action="store_true",
                        help="checks for `harness run --in-place` (no container engine)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--gpus", default=None,
                        help="the run's GPUs, as `harness run --gpus` (default: the agent's "
                             "pinning, else the platform's gpus); only these must be clean")


def run(args: argparse.Namespace) -> int:
    from harness.commands.cli import PLATFORMS_FILE
    from harness.host.doctor import Host, failed, platform_checks
    from harness.models.fetch import wanted_snapshots
    from harness.plan import plan
    from harness.host.remote_code import remote_code_snapshots
    from harness.spec.settings import default_platforms
    from harness.spec.case import load_cases, load_platforms

    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    platforms = load_platforms(args.platforms_file or case_dir / PLATFORMS_FILE)
    try:
        names = args.platform or default_platforms(platforms, os.environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    unknown = [name for name in names if name not in platforms]
    if unknown:
        print(f"error: unknown platform(s) {unknown}; known: {sorted(platforms)}",
              file=sys.stderr)
        return EXIT_USAGE
    jobs = plan(load_cases([args.cases]), platforms, names)
    host, worst = Host(), EXIT_OK
    for name in names:
        mine = [job for job in jobs if job.platform.name == name]
        checks = platform_checks(platforms[name], host, engine=args.engine,
                                 in_place=args.in_place, results=args.results,
                                 snapshots=wanted_snapshots(mine),
                                 remote_code=remote_code_snapshots(mine), gpus=args.gpus)
        print(f"{name}:")
        for check in checks:
            print(f"  {check.line()}")
        if failed(checks):
            worst = EXIT_INFRA
    return worst
