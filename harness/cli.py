"""`harness` command line: each subcommand is a short pipeline of plain functions.

Exit codes: 0 ok, 1 failures/regressions, 2 usage or input error, 3 infrastructure error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE, worst_exit
from harness.spec import PLATFORMS_FILE, SpecError

DEFAULT_CASES = Path("cases")


def positive_int(text: str) -> int:
    """argparse type for counts (--parallelism, --nights, ...)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _platform_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="validate case and platform YAML files")
    validate.add_argument("paths", nargs="*", type=Path, default=[DEFAULT_CASES])

    def selection(p: argparse.ArgumentParser, platforms_required: bool) -> None:
        p.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="case directory or file")
        p.add_argument("--platforms-file", type=Path, default=None,
                       help=f"default: {PLATFORMS_FILE} in the case directory")
        p.add_argument("--platform", type=_platform_list, required=platforms_required,
                       default=None, help="comma-separated platforms (rocm,cuda,cpu)")
        p.add_argument("-k", dest="keyword", default=None, help="pytest -k expression")

    plan = sub.add_parser("plan", help="list the jobs (case x platform) that would run")
    selection(plan, platforms_required=False)
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    run = sub.add_parser("run", help="run the cases on a platform and write results")
    selection(run, platforms_required=True)
    run.add_argument("--results", type=Path, default=Path("results"))
    run.add_argument("--run-id", default=None, help="default: build-<N> on Buildkite, else time")
    run.add_argument("--engine", choices=["docker", "podman"], default=None,
                     help="container engine (overrides the platform's)")
    run.add_argument("--gpus", default=None, help="GPU indices for container platforms, e.g. 0,1")
    run.add_argument("--image", default=None,
                     help="container image to run (overrides the platform's), e.g. a PR build")
    run.add_argument("--pull", choices=["always", "missing", "never"], default=None,
                     help="pull the image before the run (overrides the platform's `pull`)")
    run.add_argument("--dry-run", action="store_true", help="print the command(s), run nothing")
    run.add_argument("--shard-index", type=int, default=None,
                     help="this parallel job's index (Buildkite: $BUILDKITE_PARALLEL_JOB)")
    run.add_argument("--shard-count", type=int, default=None,
                     help="number of parallel jobs ($BUILDKITE_PARALLEL_JOB_COUNT)")

    # Later stages live in their own modules (harness/cmd_<name>.py: add_arguments + run).
    for name, text in EXTRA_COMMANDS.items():
        extra = sub.add_parser(name, help=text)
        module = _command_module(name)
        if module is None:
            extra.add_argument("rest", nargs=argparse.REMAINDER)
        else:
            module.add_arguments(extra)
    return parser


EXTRA_COMMANDS = {
    "compare": "compare results across platforms and runs",
    "pipeline": "print the Buildkite pipeline",
    "ingest": "add runs to the history store",
    "dashboard": "render the nightly dashboard",
    "reference": "run the hf (transformers) reference for cases",
    "image": "build, push or pull a container platform's image",
}


def _command_module(name: str):
    import importlib

    try:
        return importlib.import_module(f"harness.cmd_{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"harness.cmd_{name}":
            raise
        return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"validate": cmd_validate, "plan": cmd_plan, "run": cmd_run}.get(args.command)
    if handler is None:
        module = _command_module(args.command)
        handler = module.run if module is not None else cmd_not_available
    try:
        return handler(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.spec import validate_paths

    errors = validate_paths(args.paths)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not errors:
        print(f"ok: {', '.join(map(str, args.paths))}")
    return EXIT_USAGE if errors else EXIT_OK


def load_selection(args: argparse.Namespace):
    """Cases, platforms and the planned jobs for a plan/run command line."""
    from harness.plan import plan
    from harness.spec import check_overrides, check_registries, load_cases, load_platforms

    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    platforms_file = args.platforms_file or case_dir / PLATFORMS_FILE
    platforms = load_platforms(platforms_file)
    cases = load_cases([args.cases])
    check_overrides(cases, platforms)
    for case in cases:
        check_registries(case)
    selected = args.platform or [name for name, p in platforms.items() if p.default]
    jobs = plan(cases, platforms, selected, args.keyword)
    return cases, platforms, platforms_file, jobs


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        _, _, _, jobs = load_selection(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        import json

        print(json.dumps([{"id": j.id, "case": j.case.id, "platform": j.platform.name,
                           "model": j.model, "config_digest": j.config_digest,
                           "engine_key": j.engine_key, "skip": j.skip_reason,
                           "expect": j.expect.outcome} for j in jobs], indent=2))
        return EXIT_OK
    for job in jobs:
        state = f"skip: {job.skip_reason}" if job.skip_reason else (
            f"xfail: {job.expect.reason}" if job.expect.outcome == "xfail" else "run")
        print(f"{job.id:<45} {job.config_digest}  {job.model:<40} {state}")
    print(f"{len(jobs)} job(s)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness.execute import execute, make_launch
    from harness.proc import shell_join
    from harness.results import DiskFull
    from harness.launch.local import WorkerRequest
    from harness.report.terminal import run_table
    from harness.runid import is_valid_run_id, new_run_id

    try:
        _, platforms, platforms_file, jobs = load_selection(args)
        jobs = select_shard_jobs(jobs, args.shard_index, args.shard_count)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not jobs and args.shard_count:
        print(f"shard {args.shard_index}/{args.shard_count}: no job in this shard")
        return EXIT_OK
    if not jobs:
        print("error: no job matches the selection", file=sys.stderr)
        return EXIT_USAGE
    local = [n for n in args.platform if args.image and platforms[n].launcher != "container"]
    if local:
        print(f"error: --image: platform {local[0]} runs on this host, not in a container",
              file=sys.stderr)
        return EXIT_USAGE
    run_id = args.run_id or new_run_id()
    if not is_valid_run_id(run_id):
        print(f"error: bad run id {run_id!r}", file=sys.stderr)
        return EXIT_USAGE
    worst = EXIT_OK
    for name in args.platform:
        platform_jobs = [job for job in jobs if job.platform.name == name]
        if not platform_jobs:
            continue
        case_files = sorted({Path(job.case.source) for job in platform_jobs})
        request = WorkerRequest(platforms[name], case_files, Path(platforms_file), args.results,
                                run_id, args.keyword, Path.cwd(), shard=args.shard_index)
        launch = make_launch(request, engine=args.engine, gpus=args.gpus, image=args.image,
                             pull=args.pull)
        if args.dry_run:
            print(shell_join(launch.argv()))
            continue
        try:
            outcome = execute(platform_jobs, request, launch, relaunch=lambda r: make_launch(
                r, engine=args.engine, gpus=args.gpus))
        except DiskFull as exc:
            print(f"error: infrastructure: disk full: {exc}; results written before it are "
                  "intact", file=sys.stderr)
            return EXIT_INFRA
        print(run_table(outcome.results))
        print(f"results: {outcome.run_dir}")
        if outcome.problem:
            print(f"error: infrastructure: disk full: {outcome.problem}; results written "
                  "before it are intact", file=sys.stderr)
        worst = worst_exit([worst, outcome.exit_code])
        if outcome.outcome.interrupted:
            print("interrupted: remaining platforms not run", file=sys.stderr)
            break
    return worst


def select_shard_jobs(jobs, index: int | None, count: int | None):
    if index is None and count is None:
        return jobs
    if index is None or count is None:
        raise ValueError("--shard-index and --shard-count go together")
    from harness.buildkite.shard import select_shard

    # Shard per platform, so every platform's jobs spread over the same parallel jobs.
    platforms = list(dict.fromkeys(job.platform.name for job in jobs))
    return [job for name in platforms
            for job in select_shard([j for j in jobs if j.platform.name == name], index, count)]


def cmd_not_available(args: argparse.Namespace) -> int:
    print(f"harness {args.command}: not available yet in this version", file=sys.stderr)
    return EXIT_INFRA if args.command else EXIT_USAGE
