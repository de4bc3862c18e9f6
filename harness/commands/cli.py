"""`harness` command line: each subcommand is a short pipeline of plain functions.

Exit codes: 0 ok, 1 failures/regressions, 2 usage or input error, 3 infrastructure error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.outcomes import EXIT_INFRA, EXIT_OK, EXIT_USAGE, worst_exit
from harness.spec.case import PLATFORMS_FILE, SpecError

DEFAULT_CASES = Path("cases")


def positive_int(text: str) -> int:
    """argparse type for counts (--parallelism, --nights, ...)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (the full usage is one ``--help`` away), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def output_file(text: str) -> Path:
    """argparse type for files the command writes: refused before any work or output when
    the path is a directory or its directory cannot be written."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    problem = _usable_output_dir(path.parent)
    if problem is None and path.parent.is_dir():
        import tempfile

        try:  # what really tells (permissions, read-only or pseudo file systems like /proc)
            with tempfile.TemporaryFile(dir=path.parent):
                pass
        except OSError as exc:
            problem = f"cannot write in {path.parent}: {exc.strerror or exc}"
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return path


def _platform_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no platform named in {text!r}")
    return names


def choose_mode(requested: str | None, environ: dict[str, str], isatty: bool) -> str:
    """``--progress`` if given, else Buildkite when BUILDKITE=true, a terminal, or plain CI."""
    if requested and requested != "auto":
        return requested
    if environ.get("BUILDKITE") == "true":
        return "buildkite"
    return "tty" if isatty else "ci"


def _usable_output_dir(path: Path) -> str | None:
    """Why ``path`` cannot hold results (None when it can): checked before anything runs or
    is printed, so a bad --results leaves no partial output."""
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is not a directory"
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

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
    run.add_argument("--in-place", action="store_true",
                     help="run the platform's cases here, against the vLLM installed in this "
                          "environment (e.g. inside a vLLM container you started): no container "
                          "is started; results record launch=in-place")
    run.add_argument("--skip-preflight", action="store_true",
                     help="do not run the cheap `harness doctor` checks before starting")
    run.add_argument("--shard-index", type=int, default=None,
                     help="this parallel job's index (Buildkite: $BUILDKITE_PARALLEL_JOB)")
    run.add_argument("--shard-count", type=int, default=None,
                     help="number of parallel jobs ($BUILDKITE_PARALLEL_JOB_COUNT)")
    run.add_argument("--progress", choices=["auto", "tty", "ci", "buildkite", "off"],
                     default="auto", help="live progress: auto (Buildkite groups on Buildkite, "
                     "a heartbeat every 5 s on a terminal, every 30 s otherwise)")
    run.add_argument("--stream-engine-log", action="store_true",
                     help="show the engine's own log live")
    run.add_argument("--keep-container", action="store_true",
                     help="container platforms: keep a failed run's container (stopped) and "
                     "print how to enter it")

    # Later stages live in their own modules (harness/commands/<name>.py: add_arguments + run).
    for name, text in EXTRA_COMMANDS.items():
        _command_module(name).add_arguments(sub.add_parser(name, help=text))
    return parser


EXTRA_COMMANDS = {
    "compare": "compare results across platforms and runs",
    "pipeline": "print the Buildkite pipeline",
    "ingest": "add runs to the history store",
    "dashboard": "render the nightly dashboard",
    "reference": "run the hf (transformers) reference for cases",
    "image": "build, push or pull a container platform's image",
    "models": "fetch the hub snapshots (or build the tiny models) a platform needs",
    "doctor": "preflight checks for a platform's node, one line each with the fix",
    "prune": "remove the harness's own old containers and images (by label)",
    "bisect": "find the first bad image for a case (flake-aware, resumable)",
    "triage": "failures grouped by signature across jobs, nights and nodes",
    "signatures": "check the failure-signature rulebook (signatures.yaml) and its coverage",
    "tests": "fetch vLLM's own tests tree (for vllm_tests cases) into the cache",
    "autobisect": "the nightly's own bisects of what broke tonight (with guards)",
}


def _command_module(name: str):
    import importlib

    return importlib.import_module(f"harness.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"validate": cmd_validate, "plan": cmd_plan, "run": cmd_run}.get(args.command)
    if handler is None:
        handler = _command_module(args.command).run
    try:
        return handler(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path given on the command line that cannot be read or written
        where = exc.filename if exc.filename is not None else "input/output"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.spec.case import validate_paths

    errors = validate_paths(args.paths)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not errors:
        print(f"ok: {', '.join(map(str, args.paths))}")
    return EXIT_USAGE if errors else EXIT_OK


def load_selection(args: argparse.Namespace):
    """Cases, platforms and the planned jobs for a plan/run command line."""
    from harness.plan import plan
    from harness.spec.settings import default_platforms
    from harness.spec.case import check_overrides, check_registries, load_cases, load_platforms

    case_dir = args.cases if args.cases.is_dir() else args.cases.parent
    platforms_file = args.platforms_file or case_dir / PLATFORMS_FILE
    platforms = load_platforms(platforms_file)
    cases = load_cases([args.cases])
    check_overrides(cases, platforms)
    for case in cases:
        check_registries(case)
    selected = args.platform or default_platforms(platforms, os.environ)
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
    from harness.host.execute import execute, make_launch
    from harness.proc import shell_join
    from harness.results import DiskFull
    from harness.host.launch.local import WorkerRequest
    from harness.report.terminal import run_table
    from harness.runid import is_valid_run_id, new_run_id

    from harness.signatures.rulebook import default_rulebook

    try:
        _, platforms, platforms_file, jobs = load_selection(args)
        default_rulebook()  # signatures.yaml: a typo fails here, not after the engines ran
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
    if args.in_place and (args.engine or args.gpus):
        print("error: --in-place starts no container: --engine and --gpus do not apply (expose "
              "the GPUs to the container you are in)", file=sys.stderr)
        return EXIT_USAGE
    run_id = new_run_id() if args.run_id is None else args.run_id
    if not is_valid_run_id(run_id):
        print(f"error: bad run id {run_id!r}", file=sys.stderr)
        return EXIT_USAGE
    unusable = None if args.dry_run else _usable_output_dir(args.results)
    if unusable:
        print(f"error: --results {args.results}: {unusable}", file=sys.stderr)
        return EXIT_USAGE
    progress = choose_mode(args.progress, dict(os.environ), sys.stdout.isatty())
    worst = EXIT_OK
    for name in args.platform:
        platform_jobs = [job for job in jobs if job.platform.name == name]
        if not platform_jobs:
            continue
        case_files = sorted({Path(job.case.source) for job in platform_jobs})
        request = WorkerRequest(platforms[name], case_files, Path(platforms_file), args.results,
                                run_id, args.keyword, Path.cwd(), shard=args.shard_index,
                                progress=progress, stream_engine_log=args.stream_engine_log,
                                tests_cache=tests_cache(platform_jobs))

        def launcher(r: WorkerRequest, pinned: tuple[str, str] | None = None):
            image, pull = pinned or (args.image, args.pull)
            return make_launch(r, engine=args.engine, gpus=args.gpus, image=image, pull=pull,
                               in_place=args.in_place)

        launch = launcher(request)

        def relaunch(r: WorkerRequest, first=launch):  # the retry runs the digest attempt 1 ran
            return launcher(r, first.pinned() if hasattr(first, "pinned") else None)
        # Only the first attempt's container is kept (release() below decides); a retry's
        # launcher removes its own.
        if args.keep_container and hasattr(launch, "keep_container"):
            launch.keep_container = True
        if args.dry_run:
            print(shell_join(launch.argv()))
            continue
        if progress != "off":
            print(f"{name}: {len(platform_jobs)} job(s), run {run_id}, worker log "
                  f"{args.results / run_id / name}/worker{request.file_suffix()}.log", flush=True)
        problem = None if args.skip_preflight else preflight_problem(
            platforms[name], args.engine, args.in_place, args.gpus, args.shard_index)
        if problem:
            from harness.host.execute import not_started

            print(f"preflight failed for {name}: {problem}", file=sys.stderr)
            outcome = not_started(platform_jobs, request, launch, f"preflight: {problem}")
        else:
            try:
                outcome = execute(platform_jobs, request, launch, relaunch=relaunch)
            except DiskFull as exc:
                print(f"error: infrastructure: disk full: {exc}; results written before it are "
                      "intact", file=sys.stderr)
                return EXIT_INFRA
        if hasattr(launch, "release"):
            kept = launch.release(failed=outcome.exit_code != EXIT_OK)
            if kept:
                print(kept, file=sys.stderr)
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


def tests_cache(jobs) -> Path | None:
    """The vLLM tests cache when a vllm_tests job is among ``jobs`` (harness.testtree)."""
    if not any(job.case.model is None for job in jobs):
        return None
    from harness.testtree import cache_root

    return cache_root()


def preflight_problem(platform, engine: str | None, in_place: bool, gpus: str | None = None,
                      shard: int | None = None) -> str | None:
    """The cheap part of `harness doctor`: engine, devices, the run's GPUs clean. The first
    failure (warnings, such as a neighbour agent's busy GPU, do not stop the run)."""
    from harness.host.doctor import Host, failed, platform_checks

    problems = failed(platform_checks(platform, Host(), engine=engine, in_place=in_place,
                                      cheap=True, gpus=gpus, shard=shard))
    if not problems:
        return None
    return "; ".join(f"{c.name}: {c.detail} (fix: {c.fix})" for c in problems)


def select_shard_jobs(jobs, index: int | None, count: int | None):
    if index is None and count is None:
        return jobs
    if index is None or count is None:
        raise ValueError("--shard-index and --shard-count go together")
    from harness.host.buildkite.shard import select_shard

    # Shard per platform, so every platform's jobs spread over the same parallel jobs.
    platforms = list(dict.fromkeys(job.platform.name for job in jobs))
    return [job for name in platforms
            for job in select_shard([j for j in jobs if j.platform.name == name], index, count)]
